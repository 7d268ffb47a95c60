import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SessionEvent } from '../../call/session-events.js';
import { eventBusContract } from '../contract/event-bus.js';
import { encodeSessionEvent, MemoryEventBus } from './event-bus.js';

eventBusContract('MemoryEventBus', async ({ onError }) => ({ bus: new MemoryEventBus({ onError }) }));

const T0 = 1_700_000_000_000;
const connected = (i: number): SessionEvent => ({ type: 'connected', at: T0 + i, id: `call-${i}`, kind: 'whip', node: 'local', setupMs: 100 });
/** Gets a value that is not plain data past the types, as a careless publisher could. */
const smuggled = (v: object) => v as SessionEvent;

/** A bus whose subscriber errors are kept, for tests that expect none. */
function quietBus() {
  const errors: unknown[] = [];
  return { bus: new MemoryEventBus({ onError: (err) => errors.push(err) }), errors };
}

const ended = (over: Record<string, unknown>): SessionEvent =>
  ({
    type: 'ended',
    at: T0,
    id: 'call-1',
    kind: 'whip',
    node: 'local',
    source: 'studio',
    sourceKind: 'whip',
    reason: 'remote-bye',
    durationMs: 1000,
    summary: { packetsReceived: 50, bytesReceived: 8000, mos: 4.3, lossPercent: 0, jitterMs: 2.5, rttMs: null, ...over },
  }) as SessionEvent;

test('memory: delivery comes after the publisher continues, and publish resolves once every subscriber has the event', async () => {
  const { bus, errors } = quietBus();
  const got: SessionEvent[] = [];
  bus.subscribe((e) => got.push(e));
  bus.subscribe((e) => got.push(e));
  const published = bus.publish(connected(1));
  assert.deepEqual(got, [], 'no subscriber runs inside publish');
  await published;
  assert.deepEqual(got, [connected(1), connected(1)]);
  assert.deepEqual(errors, []);
  await bus.close();
});

test('memory: unsubscribing after publish but before delivery means the event is not delivered', async () => {
  const { bus, errors } = quietBus();
  const got: SessionEvent[] = [];
  const unsubscribe = bus.subscribe((e) => got.push(e));
  const published = bus.publish(connected(1));
  unsubscribe();
  await published;
  assert.deepEqual(got, []);
  assert.deepEqual(errors, []);
  await bus.close();
});

test('memory: NaN, Infinity, a bigint, a cycle, a Date, a symbol key and undefined in an array are refused with the path that JSON would change', () => {
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  const cases: [SessionEvent, RegExp][] = [
    [ended({ mos: Number.NaN }), /'ended'.*event\.summary\.mos \(NaN is not a finite number\)/],
    [ended({ jitterMs: Infinity }), /event\.summary\.jitterMs/],
    [ended({ bytesReceived: 10n }), /'ended'.*BigInt/],
    [ended({ extra: cycle }), /'ended'.*circular/],
    [ended({ extra: new Date(T0) }), /event\.summary\.extra \(a Date, not a plain object\)/],
    [ended({ [Symbol('live')]: 1 }), /event\.summary \(a symbol key\)/],
    [ended({ extra: [1, undefined] }), /event\.summary\.extra\[1\] \(undefined\)/],
    [smuggled({ ...connected(1), onAnswer: () => undefined }), /'connected'.*event\.onAnswer \(a function, which JSON drops\)/],
  ];
  for (const [event, message] of cases) assert.throws(() => encodeSessionEvent(event), (err: unknown) => err instanceof TypeError && message.test(err.message));
});

test('memory: undefined-valued keys are dropped rather than refused, as JSON drops them', async () => {
  const { bus, errors } = quietBus();
  const got: SessionEvent[] = [];
  bus.subscribe((e) => got.push(e));
  const created: SessionEvent = {
    type: 'created',
    at: T0,
    session: { id: 'call-1', kind: 'whip', node: 'node-a', source: 'studio', sourceKind: 'whip', state: 'connecting', createdAt: T0, parent: undefined },
  };
  await bus.publish(created);
  assert.equal(got.length, 1);
  assert.ok(got[0]?.type === 'created');
  assert.equal(Object.hasOwn(got[0].session, 'parent'), false);
  assert.deepEqual(errors, []);
  await bus.close();
});

test('memory: an onError that throws is warned about, and the other subscribers still get the event', async () => {
  const bus = new MemoryEventBus({
    onError: () => {
      throw new Error('the error hook broke');
    },
  });
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on('warning', onWarning);
  try {
    const got: SessionEvent[] = [];
    bus.subscribe(() => {
      throw new Error('subscriber broke');
    });
    bus.subscribe((e) => got.push(e));
    await bus.publish(connected(1));
    assert.deepEqual(got, [connected(1)]);
    // process.emitWarning delivers on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!.message, /the error hook broke.*subscriber broke/);
  } finally {
    process.off('warning', onWarning);
    await bus.close();
  }
});

test('memory: close drops every subscriber; publish and subscribe after it are refused', async () => {
  const got: SessionEvent[] = [];
  const { bus, errors } = quietBus();
  bus.subscribe((e) => got.push(e));
  const inFlight = bus.publish(connected(1));
  await bus.close();
  await inFlight;
  assert.deepEqual(got, [], 'an event still in flight at close reaches no one');
  await assert.rejects(bus.publish(connected(2)), /closed/);
  assert.throws(() => bus.subscribe(() => undefined), /closed/);
  assert.deepEqual(errors, []);
  await bus.close();
});
