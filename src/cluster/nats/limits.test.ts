import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kvm } from '@nats-io/kv';
import { createLogger } from '../../core/logger.js';
import { natsForTestFile } from '../../testing/nats.js';
import { FleetLimits } from './limits.js';

const nats = natsForTestFile();
const log = createLogger('silent');
let buckets = 0;

/** Two nodes' views of one limits bucket, each on its own connection; `gone` and the clock are the test's. */
async function fleet() {
  const bucket = `limits_${++buckets}`;
  const gone = new Set<string>();
  const held = new Set<string>();
  let now = 1_800_000_000_000;
  const node = async (nodeId: string) => {
    const kv = await new Kvm(await nats.connect(nodeId)).create(bucket, { history: 1 });
    return new FleetLimits({ kv, nodeId, gone: (n) => gone.has(n), holds: (id) => held.has(id), now: () => now, log });
  };
  return { a: await node('node-a'), b: await node('node-b'), gone, held, advance: (ms: number) => (now += ms) };
}

test('two nodes racing for the last places of a limit: exactly max of them get one; a release frees one; the same id twice counts once', async () => {
  const { a, b } = await fleet();
  const tries = Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b).acquire('source:web', `s${i}`, 3));
  const got = await Promise.all(tries);
  assert.equal(got.filter(Boolean).length, 3, `three of twelve (${got.join(',')})`);
  assert.equal(await a.count('source:web'), 3);
  const winner = `s${got.indexOf(true)}`;
  assert.equal(await b.acquire('source:web', winner, 3), true, 'an id that holds a place has it');
  await (got.indexOf(true) % 2 ? a : b).release('source:web', winner);
  assert.equal(await b.count('source:web'), 2);
  assert.equal(await b.acquire('source:web', 'late', 3), true);
  assert.equal(await a.acquire('source:web', 'later', 3), false);
  assert.equal(await a.count('trunk:other'), 0, 'each name its own');
});

test('a node drops its own places of sessions it no longer has (a release that could not be written), after the grace period', async () => {
  const { a, held, advance } = await fleet();
  held.add('a1');
  assert.equal(await a.acquire('source:web', 'a1', 2), true);
  assert.equal(await a.acquire('source:web', 'a2', 2), true); // a2: its release "failed" (node-a does not hold it)
  assert.equal(await a.acquire('source:web', 'a3', 2), false, 'full while a2 is young (its call may be starting)');
  advance(11_000);
  assert.equal(await a.acquire('source:web', 'a3', 2), true, 'a2 dropped');
  assert.equal(await a.count('source:web'), 2);
});

test('places left by a node that is gone go after the grace period (never a live node\'s)', async () => {
  const { a, b, gone, held, advance } = await fleet();
  held.add('a1').add('a2');
  assert.equal(await a.acquire('source:web', 'a1', 2), true);
  assert.equal(await a.acquire('source:web', 'a2', 2), true);
  advance(11_000);
  assert.equal(await b.acquire('source:web', 'b1', 2), false, 'node-a live: its places stand, however old');
  gone.add('node-a');
  assert.equal(await b.acquire('source:web', 'b1', 2), true, 'node-a gone: its places went');
  assert.equal(await b.count('source:web'), 1);
});
