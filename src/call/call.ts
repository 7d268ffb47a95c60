import type { SourceIdentity } from '../auth/source-auth.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import { TypedEmitter } from '../core/events.js';

export type CallState = 'connecting' | 'connected' | 'ended';

export type EndReason =
  | 'deleted'
  | 'idle-timeout'
  | 'ice-failed'
  | 'dtls-failed'
  | 'peer-closed'
  | 'setup-failed'
  | 'agent-hangup'
  | 'agent-failed'
  | 'agent-disconnected'
  | 'shutdown'
  /** SIP: the caller sent BYE, CANCEL, or its WebSocket closed; the caller was transferred; no ACK came. */
  | 'bye'
  | 'cancelled'
  | 'flow-closed'
  | 'transferred'
  | 'no-ack';

const TRANSITIONS: Record<CallState, CallState[]> = {
  connecting: ['connected', 'ended'],
  connected: ['ended'],
  ended: [],
};

/** A participant in a call: a WebRTC peer, an RTP trunk leg, an agent, a listener. */
export interface Leg {
  readonly kind: string;
  /** Epoch ms of the last media received on this leg (0: none yet). */
  lastMediaAt(): number;
  mediaReceived(): { packets: number; bytes: number };
  /** Legs that decode: frames the codec had to repair. */
  audioRepairs?(): AudioRepairs;
  close(reason: EndReason): void;
}

/** Frames a decoding leg could not take as they came. */
export interface AudioRepairs {
  /** Lost frames rebuilt from the next packet's in-band FEC (Opus LBRR). */
  fecRecovered: number;
  /** Lost, late or missing frames concealed (codec PLC, or a fade for G.711/G.722). */
  concealed: number;
  /** Packets whose payload the codec rejected (concealed too). */
  decodeErrors: number;
  /** Frames dropped because the codec threads were overloaded (the agent gets no frame that tick). */
  shed: number;
}

export interface CallEvents extends Record<string, unknown[]> {
  state: [state: CallState];
  ended: [reason: EndReason];
}

/**
 * One session: owns its legs, ends once with a reason, and ends itself when no leg has
 * received media for the idle timeout.
 */
export class Call extends TypedEmitter<CallEvents> {
  readonly legs = new Map<string, Leg>();
  readonly createdAt: number;
  connectedAt: number | undefined;
  endReason: EndReason | undefined;
  #state: CallState = 'connecting';
  #idleTimer: TimerHandle | undefined;

  constructor(
    readonly id: string,
    readonly source: SourceIdentity,
    private readonly clock: Clock,
    private readonly idleTimeoutMs: number,
  ) {
    super();
    this.createdAt = clock.now();
    this.#armIdle(idleTimeoutMs);
  }

  get state(): CallState {
    return this.#state;
  }

  addLeg(id: string, leg: Leg): void {
    if (this.#state === 'ended') {
      leg.close(this.endReason ?? 'shutdown');
      return;
    }
    this.legs.set(id, leg);
  }

  /** Forgets a leg that ended on its own (a listener that left); the call goes on. */
  removeLeg(id: string): void {
    this.legs.delete(id);
  }

  markConnected(): void {
    if (this.#state !== 'connecting') return;
    this.connectedAt = this.clock.now();
    this.#transition('connected');
  }

  /** Ends the call and every leg, exactly once. */
  close(reason: EndReason): void {
    if (this.#state === 'ended') return;
    this.endReason = reason;
    if (this.#idleTimer) this.clock.clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    this.#transition('ended');
    for (const leg of this.legs.values()) leg.close(reason);
    // Listeners of 'ended' still see the legs (final counters); the map is emptied after.
    this.emit('ended', reason);
    this.legs.clear();
    this.removeAllListeners();
  }

  /** The agent hung up (or its socket went): the end reason says which. */
  closeByAgent(reason: string): void {
    this.close(reason === 'agent-disconnected' ? 'agent-disconnected' : 'agent-hangup');
  }

  lastMediaAt(): number {
    let last = 0;
    for (const leg of this.legs.values()) last = Math.max(last, leg.lastMediaAt());
    return last;
  }

  #transition(to: CallState): void {
    if (!TRANSITIONS[this.#state].includes(to)) throw new Error(`illegal call transition ${this.#state} -> ${to}`);
    this.#state = to;
    this.emit('state', to);
  }

  // One timer per call, re-armed only when it fires: the packet path just stores a timestamp.
  #armIdle(ms: number): void {
    this.#idleTimer = this.clock.setTimeout(() => {
      const idleFor = this.clock.now() - Math.max(this.createdAt, this.lastMediaAt());
      if (idleFor >= this.idleTimeoutMs) this.close('idle-timeout');
      else this.#armIdle(this.idleTimeoutMs - idleFor);
    }, ms);
  }
}
