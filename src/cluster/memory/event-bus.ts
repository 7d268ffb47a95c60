import type { EventBus, SessionEvent } from '../../call/session-events.js';

/**
 * Where `value` (the published event) and `parsed` (its JSON round trip) first differ, or
 * undefined when they are the same data. Only plain objects, arrays, strings, finite numbers,
 * booleans and null are data; an undefined-valued key may be dropped (JSON drops it, and no
 * reader can tell it from an absent one). A class instance with only plain fields is rejected
 * too: its receiver would get a plain object and lose the class.
 */
function firstDifference(value: unknown, parsed: unknown, path: string): string | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value === parsed ? undefined : `${path} (${value} is not a finite number)`;
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value === parsed ? undefined : path;
  if (typeof value !== 'object') return `${path} (${value === undefined ? 'undefined' : `a ${typeof value}`})`;
  if (Array.isArray(value)) {
    if (!Array.isArray(parsed) || parsed.length !== value.length) return `${path} (an array that JSON changes)`;
    for (let i = 0; i < value.length; i++) {
      const d = firstDifference(value[i], parsed[i], `${path}[${i}]`);
      if (d !== undefined) return d;
    }
    return undefined;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return `${path} (a ${value.constructor?.name ?? 'class instance'}, not a plain object)`;
  if (Object.getOwnPropertySymbols(value).length > 0) return `${path} (a symbol key)`;
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return path;
  const v = value as Record<string, unknown>;
  const p = parsed as Record<string, unknown>;
  let kept = 0;
  for (const key of Object.keys(v)) {
    if (v[key] === undefined) continue;
    kept++;
    if (!Object.hasOwn(p, key)) return `${path}.${key} (a ${typeof v[key]}, which JSON drops)`;
    const d = firstDifference(v[key], p[key], `${path}.${key}`);
    if (d !== undefined) return d;
  }
  return kept === Object.keys(p).length ? undefined : path;
}

/**
 * The event as JSON, or a TypeError naming the event type and the first field that JSON would
 * change. Rejecting is better than sending a changed event: a Map would arrive as `{}`, a function
 * not at all, and the subscriber on another node would act on data nobody published.
 * Shared with the NATS bus, which sends exactly this text.
 */
export function encodeSessionEvent(event: SessionEvent): string {
  const type = typeof event === 'object' && event !== null && typeof event.type === 'string' ? event.type : '(no type)';
  const refuse = (why: string) =>
    new TypeError(`session event '${type}' cannot cross the event bus: ${why}; only plain objects, arrays, strings, finite numbers, booleans and null can`);
  let json: string | undefined;
  try {
    json = JSON.stringify(event);
  } catch (err) {
    // A bigint or a cycle.
    throw refuse(err instanceof Error ? err.message : String(err));
  }
  if (json === undefined) throw refuse('it is not an object');
  const where = firstDifference(event, JSON.parse(json), 'event');
  if (where !== undefined) throw refuse(`JSON would change ${where}`);
  return json;
}

export interface MemoryEventBusOptions {
  /** A subscriber threw: reported here, and the other subscribers still get the event. */
  onError: (err: unknown) => void;
}

interface Subscription {
  handler: (event: SessionEvent) => void;
  active: boolean;
}

/**
 * One process's event bus, with the NATS bus's semantics: events cross as JSON copies (each
 * subscriber gets its own, so one that mutates it cannot change what another sees), delivery is
 * asynchronous and in publish order.
 */
export class MemoryEventBus implements EventBus {
  readonly #onError: (err: unknown) => void;
  /** Replaced, never changed in place, so a publish keeps the subscribers there were when it was called for free. */
  #subscriptions: readonly Subscription[] = [];
  #closed = false;

  constructor(opts: MemoryEventBusOptions) {
    this.#onError = opts.onError;
  }

  async publish(event: SessionEvent): Promise<void> {
    if (this.#closed) throw new Error('the event bus is closed');
    const json = encodeSessionEvent(event);
    // Taken now: a subscriber added later, even during this event's delivery, did not ask for it.
    const targets = this.#subscriptions;
    // A microtask each: they run in the order they were queued, so events keep publish order,
    // and no subscriber runs inside its publisher's call (as with a network in between).
    await new Promise<void>((resolve) =>
      queueMicrotask(() => {
        this.#deliver(targets, json);
        resolve();
      }),
    );
  }

  subscribe(handler: (event: SessionEvent) => void): () => void {
    if (this.#closed) throw new Error('the event bus is closed');
    const s: Subscription = { handler, active: true };
    this.#subscriptions = [...this.#subscriptions, s];
    return () => {
      if (!s.active) return;
      // Checked at delivery too: an event published before the unsubscribe is not delivered after it.
      s.active = false;
      this.#subscriptions = this.#subscriptions.filter((x) => x !== s);
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const s of this.#subscriptions) s.active = false;
    this.#subscriptions = [];
  }

  #deliver(targets: readonly Subscription[], json: string): void {
    for (const s of targets) {
      if (!s.active) continue;
      try {
        s.handler(JSON.parse(json) as SessionEvent);
      } catch (err) {
        this.#report(err);
      }
    }
  }

  #report(err: unknown): void {
    try {
      this.#onError(err);
    } catch (again) {
      // The error hook itself failed; the remaining subscribers must still get the event.
      process.emitWarning(`event bus onError threw: ${String(again)} (reporting: ${String(err)})`);
    }
  }
}
