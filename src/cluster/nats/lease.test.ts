import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { createLogger } from '../../core/logger.js';
import { natsForTestFile } from '../../testing/nats.js';
import { Lease } from './lease.js';

const nats = natsForTestFile();
const log = createLogger('silent');
let buckets = 0;

/** Nodes contending for one lease, each on its own connection; the clock, the lost set and the ticks are the test's. */
async function contenders(ids: string[], termMs = 15_000) {
  const bucket = `leases_${++buckets}`;
  let t = 0;
  const lost = new Set<string>();
  const events: string[] = [];
  const conns: NatsConnection[] = [];
  const nodes = await Promise.all(
    ids.map(async (nodeId) => {
      const nc = await nats.connect(nodeId);
      conns.push(nc);
      const kv = await new Kvm(nc).create(bucket, { history: 1 });
      return new Lease({ kv, name: 'trunk-registration:carrier', nodeId, lost: (n) => lost.has(n), onAcquired: () => events.push(`${nodeId} +`), onReleased: () => events.push(`${nodeId} -`), termMs, log, monotonic: () => t });
    }),
  );
  return { nodes, conns, lost, events, advance: (ms: number) => (t += ms) };
}

test('two nodes starting together: exactly one holds the lease; it renews, and the other stands by', async () => {
  const { nodes: [a, b], events, advance } = await contenders(['node-a', 'node-b']);
  await Promise.all([a!.tick(), b!.tick()]);
  assert.equal([a!, b!].filter((l) => l.holding).length, 1);
  assert.equal(events.length, 1);
  const [holder, other] = a!.holding ? [a!, b!] : [b!, a!];
  for (let i = 0; i < 6; i++) {
    advance(5000);
    await holder.tick();
    await other.tick();
  }
  assert.deepEqual([holder.holding, other.holding], [true, false], '30 s of renewals every 5 s: no take-over');
  assert.equal(other.holder, holder === a ? 'node-a' : 'node-b');
});

test('a holder that stops renewing (killed) is replaced after one term unchanged; when it comes back it finds out and lets go', async () => {
  const { nodes: [a, b], events, advance } = await contenders(['node-a', 'node-b']);
  await a!.tick();
  await b!.tick();
  assert.ok(a!.holding);
  advance(10_000);
  await b!.tick();
  assert.equal(b!.holding, false, 'unchanged for 10 s: not yet');
  advance(6000);
  await b!.tick();
  assert.equal(b!.holding, true, 'unchanged for 16 s: taken over');
  await a!.tick(); // node-a was only stalled: its renewal fails on the revision
  assert.equal(a!.holding, false);
  assert.deepEqual(events, ['node-a +', 'node-b +', 'node-a -']);
});

test('a holder marked lost is replaced at once; one that stops cleanly hands over at the next look', async () => {
  const { nodes: [a, b, c], lost, advance } = await contenders(['node-a', 'node-b', 'node-c']);
  await a!.tick();
  await b!.tick();
  lost.add('node-a');
  await b!.tick();
  assert.equal(b!.holding, true, 'the holder is lost: no term to wait');
  await c!.tick();
  await b!.close();
  advance(1);
  await c!.tick();
  assert.equal(c!.holding, true, 'released by a clean stop: free at once');
});

test('a holder cut off from NATS lets go two thirds into the term, before any other node may take over', async () => {
  const { nodes: [a], conns: [nc], events, advance } = await contenders(['node-a'], 300);
  await a!.start();
  assert.ok(a!.holding);
  await nc!.close(); // its renewals now fail (not a revision conflict: no answer at all)
  advance(250);
  const deadline = Date.now() + 3000;
  while (a!.holding && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(a!.holding, false);
  assert.deepEqual(events, ['node-a +', 'node-a -']);
  await a!.close();
});
