import type { Clock, TimerHandle } from '../../core/clock.js';
import { TypedEmitter } from '../../core/events.js';
import { DigestClient, type DigestCredentials } from '../auth/digest-client.js';
import { cancelFor, newBranch, newCallId, newTag, SERVER, tagOf } from '../build.js';
import { Dialog } from '../dialog.js';
import { header, headerList, serializeSipMessage, type SipHeader, type SipRequest, type SipResponse } from '../message.js';
import { T1 } from '../transaction/transaction.js';
import { viaFor, type SipFlow } from '../transport/transport.js';

/** What the UAC needs of the stack: client transactions, and our Contact on a flow. */
export interface UacStack {
  sendRequest(flow: SipFlow, method: string, text: string, branch: string, onResponse: (res: SipResponse, text: string) => void): void;
  contact(flow: SipFlow, user: string): string;
}

export interface InviteUacRequest {
  /** Where the INVITE goes first. */
  flow: SipFlow;
  /** The Request-URI (a registered Contact, a trunk's address). */
  uri: string;
  /** Our From, without a tag (one is added): a name-addr. */
  from: string;
  to: string;
  contactUser: string;
  headers?: SipHeader[];
  /** Our SDP offer. */
  sdp: string;
  /** For a 401/407 (RFC 3261 §22.2): answered once per challenge, never in a loop. */
  credentials?: DigestCredentials;
  /**
   * How long it may ring before we CANCEL and report 408. Without it, Timer C (RFC 3261 §16.6
   * step 11, > 3 min) does the same, restarted by every provisional response.
   */
  ringTimeoutMs?: number;
  /** A 3xx's Contact: the flow and Request-URI to try next, or undefined not to follow it (§8.1.3.4). */
  redirect?: (contact: string) => Promise<{ flow: SipFlow; uri: string } | undefined>;
}

export type InviteUacOutcome =
  | { ok: true; dialog: Dialog; response: SipResponse; flow: SipFlow }
  | { ok: false; status: number; reason: string; response?: SipResponse };

export type InviteUacState = 'calling' | 'proceeding' | 'early' | 'confirmed' | 'cancelling' | 'failed';

/**
 * The legal moves. `calling` again is a retry with credentials or a redirect; `cancelling`
 * waits for the INVITE's final answer (a 2xx may still win the race, and is then hung up).
 */
const INVITE_UAC_MOVES: Record<InviteUacState, InviteUacState[]> = {
  calling: ['calling', 'proceeding', 'early', 'confirmed', 'cancelling', 'failed'],
  proceeding: ['calling', 'proceeding', 'early', 'confirmed', 'cancelling', 'failed'],
  early: ['calling', 'early', 'confirmed', 'cancelling', 'failed'],
  cancelling: ['failed'],
  confirmed: [],
  failed: [],
};

export interface InviteUacEvents extends Record<string, unknown[]> {
  state: [state: InviteUacState];
  /** Every provisional response (100 excepted). */
  provisional: [response: SipResponse];
  /** A 100 Trying: the next hop has the INVITE. */
  trying: [];
}

/** Timer C (RFC 3261 §16.6): more than three minutes. */
const TIMER_C_MS = 181_000;
const MAX_REDIRECTS = 3;

/**
 * An INVITE client (RFC 3261 §13.2): our offer, 401/407 answered with digest, 3xx followed,
 * provisional responses making an early dialog, the 2xx ACKed (each retransmission too, as the
 * UAC core must, §13.2.2.4) and turned into the confirmed dialog; a second 2xx from a fork gets
 * ACK and BYE. `cancel()` gives up (CANCEL once a provisional has come, §9.1); a 2xx that
 * arrives after we gave up is ACKed and hung up.
 */
export class InviteUac extends TypedEmitter<InviteUacEvents> {
  readonly result: Promise<InviteUacOutcome>;
  /** The early dialog, once a provisional response carried a To tag. */
  early: Dialog | undefined;
  #state: InviteUacState = 'calling';
  #resolve!: (o: InviteUacOutcome) => void;
  readonly #callId = newCallId();
  readonly #fromTag = newTag();
  #cseq = 0;
  #flow: SipFlow;
  #uri: string;
  #invite: SipRequest | undefined;
  #provisional = false;
  #timer: TimerHandle | undefined;
  #giveUp: { status: number; reason: string } | undefined;
  /** The INVITE a CANCEL has been sent for. */
  #cancelled: SipRequest | undefined;
  /** Our answers to challenges, by header: a proxy's 407 and the UAS's 401 may both need one (§22.3). */
  readonly #authHeaders = new Map<string, SipHeader>();
  #cancelReason: string | undefined;
  #cancelLate = false;
  #redirects = 0;
  /** Dialogs made by a 2xx, by remote tag (the first is ours; others are forks to hang up). */
  readonly #answered = new Map<string, Dialog>();
  readonly #digest: DigestClient | undefined;

  constructor(
    private readonly stack: UacStack,
    private readonly clock: Clock,
    private readonly req: InviteUacRequest,
  ) {
    super();
    this.#flow = req.flow;
    this.#uri = req.uri;
    this.#digest = req.credentials ? new DigestClient(req.credentials) : undefined;
    this.result = new Promise((resolve) => (this.#resolve = resolve));
  }

  get state(): InviteUacState {
    return this.#state;
  }

  get callId(): string {
    return this.#callId;
  }

  /** The INVITE as last sent (for a CANCEL, for logs). */
  get invite(): SipRequest | undefined {
    return this.#invite;
  }

  start(): this {
    this.#send();
    this.#armTimerC();
    return this;
  }

  /**
   * Gives up on the call with this outcome: CANCEL when one may be sent, else at the first
   * provisional. `why` goes into the CANCEL as an RFC 3326 Reason (e.g. a rota's
   * `SIP;cause=200;text="Call completed elsewhere"`).
   */
  cancel(status = 487, reason = 'Request Terminated', why?: string): void {
    if (this.#state === 'confirmed' || this.#state === 'failed' || this.#state === 'cancelling') return;
    this.#giveUp = { status, reason };
    this.#cancelReason = why;
    this.#stopTimer();
    this.#transition('cancelling');
    if (this.#provisional) this.#sendCancel();
    // §9.1: a CANCEL that brings no final answer within 64*T1 ends the attempt anyway.
    this.#timer = this.clock.setTimeout(() => this.#fail(status, reason), 64 * T1);
  }

  /**
   * Gives up at once, without a CANCEL: there is nothing to send one on (the target's
   * connection closed). A 2xx that still arrives is ACKed and hung up.
   */
  abandon(status: number, reason: string, opts: { cancelLate?: boolean } = {}): void {
    if (this.#state === 'confirmed' || this.#state === 'failed') return;
    this.#giveUp = { status, reason };
    // A next hop that was only slow may still ring: its first provisional then gets our CANCEL (§9.1).
    this.#cancelLate = opts.cancelLate ?? false;
    this.#fail(status, reason);
  }

  #transition(to: InviteUacState): void {
    if (to === this.#state && to !== 'calling') return;
    if (!INVITE_UAC_MOVES[this.#state].includes(to)) throw new Error(`INVITE ${this.#callId}: illegal transition ${this.#state} -> ${to}`);
    this.#state = to;
    this.emit('state', to);
  }

  #send(): void {
    const flow = this.#flow;
    const branch = newBranch();
    this.#cseq++;
    this.#provisional = false;
    const headers: SipHeader[] = [
      { name: 'Via', value: viaFor(flow.transport, branch) },
      { name: 'Max-Forwards', value: '70' },
      { name: 'From', value: `${this.req.from};tag=${this.#fromTag}` },
      { name: 'To', value: this.req.to },
      { name: 'Call-ID', value: this.#callId },
      { name: 'CSeq', value: `${this.#cseq} INVITE` },
      { name: 'Contact', value: this.stack.contact(flow, this.req.contactUser) },
      ...this.#authHeaders.values(),
      ...(this.req.headers ?? []),
      { name: 'User-Agent', value: SERVER },
      { name: 'Content-Type', value: 'application/sdp' },
    ];
    const invite: SipRequest = { kind: 'request', method: 'INVITE', uri: this.#uri, version: 'SIP/2.0', headers, body: Buffer.from(this.req.sdp) };
    this.#invite = invite;
    this.stack.sendRequest(flow, 'INVITE', serializeSipMessage(invite), branch, (res) => this.#onResponse(invite, flow, res));
  }

  #onResponse(invite: SipRequest, flow: SipFlow, res: SipResponse): void {
    // A response to an INVITE we replaced (retried with credentials, redirected) only matters if it is a 2xx.
    if (invite !== this.#invite && (res.status < 200 || res.status >= 300)) return;
    if (res.status < 200) return this.#onProvisional(res);
    if (res.status < 300) return this.#onSuccess(invite, flow, res);
    if (this.#state === 'confirmed' || this.#state === 'failed') return;
    if (this.#state === 'cancelling') return this.#fail(this.#giveUp!.status, this.#giveUp!.reason, res);
    if ((res.status === 401 || res.status === 407) && this.#retryWithCredentials(res)) return;
    if (res.status >= 300 && res.status < 400 && this.req.redirect && this.#redirects < MAX_REDIRECTS) {
      void this.#followRedirect(res);
      return;
    }
    this.#fail(res.status, res.reason, res);
  }

  #onProvisional(res: SipResponse): void {
    this.#provisional = true;
    if (this.#state === 'cancelling' || (this.#state === 'failed' && this.#cancelLate)) return this.#sendCancel();
    if (this.#state === 'confirmed' || this.#state === 'failed') return;
    if (res.status === 100) return void this.emit('trying');
    // Timer C restarts with each provisional response (§16.6 step 11) unless the ring time is fixed.
    if (this.req.ringTimeoutMs === undefined) this.#armTimerC();
    if (tagOf(header(res, 'To'))) {
      this.early = Dialog.uac(this.#invite!, res, this.#flow.transport);
      this.#transition('early');
    } else if (this.#state === 'calling') this.#transition('proceeding');
    this.emit('provisional', res);
  }

  /** §13.2.2.4: every 2xx is ACKed; the first makes the dialog, a fork's is hung up, a late one too. */
  #onSuccess(invite: SipRequest, flow: SipFlow, res: SipResponse): void {
    const tag = tagOf(header(res, 'To')) ?? '';
    let dialog = this.#answered.get(tag);
    const repeat = dialog !== undefined;
    dialog ??= Dialog.uac(invite, res, flow.transport);
    this.#answered.set(tag, dialog);
    flow.send(dialog.ack(Number(/^\s*(\d+)/.exec(header(res, 'CSeq') ?? '')?.[1] ?? this.#cseq)));
    if (repeat) return;
    if (this.#state === 'confirmed' || this.#state === 'failed' || this.#state === 'cancelling') {
      // A fork that answered second, or an answer after we gave up: hang it up at once.
      const bye = dialog.request('BYE', [{ name: 'Reason', value: `SIP;cause=${this.#state === 'confirmed' ? 200 : this.#giveUp?.status ?? 487};text="${this.#state === 'confirmed' ? 'answered elsewhere' : 'the caller gave up'}"` }]);
      this.stack.sendRequest(flow, 'BYE', bye.text, bye.branch, () => undefined);
      if (this.#state === 'cancelling') this.#fail(this.#giveUp!.status, this.#giveUp!.reason, res);
      return;
    }
    this.#stopTimer();
    this.#transition('confirmed');
    this.#resolve({ ok: true, dialog, response: res, flow });
  }

  #retryWithCredentials(res: SipResponse): boolean {
    if (!this.#digest) return false;
    const name = res.status === 401 ? 'WWW-Authenticate' : 'Proxy-Authenticate';
    const challenges = headerList(res, name);
    const name401 = res.status === 401 ? 'Authorization' : 'Proxy-Authorization';
    if (!this.#digest.shouldRetry(challenges, this.#authHeaders.get(name401)?.value)) return false;
    const answer = this.#digest.answer(challenges, { method: 'INVITE', uri: this.#uri, body: this.req.sdp });
    if (!answer) return false;
    this.#authHeaders.set(name401, { name: name401, value: answer.value });
    this.#transition('calling');
    this.#send();
    return true;
  }

  async #followRedirect(res: SipResponse): Promise<void> {
    const contact = headerList(res, 'Contact')[0];
    const next = contact ? await this.req.redirect!(contact) : undefined;
    if (!next || this.#state === 'cancelling' || this.#state === 'failed') {
      // A cancel() while the redirect was looked up said what the outcome is (a ring timeout's
      // 408, the caller leaving), as it does when the final answer comes while cancelling.
      if (this.#state === 'cancelling') this.#fail(this.#giveUp!.status, this.#giveUp!.reason, res);
      else if (this.#state !== 'failed') this.#fail(res.status, res.reason, res);
      return;
    }
    this.#redirects++;
    this.#flow = next.flow;
    this.#uri = next.uri;
    this.#authHeaders.clear();
    this.#transition('calling');
    this.#send();
  }

  #sendCancel(): void {
    // One CANCEL per INVITE (§9.1): repeated 180s while cancelling must not make more.
    if (!this.#invite || this.#cancelled === this.#invite) return;
    this.#cancelled = this.#invite;
    const { text, branch } = cancelFor(this.#invite, this.#cancelReason ? [{ name: 'Reason', value: this.#cancelReason }] : []);
    this.stack.sendRequest(this.#flow, 'CANCEL', text, branch, () => undefined);
  }

  #armTimerC(): void {
    this.#stopTimer();
    this.#timer = this.clock.setTimeout(() => this.cancel(408, 'Request Timeout (no answer)'), this.req.ringTimeoutMs ?? TIMER_C_MS);
  }

  #stopTimer(): void {
    if (this.#timer) this.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #fail(status: number, reason: string, response?: SipResponse): void {
    if (this.#state === 'failed' || this.#state === 'confirmed') return;
    this.#stopTimer();
    this.#transition('failed');
    this.#resolve({ ok: false, status, reason, response });
  }
}
