import { AgentSession, type Agent, type CallDetails, type DialedCall, type DialRequest, type TransferOptions, type TransferTarget } from '../agent/agent.js';
import type { MarkResult } from '../audio/pacer.js';
import type { AudioFrame } from '../audio/frame.js';
import { Pacer } from '../audio/pacer.js';
import type { Clock } from '../core/clock.js';
import type { AgentParty, EndReason, LegCounters } from './call.js';

export interface AgentLegControl {
  clock: Clock;
  /** The agent hung up (reason as the agent gave it). */
  hangup(reason: string): void;
  /** The agent's transfer(target): resolves when the caller is with the target, rejects with why not. */
  transfer(target: TransferTarget, opts?: TransferOptions): Promise<void>;
  /** JSON from the agent to the caller (its data channel) and, for turns and text, to listeners. */
  send(data: unknown): void;
  /** Digits to whoever the agent talks with (RFC 4733); false when their media cannot carry them. */
  sendDtmf(digits: string): boolean;
  /** The agent places another call. */
  dial(req: DialRequest, id?: string): DialedCall;
  /** Each mark as it is played or cleared, whether or not the agent tells anyone (the call's timeline). */
  marked?(name: string, result: MarkResult): void;
}

/**
 * The agent in a call: the AgentSession it was given, the pacer its audio queues in, and
 * barge-in. As a FrameSource it hands the caller's endpoint one frame per tick; a clear()
 * voids frames already taken and not yet sent, so no agent audio is heard after a barge-in.
 */
export class AgentLeg implements AgentParty {
  readonly kind = 'agent' as const;
  readonly session: AgentSession;
  readonly pacer: Pacer;
  /** ms from play() into an idle pacer to that audio's first frame sent (benchmarks read it). */
  readonly playToSendMs: number[] = [];
  /** ms from each clear() to the first silent frame sent after it (barge-in latency). */
  readonly clearToSilenceMs: number[] = [];
  /** Bumped by clear(): frames taken before it and still at the codec are not sent. */
  #clearEpoch = 0;
  readonly #takenIn = new WeakMap<Int16Array, number>();
  #playAt: number | undefined;
  #clearedAt: number | undefined;
  #framesAfterClear = 0;
  #closed = false;

  constructor(
    readonly agent: Agent,
    callId: string,
    source: { name: string; kind: string },
    private readonly control: AgentLegControl,
    details?: CallDetails,
  ) {
    this.pacer = new Pacer(agent.sampleRate);
    const { clock } = control;
    this.session = new AgentSession(callId, source, agent.sampleRate, {
      play: (s) => {
        if (this.pacer.queuedMs === 0) this.#playAt ??= clock.now();
        this.pacer.play(s);
      },
      clear: () => {
        this.pacer.clear();
        this.#clearEpoch++;
        this.#clearedAt = clock.now();
        this.#playAt = undefined; // audio dropped before it was heard: the next play() starts the measure
      },
      mark: (name) => {
        const done = this.pacer.mark(name);
        if (control.marked) void done.then((result) => control.marked!(name, result));
        return done;
      },
      send: (data) => control.send(data),
      hangup: (reason) => control.hangup(reason),
      transfer: (target, opts) => control.transfer(target, opts),
      sendDtmf: (digits) => control.sendDtmf(digits),
      dial: (req, id) => control.dial(req, id),
      queuedMs: () => this.pacer.queuedMs,
    }, details);
  }

  /** Starts the agent (its attach); a failing agent is the caller's to end the call for. */
  async start(): Promise<void> {
    await this.agent.attach(this.session);
  }

  get sampleRate(): number {
    return this.agent.sampleRate;
  }

  describe(): string {
    return `Agent(${this.agent.name}@${this.agent.sampleRate / 1000}k)`;
  }

  writeFrame(frame: AudioFrame): void {
    this.session.deliverFrame(frame);
  }

  deliverDtmf(digit: string): void {
    this.session.deliverDtmf(digit);
  }

  deliverMessage(data: unknown): void {
    this.session.deliverMessage(data);
  }

  next(): Int16Array | undefined {
    const frame = this.pacer.next();
    if (frame) this.#takenIn.set(frame, this.#clearEpoch);
    return frame;
  }

  voided(frame: Int16Array): boolean {
    return this.#takenIn.get(frame) !== this.#clearEpoch;
  }

  sent(frame: Int16Array | undefined): void {
    const sentAt = this.control.clock.now();
    if (frame && this.#playAt !== undefined) {
      this.playToSendMs.push(sentAt - this.#playAt);
      if (this.playToSendMs.length > 3000) this.playToSendMs.splice(0, 1000);
      this.#playAt = undefined;
    }
    if (this.#clearedAt === undefined) return;
    if (frame) {
      this.#framesAfterClear++;
      return;
    }
    const ms = sentAt - this.#clearedAt;
    this.clearToSilenceMs.push(ms);
    if (this.clearToSilenceMs.length > 3000) this.clearToSilenceMs.splice(0, 1000);
    // framesBeforeSilence: agent audio sent between clear() and the first silent frame (0: the very next frame was silent).
    this.control.send({ type: 'cleared', silenceAfterMs: ms, framesBeforeSilence: this.#framesAfterClear });
    this.#clearedAt = undefined;
    this.#framesAfterClear = 0;
  }

  lastMediaAt(): number {
    return 0; // the agent's audio never keeps a call alive; the parties' media does
  }

  counters(): LegCounters {
    return { packetsReceived: 0, bytesReceived: 0, packetsSent: 0, bytesSent: 0 };
  }

  /** The agent leaves the call (the call ended, or it handed the caller to someone else). */
  close(reason: EndReason): void {
    if (this.#closed) return;
    this.#closed = true;
    this.pacer.clear();
    this.session.end(reason);
  }
}
