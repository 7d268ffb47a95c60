import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SessionDirectory, SessionRecord } from '../../call/session-directory.js';
import { FakeClock } from '../../core/clock.js';

/**
 * What every SessionDirectory must do, memory or JetStream KV (DESIGN.md: "Memory and NATS
 * implementations pass one shared contract test suite"). Register it from a test file:
 * `sessionDirectoryContract('MemorySessionDirectory', async ({ clock, tombstoneMs }) => ({ dir: ... }))`.
 */

export interface SessionDirectorySetup {
  /** Build the directory on this clock (`now: () => clock.now()`): tombstone expiry is tested by moving it. */
  clock: FakeClock;
  /** The tombstone lifetime the suite expects the directory to have. */
  tombstoneMs: number;
}

export interface SessionDirectoryFixture {
  /** A directory over empty state (for NATS: a fresh bucket). The suite closes it. */
  dir: SessionDirectory;
  /**
   * A second directory over the same state, as another node would hold it (NATS: its own
   * connection to the same bucket). When given, the claim race runs across both, so an
   * implementation that only serialises within one process fails. The suite closes it.
   */
  peer?: SessionDirectory;
  /** Lets `ms` pass for the directory (e.g. advance the clock, then run a sweep). Default: `clock.advance(ms)`. */
  advance?: (ms: number) => Promise<void>;
  /** Runs after the directories are closed: delete the bucket, drain the connections. */
  cleanup?: () => Promise<void>;
}

export type SessionDirectoryFactory = (setup: SessionDirectorySetup) => Promise<SessionDirectoryFixture>;

const TOMBSTONE_MS = 60_000;

interface Ctx {
  dir: SessionDirectory;
  /** `peer` when there is one, else `dir`. */
  other: SessionDirectory;
  clock: FakeClock;
  advance: (ms: number) => Promise<void>;
}

/** A record as JSON would carry it: an implementation may drop undefined-valued keys. */
const plain = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

const byId = (a: SessionRecord, b: SessionRecord) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** A session record as the contract claims them (a WHIP session of `studio` on node-a, now), with overrides. */
export function sessionRecord(clock: FakeClock, id: string, over: Partial<SessionRecord> = {}): SessionRecord {
  return { id, kind: 'whip', node: 'node-a', source: 'studio', sourceKind: 'whip', state: 'connecting', createdAt: clock.now(), ...over };
}

export function sessionDirectoryContract(name: string, make: SessionDirectoryFactory): void {
  const it = (title: string, body: (c: Ctx) => Promise<void>) =>
    test(title, async () => {
      const clock = new FakeClock();
      const f = await make({ clock, tombstoneMs: TOMBSTONE_MS });
      try {
        await body({ dir: f.dir, other: f.peer ?? f.dir, clock, advance: f.advance ?? (async (ms) => clock.advance(ms)) });
      } finally {
        await f.dir.close();
        await f.peer?.close();
        await f.cleanup?.();
      }
    });

  const record = sessionRecord;

  describe(name, () => {
    it('claim then lookup returns an equal copy of the record, for calls and listeners alike', async ({ dir, clock }) => {
      const call = record(clock, 'call-1');
      const listener = record(clock, 'whep-1', { kind: 'whep', source: 'player', sourceKind: 'listener', parent: 'call-1' });
      assert.equal(await dir.claim(call), true);
      assert.equal(await dir.claim(listener), true);
      const got = await dir.lookup('call-1');
      assert.deepEqual(plain(got), plain(call));
      assert.notEqual(got, call, 'a copy, not the claimed object');
      assert.deepEqual(plain(await dir.lookup('whep-1')), plain(listener));
      assert.equal(await dir.lookup('call-2'), undefined);
    });

    it('a second claim of a live id returns false and keeps the first record', async ({ dir, other, clock }) => {
      const first = record(clock, 'call-1');
      assert.equal(await dir.claim(first), true);
      assert.equal(await other.claim(record(clock, 'call-1', { node: 'node-b' })), false);
      assert.equal(await dir.claim(record(clock, 'call-1', { node: 'node-c' })), false);
      assert.deepEqual(plain(await dir.lookup('call-1')), plain(first));
    });

    it('a claim of a released id returns false while its tombstone lasts', async ({ dir, other, clock }) => {
      await dir.claim(record(clock, 'call-1'));
      await dir.release('call-1', 'bye', clock.now());
      assert.equal(await dir.claim(record(clock, 'call-1', { node: 'node-b' })), false);
      assert.equal(await other.claim(record(clock, 'call-1', { node: 'node-b' })), false);
      assert.equal((await dir.lookup('call-1'))?.state, 'ended');
    });

    it('50 concurrent claims of one id: exactly one wins, and the stored record is the winner\'s', async ({ dir, other, clock }) => {
      const on = (i: number) => (i % 2 === 0 ? dir : other);
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => on(i).claim(record(clock, 'contested', { node: `node-${i}` }))));
      assert.equal(results.filter((won) => won).length, 1);
      const winner = results.indexOf(true);
      assert.equal((await on(winner).lookup('contested'))?.node, `node-${winner}`);
      assert.equal((await on(winner).list()).length, 1);
    });

    it('update moves a session from connecting to connected, with connectedAt', async ({ dir, clock, advance }) => {
      const rec = record(clock, 'call-1');
      await dir.claim(rec);
      await advance(850);
      assert.equal(await dir.update('call-1', { state: 'connected', connectedAt: clock.now() }), true);
      const expected = { ...rec, state: 'connected' as const, connectedAt: clock.now() };
      assert.deepEqual(plain(await dir.lookup('call-1')), plain(expected));
      assert.deepEqual(plain(await dir.list()), plain([expected]));
    });

    it('update of an unknown id returns false and creates nothing', async ({ dir, clock }) => {
      assert.equal(await dir.update('nobody', { state: 'connected', connectedAt: clock.now() }), false);
      assert.equal(await dir.lookup('nobody'), undefined);
      assert.deepEqual(await dir.list(), []);
    });

    it('update of a released id returns false and leaves the tombstone as it was', async ({ dir, clock }) => {
      await dir.claim(record(clock, 'call-1'));
      await dir.release('call-1', 'bye', clock.now());
      const tombstone = await dir.lookup('call-1');
      assert.equal(await dir.update('call-1', { state: 'connected', connectedAt: clock.now() }), false);
      assert.deepEqual(plain(await dir.lookup('call-1')), plain(tombstone));
      assert.deepEqual(await dir.list(), []);
    });

    it('release keeps an ended record with its reason and endedAt, and list() no longer shows it', async ({ dir, clock, advance }) => {
      const rec = record(clock, 'call-1');
      await dir.claim(rec);
      await dir.claim(record(clock, 'call-2'));
      await advance(5_000);
      const at = clock.now();
      await dir.release('call-1', 'remote-bye', at);
      assert.deepEqual(plain(await dir.lookup('call-1')), plain({ ...rec, state: 'ended', endedAt: at, endReason: 'remote-bye' }));
      assert.deepEqual(
        (await dir.list()).map((r) => r.id),
        ['call-2'],
      );
    });

    it('a second release is harmless and the first reason and endedAt stand', async ({ dir, clock, advance }) => {
      await dir.claim(record(clock, 'call-1'));
      const at = clock.now();
      await dir.release('call-1', 'remote-bye', at);
      await advance(1_000);
      await dir.release('call-1', 'idle-timeout', clock.now());
      const got = await dir.lookup('call-1');
      assert.equal(got?.state, 'ended');
      assert.equal(got?.endReason, 'remote-bye');
      assert.equal(got?.endedAt, at);
    });

    it('release of an unknown id is harmless and leaves the id free', async ({ dir, clock }) => {
      await dir.release('nobody', 'bye', clock.now());
      assert.equal(await dir.lookup('nobody'), undefined);
      assert.equal(await dir.claim(record(clock, 'nobody')), true);
    });

    it('list({ node }) returns only the live sessions of that node', async ({ dir, clock }) => {
      await dir.claim(record(clock, 'a-1'));
      await dir.claim(record(clock, 'a-2', { kind: 'sip-trunk', sourceKind: 'trunk' }));
      await dir.claim(record(clock, 'a-3'));
      await dir.claim(record(clock, 'b-1', { node: 'node-b' }));
      await dir.release('a-3', 'bye', clock.now());
      assert.deepEqual(
        (await dir.list({ node: 'node-a' })).sort(byId).map((r) => r.id),
        ['a-1', 'a-2'],
      );
      assert.deepEqual(
        (await dir.list({ node: 'node-b' })).map((r) => r.id),
        ['b-1'],
      );
      assert.deepEqual(await dir.list({ node: 'node-c' }), []);
      assert.deepEqual(
        (await dir.list()).sort(byId).map((r) => r.id),
        ['a-1', 'a-2', 'b-1'],
      );
      assert.deepEqual(
        (await dir.list({})).sort(byId).map((r) => r.id),
        ['a-1', 'a-2', 'b-1'],
      );
    });

    it('a tombstone is forgotten once tombstoneMs have passed on the injected clock, and the id is free again', async ({ dir, clock, advance }) => {
      await dir.claim(record(clock, 'call-1'));
      await dir.release('call-1', 'bye', clock.now());
      await advance(TOMBSTONE_MS - 1);
      assert.equal((await dir.lookup('call-1'))?.state, 'ended', 'still there 1 ms before');
      assert.equal(await dir.claim(record(clock, 'call-1')), false);
      await advance(1);
      assert.equal(await dir.lookup('call-1'), undefined);
      assert.equal(await dir.claim(record(clock, 'call-1')), true);
      assert.equal((await dir.lookup('call-1'))?.state, 'connecting');
    });

    it('a live session does not expire with time', async ({ dir, clock, advance }) => {
      await dir.claim(record(clock, 'call-1'));
      await advance(3 * TOMBSTONE_MS);
      assert.equal((await dir.lookup('call-1'))?.state, 'connecting');
      assert.equal((await dir.list()).length, 1);
    });

    it('mutating a claimed or returned record changes nothing stored', async ({ dir, clock }) => {
      const claimed = record(clock, 'call-1');
      const expected = plain(claimed);
      await dir.claim(claimed);
      claimed.node = 'node-z';
      const looked = (await dir.lookup('call-1'))!;
      looked.state = 'ended';
      looked.source = 'intruder';
      const listed = (await dir.list())[0]!;
      listed.node = 'node-y';
      assert.deepEqual(plain(await dir.lookup('call-1')), expected);
      assert.deepEqual(plain(await dir.list()), [expected]);

      await dir.release('call-1', 'bye', clock.now());
      const tombstone = (await dir.lookup('call-1'))!;
      const tombstoneCopy = plain(tombstone);
      tombstone.endReason = 'changed';
      assert.deepEqual(plain(await dir.lookup('call-1')), tombstoneCopy);
    });
  });
}
