import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SessionRecord } from '../../call/session-directory.js';
import type { EventBus, QualitySummary, SessionEvent } from '../../call/session-events.js';

/**
 * What every EventBus must do, memory or NATS (DESIGN.md: "EventBus (serialisable events only:
 * no live objects cross it)"; "Memory and NATS implementations pass one shared contract test suite").
 *
 * One bus both publishes and subscribes: "every event published after subscribe" is a promise a
 * single connection can keep (NATS writes SUB before a later PUB); across nodes it needs a server
 * round trip the interface does not have, so cross-node delivery is for the NATS end-to-end tests.
 */

export interface EventBusSetup {
  /** Build the bus with this as its subscriber-error hook: the suite checks what reaches it. */
  onError: (err: unknown) => void;
}

export interface EventBusFixture {
  /** A bus with no other publishers (NATS: a fresh subject or stream). The suite closes it. */
  bus: EventBus;
  /**
   * Resolves once everything published and seen by one subscriber has been handed to every
   * subscriber, for the "was not delivered" checks. Default: one macrotask (`setImmediate`).
   */
  settle?: () => Promise<void>;
  /** Runs after the bus is closed: delete the stream, drain the connection. */
  cleanup?: () => Promise<void>;
}

export type EventBusFactory = (setup: EventBusSetup) => Promise<EventBusFixture>;

/** The longest the suite waits for a delivery before it fails (it never sleeps). */
const WAIT_MS = 5_000;
const T0 = 1_700_000_000_000;

/** Collects what a handler receives and lets the test wait for the nth item, with a timeout. */
function recorder<T>(label: string) {
  const items: T[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const push = (item: T) => {
    items.push(item);
    for (const w of [...waiters]) {
      if (items.length >= w.n) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  const until = (n: number) =>
    new Promise<void>((resolve, reject) => {
      if (items.length >= n) return resolve();
      const timer = setTimeout(() => reject(new Error(`${label}: waited ${WAIT_MS} ms for ${n}, got ${items.length}`)), WAIT_MS);
      waiters.push({
        n,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  return { items, push, until };
}

const session = (i: number): SessionRecord => ({
  id: `call-${i}`,
  kind: 'sip-trunk',
  node: 'node-a',
  source: 'carrier-1',
  sourceKind: 'trunk',
  state: 'connecting',
  createdAt: T0 + i,
});

const summary: QualitySummary = { packetsReceived: 1500, bytesReceived: 240_000, mos: 4.2, lossPercent: 0.5, jitterMs: null, rttMs: 23.5 };

/** Event i of a call's life, cycling created → connected → ended. */
function event(i: number): SessionEvent {
  const at = T0 + i;
  switch (i % 3) {
    case 0:
      return { type: 'created', at, session: session(i) };
    case 1:
      return { type: 'connected', at, id: `call-${i}`, kind: 'sip-trunk', node: 'node-a', setupMs: 120 + i };
    default:
      return { type: 'ended', at, id: `call-${i}`, kind: 'sip-trunk', node: 'node-a', source: 'carrier-1', sourceKind: 'trunk', reason: 'remote-bye', durationMs: 60_000 + i, summary: { ...summary } };
  }
}

/** A class instance whose fields alone would survive JSON, but not its class. */
class LiveSummary implements QualitySummary {
  packetsReceived = 1;
  bytesReceived = 160;
  mos = null;
  lossPercent = null;
  jitterMs = null;
  rttMs = null;
}

/** Gets a value that is not plain data past the types, as a careless publisher could. */
const smuggled = (v: object) => v as SessionEvent;

interface Ctx {
  bus: EventBus;
  settle: () => Promise<void>;
  errors: ReturnType<typeof recorder<unknown>>;
}

export function eventBusContract(name: string, make: EventBusFactory): void {
  const it = (title: string, body: (c: Ctx) => Promise<void>) =>
    test(title, async () => {
      const errors = recorder<unknown>('onError');
      const f = await make({ onError: errors.push });
      try {
        await body({ bus: f.bus, errors, settle: f.settle ?? (() => new Promise((resolve) => setImmediate(resolve))) });
      } finally {
        await f.bus.close();
        await f.cleanup?.();
      }
    });

  describe(name, () => {
    it('a subscriber gets every event published after it subscribed, once each, in publish order', async ({ bus }) => {
      await bus.publish(event(1_000)); // before the subscription: not for it
      const got = recorder<SessionEvent>('subscriber');
      bus.subscribe(got.push);
      const sent = Array.from({ length: 99 }, (_, i) => event(i));
      await Promise.all(sent.map((e) => bus.publish(e)));
      await got.until(99);
      // The event published before subscribing would have come first; 99 exactly shows no duplicate.
      assert.deepEqual(got.items, sent);
    });

    it('each subscriber gets an equal copy: not the published object, nor another subscriber\'s', async ({ bus }) => {
      const a = recorder<SessionEvent>('a');
      const b = recorder<SessionEvent>('b');
      bus.subscribe(a.push);
      bus.subscribe(b.push);
      const ended = event(2);
      const created = event(3);
      await bus.publish(ended);
      await bus.publish(created);
      await Promise.all([a.until(2), b.until(2)]);
      assert.deepEqual(a.items, [ended, created]);
      assert.deepEqual(b.items, [ended, created]);
      const [aEnded, aCreated] = a.items;
      const [bEnded] = b.items;
      assert.notEqual(aEnded, ended);
      assert.notEqual(aEnded, bEnded);
      assert.ok(aEnded?.type === 'ended' && ended.type === 'ended' && bEnded?.type === 'ended');
      assert.notEqual(aEnded.summary, ended.summary);
      assert.notEqual(aEnded.summary, bEnded.summary);
      assert.ok(aCreated?.type === 'created' && created.type === 'created');
      assert.notEqual(aCreated.session, created.session);
    });

    it('unsubscribe stops delivery to that subscriber only, and twice is harmless', async ({ bus, settle }) => {
      const a = recorder<SessionEvent>('a');
      const b = recorder<SessionEvent>('b');
      const unsubscribeA = bus.subscribe(a.push);
      bus.subscribe(b.push);
      await bus.publish(event(0));
      await Promise.all([a.until(1), b.until(1)]);
      unsubscribeA();
      unsubscribeA();
      await bus.publish(event(1));
      await bus.publish(event(2));
      await b.until(3);
      await settle();
      assert.deepEqual(a.items, [event(0)]);
    });

    it('a subscriber that throws is reported to onError, keeps its subscription, and the others still get the event', async ({ bus, errors }) => {
      const before = recorder<SessionEvent>('before');
      const after = recorder<SessionEvent>('after');
      const thrown: Error[] = [];
      bus.subscribe(before.push);
      bus.subscribe((e) => {
        const err = new Error(`subscriber failed on ${e.type}`);
        thrown.push(err);
        throw err;
      });
      bus.subscribe(after.push);
      await bus.publish(event(0));
      await bus.publish(event(1));
      await Promise.all([before.until(2), after.until(2), errors.until(2)]);
      assert.deepEqual(after.items, [event(0), event(1)]);
      assert.deepEqual(errors.items, thrown);
    });

    it('an event that would not survive JSON (a Map, a function, a class instance) is rejected by publish with a TypeError naming its type, and reaches no one', async ({ bus }) => {
      const got = recorder<SessionEvent>('subscriber');
      bus.subscribe(got.push);
      const withMap = { type: 'created', at: T0, session: { ...session(0), legs: new Map([['caller', 1]]) } as SessionRecord } satisfies SessionEvent;
      const withFunction = smuggled({ ...event(1), close: () => undefined });
      const withInstance = smuggled({ ...event(2), summary: new LiveSummary() });
      for (const bad of [withMap, withFunction, withInstance]) {
        await assert.rejects(bus.publish(bad), (err: unknown) => {
          assert.ok(err instanceof TypeError, `a TypeError for '${bad.type}', got ${String(err)}`);
          assert.match(err.message, new RegExp(bad.type));
          return true;
        });
      }
      const good = event(3);
      await bus.publish(good);
      await got.until(1);
      assert.deepEqual(got.items, [good], 'only the event that survives JSON was delivered');
    });

    it('a subscriber added during delivery is not given the event being delivered, but gets the next', async ({ bus }) => {
      const first = recorder<SessionEvent>('first');
      const late = recorder<SessionEvent>('late');
      let added = false;
      bus.subscribe((e) => {
        first.push(e);
        if (!added) {
          added = true;
          bus.subscribe(late.push);
        }
      });
      await bus.publish(event(0));
      await first.until(1);
      await bus.publish(event(1));
      await Promise.all([first.until(2), late.until(1)]);
      assert.deepEqual(late.items, [event(1)]);
    });

    it('publish with no subscribers resolves', async ({ bus }) => {
      await bus.publish(event(0));
    });
  });
}
