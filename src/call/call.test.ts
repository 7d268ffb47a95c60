import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SourceIdentity } from '../auth/source-auth.js';
import { FakeClock } from '../core/clock.js';
import { VoxgateError } from '../core/errors.js';
import { Call, type EndReason, type Leg } from './call.js';
import { CallTable } from './call-table.js';
import type { SessionEvent } from './session-events.js';
import { MemorySessionDirectory } from '../cluster/memory/session-directory.js';
import { MemoryEventBus } from '../cluster/memory/event-bus.js';

const source: SourceIdentity = { name: 'obs', kind: 'obs', agent: undefined, codecs: ['opus'], maxSessions: 2, via: 'token' };

class FakeLeg implements Leg {
  readonly kind = 'test';
  last = 0;
  closed: EndReason[] = [];
  lastMediaAt(): number {
    return this.last;
  }
  counters() {
    return { packetsReceived: 0, bytesReceived: 0, packetsSent: 0, bytesSent: 0 };
  }
  close(reason: EndReason): void {
    this.closed.push(reason);
  }
}

test('a call with no media ends with idle-timeout after exactly the idle timeout', () => {
  const clock = new FakeClock();
  const call = new Call('c1', source, clock, 60_000);
  const ended: EndReason[] = [];
  call.on('ended', (r) => ended.push(r));
  clock.advance(59_999);
  assert.equal(call.state, 'connecting');
  clock.advance(1);
  assert.deepEqual(ended, ['idle-timeout']);
  assert.equal(clock.pending, 0);
});

test('media keeps a call alive; the timeout counts from the last packet', () => {
  const clock = new FakeClock();
  const call = new Call('c1', source, clock, 10_000);
  const leg = new FakeLeg();
  call.addLeg('caller', leg);
  call.markConnected();
  for (let i = 0; i < 5; i++) {
    clock.advance(8_000);
    leg.last = clock.now();
  }
  assert.equal(call.state, 'connected');
  clock.advance(9_999);
  assert.equal(call.state, 'connected');
  clock.advance(1);
  assert.equal(call.state, 'ended');
  assert.deepEqual(leg.closed, ['idle-timeout']);
});

test('close runs once, closes every leg with the reason and empties the call', () => {
  const clock = new FakeClock();
  const call = new Call('c1', source, clock, 10_000);
  const a = new FakeLeg();
  const b = new FakeLeg();
  call.addLeg('caller', a);
  call.addLeg('callee', b);
  const states: string[] = [];
  call.on('state', (s) => states.push(s));
  call.close('deleted');
  call.close('shutdown');
  assert.deepEqual([a.closed, b.closed], [['deleted'], ['deleted']]);
  assert.equal(call.legs.size, 0);
  assert.deepEqual(states, ['ended']);
  assert.equal(clock.pending, 0, 'no timer left behind');
  const late = new FakeLeg();
  call.addLeg('agent', late);
  assert.deepEqual(late.closed, ['deleted'], 'a leg added after the end is closed at once');
});

test('the table enforces total and per-source limits and forgets ended calls', () => {
  const clock = new FakeClock();
  const table = new CallTable({ maxSessions: 3, retryAfterSeconds: 5 });
  const c1 = new Call('c1', source, clock, 1000);
  const c2 = new Call('c2', source, clock, 1000);
  table.add(c1);
  table.add(c2);
  assert.throws(() => table.checkAdmission(source), (e: unknown) => e instanceof VoxgateError && e.code === 'VG_SOURCE_SESSION_LIMIT');
  const other = { ...source, name: 'other', maxSessions: undefined };
  table.add(new Call('c3', other, clock, 1000));
  assert.throws(() => table.checkAdmission(other), (e: unknown) => e instanceof VoxgateError && e.code === 'VG_CAPACITY' && e.headers['Retry-After'] === '5');
  c1.close('deleted');
  assert.equal(table.size, 2);
  assert.equal(table.countFor('obs'), 1);
  clock.advance(1000);
  assert.equal(table.size, 0);
  assert.equal(table.countFor('obs'), 0);
});

test('the table claims each call in the session directory and publishes created, connected and ended (with reason and a quality summary) on the event bus', async () => {
  const clock = new FakeClock();
  const directory = new MemorySessionDirectory({ now: () => clock.now() });
  const events = new MemoryEventBus({ onError: (err) => assert.fail(String(err)) });
  const seen: SessionEvent[] = [];
  events.subscribe((e) => seen.push(e));
  const errors: string[] = [];
  const table = new CallTable({ maxSessions: 5, retryAfterSeconds: 5, node: 'node-a', directory, events, now: () => clock.now(), onError: (_e, what) => errors.push(what) });
  const call = new Call('c9', source, clock, 60_000, { kind: 'whip' });
  table.add(call);
  const leg = new FakeLeg();
  leg.counters = () => ({ packetsReceived: 42, bytesReceived: 4200, packetsSent: 0, bytesSent: 0 });
  call.addLeg('caller', leg);
  await settleTurns();
  assert.deepEqual(await directory.lookup('c9'), { id: 'c9', kind: 'whip', node: 'node-a', source: 'obs', sourceKind: 'obs', state: 'connecting', createdAt: call.createdAt });
  clock.advance(250);
  call.markConnected();
  await settleTurns();
  assert.equal((await directory.lookup('c9'))?.state, 'connected');
  clock.advance(1000);
  call.close('deleted');
  await settleTurns();
  const ended = await directory.lookup('c9');
  assert.deepEqual([ended?.state, ended?.endReason], ['ended', 'deleted'], 'a tombstone, so WHEP can answer 404');
  assert.deepEqual(seen.map((e) => e.type), ['created', 'connected', 'ended']);
  assert.equal((seen[1] as Extract<SessionEvent, { type: 'connected' }>).setupMs, 250);
  const end = seen[2] as Extract<SessionEvent, { type: 'ended' }>;
  assert.deepEqual([end.reason, end.durationMs, end.summary?.packetsReceived, end.summary?.mos], ['deleted', 1250, 42, null]);
  // A second claim of the same id is refused by the directory: reported, never thrown at the call.
  table.add(new Call('c9', source, clock, 60_000));
  await settleTurns();
  assert.deepEqual(errors, ['session claim']);
});

async function settleTurns(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
}

test('with eventsAfterAudit a session\'s created event waits for the audit record naming it (a placed call\'s may come first); a call ended before its record lets it go', async () => {
  const clock = new FakeClock(1_800_000_000_000);
  const events = new MemoryEventBus({ onError: (err) => assert.fail(String(err)) });
  const seen: string[] = [];
  events.subscribe((e) => seen.push(`${e.type}:${e.type === 'created' ? e.session.id : e.id}`));
  const calls = new CallTable({ maxSessions: 10, retryAfterSeconds: 1, directory: new MemorySessionDirectory({ now: () => clock.now() }), events, now: () => clock.now(), eventsAfterAudit: true });
  const src: SourceIdentity = { name: 'web', kind: 'browser', agent: undefined, codecs: ['opus'], maxSessions: undefined, via: 'token' };
  const settle = () => new Promise((r) => setTimeout(r, 10));
  calls.add(new Call('a1', src, clock, 60_000));
  await settle();
  assert.deepEqual(seen, [], 'claimed, but no record yet: no event');
  calls.recorded('a1');
  await settle();
  assert.deepEqual(seen, ['created:a1']);
  calls.recorded('b1'); // recorded before its call is added (the INVITE of a placed call)
  calls.add(new Call('b1', src, clock, 60_000));
  await settle();
  assert.deepEqual(seen, ['created:a1', 'created:b1']);
  const c = new Call('c1', src, clock, 60_000);
  calls.add(c);
  c.close('setup-failed');
  await settle();
  assert.deepEqual(seen.slice(2), ['created:c1', 'ended:c1'], 'refused before its record: both go, in order');
});
