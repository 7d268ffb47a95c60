import type { TransferOptions, TransferTarget } from '../../agent/agent.js';
import { trunkLimit } from './inbound.js';
import type { CallDetails } from '../../agent/agent.js';
import type { SourceIdentity } from '../../auth/source-auth.js';
import type { Call } from '../../call/call.js';
import { startCall } from '../../call/start-call.js';
import type { TimerHandle } from '../../core/clock.js';
import { parseOffer } from '../../sdp/offer.js';
import { planRtpAnswer } from '../../sdp/profile-rtp.js';
import { tagOf } from '../../sip/build.js';
import { Dialog } from '../../sip/dialog.js';
import { header, type SipRequest } from '../../sip/message.js';
import type { CallerId } from '../../sip/phone-number.js';
import type { Incoming } from '../../sip/sip-service.js';
import type { RtpUdpTransport } from '../../transport/rtp-udp/rtp-udp-transport.js';
import type { AgentUas } from '../agent-uas.js';
import type { SipCallsContext } from '../context.js';
import { answerInviteWith, reasonHeader } from '../dialog-messages.js';
import type { TrunkMetrics } from './trunk-metrics.js';
import type { Trunk } from './trunks.js';

/** §13.3.1.4: no ACK within 64*T1 and the dialog is over. */
const ACK_WAIT_MS = 32_000;

/** An INVITE without SDP that we answered with our offer: waiting for the ACK's answer. */
export interface LateOffer {
  incoming: Incoming;
  trunk: Trunk;
  number: string;
  callerId: CallerId;
  source: SourceIdentity;
  details: CallDetails;
  transport: RtpUdpTransport;
  /** Gives the trunk's reserved slot back (once). */
  release(): void;
  transfer(call: Call, target: TransferTarget, opts?: TransferOptions): Promise<void>;
}

interface Waiting extends LateOffer {
  timer: TimerHandle;
}

/**
 * RFC 3261 §13.2.1 late offer, as PBXs (Cisco's delayed offer) and some carriers send it: the
 * INVITE has no SDP, our 200 carries the offer, and the ACK the answer. Only then is the codec
 * known, so only then does the call start.
 * Deviation: the agent is attached after the 200, not before it (ring until ready needs the
 * codec, which the ACK brings); the caller may hear a moment of silence first.
 * Deviation: RTP/AVP only; a trunk that requires SRTP refuses an INVITE without SDP (488).
 */
export class LateOffers {
  readonly #waiting = new Map<string, Waiting>();

  constructor(
    private readonly deps: { ctx: SipCallsContext; agents: AgentUas; metrics: TrunkMetrics; audit(incoming: Incoming, outcome: 'ok' | 'error', status: number, extra: Record<string, unknown>): void },
  ) {}

  get size(): number {
    return this.#waiting.size;
  }

  /** Answers the INVITE 200 with our offer and waits for the ACK; takes over the transport and the trunk slot. */
  offer(o: LateOffer): void {
    const { ctx } = this.deps;
    const { incoming } = o;
    const key = keyOf(header(incoming.req, 'Call-ID'), tagOf(header(incoming.req, 'From')), incoming.toTag);
    const timer = ctx.deps.clock.setTimeout(() => this.#noAck(key), ACK_WAIT_MS);
    this.#waiting.set(key, { ...o, timer });
    o.transport.answered();
    answerInviteWith(incoming, ctx.deps.sip.contact(incoming.flow, o.number), o.transport.localSdp);
    ctx.deps.log.info({ trunk: o.trunk.name, number: o.number }, 'trunk INVITE without SDP answered with our offer');
  }

  /** The ACK of one of our offers: its answer starts the call. False when it is not ours. */
  ack(req: SipRequest): boolean {
    const key = keyOf(header(req, 'Call-ID'), tagOf(header(req, 'From')), tagOf(header(req, 'To')));
    const w = this.#waiting.get(key);
    if (!w) return false;
    this.#waiting.delete(key);
    this.deps.ctx.deps.clock.clearTimeout(w.timer);
    if (req.body.length === 0) return this.#bye(w, 'the ACK carried no SDP answer'), true;
    let plan;
    try {
      plan = planRtpAnswer(parseOffer(req.body.toString('utf8')), { codecs: w.trunk.config.codecs, encryption: 'none' });
    } catch (err) {
      this.#bye(w, `unusable answer: ${(err as Error).message}`);
      return true;
    }
    w.transport.update(plan.rtp, plan.audio.direction, w.transport.localSdp);
    void this.#start(w, plan).catch((err: unknown) => {
      this.deps.ctx.deps.log.info({ err, trunk: w.trunk.name }, 'trunk call (late offer) failed to start');
      this.#bye(w, 'the call could not start');
    });
    return true;
  }

  /** A BYE before the ACK: the dialog ends there. */
  bye(incoming: Incoming): boolean {
    const req = incoming.req;
    const key = keyOf(header(req, 'Call-ID'), tagOf(header(req, 'From')), tagOf(header(req, 'To')));
    const w = this.#waiting.get(key);
    if (!w) return false;
    incoming.respond(200);
    this.#drop(key, w);
    this.deps.metrics.inbound(w.trunk.name, 'cancelled');
    return true;
  }

  close(): void {
    for (const [key, w] of this.#waiting) this.#drop(key, w);
  }

  async #start(w: Waiting, plan: ReturnType<typeof planRtpAnswer>): Promise<void> {
    const { ctx, agents, metrics } = this.deps;
    const { req, flow } = w.incoming;
    const started = await startCall(ctx.deps, {
      source: w.source,
      kind: 'sip-trunk',
      plan,
      signalingRemote: flow.remote,
      open: () => Promise.resolve(w.transport),
      onCreated: (call) => {
        w.trunk.active.add(call.id);
        w.release();
        call.on('ended', () => w.trunk.active.delete(call.id));
      },
      transfer: (call, target, opts) => w.transfer(call, target, opts),
      logFields: { sipCallId: header(req, 'Call-ID'), trunk: w.trunk.name },
      details: w.details,
      ...(w.trunk.config.maxCalls !== undefined ? { limit: trunkLimit(w.trunk.name, w.trunk.config.maxCalls) } : {}),
    });
    const { call } = started;
    call.sipCallId = header(req, 'Call-ID');
    call.trunk = { name: w.trunk.name, direction: 'inbound', from: w.callerId.number, to: w.number, ...(w.details.verstat ? { verstat: w.details.verstat } : {}) };
    const d = ctx.openDialog({
      dialog: Dialog.uas(req, w.incoming.toTag, flow.transport),
      flow,
      call,
      role: 'caller',
      peer: w.transport,
      party: w.callerId.number,
      localUser: w.number,
      answerSdp: w.transport.localSdp,
      acked: true,
    });
    agents.adopt(d);
    d.startSessionTimer(req);
    if (w.transport.state === 'connected') call.markConnected();
    call.on('ended', (reason) => agents.callEnded(call, reason));
    metrics.inbound(w.trunk.name, 'answered');
    this.deps.audit(w.incoming, 'ok', 200, { trunk: w.trunk.name, number: w.number, session: call.id, codec: plan.audio.codec, from: w.callerId.number, offer: 'late' });
    started.begin();
  }

  /** §13.3.1.4 / RFC 3264: no usable answer (or no ACK): BYE, with why. */
  #bye(w: Waiting, why: string): void {
    const { ctx } = this.deps;
    const dialog = Dialog.uas(w.incoming.req, w.incoming.toTag, w.incoming.flow.transport);
    const { text, branch } = dialog.request('BYE', [{ name: 'Reason', value: reasonHeader('setup-failed') }]);
    ctx.deps.sip.sendRequest(w.incoming.flow, 'BYE', text, branch, () => undefined);
    this.deps.metrics.inbound(w.trunk.name, 'failed');
    this.deps.audit(w.incoming, 'error', 488, { trunk: w.trunk.name, number: w.number, reason: why, offer: 'late' });
    this.#drop(undefined, w);
  }

  #noAck(key: string): void {
    const w = this.#waiting.get(key);
    if (!w) return;
    this.#waiting.delete(key);
    this.#bye(w, 'no ACK came');
  }

  #drop(key: string | undefined, w: Waiting): void {
    if (key) this.#waiting.delete(key);
    this.deps.ctx.deps.clock.clearTimeout(w.timer);
    w.transport.close();
    w.release();
  }
}

function keyOf(callId: string | undefined, fromTag: string | undefined, toTag: string | undefined): string {
  return `${callId}|${fromTag}|${toTag}`;
}
