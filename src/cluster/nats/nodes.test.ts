import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { natsServer, type NatsServer } from '../../testing/nats.js';
import { NatsNodes } from './nodes.js';

/**
 * The nodes bucket against a real nats-server -js: heartbeats, the live list and the least
 * loaded, and a silent node reaped by exactly one of the survivors racing on their own
 * connections. Time is a shared fake clock; each node's tick() is called by hand.
 */

let server: NatsServer;
const conns: NatsConnection[] = [];
before(async () => (server = await natsServer()));
after(async () => {
  for (const c of conns) await c.drain();
  await server.stop();
});

let bucketN = 0;
async function bucket(): Promise<() => Promise<KV>> {
  const name = `nodes-${++bucketN}`;
  const first = await connect({ servers: server.url });
  conns.push(first);
  await new Kvm(first).create(name, { history: 1 });
  // Each node on its own connection, as on its own machine.
  return async () => {
    const nc = await connect({ servers: server.url });
    conns.push(nc);
    return new Kvm(nc).open(name);
  };
}

test('heartbeats make a node live; the least loaded is the one with fewest sessions; a clean close leaves the fleet', async () => {
  const kvFor = await bucket();
  let t = 1_000_000;
  const make = async (nodeId: string, sessions: number) => new NatsNodes({ kv: await kvFor(), self: { nodeId, publicUrl: `https://${nodeId}.example` }, load: () => sessions, onLost: () => Promise.resolve(), now: () => t });
  const a = await make('node-a', 5);
  const b = await make('node-b', 2);
  await a.tick();
  await b.tick();
  assert.deepEqual((await a.live()).map((n) => [n.nodeId, n.sessions, n.publicUrl]).sort(), [['node-a', 5, 'https://node-a.example'], ['node-b', 2, 'https://node-b.example']]);
  assert.equal((await a.leastLoaded())?.nodeId, 'node-b');
  // WHIP redirect's pick, from the last heartbeat (A's next one sees B): counted up as it goes, so a burst spreads.
  await a.tick();
  assert.deepEqual([1, 2, 3, 4, 5].map(() => a.pickLeastLoaded()?.nodeId), ['node-b', 'node-b', 'node-b', 'node-a', 'node-b']);
  await b.close();
  assert.deepEqual((await a.live()).map((n) => n.nodeId), ['node-a']);
  t += 1;
  await a.close();
});

test('a node silent for lostAfterMs is reaped by exactly one of two racing survivors, which ends its sessions; it is live again when it comes back', async () => {
  const kvFor = await bucket();
  let t = 5_000_000;
  const lost: string[] = [];
  const make = async (nodeId: string) =>
    new NatsNodes({
      kv: await kvFor(),
      self: { nodeId, publicUrl: `https://${nodeId}.example` },
      load: () => 1,
      onLost: (n) => {
        lost.push(`${n} by ${nodeId}`);
        return Promise.resolve();
      },
      now: () => t,
      lostAfterMs: 8000,
    });
  const [a, b, c] = [await make('node-a'), await make('node-b'), await make('node-c')];
  await Promise.all([a.tick(), b.tick(), c.tick()]);
  t += 8000;
  await Promise.all([b.tick(), c.tick()]);
  assert.deepEqual(lost, [], 'not yet: 8 s is the limit, not past it');
  t += 1;
  await Promise.all([b.tick(), c.tick()]);
  assert.equal(lost.length, 1, `one reap: ${lost.join(', ')}`);
  assert.match(lost[0]!, /^node-a by node-[bc]$/);
  await Promise.all([b.tick(), c.tick()]);
  assert.equal(lost.length, 1, 'a reaped node is not reaped again');
  assert.deepEqual((await b.live()).map((n) => n.nodeId).sort(), ['node-b', 'node-c']);
  await a.tick();
  assert.deepEqual((await c.live()).map((n) => n.nodeId).sort(), ['node-a', 'node-b', 'node-c'], 'back after a restart');
  for (const n of [a, b, c]) await n.close();
});
