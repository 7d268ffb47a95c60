import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kvm, type KV } from '@nats-io/kv';
import { natsForTestFile } from '../../testing/nats.js';
import { NatsNodes } from './nodes.js';

/**
 * The nodes bucket against a real nats-server -js: heartbeats, the live list and the least
 * loaded, and a silent node reaped by exactly one of the survivors racing on their own
 * connections. Time is a shared fake clock; each node's tick() is called by hand.
 */

const nats = natsForTestFile();

let bucketN = 0;
async function bucket(): Promise<() => Promise<KV>> {
  const name = `nodes-${++bucketN}`;
  const first = await nats.connect();
  await new Kvm(first).create(name, { history: 1 });
  // Each node on its own connection, as on its own machine.
  return async () => {
    const nc = await nats.connect();
    return new Kvm(nc).open(name);
  };
}

test('heartbeats make a node live; the least loaded is picked and counted up so a burst spreads; a clean close leaves the fleet', async () => {
  const kvFor = await bucket();
  let m = 0;
  const make = async (nodeId: string, sessions: number) => new NatsNodes({ kv: await kvFor(), self: { nodeId, publicUrl: `https://${nodeId}.example` }, load: () => sessions, onLost: () => Promise.resolve(), monotonic: () => m });
  const a = await make('node-a', 5);
  const b = await make('node-b', 2);
  await a.tick();
  await b.tick();
  await a.tick();
  assert.deepEqual(a.live().map((n) => [n.nodeId, n.sessions, n.publicUrl]).sort(), [['node-a', 5, 'https://node-a.example'], ['node-b', 2, 'https://node-b.example']]);
  // WHIP redirect's pick: B until it has as many as A; A (this node) then serves itself.
  assert.deepEqual([1, 2, 3, 4, 5].map(() => a.pickLeastLoaded()?.nodeId), ['node-b', 'node-b', 'node-b', 'node-a', 'node-a']);
  b.draining();
  await b.tick();
  m += 1;
  await a.tick();
  assert.equal(a.pickLeastLoaded()?.nodeId, 'node-a', 'a draining node is not picked');
  await b.close();
  await a.tick();
  assert.deepEqual(a.live().map((n) => n.nodeId), ['node-a']);
  await a.close();
});

test('a node unchanged for lostAfterMs to the survivors\' eyes is reaped by exactly one of two racing survivors, which ends its sessions; the reaped node finds out at its next heartbeat, ends its calls and joins again', async () => {
  const kvFor = await bucket();
  let m = 0;
  const lost: string[] = [];
  const reaped: string[] = [];
  const make = async (nodeId: string) =>
    new NatsNodes({
      kv: await kvFor(),
      self: { nodeId, publicUrl: `https://${nodeId}.example` },
      load: () => 1,
      onLost: (n) => {
        lost.push(`${n} by ${nodeId}`);
        return Promise.resolve();
      },
      onReaped: () => void reaped.push(nodeId),
      monotonic: () => m,
      lostAfterMs: 8000,
    });
  const [a, b, c] = [await make('node-a'), await make('node-b'), await make('node-c')];
  await a.tick();
  await Promise.all([b.tick(), c.tick()]);
  m += 8000;
  await Promise.all([b.tick(), c.tick()]);
  assert.deepEqual(lost, [], 'not yet: 8 s is the limit, not past it');
  m += 1;
  await Promise.all([b.tick(), c.tick()]);
  await Promise.all([b.settled(), c.settled()]);
  assert.equal(lost.length, 1, `one reap: ${lost.join(', ')}`);
  assert.match(lost[0]!, /^node-a by node-[bc]$/);
  await Promise.all([b.tick(), c.tick()]);
  await Promise.all([b.settled(), c.settled()]);
  assert.equal(lost.length, 1, 'a reaped node is not reaped again');
  assert.deepEqual(b.live().map((n) => n.nodeId).sort(), ['node-b', 'node-c']);
  // A was only cut off: its next heartbeat finds the mark, ends its calls, and it is back.
  await a.tick();
  assert.deepEqual(reaped, ['node-a']);
  await c.tick();
  assert.deepEqual(c.live().map((n) => n.nodeId).sort(), ['node-a', 'node-b', 'node-c']);
  for (const n of [a, b, c]) await n.close();
});

test('after its own disconnect a node judges nobody on the gap: an outage that silenced everyone reaps no one', async () => {
  const kvFor = await bucket();
  let m = 0;
  const lost: string[] = [];
  const make = async (nodeId: string) => new NatsNodes({ kv: await kvFor(), self: { nodeId, publicUrl: `https://${nodeId}.example` }, load: () => 0, onLost: (n) => (lost.push(n), Promise.resolve()), monotonic: () => m });
  const [a, b] = [await make('node-a'), await make('node-b')];
  await a.tick();
  await b.tick();
  m += 12_000; // the server was away; B's connection came back first
  b.connectionChanged();
  await b.tick();
  await b.settled();
  assert.deepEqual(lost, []);
  await a.tick();
  m += 1000;
  await b.tick();
  assert.deepEqual(b.live().map((n) => n.nodeId).sort(), ['node-a', 'node-b']);
  await a.close();
  await b.close();
});
