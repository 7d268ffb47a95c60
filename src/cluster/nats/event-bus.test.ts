import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NatsConnection } from '@nats-io/transport-node';
import type { SessionRecord } from '../../call/session-directory.js';
import type { SessionEvent } from '../../call/session-events.js';
import { natsForTestFile } from '../../testing/nats.js';
import { eventBusContract } from '../contract/event-bus.js';
import { decodeSessionEvent, NatsEventBus, subjectKind } from './event-bus.js';

const nats = natsForTestFile();

let prefixes = 0;
eventBusContract('NatsEventBus', async ({ onError }) => {
  const nc = await nats.connect();
  // A prefix of its own: no other test's events, nor a leftover in flight, can reach this bus.
  const bus = new NatsEventBus({ nc, prefix: `test${++prefixes}.events`, onError });
  return {
    bus,
    // The PONG comes after every MSG the server routed to us before it, and nats.js hands those
    // to the bus synchronously as it parses; the macrotask lets any handler's own work finish.
    settle: async () => {
      await nc.flush();
      await new Promise((resolve) => setImmediate(resolve));
    },
    cleanup: () => nc.drain(),
  };
});

const WAIT_MS = 3_000;
const T0 = 1_700_000_000_000;

/** What a handler got, and a wait for the nth item with a timeout (tests never sleep). */
function collector<T>(label: string) {
  const items: T[] = [];
  let wake = () => undefined as void;
  return {
    items,
    push: (item: T) => {
      items.push(item);
      wake();
    },
    until: (n: number) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${label}: waited ${WAIT_MS} ms for ${n}, got ${items.length}`)), WAIT_MS);
        wake = () => {
          if (items.length < n) return;
          clearTimeout(timer);
          resolve();
        };
        wake();
      }),
  };
}

const record = (id: string, kind: string): SessionRecord => ({ id, kind, node: 'node-a', source: 'carrier-1', sourceKind: 'trunk', state: 'connecting', createdAt: T0 });
const created = (id: string, kind: string): SessionEvent => ({ type: 'created', at: T0, session: record(id, kind) });
const connected = (id: string, kind = 'sip-trunk'): SessionEvent => ({ type: 'connected', at: T0 + 80, id, kind, node: 'node-a', setupMs: 80 });
const ended = (id: string, kind = 'sip-trunk'): SessionEvent => ({
  type: 'ended',
  at: T0 + 60_000,
  id,
  kind,
  node: 'node-a',
  source: 'carrier-1',
  sourceKind: 'trunk',
  reason: 'remote-bye',
  durationMs: 60_000,
  summary: { packetsReceived: 3000, bytesReceived: 480_000, mos: 4.3, lossPercent: 0.2, jitterMs: 3.1, rttMs: null },
});

/** Two nodes: each its own connection and bus on the default prefix. */
async function twoNodes() {
  const errors = collector<unknown>('onError');
  const ncA = await nats.connect('node-a');
  const ncB = await nats.connect('node-b');
  const a = new NatsEventBus({ nc: ncA, onError: errors.push });
  const b = new NatsEventBus({ nc: ncB, onError: errors.push });
  const close = async () => {
    await a.close();
    await b.close();
    await ncA.drain();
    await ncB.drain();
  };
  return { ncA, ncB, a, b, errors, close };
}

/** A raw subscription on another connection: what went over the wire, subject and text. */
async function wire(nc: NatsConnection, subject: string) {
  const got = collector<{ subject: string; json: unknown }>(`wire ${subject}`);
  nc.subscribe(subject, { callback: (_err, msg) => got.push({ subject: msg.subject, json: msg.json() }) });
  // The SUB reaches the server before the other node publishes.
  await nc.flush();
  return got;
}

test('another node subscribed to voxgate.events.> gets each event on voxgate.events.<kind>.<type>, as the JSON published', async () => {
  const { ncB, a, b, errors, close } = await twoNodes();
  try {
    const raw = await wire(ncB, 'voxgate.events.>');
    const onB = collector<SessionEvent>('bus b');
    b.subscribe(onB.push);
    await ncB.flush();
    const sent = [created('t1', 'sip-trunk'), connected('t1'), ended('t1')];
    for (const e of sent) await a.publish(e);
    await Promise.all([raw.until(3), onB.until(3)]);
    assert.deepEqual(raw.items, [
      { subject: 'voxgate.events.trunk.created', json: sent[0] },
      { subject: 'voxgate.events.trunk.connected', json: sent[1] },
      { subject: 'voxgate.events.trunk.ended', json: sent[2] },
    ]);
    assert.deepEqual(onB.items, sent);
    assert.deepEqual(errors.items, []);
  } finally {
    await close();
  }
});

test('publish resolves once the server has routed the event: another node\'s next round trip finds it delivered', async () => {
  const { ncB, a, errors, close } = await twoNodes();
  try {
    const raw = await wire(ncB, 'voxgate.events.>');
    const sent = Array.from({ length: 200 }, (_, i) => connected(`p${i}`));
    await Promise.all(sent.map((e) => a.publish(e)));
    // B's PING leaves after every PUB was acknowledged, so its PONG comes after their MSGs.
    await ncB.flush();
    assert.deepEqual(raw.items.map((m) => m.json), sent);
    assert.deepEqual(errors.items, []);
  } finally {
    await close();
  }
});

test('each session kind has its subject token, on every event of its life (each carries its kind), a lost node\'s end included', async () => {
  const { ncB, a, errors, close } = await twoNodes();
  try {
    const raw = await wire(ncB, 'voxgate.events.*.created');
    const ends = await wire(ncB, 'voxgate.events.*.ended');
    const kinds = ['whip', 'whep', 'sip-ws', 'sip-trunk', 'outbound', 'fax.relay >*'];
    for (const [i, kind] of kinds.entries()) await a.publish(created(`k${i}`, kind));
    await a.publish(ended('k0', 'whip'));
    // A survivor ending a lost node's call: no measurement, and the kind from the directory's record.
    await a.publish({ ...(ended('k4', 'outbound') as Extract<SessionEvent, { type: 'ended' }>), reason: 'node-lost', summary: null });
    await Promise.all([raw.until(kinds.length), ends.until(2)]);
    assert.deepEqual(
      raw.items.map((m) => m.subject),
      ['whip', 'whep', 'sip', 'trunk', 'outbound', 'fax_relay___'].map((k) => `voxgate.events.${k}.created`),
    );
    assert.deepEqual(
      ends.items.map((m) => m.subject),
      ['voxgate.events.whip.ended', 'voxgate.events.outbound.ended'],
    );
    assert.equal((ends.items[1]!.json as { summary: unknown }).summary, null);
    assert.deepEqual(errors.items, []);
  } finally {
    await close();
  }
});

test('a malformed message on the subjects goes to onError once each, and later events are still delivered', async () => {
  const { ncA, ncB, b, errors, close } = await twoNodes();
  try {
    const got = collector<SessionEvent>('bus b');
    b.subscribe(got.push);
    b.subscribe(() => undefined); // a second subscriber: still one report per message
    const bad: [subject: string, payload: string, why: RegExp][] = [
      ['voxgate.events.whip.created', '{"type":"created",', /on voxgate\.events\.whip\.created: not JSON/],
      ['voxgate.events.whip.ended', '42', /not a JSON object/],
      ['voxgate.events.whip.connected', JSON.stringify(connected('x')).replace('"connected"', '"ended"'), /type "ended" is not the subject's 'connected'/],
      ['voxgate.events.whip.ended', JSON.stringify({ ...ended('x'), summary: 'good' }), /'ended' whose 'summary' is not an object/],
      ['voxgate.events.sip.created', JSON.stringify({ type: 'created', at: T0, session: { id: 's' } }), /'session\.kind' is not a string/],
      ['voxgate.events.whip.paused', '{}', /'paused' is not an event type/],
      ['voxgate.events.whip', '{}', /not <prefix>\.<kind>\.<type>/],
    ];
    await ncB.flush(); // the bus's SUB reaches the server before node A publishes
    for (const [subject, payload] of bad) ncA.publish(subject, payload);
    ncA.publish('voxgate.events.whip.connected', JSON.stringify(connected('w1')));
    await ncA.flush();
    await Promise.all([got.until(1), errors.until(bad.length)]);
    assert.deepEqual(got.items, [connected('w1')]);
    assert.equal(errors.items.length, bad.length);
    for (const [i, [, , why]] of bad.entries()) {
      const err = errors.items[i];
      assert.ok(err instanceof Error && /^malformed session event on /.test(err.message), String(err));
      assert.match(err.message, why);
    }
  } finally {
    await close();
  }
});

test('close unsubscribes and leaves the connection to its owner; a bad prefix is refused', async () => {
  const nc = await nats.connect();
  try {
    const bus = new NatsEventBus({ nc, prefix: 'closing.events', onError: (err) => assert.fail(String(err)) });
    const got = collector<SessionEvent>('subscriber');
    bus.subscribe(got.push);
    await bus.publish(connected('c1'));
    await got.until(1);
    await bus.close();
    await bus.close();
    assert.equal(nc.isClosed(), false);
    const raw = await wire(nc, 'closing.events.>');
    nc.publish('closing.events.whip.connected', JSON.stringify(connected('c2')));
    await raw.until(1);
    assert.deepEqual(got.items, [connected('c1')], 'the connection still carries events, but not to a closed bus');
    await assert.rejects(bus.publish(connected('c3')), /closed/);
    for (const prefix of ['', 'a..b', 'voxgate.*', 'voxgate.>', 'has space']) assert.throws(() => new NatsEventBus({ nc, prefix, onError: () => undefined }), /prefix/);
  } finally {
    await nc.drain();
  }
});

test('subject tokens and decoding are pure', () => {
  assert.equal(subjectKind('sip-ws'), 'sip');
  assert.equal(subjectKind(''), 'unknown');
  assert.equal(subjectKind('a.b'), 'a_b');
  assert.deepEqual(decodeSessionEvent('connected', JSON.stringify({ ...connected('x'), extra: 1 })), { ...connected('x'), extra: 1 });
  assert.ok(decodeSessionEvent('__proto__', '{"type":"__proto__","at":1}') instanceof Error);
});
