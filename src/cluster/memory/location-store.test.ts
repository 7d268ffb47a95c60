import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Binding } from '../../sip/location-store.js';
import { locationStoreContract } from '../contract/location-store.js';
import { MemoryLocationStore } from './location-store.js';

locationStoreContract('MemoryLocationStore', async () => ({ store: new MemoryLocationStore() }));

const binding: Binding = {
  aor: 'sip:alice@example.com',
  contact: 'sip:alice@198.51.100.7:40000;transport=ws',
  flowId: 'flow-1',
  remote: '198.51.100.7:40000',
  instance: undefined,
  regId: undefined,
  callId: 'reg-1@client.invalid',
  cseq: 1,
  expiresAt: 1_700_003_600_000,
  userAgent: undefined,
};

test('memory: change runs exactly once per update, even when updates race', async () => {
  const store = new MemoryLocationStore();
  let runs = 0;
  await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      store.update(binding.aor, (current) => {
        runs++;
        return [...current, { ...binding, flowId: `flow-${i}` }];
      }),
    ),
  );
  assert.equal(runs, 20);
  assert.equal((await store.get(binding.aor)).length, 20);
  await store.close();
});

test('memory: close forgets every binding; later calls are refused and a second close is harmless', async () => {
  const store = new MemoryLocationStore();
  await store.update(binding.aor, () => [binding]);
  await store.close();
  await store.close();
  await assert.rejects(store.get(binding.aor), /closed/);
  await assert.rejects(store.all(), /closed/);
  await assert.rejects(
    store.update(binding.aor, () => [binding]),
    /closed/,
  );
});
