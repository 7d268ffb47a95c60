import type { Clock } from '../../core/clock.js';
import { T1, T2, T4, Transaction } from './transaction.js';

export type InviteClientState = 'calling' | 'proceeding' | 'completed' | 'accepted' | 'terminated';

/** The legal moves, shared by every instance. */
const INVITE_CLIENT_MOVES: Record<InviteClientState, InviteClientState[]> = {
  calling: ['proceeding', 'completed', 'accepted', 'terminated'],
  proceeding: ['proceeding', 'completed', 'accepted', 'terminated'],
  completed: ['terminated'],
  accepted: ['terminated'],
  terminated: [],
};

/**
 * RFC 3261 §17.1.1 with RFC 6026 §8.4: a 2xx moves to Accepted (Timer M) so retransmitted
 * 2xx still reach the dialog; a 3xx-6xx is ACKed here and Timer D absorbs retransmissions.
 */
export class InviteClientTransaction extends Transaction<InviteClientState> {
  protected readonly transitions = INVITE_CLIENT_MOVES;

  constructor(
    clock: Clock,
    reliable: boolean,
    id: string,
    readonly request: string,
  ) {
    super('calling', clock, reliable, id);
  }

  start(): void {
    this.send(this.request);
    if (!this.reliable) this.#retransmit(T1);
    this.startTimer('B', 64 * T1, () => this.timedOut());
  }

  /** Returns true when the response goes on to the TU (the dialog). */
  onResponse(status: number, ack: () => string): boolean {
    if (this.state === 'calling' || this.state === 'proceeding') {
      this.stopTimer('A');
      if (status < 200) {
        this.stopTimer('B');
        this.transition('proceeding');
        return true;
      }
      this.stopTimer('B');
      if (status < 300) {
        this.transition('accepted');
        this.startTimer('M', 64 * T1, () => this.transition('terminated'));
        return true;
      }
      this.send(ack());
      this.transition('completed');
      this.startTimer('D', this.reliable ? 0 : 32_000, () => this.transition('terminated'));
      return true;
    }
    if (this.state === 'completed' && status >= 300) this.send(ack());
    return this.state === 'accepted' && status >= 200 && status < 300;
  }

  #retransmit(interval: number): void {
    this.startTimer('A', interval, () => {
      if (this.state !== 'calling') return;
      this.send(this.request);
      this.#retransmit(2 * interval);
    });
  }
}

export type NonInviteClientState = 'trying' | 'proceeding' | 'completed' | 'terminated';

/** The legal moves, shared by every instance. */
const NON_INVITE_CLIENT_MOVES: Record<NonInviteClientState, NonInviteClientState[]> = {
  trying: ['proceeding', 'completed', 'terminated'],
  proceeding: ['proceeding', 'completed', 'terminated'],
  completed: ['terminated'],
  terminated: [],
};

/** RFC 3261 §17.1.2. */
export class NonInviteClientTransaction extends Transaction<NonInviteClientState> {
  protected readonly transitions = NON_INVITE_CLIENT_MOVES;

  constructor(
    clock: Clock,
    reliable: boolean,
    id: string,
    readonly request: string,
  ) {
    super('trying', clock, reliable, id);
  }

  start(): void {
    this.send(this.request);
    if (!this.reliable) this.#retransmit(T1);
    this.startTimer('F', 64 * T1, () => this.timedOut());
  }

  onResponse(status: number): boolean {
    if (this.state === 'completed' || this.state === 'terminated') return false;
    if (status < 200) {
      this.transition('proceeding');
      return true;
    }
    this.stopTimer('E');
    this.stopTimer('F');
    this.transition('completed');
    this.startTimer('K', this.reliable ? 0 : T4, () => this.transition('terminated'));
    return true;
  }

  #retransmit(interval: number): void {
    this.startTimer('E', interval, () => {
      if (this.state !== 'trying' && this.state !== 'proceeding') return;
      this.send(this.request);
      // §17.1.2.2: in Proceeding, retransmit every T2.
      this.#retransmit(this.state === 'proceeding' ? T2 : Math.min(2 * interval, T2));
    });
  }
}
