import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import type { SourceIdentity } from '../auth/source-auth.js';
import { MemoryEventBus } from '../cluster/memory/event-bus.js';
import { FakeClock } from '../core/clock.js';
import type { Quality } from '../media/endpoint.js';
import { formatOf, testEndpoint, testRuntime } from '../media/testing.js';
import { CallActivity } from './call-activity.js';
import { PartyLeg } from './party-leg.js';
import { CallHistory } from './call-history.js';
import { CallMonitor, MAX_ENTRIES, MAX_ENTRY_BYTES, MAX_POINTS, type MonitorEvent } from './call-monitor.js';
import { CallTable } from './call-table.js';
import { Call } from './call.js';

const source: SourceIdentity = { name: 'widget', kind: 'browser', agent: undefined, codecs: ['opus'], maxSessions: 10, via: 'token' };

/** A call whose caller-quality reports the test makes (a real one gets them from its endpoint every 5 s). */
class ReportingCall extends Call {
  report(q: Partial<Quality>): void {
    this.emit('quality', { packets: 250, lost: 0, lossPercent: 0, jitterMs: 1.5, rttMs: 4, jitterBufferMs: 20, mos: 4.4, at: '', ...q });
  }
}

function world(opts: { levelsEveryMs?: number; events?: MemoryEventBus } = {}) {
  const clock = new FakeClock(1_800_000_000_000);
  const calls = new CallTable({ maxSessions: 10, retryAfterSeconds: 1, now: () => clock.now() });
  const history = new CallHistory({ calls, now: () => clock.now(), node: 'a', size: 10, cdrPath: undefined, onError: (err) => assert.fail(String(err)) });
  const errors: unknown[] = [];
  const monitor = new CallMonitor({ calls, history, now: () => clock.now(), node: 'a', levelsEveryMs: opts.levelsEveryMs ?? 20, onError: (e) => errors.push(e), ...(opts.events ? { events: opts.events } : {}) });
  const seen: MonitorEvent[] = [];
  const call = (id: string, idleTimeoutMs = 60_000) => {
    const c = new ReportingCall(id, source, clock, idleTimeoutMs);
    calls.add(c);
    return c;
  };
  return { clock, calls, monitor, seen, errors, call, watch: () => monitor.watch((ev) => seen.push(ev)) };
}

const tone = (amplitude: number, n = 960) => Int16Array.from({ length: n }, (_, i) => Math.round(amplitude * Math.sin((2 * Math.PI * 440 * i) / 48000)));

test('a call is followed from its creation: its state, its quality points in seconds into the call, its timeline, then its end with its record', () => {
  const w = world();
  const stop = w.watch();
  const c = w.call('c1');
  c.markConnected();
  w.clock.advance(5000);
  c.report({ mos: 4.4 });
  w.clock.advance(5000);
  c.report({ mos: 3.9, lossPercent: 2.5, rttMs: null });
  c.dtmf('caller', '7');
  c.activity.event({ type: 'turn', index: 1, speechMs: 1200 });
  assert.deepEqual(w.seen.map((e) => e.type), ['session', 'session', 'quality', 'quality', 'event', 'event']);
  assert.deepEqual(w.seen.filter((e) => e.type === 'session').map((e) => e.session.state), ['connecting', 'connected']);
  const points = w.seen.flatMap((e) => (e.type === 'quality' ? [e.point] : []));
  assert.deepEqual(points.map((p) => [p.t, p.mos, p.lossPercent, p.rttMs]), [[5, 4.4, 0, 4], [10, 3.9, 2.5, null]]);
  const [snap] = w.monitor.snapshot();
  assert.equal(snap!.session.id, 'c1');
  assert.deepEqual(snap!.series, points, 'a console opened now sees the whole chart so far');
  assert.deepEqual(snap!.timeline.map((e) => e.event), [{ type: 'dtmf', digit: '7', from: 'caller' }, { type: 'turn', index: 1, speechMs: 1200 }]);
  w.clock.advance(2000);
  c.close('admin');
  const ended = w.seen.at(-1)!;
  assert.equal(ended.type, 'ended');
  assert.equal(ended.type === 'ended' && ended.call.reason, 'admin');
  assert.equal(ended.type === 'ended' && 'durationMs' in ended.call && ended.call.durationMs, 12_000, 'the history record, not a bare reason');
  assert.deepEqual(w.monitor.snapshot(), []);
  stop();
});

test('a bridged call\'s points carry the callee\'s last measure too, the one there now after a change of callee, none once the callee has left', () => {
  const w = world();
  const stop = w.watch();
  const c = w.call('c1');
  const rt = testRuntime();
  const leg = (id: string) => new PartyLeg('sip-uac', testEndpoint(rt, formatOf('pcmu'), { id }).endpoint);
  const quality = (mos: number, lossPercent: number): Quality => ({ packets: 250, lost: 0, lossPercent, jitterMs: 3, rttMs: 20, jitterBufferMs: 40, mos, at: '' });
  c.addLeg('caller', leg('caller'));
  c.report({ mos: 4.4 });
  const first = leg('bob');
  c.addLeg('callee', first);
  first.endpoint.quality = quality(4.1, 1);
  c.report({ mos: 4.3 });
  // Transferred on to another person: their measure, not the first one's.
  const second = leg('carol');
  c.replaceLeg('callee', second);
  first.endpoint.quality = quality(1.5, 40);
  c.report({ mos: 4.2 });
  second.endpoint.quality = quality(3.6, 5);
  c.report({ mos: 4.2 });
  c.removeLeg('callee', 'bye');
  c.report({ mos: 4.0 });
  const points = w.seen.flatMap((e) => (e.type === 'quality' ? [e.point] : []));
  assert.deepEqual(points.map((p) => [p.mos, p.calleeMos, p.calleeLossPercent]), [[4.4, undefined, undefined], [4.3, 4.1, 1], [4.2, undefined, undefined], [4.2, 3.6, 5], [4.0, undefined, undefined]]);
  stop();
  c.close('admin');
});

test('levels are measured only while someone watches, and come for every call in one message', async () => {
  const w = world({ levelsEveryMs: 20 });
  const loud = w.call('loud');
  const quiet = w.call('quiet');
  loud.activity.tick(tone(16384), undefined);
  assert.deepEqual(loud.activity.takeLevels(), { in: -90, out: -90, peakIn: -90, peakOut: -90 }, 'nobody watched: nothing was added up');
  const stop = w.watch();
  for (let i = 0; i < 5; i++) {
    loud.activity.tick(tone(16384), tone(1638));
    quiet.activity.tick(undefined, undefined);
  }
  // The first levels message (every 20 ms here), waited for rather than slept on.
  for (let i = 0; i < 100 && !w.seen.some((e) => e.type === 'levels'); i++) await sleep(5);
  const first = w.seen.find((e) => e.type === 'levels');
  assert.ok(first && first.type === 'levels');
  // A sine at half scale: RMS -9.0 dBFS, peak -6.0; a tenth of that: -29.0.
  assert.deepEqual(first.levels.loud, { in: -9, out: -29, peakIn: -6, peakOut: -26 });
  assert.deepEqual(first.levels.quiet, { in: -90, out: -90, peakIn: -90, peakOut: -90 });
  stop();
  assert.equal(w.monitor.watchers, 0);
  const before = w.seen.length;
  loud.activity.tick(tone(16384), undefined);
  await sleep(60); // three intervals of the (stopped) timer: an absence can only be waited out
  assert.equal(w.seen.length, before, 'no levels once the last watcher left');
  assert.equal(loud.activity.takeLevels().in, -90, 'and the meter stopped adding up');
});

test('a long call keeps its whole life in the chart at half the resolution; the timeline keeps the newest entries', () => {
  const w = world();
  const c = w.call('long', 10 * 3600_000); // no media in this test: it must not idle out
  for (let i = 1; i <= MAX_POINTS + 1; i++) {
    w.clock.advance(5000);
    c.report({ mos: 4 });
  }
  const [snap] = w.monitor.snapshot();
  assert.equal(snap!.series.length, MAX_POINTS / 2 + 1);
  assert.equal(snap!.series[0]!.t, 5, 'the first point stays');
  assert.equal(snap!.series.at(-1)!.t, (MAX_POINTS + 1) * 5, 'and the last');
  for (let i = 0; i < MAX_ENTRIES + 10; i++) c.activity.event({ type: 'mark', name: `m${i}`, result: 'played' });
  const timeline = w.monitor.snapshot()[0]!.timeline;
  assert.equal(timeline.length, MAX_ENTRIES);
  assert.equal(timeline[0]!.event.name, 'm10');
});

test('an agent event too big to keep is kept as its type, marked; the rest are copies, not the objects sent', () => {
  const w = world();
  const c = w.call('c1');
  const sent = { type: 'agent-text', text: 'hello' };
  c.activity.event(sent);
  sent.text = 'changed after';
  c.activity.event({ type: 'agent-text', text: 'x'.repeat(MAX_ENTRY_BYTES) });
  const cyclic: { type: string; self?: unknown } = { type: 'odd' };
  cyclic.self = cyclic;
  c.activity.event(cyclic);
  assert.deepEqual(w.monitor.snapshot()[0]!.timeline.map((e) => e.event), [
    { type: 'agent-text', text: 'hello' },
    { type: 'agent-text', truncated: true, bytes: JSON.stringify({ type: 'agent-text', text: 'x'.repeat(MAX_ENTRY_BYTES) }).length },
    { type: 'odd', truncated: true },
  ]);
});

test('close() ends every watcher (the gateway stops), and stops following calls', () => {
  const w = world();
  let closed = 0;
  w.monitor.watch(() => undefined, () => closed++);
  w.monitor.watch(() => undefined, () => closed++);
  w.monitor.close();
  assert.equal(closed, 2);
  assert.equal(w.monitor.watchers, 0);
  w.call('after');
  assert.deepEqual(w.monitor.snapshot(), [], 'a call made after close is not followed');
});

test('a watcher that throws is dropped and reported; the others and the call go on', () => {
  const w = world();
  w.monitor.watch(() => {
    throw new Error('broken console');
  });
  const stop = w.watch();
  const c = w.call('c1');
  c.dtmf('caller', '1');
  assert.equal(w.errors.length, 1);
  assert.equal(w.monitor.watchers, 1);
  assert.deepEqual(w.seen.map((e) => e.type), ['session', 'event']);
  assert.equal(c.state, 'connecting');
  stop();
  // The last watcher gone by throwing: levels are no longer measured.
  w.monitor.watch(() => {
    throw new Error('broken again');
  });
  c.dtmf('caller', '2');
  assert.equal(w.monitor.watchers, 0);
  c.activity.tick(tone(16384), undefined);
  assert.equal(c.activity.takeLevels().in, -90, 'metering went off with the last watcher');
});

test("other nodes' session events are passed on; this node's own come as its calls", async () => {
  const events = new MemoryEventBus({ onError: (err) => assert.fail(String(err)) });
  const w = world({ events });
  w.watch();
  await events.publish({ type: 'ended', at: 1, id: 'x', kind: 'whip', node: 'b', source: 's', sourceKind: 'browser', reason: 'bye', durationMs: 5, summary: null });
  await events.publish({ type: 'ended', at: 1, id: 'y', kind: 'whip', node: 'a', source: 's', sourceKind: 'browser', reason: 'bye', durationMs: 5, summary: null });
  assert.deepEqual(w.seen.map((e) => (e.type === 'fleet' && e.event.type === 'ended' ? e.event.id : e.type)), ['x']);
  w.monitor.close();
  await events.publish({ type: 'ended', at: 1, id: 'z', kind: 'whip', node: 'b', source: 's', sourceKind: 'browser', reason: 'bye', durationMs: 5, summary: null });
  assert.equal(w.seen.length, 1, 'closed: no longer subscribed');
  await events.close();
});

test('CallActivity: silence reads as the floor; a full-scale square wave as 0 dBFS', () => {
  const a = new CallActivity(() => 0);
  a.meter(true);
  a.tick(new Int16Array(960), new Int16Array(960).fill(-32768));
  assert.deepEqual(a.takeLevels(), { in: -90, out: 0, peakIn: -90, peakOut: 0 });
  assert.deepEqual(a.takeLevels(), { in: -90, out: -90, peakIn: -90, peakOut: -90 }, 'a new window each time');
});
