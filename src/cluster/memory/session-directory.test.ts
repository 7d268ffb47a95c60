import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SessionRecord } from '../../call/session-directory.js';
import { FakeClock } from '../../core/clock.js';
import { sessionDirectoryContract } from '../contract/session-directory.js';
import { MemorySessionDirectory } from './session-directory.js';

sessionDirectoryContract('MemorySessionDirectory', async ({ clock, tombstoneMs }) => ({
  dir: new MemorySessionDirectory({ now: () => clock.now(), tombstoneMs }),
}));

const record = (id: string, createdAt: number): SessionRecord => ({
  id,
  kind: 'whip',
  node: 'node-a',
  source: 'studio',
  sourceKind: 'whip',
  state: 'connecting',
  createdAt,
});

async function claimAndRelease(dir: MemorySessionDirectory, clock: FakeClock, ids: string[]): Promise<void> {
  for (const id of ids) {
    assert.equal(await dir.claim(record(id, clock.now())), true);
    await dir.release(id, 'bye', clock.now());
  }
}

test('tombstones beyond maxTombstones are forgotten oldest first, and their ids are free again', async () => {
  const clock = new FakeClock();
  const dir = new MemorySessionDirectory({ now: () => clock.now(), maxTombstones: 3 });
  await claimAndRelease(dir, clock, ['c1', 'c2', 'c3', 'c4', 'c5']);
  assert.equal(await dir.lookup('c1'), undefined);
  assert.equal(await dir.lookup('c2'), undefined);
  for (const id of ['c3', 'c4', 'c5']) assert.equal((await dir.lookup(id))?.state, 'ended', id);
  assert.equal(await dir.claim(record('c1', clock.now())), true);
  await dir.close();
});

test('live sessions do not count toward maxTombstones', async () => {
  const clock = new FakeClock();
  const dir = new MemorySessionDirectory({ now: () => clock.now(), maxTombstones: 2 });
  for (const id of ['live-1', 'live-2', 'live-3']) await dir.claim(record(id, clock.now()));
  await claimAndRelease(dir, clock, ['c1', 'c2']);
  assert.equal((await dir.lookup('c1'))?.state, 'ended');
  assert.equal((await dir.lookup('c2'))?.state, 'ended');
  assert.equal((await dir.list()).length, 3);
  await dir.close();
});

test('a bound of 100 tombstones holds over 5000 releases, and time still forgets the rest', async () => {
  const clock = new FakeClock();
  const dir = new MemorySessionDirectory({ now: () => clock.now(), tombstoneMs: 60_000, maxTombstones: 100 });
  const ids = Array.from({ length: 5000 }, (_, i) => `c${i}`);
  await claimAndRelease(dir, clock, ids);
  assert.equal(await dir.lookup('c4899'), undefined);
  assert.equal((await dir.lookup('c4900'))?.state, 'ended');
  assert.equal((await dir.lookup('c4999'))?.state, 'ended');
  clock.advance(60_000);
  assert.equal(await dir.lookup('c4999'), undefined);
  await dir.close();
});

test('tombstones last 10 minutes by default', async () => {
  const clock = new FakeClock();
  const dir = new MemorySessionDirectory({ now: () => clock.now() });
  await claimAndRelease(dir, clock, ['c1']);
  clock.advance(10 * 60_000 - 1);
  assert.equal((await dir.lookup('c1'))?.state, 'ended');
  clock.advance(1);
  assert.equal(await dir.lookup('c1'), undefined);
  await dir.close();
});

test('a tombstone lasts tombstoneMs from its release by the clock, whatever `at` says', async () => {
  const clock = new FakeClock();
  const dir = new MemorySessionDirectory({ now: () => clock.now(), tombstoneMs: 60_000 });
  await dir.claim(record('c1', clock.now()));
  const at = clock.now() - 50_000; // the session ended a while before its release was reported
  await dir.release('c1', 'idle-timeout', at);
  clock.advance(59_999);
  const got = await dir.lookup('c1');
  assert.equal(got?.state, 'ended');
  assert.equal(got?.endedAt, at);
  await dir.close();
});

test('an id claimed again after its tombstone expired gets a full tombstone lifetime when released again', async () => {
  const clock = new FakeClock();
  const dir = new MemorySessionDirectory({ now: () => clock.now(), tombstoneMs: 60_000 });
  await claimAndRelease(dir, clock, ['c1']);
  clock.advance(60_000);
  clock.advance(30_000);
  await claimAndRelease(dir, clock, ['c1']);
  clock.advance(59_999);
  assert.equal((await dir.lookup('c1'))?.state, 'ended');
  clock.advance(1);
  assert.equal(await dir.lookup('c1'), undefined);
  await dir.close();
});

test('close forgets every session; later calls are refused and a second close is harmless', async () => {
  const clock = new FakeClock();
  const dir = new MemorySessionDirectory({ now: () => clock.now() });
  await dir.claim(record('live', clock.now()));
  await claimAndRelease(dir, clock, ['ended']);
  await dir.close();
  await dir.close();
  await assert.rejects(dir.claim(record('new', clock.now())), /closed/);
  await assert.rejects(dir.lookup('live'), /closed/);
  await assert.rejects(dir.list(), /closed/);
  await assert.rejects(dir.release('live', 'bye', clock.now()), /closed/);
  await assert.rejects(dir.update('live', { state: 'connected' }), /closed/);
});
