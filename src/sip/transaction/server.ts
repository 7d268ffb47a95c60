import type { Clock } from '../../core/clock.js';
import { T1, T2, T4, Transaction } from './transaction.js';

export type InviteServerState = 'proceeding' | 'completed' | 'confirmed' | 'accepted' | 'terminated';

/** The legal moves, shared by every instance. */
const INVITE_SERVER_MOVES: Record<InviteServerState, InviteServerState[]> = {
  proceeding: ['proceeding', 'completed', 'accepted', 'terminated'],
  completed: ['confirmed', 'terminated'],
  confirmed: ['terminated'],
  accepted: ['terminated'],
  terminated: [],
};

/**
 * RFC 3261 §17.2.1 as updated by RFC 6026 §8.7: a 2xx moves to Accepted (Timer L absorbs
 * retransmitted INVITEs and lets ACKs through to the dialog); a 3xx-6xx is retransmitted
 * (Timer G, unreliable only) until the ACK, or Timer H gives up.
 */
export class InviteServerTransaction extends Transaction<InviteServerState> {
  protected readonly transitions = INVITE_SERVER_MOVES;
  #lastResponse: string | undefined;

  constructor(clock: Clock, reliable: boolean, id: string) {
    super('proceeding', clock, reliable, id);
  }

  /** §17.2.1: a 100 Trying unless the TU answers within 200 ms. */
  scheduleTrying(trying: string): void {
    this.startTimer('100', 200, () => {
      if (this.state === 'proceeding' && !this.#lastResponse) this.respond(100, trying);
    });
  }

  respond(status: number, message: string): void {
    if (this.state !== 'proceeding') throw new Error(`cannot send ${status} in state ${this.state}`);
    this.#lastResponse = message;
    this.send(message);
    if (status < 200) return;
    this.stopTimer('100');
    if (status < 300) {
      this.transition('accepted');
      this.startTimer('L', 64 * T1, () => this.transition('terminated'));
      return;
    }
    this.transition('completed');
    if (!this.reliable) this.#retransmit(T1);
    this.startTimer('H', 64 * T1, () => this.timedOut());
  }

  /** A retransmitted INVITE: the last response goes out again (none in Accepted: the core retransmits 2xx). */
  onRetransmission(): void {
    if ((this.state === 'proceeding' || this.state === 'completed') && this.#lastResponse) this.send(this.#lastResponse);
  }

  /** Returns true when the ACK belongs to the dialog (a 2xx ACK), false when absorbed here. */
  onAck(): boolean {
    if (this.state === 'accepted') return true;
    if (this.state === 'completed') {
      this.stopTimer('G');
      this.stopTimer('H');
      this.transition('confirmed');
      this.startTimer('I', this.reliable ? 0 : T4, () => this.transition('terminated'));
    }
    return false;
  }

  #retransmit(interval: number): void {
    this.startTimer('G', interval, () => {
      if (this.state !== 'completed' || !this.#lastResponse) return;
      this.send(this.#lastResponse);
      this.#retransmit(Math.min(2 * interval, T2));
    });
  }
}

export type NonInviteServerState = 'trying' | 'proceeding' | 'completed' | 'terminated';

/** The legal moves, shared by every instance. */
const NON_INVITE_SERVER_MOVES: Record<NonInviteServerState, NonInviteServerState[]> = {
  trying: ['proceeding', 'completed', 'terminated'],
  proceeding: ['proceeding', 'completed', 'terminated'],
  completed: ['terminated'],
  terminated: [],
};

/** RFC 3261 §17.2.2. */
export class NonInviteServerTransaction extends Transaction<NonInviteServerState> {
  protected readonly transitions = NON_INVITE_SERVER_MOVES;
  #lastResponse: string | undefined;

  constructor(clock: Clock, reliable: boolean, id: string) {
    super('trying', clock, reliable, id);
  }

  respond(status: number, message: string): void {
    if (this.state === 'completed' || this.state === 'terminated') throw new Error(`cannot send ${status} in state ${this.state}`);
    this.#lastResponse = message;
    this.send(message);
    if (status < 200) {
      this.transition('proceeding');
      return;
    }
    this.transition('completed');
    this.startTimer('J', this.reliable ? 0 : 64 * T1, () => this.transition('terminated'));
  }

  onRetransmission(): void {
    if (this.#lastResponse && (this.state === 'proceeding' || this.state === 'completed')) this.send(this.#lastResponse);
  }
}
