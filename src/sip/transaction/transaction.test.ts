import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../../core/clock.js';
import { InviteClientTransaction, NonInviteClientTransaction } from './client.js';
import { InviteServerTransaction, NonInviteServerTransaction } from './server.js';
import type { Transaction } from './transaction.js';

/** Records what a transaction puts on the wire, with the time, and its states. */
function watch<S extends string>(t: Transaction<S>, clock: FakeClock) {
  const sent: [number, string][] = [];
  const states: string[] = [];
  let timedOut = false;
  const t0 = clock.now();
  t.on('send', (m) => sent.push([clock.now() - t0, m]));
  t.on('state', (s) => states.push(s));
  t.on('timeout', () => (timedOut = true));
  return { sent, states, timedOut: () => timedOut };
}

test('INVITE server, UDP: 100 after 200 ms, 486 retransmitted on Timer G (500, 1000, 2000, 4000, 4000 ms) until ACK, then Timer I', () => {
  const clock = new FakeClock(0);
  const t = new InviteServerTransaction(clock, false, 'z9hG4bK1');
  const w = watch(t, clock);
  t.scheduleTrying('100');
  clock.advance(200);
  assert.deepEqual(w.sent, [[200, '100']]);
  t.respond(486, '486');
  clock.advance(12_000);
  assert.deepEqual(w.sent.map(([ms]) => ms), [200, 200, 700, 1700, 3700, 7700, 11700]);
  t.onRetransmission();
  assert.equal(w.sent[w.sent.length - 1]![1], '486', 'a retransmitted INVITE gets the 486 again');
  assert.equal(t.onAck(), false, 'the ACK for a non-2xx is absorbed by the transaction');
  assert.equal(t.state, 'confirmed');
  const n = w.sent.length;
  clock.advance(5000);
  assert.equal(w.sent.length, n, 'no retransmission after the ACK');
  assert.deepEqual(w.states, ['completed', 'confirmed', 'terminated']);
});

test('INVITE server: no 100 when the final answer comes within 200 ms; a 3xx-6xx without ACK times out on Timer H (32 s)', () => {
  const clock = new FakeClock(0);
  const t = new InviteServerTransaction(clock, true, 'z9hG4bK2');
  const w = watch(t, clock);
  t.scheduleTrying('100');
  clock.advance(150);
  t.respond(404, '404');
  clock.advance(100);
  assert.deepEqual(w.sent, [[150, '404']], 'no 100 Trying, and no retransmission on a reliable transport');
  clock.advance(64 * 500 - 100); // Timer H runs from the 404 at 150 ms
  assert.equal(w.timedOut(), true);
  assert.equal(t.state, 'terminated');
  assert.deepEqual(t.pendingTimers, []);
});

test('INVITE server, RFC 6026: a 2xx moves to Accepted; ACKs and retransmitted INVITEs go to the dialog until Timer L', () => {
  const clock = new FakeClock(0);
  const t = new InviteServerTransaction(clock, true, 'z9hG4bK3');
  const w = watch(t, clock);
  t.respond(180, '180');
  t.respond(200, '200');
  assert.equal(t.state, 'accepted');
  t.onRetransmission();
  assert.deepEqual(w.sent.map(([, m]) => m), ['180', '200'], 'the 2xx is retransmitted by the core, not the transaction');
  assert.equal(t.onAck(), true, 'a 2xx ACK belongs to the dialog');
  clock.advance(32_000);
  assert.equal(t.state, 'terminated');
});

test('non-INVITE server: the final response is repeated for retransmissions; Timer J is 32 s on UDP and 0 on WebSocket', () => {
  for (const [reliable, j] of [[false, 32_000], [true, 0]] as const) {
    const clock = new FakeClock(0);
    const t = new NonInviteServerTransaction(clock, reliable, 'z9hG4bK4');
    const w = watch(t, clock);
    t.respond(200, '200');
    t.onRetransmission();
    assert.deepEqual(w.sent.map(([, m]) => m), reliable ? ['200'] : ['200', '200']);
    clock.advance(Math.max(0, j - 1));
    assert.equal(t.state, reliable ? 'terminated' : 'completed');
    clock.advance(1);
    assert.equal(t.state, 'terminated');
  }
});

test('INVITE client, UDP: Timer A doubles (0, 500, 1500, 3500 ...) until a provisional; a 486 is ACKed and Timer D absorbs repeats', () => {
  const clock = new FakeClock(0);
  const t = new InviteClientTransaction(clock, false, 'z9hG4bK5', 'INVITE');
  const w = watch(t, clock);
  t.start();
  clock.advance(4000);
  assert.deepEqual(w.sent.map(([ms]) => ms), [0, 500, 1500, 3500]);
  assert.equal(t.onResponse(180, () => 'ACK'), true);
  clock.advance(10_000);
  assert.equal(w.sent.length, 4, 'no retransmission in Proceeding');
  assert.equal(t.onResponse(486, () => 'ACK'), true);
  assert.equal(t.onResponse(486, () => 'ACK'), false, 'a repeated 486 is ACKed again and absorbed');
  assert.deepEqual(w.sent.slice(4).map(([, m]) => m), ['ACK', 'ACK']);
  clock.advance(32_000);
  assert.equal(t.state, 'terminated');
});

test('INVITE client: no answer at all times out on Timer B (64*T1 = 32 s)', () => {
  const clock = new FakeClock(0);
  const t = new InviteClientTransaction(clock, true, 'z9hG4bK6', 'INVITE');
  const w = watch(t, clock);
  t.start();
  clock.advance(31_999);
  assert.equal(w.timedOut(), false);
  clock.advance(1);
  assert.equal(w.timedOut(), true);
  assert.deepEqual(w.sent.map(([ms]) => ms), [0], 'no retransmission on a reliable transport');
});

test('non-INVITE client, UDP: Timer E doubles to T2, then every T2 in Proceeding; Timer F times out; Timer K after the final', () => {
  const clock = new FakeClock(0);
  const t = new NonInviteClientTransaction(clock, false, 'z9hG4bK7', 'BYE');
  const w = watch(t, clock);
  t.start();
  clock.advance(11_500);
  assert.deepEqual(w.sent.map(([ms]) => ms), [0, 500, 1500, 3500, 7500, 11500]);
  const t2 = new NonInviteClientTransaction(clock, false, 'z9hG4bK8', 'BYE');
  const w2 = watch(t2, clock);
  t2.start();
  t2.onResponse(200);
  assert.equal(t2.state, 'completed');
  clock.advance(5000);
  assert.equal(t2.state, 'terminated');
  assert.equal(w2.sent.length, 1);
  clock.advance(32_000);
  assert.equal(w.timedOut(), true);
});
