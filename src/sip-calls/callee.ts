import type { CodecName } from '../core/config.js';
import { TypedEmitter } from '../core/events.js';
import type { Logger } from '../core/logger.js';
import type { Call } from '../call/call.js';
import { newSendStream, type SendStream } from '../call/start-call.js';
import type { MediaFormat } from '../media/endpoint.js';
import { planAnswer, type AnswerPlan } from '../sdp/codec-policy.js';
import { parseOffer } from '../sdp/offer.js';
import { planRtpAnswer, type RtpAnswerPlan } from '../sdp/profile-rtp.js';
import { REASONS } from '../sip/build.js';
import type { Dialog } from '../sip/dialog.js';
import type { Attestation } from '../sip/identity/passport.js';
import { isE164 } from '../sip/phone-number.js';
import type { SipHeader, SipResponse } from '../sip/message.js';
import { InviteUac, type InviteUacOutcome } from '../sip/ua/invite-uac.js';
import type { SipFlow } from '../sip/transport/transport.js';
import type { NegotiatedTransport } from '../transport/factory.js';
import type { RtpTransports } from '../transport/rtp-udp/factory.js';
import type { RtpUdpTransport } from '../transport/rtp-udp/rtp-udp-transport.js';
import { answerFromOffer, type SipCallsContext } from './context.js';
import { DIALOG_ALLOW } from './dialog-messages.js';
import { q850Of, TrunkInvite } from './trunk/outbound.js';
import type { Trunk } from './trunk/trunks.js';

/**
 * RFC 4028 §7.1 in the INVITEs we send: we support timers and propose half an hour; the 2xx
 * says who refreshes (carriers tear down calls whose refresh never comes).
 */
const SESSION_TIMER_ASK = [
  { name: 'Supported', value: 'timer' },
  { name: 'Session-Expires', value: '1800' },
  { name: 'Min-SE', value: '90' },
];

/** A person voxgate calls answered: the dialog, its media and what was agreed. */
export interface Answered {
  ok: true;
  dialog: Dialog;
  flow: SipFlow;
  transport: NegotiatedTransport;
  plan: AnswerPlan;
  /** The stream our side of their media sends. */
  out: SendStream;
  /** Our SDP as the answer a re-INVITE of theirs gets back. */
  answerSdp: string;
  /** Who they are (a number, a user) and who we are in the dialog. */
  party: string;
  localUser: string;
  /** `sip-trunk` (plain RTP through a trunk) or `sip-ws` (a registered browser). */
  kind: 'sip-trunk' | 'sip-ws';
  response: SipResponse;
}

export interface Unanswered {
  ok: false;
  status: number;
  reason: string;
  /** The Q.850 cause of the final response's Reason header (RFC 3326). */
  cause: number | undefined;
}

export type CalleeOutcome = Answered | Unanswered;

export interface CalleeEvents extends Record<string, unknown[]> {
  /** 180/181/182 (and a 183 without SDP): its status and reason phrase. */
  ringing: [status: number, reason: string];
  /** A 183 (or 180) with SDP: their early media flows on `transport` with this plan. */
  'early-media': [transport: NegotiatedTransport, plan: AnswerPlan, out: SendStream];
  /** The INVITE went out (again, on failover): its Call-ID. */
  dialing: [callId: string];
}

/**
 * One person voxgate calls, whatever reaches them: a phone number through a trunk (plain RTP,
 * our offer in the trunk's codecs, the caller's own first so a bridge can forward packets) or
 * a registered user (WebRTC, on the flow they registered on). Early media, the answer and its
 * SDP are handled here; who they are bridged to is the caller's business.
 */
export abstract class Callee extends TypedEmitter<CalleeEvents> {
  abstract readonly result: Promise<CalleeOutcome>;
  /** `why`: an RFC 3326 Reason for the CANCEL (a rota's `Call completed elsewhere`). */
  abstract cancel(status?: number, reason?: string, why?: string): void;
  /** A connection closed: a call ringing on it is given up (or failed over). */
  abstract flowClosed(flow: SipFlow): void;
  abstract readonly target: string;
  /** The SIP Call-ID now ringing. */
  abstract readonly callId: string | undefined;
}

/** Codecs to offer a trunk for a party already in `format`: theirs first when the trunk takes it. */
export function trunkOfferCodecs(trunkCodecs: readonly CodecName[], first: CodecName | undefined): CodecName[] {
  return first && trunkCodecs.includes(first) ? [first, ...trunkCodecs.filter((c) => c !== first)] : [...trunkCodecs];
}

/** A phone number through a trunk's `outbound` section. */
export class NumberCallee extends Callee {
  readonly result: Promise<CalleeOutcome>;
  #invite: TrunkInvite | undefined;
  #cancelled: { status: number; reason: string } | undefined;

  constructor(
    private readonly ctx: SipCallsContext,
    private readonly rtp: RtpTransports,
    readonly trunk: Trunk,
    readonly target: string,
    private readonly opts: { from: string; callerName?: string; ringTimeoutMs: number; codecs: CodecName[]; log: Logger; headers?: SipHeader[]; attest?: Attestation },
  ) {
    super();
    this.result = this.#run();
  }

  get callId(): string | undefined {
    return this.#invite?.uac?.callId;
  }

  /** Read through a method: a cancel() can come across an await. */
  #gaveUp(): { status: number; reason: string } | undefined {
    return this.#cancelled;
  }

  cancel(status = 487, reason = 'Request Terminated', why?: string): void {
    this.#cancelled ??= { status, reason };
    this.#invite?.cancel(status, reason, why);
  }

  flowClosed(flow: SipFlow): void {
    this.#invite?.flowClosed(flow);
  }

  async #run(): Promise<CalleeOutcome> {
    const outbound = this.trunk.config.outbound!;
    const { deps } = this.ctx;
    const out = newSendStream();
    const carrierHost = this.#firstHost();
    let transport: RtpUdpTransport;
    try {
      transport = await this.rtp.offer(this.opts.codecs, carrierHost);
    } catch (err) {
      const status = (err as { sipStatus?: number }).sipStatus ?? 503;
      return { ok: false, status, reason: `${REASONS[status] ?? 'Service Unavailable'} (${(err as Error).message})`, cause: undefined };
    }
    const gaveUp = this.#gaveUp();
    if (gaveUp) {
      transport.close();
      return { ok: false, ...gaveUp, cause: undefined };
    }
    // RFC 8224: a trunk that signs never sends a call unsigned.
    let identity: SipHeader[] = [];
    if (this.trunk.config.stirShaken?.sign) {
      try {
        identity = await deps.stir!.signer!.headers(this.opts.from, this.target, deps.clock.now(), ...(this.opts.attest ? [this.opts.attest] : []));
      } catch (err) {
        transport.close();
        this.opts.log.error({ err, trunk: this.trunk.name }, 'the INVITE could not be signed');
        return { ok: false, status: 500, reason: 'Server Internal Error (the call could not be signed)', cause: undefined };
      }
    }
    const invite = new TrunkInvite({ stack: deps.sip, clock: deps.clock, log: this.opts.log }, { name: this.trunk.name, outbound }, {
      to: this.target,
      from: this.opts.from,
      ...(this.opts.callerName ? { callerName: this.opts.callerName } : {}),
      sdp: transport.localSdp,
      ringTimeoutMs: this.opts.ringTimeoutMs,
      headers: [...(this.opts.headers ?? []), ...identity, { name: 'Allow', value: DIALOG_ALLOW }, ...SESSION_TIMER_ASK],
    });
    this.#invite = invite;
    let early = false;
    invite.on('attempt', (_address, callId) => {
      // A new address: its own early media (if any) says where to send.
      early = false;
      this.emit('dialing', callId);
    });
    invite.on('provisional', (res) => {
      const sdp = res.body.length ? res.body.toString('utf8') : '';
      if (!sdp || early) return void this.emit('ringing', res.status, res.reason);
      // RFC 3261 §13.2.1 / RFC 3960: the SDP of a provisional is the answer; its media is early media.
      try {
        const plan = planRtpAnswer(parseOffer(sdp), { codecs: this.opts.codecs, encryption: 'none' });
        transport.update(plan.rtp, plan.audio.direction, transport.localSdp);
        transport.answered();
        early = true;
        this.emit('early-media', transport, plan, out);
      } catch (err) {
        this.opts.log.info({ err, trunk: this.trunk.name }, 'early media SDP we cannot use; waiting for the answer');
        this.emit('ringing', res.status, res.reason);
      }
    });
    invite.start();
    const outcome = await invite.result;
    if (!outcome.ok) {
      transport.close();
      return { ok: false, status: outcome.status, reason: outcome.reason, cause: outcome.cause };
    }
    const answer = outcome.response.body.toString('utf8');
    let plan: RtpAnswerPlan;
    try {
      plan = planRtpAnswer(parseOffer(answer), { codecs: this.opts.codecs, encryption: 'none' });
    } catch (err) {
      this.opts.log.info({ err, trunk: this.trunk.name }, 'the carrier answered with SDP we cannot use');
      hangUp(this.ctx, outcome, 488, 'unusable answer');
      transport.close();
      return { ok: false, status: 488, reason: 'Not Acceptable Here (unusable answer)', cause: undefined };
    }
    transport.update(plan.rtp, plan.audio.direction, transport.localSdp);
    transport.answered();
    const fromUser = outbound.callerIdHeader === 'from' ? this.opts.from : (outbound.fromUser ?? this.opts.from);
    return {
      ok: true,
      dialog: outcome.dialog,
      flow: outcome.flow,
      transport,
      plan,
      out,
      answerSdp: transport.localSdp,
      party: this.target,
      localUser: fromUser,
      kind: 'sip-trunk',
      response: outcome.response,
    };
  }

  #firstHost(): string {
    const a = [this.trunk.config.outbound!.address].flat()[0]!;
    return /^\[([^\]]+)\]/.exec(a)?.[1] ?? a.replace(/:\d+$/, '');
  }
}

/**
 * What a registered user is told about the phone caller handed to them, as terminating carriers
 * present it: RFC 3325's P-Asserted-Identity with the caller's number and the STIR/SHAKEN verdict
 * as `verstat` (3GPP TS 24.229 §7.2A.20), when the trunk verified. `verstat` is a tel URI
 * parameter, so it goes in the user part of a `user=phone` SIP URI (RFC 3261 §19.1.6):
 * `<sip:+15557654321;verstat=TN-Validation-Passed@domain;user=phone>`. Only for a carrier's call
 * with a number (not a withheld one, not a call we placed).
 */
export function assertedPhoneCaller(ctx: SipCallsContext, trunk: Call['trunk']): SipHeader[] {
  if (trunk?.direction !== 'inbound' || !isE164(trunk.from)) return [];
  return [{ name: 'P-Asserted-Identity', value: `<sip:${trunk.from}${trunk.verstat ? `;verstat=${trunk.verstat}` : ''}@${ctx.deps.domain};user=phone>` }];
}

/** A registered user (a browser on SIP over WebSocket, a phone), called where they registered. */
export class UserCallee extends Callee {
  readonly result: Promise<CalleeOutcome>;
  #uac: InviteUac | undefined;
  #flow: SipFlow | undefined;
  #cancelled: { status: number; reason: string } | undefined;

  constructor(
    private readonly ctx: SipCallsContext,
    /** The user part, in our domain. */
    readonly target: string,
    private readonly opts: { id: string; format: MediaFormat | undefined; ringTimeoutMs: number; localUser: string; log: Logger; headers?: SipHeader[] },
  ) {
    super();
    this.result = this.#run();
  }

  get callId(): string | undefined {
    return this.#uac?.callId;
  }

  /** Read through a method: a cancel() can come across an await. */
  #gaveUp(): { status: number; reason: string } | undefined {
    return this.#cancelled;
  }

  cancel(status = 487, reason = 'Request Terminated', why?: string): void {
    this.#cancelled ??= { status, reason };
    this.#uac?.cancel(status, reason, why);
  }

  flowClosed(flow: SipFlow): void {
    if (flow === this.#flow && this.#uac && this.#uac.state !== 'confirmed' && this.#uac.state !== 'failed') {
      this.#uac.abandon(480, 'Temporarily Unavailable (the target disconnected)');
    }
  }

  async #run(): Promise<CalleeOutcome> {
    const { deps } = this.ctx;
    const uri = this.ctx.aor(this.target);
    const where = await deps.sip.locate(this.target);
    if (this.#cancelled) return { ok: false, ...this.#cancelled, cause: undefined };
    if ('status' in where) return { ok: false, status: where.status, reason: where.reason, cause: undefined };
    const out = newSendStream();
    let peer;
    try {
      peer = await deps.transports.offer(this.opts.id, offerPlan(this.opts.format), out);
    } catch (err) {
      this.opts.log.error({ err }, 'no offer could be made for the call');
      return { ok: false, status: 500, reason: 'Server Internal Error (no offer could be made)', cause: undefined };
    }
    const gaveUp = this.#gaveUp();
    if (gaveUp) {
      peer.close();
      return { ok: false, ...gaveUp, cause: undefined };
    }
    const uac = new InviteUac(deps.sip, deps.clock, {
      flow: where.flow,
      uri: where.binding.contact,
      from: `<${this.ctx.aor(this.opts.localUser)}>`,
      to: `<${uri}>`,
      contactUser: this.opts.localUser,
      sdp: peer.localSdp,
      ringTimeoutMs: this.opts.ringTimeoutMs,
      headers: [...(this.opts.headers ?? []), { name: 'Allow', value: DIALOG_ALLOW }, ...SESSION_TIMER_ASK],
    });
    this.#uac = uac;
    this.#flow = where.flow;
    uac.on('provisional', (res) => this.emit('ringing', res.status, res.reason));
    uac.start();
    this.emit('dialing', uac.callId);
    deps.sip.audit({ action: 'sip.invite', outcome: 'ok', status: 0, user: this.opts.localUser, target: uri, by: 'voxgate', remote: where.flow.remote });
    const outcome = await uac.result;
    if (!outcome.ok) {
      peer.close();
      return { ok: false, status: outcome.status, reason: outcome.reason, cause: q850Of(outcome.response) };
    }
    const answer = outcome.response.body.toString('utf8');
    let plan: AnswerPlan;
    try {
      plan = planAnswer(parseOffer(answer), { codecs: answerCodecs(this.opts.format), allowSendRecv: true, role: 'ingest' });
      peer.acceptAnswer(answer);
    } catch (err) {
      this.opts.log.info({ err }, 'the person answered with SDP we cannot use');
      hangUp(this.ctx, outcome, 488, 'unusable answer');
      peer.close();
      return { ok: false, status: 488, reason: 'Not Acceptable Here (unusable answer)', cause: undefined };
    }
    return {
      ok: true,
      dialog: outcome.dialog,
      flow: outcome.flow,
      transport: peer,
      plan,
      out,
      answerSdp: answerFromOffer(peer.localSdp, answer),
      party: this.target,
      localUser: this.opts.localUser,
      kind: 'sip-ws',
      response: outcome.response,
    };
  }
}

/** An answer nobody will take (the caller left, the call could not start): BYE, and its media closed. */
export function dropAnswered(ctx: SipCallsContext, a: Answered, text: string): void {
  hangUp(ctx, a, 487, text);
  a.transport.close();
}

/** BYE right after the ACK: an answer we cannot use, a caller who left while it rang (RFC 3261 §15). */
export function hangUp(ctx: SipCallsContext, answered: Extract<InviteUacOutcome, { ok: true }> | Answered, cause: number, text: string): void {
  const bye = answered.dialog.request('BYE', [{ name: 'Reason', value: `SIP;cause=${cause};text="${text}"` }]);
  ctx.deps.sip.sendRequest(answered.flow, 'BYE', bye.text, bye.branch, () => undefined);
}

/** How long a person voxgate calls for a transfer may ring before it gives up (408). */
export const TRANSFER_RING_MS = 30_000;

/** The codecs a person's leg may use, in the order we prefer them after the caller's own. */
export const BRIDGE_CODECS: readonly CodecName[] = ['opus', 'g722', 'pcmu', 'pcma'];

/** RFC 3551's static payload types, and Opus where browsers put it. */
const PAYLOAD_TYPE: Record<CodecName, number> = { opus: 111, g722: 9, pcmu: 0, pcma: 8 };
const CLOCK_RATE: Record<CodecName, number> = { opus: 48000, g722: 8000, pcmu: 8000, pcma: 8000 };

/**
 * Our offer for a call we place for an existing caller: the caller's codec first (so both legs
 * can be forwarded without transcoding), then the others we can transcode to, with
 * telephone-event at each clock rate offered.
 */
export function offerPlan(format: MediaFormat | undefined): AnswerPlan {
  const teFor = (rate: number) => ({ payloadType: rate === 48000 ? 101 : 126, clockRate: rate });
  const first = format?.codec ?? 'opus';
  const seen = new Set<number>([CLOCK_RATE[first]]);
  const alternatives = BRIDGE_CODECS.filter((c) => c !== first).map((codec) => {
    const rate = CLOCK_RATE[codec];
    const te = seen.has(rate) ? undefined : teFor(rate);
    seen.add(rate);
    return { codec, payloadType: PAYLOAD_TYPE[codec], clockRate: rate, ...(te ? { telephoneEvent: te } : {}) };
  });
  return {
    audio: {
      mid: '0',
      codec: first,
      payloadType: PAYLOAD_TYPE[first],
      clockRate: CLOCK_RATE[first],
      channels: first === 'opus' ? 2 : 1,
      fmtp: undefined,
      telephoneEvent: teFor(CLOCK_RATE[first]),
      direction: 'sendrecv',
      offered: 'sendrecv',
      alternatives,
    },
    inactive: [],
    hasDataChannel: false,
  };
}

/** The codecs an answer to offerPlan(format) may pick, the caller's first. */
export function answerCodecs(format: MediaFormat | undefined): CodecName[] {
  const first = format?.codec ?? 'opus';
  return [first, ...BRIDGE_CODECS.filter((c) => c !== first)];
}
