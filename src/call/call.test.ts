import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SourceIdentity } from '../auth/source-auth.js';
import { FakeClock } from '../core/clock.js';
import { VoxgateError } from '../core/errors.js';
import { Call, type EndReason, type Leg } from './call.js';
import { CallTable } from './call-table.js';

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
