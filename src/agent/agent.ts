import type { AudioFrame } from '../audio/frame.js';
import type { MarkResult } from '../audio/pacer.js';
import { TypedEmitter } from '../core/events.js';

export type AgentSampleRate = 8000 | 16000 | 24000 | 48000;

export interface AgentSessionEvents extends Record<string, unknown[]> {
  /** 20 ms of the caller's audio, decoded, at the agent's rate. */
  frame: [frame: AudioFrame];
  dtmf: [digit: string];
  /** A JSON message from the caller's data channel. */
  message: [data: unknown];
  /** The caller handed the agent to someone else (a SIP REFER); the session goes on with them. */
  transferred: [to: string];
  ended: [reason: string];
}

/**
 * Why a transfer did not happen: the SIP status the target (or voxgate) answered, e.g. 486 busy,
 * 480 offline, 408 no answer, 404 unknown; the caller stays with the agent.
 */
export class TransferError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
  ) {
    super(`the transfer failed: ${status} ${reason}`);
    this.name = 'TransferError';
  }
}

/** Who to transfer to: a registered user (`alice`, `sip:alice@domain`), a phone number, or several rung at once. */
export type TransferTarget = string | readonly string[];

export interface TransferOptions {
  /** How long the targets may ring before the transfer fails with 408 (default 30 s). */
  timeoutSeconds?: number;
  /**
   * The caller ID a phone-number target sees. `ours` (default): the trunk's number (or the number
   * the call came in on). `caller`: the transferred phone caller's own number, passed through as
   * Twilio's `<Dial>` does when forwarding; signed with STIR/SHAKEN attestation C (voxgate is the
   * gateway, not the originator, and cannot vouch for it). A caller without a number gets `ours`.
   */
  callerId?: 'ours' | 'caller';
}

/**
 * A call voxgate places (`POST /api/calls`, `gateway.calls.dial`, an agent's `session.dial`):
 * to an E.164 number through a trunk, or a registered user `sip:alice@<domain>`.
 */
export interface DialRequest {
  to: string;
  /** The caller ID (E.164), one of the trunk's `outbound.numbers`; default its first. */
  from?: string;
  /** The trunk for a number; default: `sip.outboundRoutes` by prefix. */
  trunk?: string;
  /** Who talks to whoever answers (default: the gateway's agent; for `session.dial`, this session's). */
  agent?: string | Record<string, unknown>;
  /** How long it may ring (1-300 s, default 30). */
  timeoutSeconds?: number;
  customParameters?: Record<string, string>;
  /** The agent hears a 183's early media. */
  earlyMedia?: boolean;
}

/** A placed call as it stands (the whole view: `GET /api/calls/{id}`). */
export interface DialedCall {
  id: string;
  state: string;
}

/** What voxgate does on the agent's behalf; implemented by the call's agent leg. */
export interface AgentControl {
  play(samples: Int16Array): void;
  clear(): void;
  mark(name: string): Promise<MarkResult>;
  send(data: unknown): void;
  hangup(reason: string): void;
  transfer(target: TransferTarget, opts?: TransferOptions): Promise<void>;
  sendDtmf(digits: string): boolean;
  /** Places another call (its own session for the agent when answered); `id`: the session id it is to have (a worker chose it). */
  dial(req: DialRequest, id?: string): DialedCall;
  /** Audio queued and not yet played, ms. */
  queuedMs(): number;
}

/**
 * Who is on the call, as the signalling said: for a phone call through a trunk, the numbers,
 * the caller ID and the carrier's headers; for every call, the custom parameters its routing
 * chose (the routing webhook's reply). Plain data: it can cross to a worker as it is.
 */
export interface CallDetails {
  /** The caller: E.164 for a phone, `anonymous` when withheld (RFC 3323). */
  from?: string;
  /** The called number (E.164) or user part. */
  to?: string;
  trunk?: string;
  callerName?: string;
  /** Where `from` was read (P-Asserted-Identity, ..., From). */
  callerIdSource?: string;
  /** RFC 5806 Diversion values. */
  diversion?: string[];
  /** The carrier's X-* headers. */
  headers?: Record<string, string>;
  /** STIR/SHAKEN (RFC 8224) on a trunk that verifies: the verdict, the claimed attestation and calling number. */
  verstat?: 'TN-Validation-Passed' | 'TN-Validation-Failed' | 'No-TN-Validation';
  attest?: 'A' | 'B' | 'C';
  origTn?: string;
  customParameters: Record<string, string>;
}

/**
 * The agent's handle on one call (agent-protocols.md): frames in, paced audio out, barge-in,
 * marks, DTMF, data messages, hang-up. Listeners that throw are logged and never stop media.
 */
export class AgentSession extends TypedEmitter<AgentSessionEvents> {
  #ended = false;

  constructor(
    readonly callId: string,
    readonly source: { name: string; kind: string },
    readonly sampleRate: AgentSampleRate,
    private readonly control: AgentControl,
    readonly details: CallDetails = { customParameters: {} },
  ) {
    super();
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Who called, and how far to trust it: the caller ID and, on a verifying trunk, its STIR/SHAKEN verdict. */
  get caller(): { number: string | undefined; name: string | undefined; verstat: CallDetails['verstat']; attest: CallDetails['attest']; origTn: string | undefined } {
    const d = this.details;
    return { number: d.from, name: d.callerName, verstat: d.verstat, attest: d.attest, origTn: d.origTn };
  }

  /** Queues audio (any length, 16-bit mono at `sampleRate`); voxgate paces it in real time. */
  play(samples: Int16Array): void {
    if (!this.#ended) this.control.play(samples);
  }

  /** Audio played and not yet sent, in ms: an agent that keeps up with the caller keeps it low. */
  get queuedMs(): number {
    return this.#ended ? 0 : this.control.queuedMs();
  }

  /** Barge-in: everything queued is dropped; output is silent from the next frame. */
  clear(): void {
    if (!this.#ended) this.control.clear();
  }

  /** Resolves when the audio queued before it has been played, or dropped by clear(). */
  mark(name: string): Promise<MarkResult> {
    return this.#ended ? Promise.resolve('cleared') : this.control.mark(name);
  }

  /** Sends a JSON message to the caller (data channel), if it has one. */
  send(data: unknown): void {
    if (!this.#ended) this.control.send(data);
  }

  hangup(reason = 'agent-hangup'): void {
    if (!this.#ended) this.control.hangup(reason);
  }

  /**
   * Hands the caller to a person: a SIP user or a phone number (dialled on a trunk), or a list
   * rung at once where the first to answer gets the caller. Rejects with a TransferError (the
   * caller then stays with the agent).
   */
  transfer(target: TransferTarget, opts?: TransferOptions): Promise<void> {
    return this.control.transfer(target, opts);
  }

  /**
   * Places a call to another party (a number through a trunk, a registered user): a new session
   * that this agent (or `req.agent`) gets when they answer, its `details.customParameters`
   * carrying `parentSession` (this call's id). Returns at once (`state: 'dialing'`); throws a
   * VoxgateError for a bad request, as `POST /api/calls` answers 4xx.
   */
  dial(req: DialRequest): DialedCall {
    if (this.#ended) throw new Error('the session has ended');
    return this.control.dial(req);
  }

  /** voxgate side: dial() for an agent on a worker, under the session id the worker gave it. */
  placeCall(req: DialRequest, id?: string): DialedCall {
    if (this.#ended) throw new Error('the session has ended');
    return this.control.dial(req, id);
  }

  /**
   * Sends digits to the caller (0-9, *, #, A-D): RFC 4733 telephone-events where the caller's
   * media has them, queued one after another; false when none can be sent.
   */
  sendDtmf(digits: string): boolean {
    if (this.#ended || !/^[0-9*#A-Da-d]+$/.test(digits)) return false;
    return this.control.sendDtmf(digits.toUpperCase());
  }

  /** voxgate side: hands the agent a decoded frame. */
  deliverFrame(frame: AudioFrame): void {
    if (!this.#ended) this.emit('frame', frame);
  }

  deliverDtmf(digit: string): void {
    if (!this.#ended) this.emit('dtmf', digit);
  }

  deliverMessage(data: unknown): void {
    if (!this.#ended) this.emit('message', data);
  }

  deliverTransferred(to: string): void {
    if (!this.#ended) this.emit('transferred', to);
  }

  end(reason: string): void {
    if (this.#ended) return;
    this.emit('ended', reason);
    this.#ended = true;
    this.removeAllListeners();
  }
}

/** An agent: told about each call once; it subscribes to the session's events. */
export interface Agent {
  readonly name: string;
  readonly sampleRate: AgentSampleRate;
  attach(session: AgentSession): void | Promise<void>;
  /**
   * An agent that runs elsewhere (a NATS worker) takes its place for a call before the call is
   * answered; a rejection (VoxgateError `VG_AGENT_NOT_READY`) refuses the call: WHIP 503, SIP 480.
   */
  reserve?(call: { id: string; source: { name: string; kind: string }; details?: CallDetails }): Promise<void>;
  /** The call reserved for did not happen (it ended before attach): the place is given back. */
  unreserve?(): void;
}
