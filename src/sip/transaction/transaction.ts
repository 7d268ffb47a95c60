import type { Clock, TimerHandle } from '../../core/clock.js';
import { TypedEmitter } from '../../core/events.js';

/** RFC 3261 §17.1.1.1 timer values, ms. */
export const T1 = 500;
export const T2 = 4000;
export const T4 = 5000;

export interface TransactionEvents<S extends string> extends Record<string, unknown[]> {
  state: [state: S];
  /** A message to put on the wire (a request, a retransmission, a response, an ACK). */
  send: [message: string];
  /** Timer B/F/H fired: the far end never answered. */
  timeout: [];
  terminated: [];
}

/**
 * What every transaction shares: explicit string states, one `transition()` that refuses
 * illegal moves, and named timers on an injected clock (A-M), all cancelled on termination.
 * On a reliable transport (WebSocket, TCP) retransmission timers are not used and the
 * wait timers D, I, J, K are zero (§17).
 */
export abstract class Transaction<S extends string> extends TypedEmitter<TransactionEvents<S>> {
  protected abstract readonly transitions: Record<S, S[]>;
  #state: S;
  /** Made on the first timer that waits (a reliable non-INVITE server transaction never has one). */
  #timers: Map<string, TimerHandle> | undefined;

  constructor(
    initial: S,
    protected readonly clock: Clock,
    readonly reliable: boolean,
    readonly id: string,
  ) {
    super();
    this.#state = initial;
  }

  get state(): S {
    return this.#state;
  }

  protected transition(to: S): void {
    if (to === this.#state) return;
    if (!this.transitions[this.#state].includes(to)) throw new Error(`transaction ${this.id}: illegal transition ${this.#state} -> ${to}`);
    this.#state = to;
    this.emit('state', to);
    if (to === ('terminated' as S)) {
      if (this.#timers) for (const t of this.#timers.values()) this.clock.clearTimeout(t);
      this.#timers = undefined;
      this.emit('terminated');
      this.removeAllListeners();
    }
  }

  protected send(message: string): void {
    this.emit('send', message);
  }

  protected startTimer(name: string, ms: number, fire: () => void): void {
    this.stopTimer(name);
    if (ms <= 0) {
      fire();
      return;
    }
    (this.#timers ??= new Map()).set(
      name,
      this.clock.setTimeout(() => {
        this.#timers?.delete(name);
        fire();
      }, ms),
    );
  }

  protected stopTimer(name: string): void {
    const t = this.#timers?.get(name);
    if (t === undefined) return;
    this.clock.clearTimeout(t);
    this.#timers!.delete(name);
  }

  get pendingTimers(): string[] {
    return this.#timers ? [...this.#timers.keys()] : [];
  }

  protected timedOut(): void {
    this.emit('timeout');
    this.transition('terminated' as S);
  }
}
