import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { FakeClock } from '../../core/clock.js';
import { createLogger } from '../../core/logger.js';
import { natsForTestFile } from '../../testing/nats.js';
import { sessionDirectoryContract, sessionRecord } from '../contract/session-directory.js';
import { NatsSessionDirectory, type NatsSessionDirectoryOptions } from './session-directory.js';

const TOMBSTONE_MS = 60_000;

// The gateway's pino logger fits the `log` option (checked by tsc).
const _gatewayLog: NatsSessionDirectoryOptions['log'] = createLogger('silent');

// One nats-server for the file; node A and node B each have their own connection to it.
const nats = natsForTestFile();
let ncA: NatsConnection | undefined;
let ncB: NatsConnection | undefined;
let buckets = 0;

before(async () => {
  ncA = await nats.connect('node-a');
  ncB = await nats.connect('node-b');
});

interface Pair {
  dir: NatsSessionDirectory;
  peer: NatsSessionDirectory;
  bucket: string;
  cleanup: () => Promise<void>;
}

/** Node A's and node B's directories over one fresh bucket. */
async function pair(clock: FakeClock, log?: NatsSessionDirectoryOptions['log']): Promise<Pair> {
  const bucket = `sessions_${++buckets}`;
  const now = () => clock.now();
  const dir = await NatsSessionDirectory.open({ nc: ncA!, bucket, now, tombstoneMs: TOMBSTONE_MS, log });
  const peer = await NatsSessionDirectory.open({ nc: ncB!, bucket, now, tombstoneMs: TOMBSTONE_MS, log });
  const cleanup = async () => {
    await (await new Kvm(ncA!).open(bucket)).destroy();
  };
  return { dir, peer, bucket, cleanup };
}

sessionDirectoryContract('NatsSessionDirectory', async ({ clock, tombstoneMs }) => {
  assert.equal(tombstoneMs, TOMBSTONE_MS);
  const f = await pair(clock);
  // Time passes, then one node's sweep runs, as a timer on every node would.
  const advance = async (ms: number) => {
    clock.advance(ms);
    await f.dir.sweep();
  };
  return { ...f, advance };
});

/** Runs `body` on a fresh pair, then closes both and deletes the bucket, whatever happened. */
async function withPair(body: (p: Pair & { clock: FakeClock }) => Promise<void>, log?: Parameters<typeof pair>[1]): Promise<void> {
  const clock = new FakeClock();
  const p = await pair(clock, log);
  try {
    await body({ ...p, clock });
  } finally {
    await p.dir.close();
    await p.peer.close();
    await p.cleanup();
  }
}

const record = sessionRecord;

const plain = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

test('20 claimers on each of two connections race for one id: exactly one wins, and both nodes read the winner', () =>
  withPair(async ({ dir, peer, clock }) => {
    const on = (i: number) => (i < 20 ? dir : peer);
    const won = await Promise.all(Array.from({ length: 40 }, (_, i) => on(i).claim(record(clock, 'contested', { node: `node-${i}` }))));
    assert.equal(won.filter(Boolean).length, 1);
    const winner = `node-${won.indexOf(true)}`;
    assert.equal((await dir.lookup('contested'))?.node, winner);
    assert.equal((await peer.lookup('contested'))?.node, winner);
    assert.deepEqual((await peer.list()).map((r) => r.node), [winner]);
  }));

test('a session claimed on one node is looked up, updated and released from the other', () =>
  withPair(async ({ dir, peer, clock }) => {
    const rec = record(clock, 'call-1', { node: 'node-a' });
    assert.equal(await dir.claim(rec), true);
    assert.deepEqual(plain(await peer.lookup('call-1')), plain(rec));
    assert.equal(await peer.update('call-1', { state: 'connected', connectedAt: clock.now() + 5 }), true);
    assert.equal((await dir.lookup('call-1'))?.connectedAt, clock.now() + 5);
    await peer.release('call-1', 'node-lost', clock.now());
    assert.equal((await dir.lookup('call-1'))?.endReason, 'node-lost');
    assert.deepEqual(await dir.list({ node: 'node-a' }), []);
    assert.equal(await dir.claim(record(clock, 'call-1')), false);
  }));

test('updates racing a release from the other node never bring the session back to life', () =>
  withPair(async ({ dir, peer, clock }) => {
    await dir.claim(record(clock, 'call-1'));
    const updates = Array.from({ length: 10 }, (_, i) => dir.update('call-1', { state: 'connected', connectedAt: clock.now() + i }));
    await Promise.all([...updates, peer.release('call-1', 'node-lost', clock.now())]);
    const got = await dir.lookup('call-1');
    assert.equal(got?.state, 'ended');
    assert.equal(got?.endReason, 'node-lost');
    assert.equal(await dir.update('call-1', { state: 'connected' }), false);
    assert.deepEqual(await peer.list(), []);
  }));

test('ids that are not KV keys (dots, colons, spaces, non-ASCII, empty) work, and none collides with another\'s encoding', () =>
  withPair(async ({ dir, peer, clock }) => {
    const ids = ['sip:alice@example.com;tag=a.b c', 'München ☎', '.', '', 'a..b', '=c2lwOmE', 'plain_id-1'];
    for (const id of ids) assert.equal(await dir.claim(record(clock, id)), true, JSON.stringify(id));
    for (const id of ids) assert.equal((await peer.lookup(id))?.id, id, JSON.stringify(id));
    assert.deepEqual((await peer.list()).map((r) => r.id).sort(), [...ids].sort());
    await dir.release('München ☎', 'bye', clock.now());
    assert.equal((await peer.lookup('München ☎'))?.state, 'ended');
    assert.equal(await peer.claim(record(clock, 'München ☎')), false);
  }));

test('with no sweep, an expired tombstone is taken over by exactly one of the claimers racing for it', () =>
  withPair(async ({ dir, peer, clock }) => {
    await dir.claim(record(clock, 'call-1'));
    await dir.release('call-1', 'bye', clock.now());
    clock.advance(TOMBSTONE_MS);
    assert.equal(await peer.lookup('call-1'), undefined, 'an expired tombstone reads as absent before any sweep');
    const on = (i: number) => (i % 2 === 0 ? dir : peer);
    const won = await Promise.all(Array.from({ length: 20 }, (_, i) => on(i).claim(record(clock, 'call-1', { node: `node-${i}` }))));
    assert.equal(won.filter(Boolean).length, 1);
    const got = await dir.lookup('call-1');
    assert.equal(got?.node, `node-${won.indexOf(true)}`);
    assert.equal(got?.state, 'connecting');
  }));

test('both nodes sweeping while claims race over expired tombstones: one claim wins each time and the sweeps leave it alone', () =>
  withPair(async ({ dir, peer, clock }) => {
    // Rounds, with the claims let go at different points of the sweeps' read-then-purge, so some
    // claim lands between a sweep's read of the tombstone and its purge.
    for (let round = 0; round < 12; round++) {
      const id = `call-${round}`;
      await dir.claim(record(clock, id));
      await dir.release(id, 'bye', clock.now());
      clock.advance(TOMBSTONE_MS);
      const sweeps = Promise.all([dir.sweep(), peer.sweep()]);
      for (let i = 0; i < round % 4; i++) await new Promise(setImmediate);
      const claims = Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? dir : peer).claim(record(clock, id, { node: `node-${i}` })));
      const [[a, b], won] = await Promise.all([sweeps, Promise.all(claims)]);
      assert.ok(a + b <= 1, 'a tombstone is purged at most once');
      assert.equal(won.filter(Boolean).length, 1, id);
      assert.equal((await peer.lookup(id))?.node, `node-${won.indexOf(true)}`, id);
    }
    assert.equal(await dir.sweep(), 0, 'live sessions are never swept');
  }));

test('a claim landing between a sweep\'s read of the tombstone and its purge survives the purge', () =>
  withPair(async ({ dir, bucket, clock }) => {
    // Node C's connection holds back its sweep's purge request until node A's claim is in.
    const ncC = await nats.connect('node-c');
    try {
      const sweeper = await NatsSessionDirectory.open({ nc: ncC, bucket, now: () => clock.now(), tombstoneMs: TOMBSTONE_MS });
      const request = ncC.request.bind(ncC);
      let claimed: boolean | undefined;
      ncC.request = async (subject, payload, opts) => {
        if (subject.startsWith('$JS.API.STREAM.PURGE.')) claimed = await dir.claim(record(clock, 'call-1', { node: 'node-a2' }));
        return request(subject, payload, opts);
      };
      await dir.claim(record(clock, 'call-1'));
      await dir.release('call-1', 'bye', clock.now());
      clock.advance(TOMBSTONE_MS);
      assert.equal(await sweeper.sweep(), 0, 'the tombstone it read was already replaced');
      assert.equal(claimed, true);
      assert.equal((await dir.lookup('call-1'))?.node, 'node-a2');
      await sweeper.close();
    } finally {
      await ncC.close();
    }
  }));

test('a swept tombstone leaves no message behind in the bucket\'s stream', () =>
  withPair(async ({ dir, clock, bucket }) => {
    await dir.claim(record(clock, 'live'));
    await dir.claim(record(clock, 'ended'));
    await dir.release('ended', 'bye', clock.now());
    clock.advance(TOMBSTONE_MS - 1);
    assert.equal(await dir.sweep(), 0, 'not yet expired');
    clock.advance(1);
    assert.equal(await dir.sweep(), 1);
    const info = await (await jetstreamManager(ncA!)).streams.info(`KV_${bucket}`);
    assert.equal(info.state.messages, 1, 'only the live session');
    assert.equal(await dir.claim(record(clock, 'ended')), true);
  }));

test('an entry that is not a session record is skipped by list with a warning, and lookup of it throws', async () => {
  const warnings: string[] = [];
  await withPair(
    async ({ dir, peer, clock, bucket }) => {
      await dir.claim(record(clock, 'good'));
      await (await new Kvm(ncA!).open(bucket)).put('bad', '{"record":{"id":"bad"}}');
      assert.deepEqual((await peer.list()).map((r) => r.id), ['good']);
      assert.deepEqual(warnings, ['session directory entry skipped']);
      await assert.rejects(peer.lookup('bad'), /not a session record/);
    },
    { warn: (_obj, msg) => void warnings.push(msg) },
  );
});

test('close refuses later calls and leaves the connection and bucket to the other node', () =>
  withPair(async ({ dir, peer, clock }) => {
    await dir.claim(record(clock, 'call-1'));
    await dir.close();
    await dir.close();
    await assert.rejects(dir.claim(record(clock, 'call-2')), /closed/);
    await assert.rejects(dir.lookup('call-1'), /closed/);
    await assert.rejects(dir.list(), /closed/);
    await assert.rejects(dir.sweep(), /closed/);
    assert.equal((await peer.lookup('call-1'))?.state, 'connecting');
    assert.equal(ncA!.isClosed(), false);
  }));
