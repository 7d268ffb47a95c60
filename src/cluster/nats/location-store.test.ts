import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Binding } from '../../sip/location-store.js';
import { parseSipMessage, type SipRequest } from '../../sip/message.js';
import { Registrar } from '../../sip/registrar.js';
import { natsForTestFile } from '../../testing/nats.js';
import { locationStoreContract } from '../contract/location-store.js';
import { NatsLocationStore } from './location-store.js';

// One nats-server for the file; two connections to it stand for two nodes.
const nats = natsForTestFile();
let nodeA: NatsConnection;
let nodeB: NatsConnection;
let buckets = 0;

before(async () => {
  nodeA = await nats.connect('node-a');
  nodeB = await nats.connect('node-b');
});

/** A fresh bucket opened through each connection; `destroy` deletes the bucket. */
async function pair(maxAgeMs?: number) {
  const bucket = `locations-${++buckets}`;
  const store = await NatsLocationStore.open({ nc: nodeA, bucket, maxAgeMs });
  const peer = await NatsLocationStore.open({ nc: nodeB, bucket });
  const kv = await new Kvm(nodeA).open(bucket);
  const destroy = async () => {
    await store.close();
    await peer.close();
    await kv.destroy();
  };
  return { store, peer, kv, destroy };
}

locationStoreContract('NatsLocationStore', async () => {
  const { store, peer, destroy } = await pair();
  return { store, peer, cleanup: destroy };
});

const T0 = 1_700_000_000_000;

function binding(aor: string, flowId: string): Binding {
  return {
    aor,
    contact: 'sip:x9k2@198.51.100.7:40000;transport=ws',
    flowId,
    remote: '198.51.100.7:40000',
    instance: '<urn:uuid:00000000-0000-4000-8000-000000000001>',
    regId: '1',
    callId: 'reg-1@client.invalid',
    cseq: 1,
    expiresAt: T0 + 600_000,
    userAgent: 'JsSIP 3.13.8',
  };
}

test('aors full of odd characters get valid, distinct, reversible keys; stored through A, found through B', async () => {
  const { store, peer, kv, destroy } = await pair();
  try {
    const aors = ["sip:o'brien+tag@example.com", 'sip:alice@[2001:db8::1]:5061;transport=ws', 'sips:%61lice;x=y?h=1@example.com', 'sip:zoë@例え.jp', 'sip:O\'Brien+tag@example.com'];
    for (const [i, aor] of aors.entries()) await store.update(aor, () => [binding(aor, `flow-${i}`)]);
    for (const [i, aor] of aors.entries()) assert.deepEqual(await peer.get(aor), [binding(aor, `flow-${i}`)]);
    const keys: string[] = [];
    for await (const k of await kv.keys()) keys.push(k);
    assert.equal(keys.length, aors.length, 'one key per aor (case differs: different aors)');
    for (const k of keys) assert.match(k, /^aor\.[-_a-zA-Z0-9]+$/);
    // The layout is what other nodes (and versions) read: `aor.` + base64url of the UTF-8 aor.
    assert.deepEqual(keys.map((k) => Buffer.from(k.slice(4), 'base64url').toString('utf8')).sort(), [...aors].sort());
    assert.deepEqual((await peer.all()).map((b) => b.aor).sort(), [...aors].sort());
  } finally {
    await destroy();
  }
});

test('cross-node: a binding stored through A is found through B, and B removing it is seen by A', async () => {
  const { store, peer, destroy } = await pair();
  try {
    const aor = 'sip:alice@example.com';
    await store.update(aor, () => [binding(aor, 'flow-on-a')]);
    assert.deepEqual(await peer.get(aor), [binding(aor, 'flow-on-a')]);
    assert.deepEqual(await peer.all(), [binding(aor, 'flow-on-a')]);
    await peer.update(aor, () => []);
    assert.deepEqual(await store.get(aor), []);
    assert.deepEqual(await store.all(), []);
  } finally {
    await destroy();
  }
});

function register(n: number): SipRequest {
  const text = [
    'REGISTER sip:example.com SIP/2.0',
    `Via: SIP/2.0/WS c${n}.invalid;branch=z9hG4bK${n}`,
    'To: <sip:alice@example.com>',
    `From: <sip:alice@example.com>;tag=${n}`,
    `Call-ID: reg-${n}@client.invalid`,
    'CSeq: 1 REGISTER',
    `Contact: <sip:c${n}@c${n}.invalid;transport=ws>;+sip.instance="<urn:uuid:00000000-0000-4000-8000-${String(n).padStart(12, '0')}>";reg-id=1`,
    'Expires: 600',
    'User-Agent: JsSIP 3.13.8',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
  return parseSipMessage(text) as SipRequest;
}

test('2 × 20 concurrent REGISTERs of one aor through two nodes\' registrars all land; dropFlow on A leaves B\'s', async () => {
  const { store, peer, destroy } = await pair();
  try {
    const opts = { minExpires: 60, maxExpires: 3600, defaultExpires: 600 };
    const onA = new Registrar(store, opts, () => T0);
    const onB = new Registrar(peer, opts, () => T0);
    const aor = 'sip:alice@example.com';
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, n) => (n % 2 === 0 ? onA.register(aor, register(n), { id: 'ws-a', remote: '192.0.2.1:1' }) : onB.register(aor, register(n), { id: 'ws-b', remote: '192.0.2.2:1' }))),
    );
    assert.deepEqual(
      results.map((r) => r.status),
      Array(40).fill(200),
    );
    const stored = await onB.lookup(aor);
    assert.deepEqual(stored.map((b) => b.contact).sort(), Array.from({ length: 40 }, (_, n) => `sip:c${n}@c${n}.invalid;transport=ws`).sort());
    // A's WebSocket closes: its 20 bindings go, B's 20 stay.
    assert.equal((await onA.dropFlow('ws-a')).length, 20);
    assert.deepEqual(
      (await onB.lookup(aor)).map((b) => b.flowId),
      Array(20).fill('ws-b'),
    );
  } finally {
    await destroy();
  }
});

test('a write overtaken between its read and its put runs change again on the newer list', async () => {
  const { peer, kv, destroy } = await pair();
  try {
    const aor = 'sip:bob@example.com';
    // A KV whose first read is overtaken by node B's write before it returns: a stale revision.
    let overtaken = false;
    const racy = Object.assign(Object.create(kv) as KV, {
      get: async (key: string) => {
        const entry = await kv.get(key);
        if (!overtaken) {
          overtaken = true;
          await peer.update(aor, (c) => [...c, binding(aor, 'flow-b')]);
        }
        return entry;
      },
    });
    const store = new NatsLocationStore(racy);
    const seen: string[][] = [];
    const stored = await store.update(aor, (current) => {
      seen.push(current.map((b) => b.flowId));
      return [...current, binding(aor, 'flow-a')];
    });
    assert.deepEqual(seen, [[], ['flow-b']], 'the first run saw the stale list; its put failed the revision check');
    assert.deepEqual(stored.map((b) => b.flowId), ['flow-b', 'flow-a']);
    assert.deepEqual((await peer.get(aor)).map((b) => b.flowId), ['flow-b', 'flow-a']);
    await store.close();
  } finally {
    await destroy();
  }
});

test('maxAgeMs: the server drops an aor nobody rewrote for that long', async () => {
  const { store, peer, destroy } = await pair(1_000);
  try {
    const aor = 'sip:carol@example.com';
    await store.update(aor, () => [binding(aor, 'flow-lost-with-its-node')]);
    assert.equal((await peer.get(aor)).length, 1);
    await waitFor(async () => (await peer.get(aor)).length === 0, 5_000);
    assert.deepEqual(await peer.all(), []);
  } finally {
    await destroy();
  }
});

test('a closed store refuses calls; an aor too long for a key, or a malformed value in the bucket, is refused, not sent on', async () => {
  const { store, peer, kv, destroy } = await pair();
  try {
    await store.close();
    await assert.rejects(store.get('sip:a@example.com'), /closed/);
    await assert.rejects(store.update('sip:a@example.com', () => []), /closed/);
    await assert.rejects(store.all(), /closed/);
    const huge = `sip:${'x'.repeat(2_000)}@example.com`;
    assert.deepEqual(await peer.get(huge), [], 'an aor too long for a key has no bindings');
    await assert.rejects(peer.update(huge, () => [binding(huge, 'flow-1')]), /1 to 1024 bytes/);
    await kv.put(`aor.${Buffer.from('sip:a@example.com').toString('base64url')}`, '{"v":1,"bindings":[{"aor":3}]}');
    await assert.rejects(peer.get('sip:a@example.com'), /malformed binding/);
    await assert.rejects(peer.update('sip:a@example.com', () => [{ aor: 'x' } as Binding]), /malformed binding/);
  } finally {
    await destroy();
  }
});

/** Polls a condition (no fixed sleep): resolves once it holds, fails after `timeoutMs`. */
async function waitFor(check: () => Promise<boolean>, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
