import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { EventBus, SessionEvent } from '../../call/session-events.js';
import type { Logger } from '../../core/logger.js';
import { encodeSessionEvent } from '../memory/event-bus.js';

/**
 * Session lifecycle events on core NATS (issue 17, build 3), for any service that wants to wake
 * up when a call starts or ends. One subject per session kind and event type:
 *
 *   voxgate.events.<kind>.<type>        <type>: created | connected | ended
 *
 * <kind> is the session's kind in the issue's words: `whip`, `whep`, `sip` (SIP over WebSocket,
 * `sip-ws`), `trunk` (`sip-trunk`), `outbound`; any other kind passes through with each character
 * outside [A-Za-z0-9_-] made `_`. Every event carries its session's kind and node.
 * Subscribe to `voxgate.events.>` for everything, `voxgate.events.trunk.>` for phone calls through
 * trunks, `voxgate.events.*.ended` for every end.
 *
 * Payload: the event as UTF-8 JSON, no headers. Times are epoch ms, durations ms; an optional
 * field that is absent is left out (never null). Unknown fields may be added later: ignore them.
 *
 *   created   { "type": "created", "at": number, "session": {
 *                 "id": string, "kind": string, "node": string, "source": string,
 *                 "sourceKind": string, "state": "connecting" | "connected" | "ended",
 *                 "createdAt": number, "connectedAt"?: number, "endedAt"?: number,
 *                 "endReason"?: string, "parent"?: string (a listener's call) } }
 *   connected { "type": "connected", "at": number, "id": string, "kind": string, "node": string,
 *               "setupMs": number }
 *   ended     { "type": "ended", "at": number, "id": string, "kind": string, "node": string,
 *               "source": string, "sourceKind": string, "reason": string, "durationMs": number,
 *               "summary": null (its node was lost: reason "node-lost") | {
 *                 "packetsReceived": number, "bytesReceived": number, "mos": number | null,
 *                 "lossPercent": number | null, "jitterMs": number | null, "rttMs": number | null } }
 *
 * Example, on voxgate.events.whip.ended:
 *   {"type":"ended","at":1700000060000,"id":"Qm9iLXdoaXAtMDAwMDE","kind":"whip","node":"node-a","source":"studio","sourceKind":"browser",
 *    "reason":"deleted","durationMs":60000,"summary":{"packetsReceived":3000,"bytesReceived":480000,
 *    "mos":4.3,"lossPercent":0.2,"jitterMs":3.1,"rttMs":null}}
 *
 * Core NATS delivers at most once, to whoever is subscribed when the server routes the message;
 * a JetStream stream on `voxgate.events.>` can keep history without changing the publishers.
 */

export const EVENT_TYPES = ['created', 'connected', 'ended'] as const;

/** Session kinds (`Call.kind`) as issue 17 names them in subjects. */
const SUBJECT_KIND: Readonly<Record<string, string>> = { whip: 'whip', whep: 'whep', 'sip-ws': 'sip', 'sip-trunk': 'trunk', outbound: 'outbound' };

/** A session kind as one subject token: never empty, never a `.`, `*`, `>` or space. */
export function subjectKind(kind: string): string {
  return SUBJECT_KIND[kind] ?? (kind.replace(/[^A-Za-z0-9_-]/g, '_') || 'unknown');
}

/** What a received event must have before a subscriber is given it, by type. */
const REQUIRED: Record<SessionEvent['type'], readonly [field: string, type: 'string' | 'number' | 'object'][]> = {
  created: [['session', 'object']],
  connected: [['id', 'string'], ['kind', 'string'], ['node', 'string'], ['setupMs', 'number']],
  ended: [['id', 'string'], ['kind', 'string'], ['node', 'string'], ['source', 'string'], ['sourceKind', 'string'], ['reason', 'string'], ['durationMs', 'number']],
};
const SESSION_REQUIRED = ['id', 'kind', 'node', 'source', 'sourceKind', 'state'] as const;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The event in a message on `<type>`'s subject, or an Error saying what is wrong with it. Pure.
 * Another publisher (a bug, an older node, a hand-typed `nats pub`) can put anything there, and a
 * subscriber relies on the fields its type promises, so those are checked; extra fields pass.
 */
export function decodeSessionEvent(type: string, text: string): SessionEvent | Error {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    return new Error(`not JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (!(EVENT_TYPES as readonly string[]).includes(type)) return new Error(`'${type}' is not an event type (${EVENT_TYPES.join(', ')})`);
  if (!isObject(v)) return new Error('not a JSON object');
  if (v.type !== type) return new Error(`its type ${JSON.stringify(v.type)} is not the subject's '${type}'`);
  if (typeof v.at !== 'number') return new Error(`'${type}' without a numeric 'at'`);
  for (const [field, want] of REQUIRED[type as SessionEvent['type']]) {
    const got = v[field];
    if (want === 'object' ? !isObject(got) : typeof got !== want) return new Error(`'${type}' whose '${field}' is not ${want === 'object' ? 'an object' : `a ${want}`}`);
  }
  // A lost node's calls end with no measurement: summary null.
  if (type === 'ended' && v.summary !== null && !isObject(v.summary)) return new Error("'ended' whose 'summary' is not an object or null");
  if (type === 'created') {
    const s = v.session as Record<string, unknown>;
    for (const field of SESSION_REQUIRED) if (typeof s[field] !== 'string') return new Error(`'created' whose 'session.${field}' is not a string`);
  }
  return v as unknown as SessionEvent;
}

export interface NatsEventBusOptions {
  /** Not owned: close() leaves it open (drain it after). */
  nc: NatsConnection;
  /** Subject prefix, dot-separated tokens without wildcards; default `voxgate.events`. */
  prefix?: string;
  /** A subscriber threw, or a message on the bus's subjects was not a session event. */
  onError: (err: unknown) => void;
  /** Where an onError that throws is told (default: a process warning). */
  log?: Pick<Logger, 'warn'>;
}

interface Handler {
  fn: (event: SessionEvent) => void;
  active: boolean;
}

/**
 * EventBus on core NATS. One NATS subscription (`<prefix>.>`) per bus, held while it has
 * subscribers, fanned out to them here: each subscriber gets its own JSON copy, in the order the
 * server sent them, and a malformed message is reported once, not once per subscriber.
 * "Every event published after subscribe" holds for this connection's publishes because the SUB
 * is written before any later PUB; from another node, only after the SUB reached the server.
 * Deviation from the memory bus: a subscriber joining while the bus's SUB is already up can get an
 * event whose publish was called, but had not resolved, before it joined (it is on the wire).
 */
export class NatsEventBus implements EventBus {
  readonly #nc: NatsConnection;
  readonly #prefix: string;
  readonly #onError: (err: unknown) => void;
  readonly #log: Pick<Logger, 'warn'> | undefined;
  /** Replaced, never changed in place: a delivery keeps the subscribers there were when it began. */
  #handlers: readonly Handler[] = [];
  #sub: Subscription | undefined;
  #closed = false;

  constructor(opts: NatsEventBusOptions) {
    const prefix = opts.prefix ?? 'voxgate.events';
    if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(prefix)) throw new Error(`event bus prefix '${prefix}' must be dot-separated tokens of [A-Za-z0-9_-]`);
    this.#nc = opts.nc;
    this.#prefix = prefix;
    this.#onError = opts.onError;
    this.#log = opts.log;
  }

  /** The subject this event goes to: its session's kind and the event's type. */
  #subjectOf(event: SessionEvent): string {
    if (!(EVENT_TYPES as readonly string[]).includes(event.type)) throw new TypeError(`session event type '${String(event.type)}' is not one of ${EVENT_TYPES.join(', ')}`);
    return `${this.#prefix}.${subjectKind(event.type === 'created' ? event.session.kind : event.kind)}.${event.type}`;
  }

  /** Resolves after a server round trip: the server has routed it to everyone subscribed by then. */
  async publish(event: SessionEvent): Promise<void> {
    if (this.#closed) throw new Error('the event bus is closed');
    // Both throw before anything is sent, so a refused event reaches no one.
    const json = encodeSessionEvent(event);
    const subject = this.#subjectOf(event);
    // Written now, synchronously: concurrent publishes keep their call order on the wire.
    this.#nc.publish(subject, json);
    await this.#nc.flush();
  }

  subscribe(handler: (event: SessionEvent) => void): () => void {
    if (this.#closed) throw new Error('the event bus is closed');
    const h: Handler = { fn: handler, active: true };
    this.#handlers = [...this.#handlers, h];
    this.#sub ??= this.#nc.subscribe(`${this.#prefix}.>`, { callback: (err, msg) => this.#receive(err, msg) });
    return () => {
      if (!h.active) return;
      // Checked at delivery too: nothing reaches a handler after its unsubscribe returned.
      h.active = false;
      this.#handlers = this.#handlers.filter((x) => x !== h);
      if (this.#handlers.length === 0) this.#unsubscribe();
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const h of this.#handlers) h.active = false;
    this.#handlers = [];
    this.#unsubscribe();
    // Our PUBs and the UNSUB leave before close resolves; the connection's owner may close it.
    if (!this.#nc.isClosed() && !this.#nc.isDraining()) await this.#nc.flush().catch((err: unknown) => this.#report(err));
  }

  #unsubscribe(): void {
    const sub = this.#sub;
    this.#sub = undefined;
    if (sub && !sub.isClosed()) sub.unsubscribe();
  }

  /** nats.js calls this synchronously as it parses, in the server's order. */
  #receive(err: Error | null, msg: Msg): void {
    if (err) return this.#report(err); // e.g. a permissions violation on the subscription
    try {
      this.#deliver(msg);
    } catch (e) {
      // Not a subscriber's (those are caught in #deliver): never let it into the client's parser.
      this.#report(e);
    }
  }

  #deliver(msg: Msg): void {
    const tokens = msg.subject.slice(this.#prefix.length + 1).split('.');
    const text = msg.string();
    const event = tokens.length === 2 ? decodeSessionEvent(tokens[1]!, text) : new Error('not <prefix>.<kind>.<type>');
    if (event instanceof Error) return this.#report(new Error(`malformed session event on ${msg.subject}: ${event.message}`, { cause: text.slice(0, 200) }));
    let first = true;
    for (const h of this.#handlers) {
      if (!h.active) continue;
      try {
        // Each its own copy, so one that mutates its event cannot change another's.
        h.fn(first ? event : (JSON.parse(text) as SessionEvent));
      } catch (e) {
        this.#report(e);
      }
      first = false;
    }
  }

  #report(err: unknown): void {
    try {
      this.#onError(err);
    } catch (again) {
      // The hook itself failed; the remaining subscribers must still get the event.
      const text = `event bus onError threw: ${String(again)} (reporting: ${String(err)})`;
      if (this.#log) this.#log.warn({ err: again }, text);
      else process.emitWarning(text);
    }
  }
}
