import { TransferError } from '../agent/agent.js';
import type { CodecName } from '../core/config.js';
import { transition } from '../core/state.js';
import type { AgentLeg } from '../call/agent-leg.js';
import type { Call, EndReason } from '../call/call.js';
import { PartyLeg } from '../call/party-leg.js';
import { formatOf, newSendStream } from '../call/start-call.js';
import { MediaEndpoint, type MediaFormat } from '../media/endpoint.js';
import { planAnswer, type AnswerPlan } from '../sdp/codec-policy.js';
import { hostOf, REASONS, userOf } from '../sip/build.js';
import { header } from '../sip/message.js';
import type { Incoming } from '../sip/sip-service.js';
import { InviteUac } from '../sip/ua/invite-uac.js';
import type { SipFlow } from '../sip/transport/transport.js';
import type { OfferingTransport } from '../transport/factory.js';
import { parseOffer } from '../sdp/offer.js';
import { answerFromOffer, type SipCallsContext } from './context.js';
import { DIALOG_ALLOW, type PartyDialog } from './party-dialog.js';

/** How long a person voxgate calls for a transfer may ring before it gives up (408). */
export const TRANSFER_RING_MS = 30_000;

/** The agent's REFER of its SIP caller (RFC 3515), until the caller's NOTIFY says how it went. */
type ReferState = 'sent' | 'accepted' | 'done';

/** `sent`: the REFER is out; `accepted`: 202; `done`: a final NOTIFY, a refusal, or the call ended. */
const REFER_MOVES: Record<ReferState, ReferState[]> = { sent: ['accepted', 'done'], accepted: ['done'], done: [] };

interface ReferOut {
  state: ReferState;
  resolve(): void;
  reject(err: Error): void;
}

/** A person voxgate is calling to bridge a caller to. */
type BridgeState = 'locating' | 'ringing' | 'bridged' | 'failed';

interface BridgeAttempt {
  state: BridgeState;
  uac?: InviteUac;
  /** Where the INVITE went: if that connection closes while it rings, the transfer fails at once. */
  flow?: SipFlow;
}

/** `locating`: their registration, our offer; `ringing`: the INVITE is out; then bridged or failed. */
const BRIDGE_MOVES: Record<BridgeState, BridgeState[]> = { locating: ['ringing', 'failed'], ringing: ['bridged', 'failed'], bridged: [], failed: [] };

/**
 * The agent's `transfer(target)`. A SIP caller is sent a REFER and calls the target itself
 * (its media then goes end to end). A caller that cannot be referred (WHIP) stays where it is:
 * voxgate calls the target as a UAC and, once they answer, bridges the caller's leg to theirs
 * (packets forwarded when both use the same codec, transcoded otherwise); the agent leaves
 * with `transferred`. Either way a failure leaves the caller with the agent, and the agent's
 * promise rejects with a TransferError carrying the SIP status.
 */
export class AgentTransfers {
  readonly #refers = new Map<PartyDialog, ReferOut>();
  readonly #bridging = new Map<Call, BridgeAttempt>();

  constructor(
    private readonly ctx: SipCallsContext,
    /** User parts that reach an agent: a transfer hands the caller to a person, not back to an agent. */
    private readonly isAgent: (user: string | undefined) => boolean,
  ) {}

  /** The call's transfer handler for SIP callers: REFER the dialog that carries the caller now. */
  transfer(call: Call, target: string): Promise<void> {
    const d = this.ctx.dialogs.current(call);
    if (!d) return Promise.reject(new TransferError(481, 'the call is not set up yet'));
    return this.refer(d, target);
  }

  refer(d: PartyDialog, target: string): Promise<void> {
    const uri = this.ctx.targetUri(target);
    if (this.#refers.has(d) || this.#bridging.has(d.call)) return Promise.reject(new TransferError(491, 'a transfer is already in progress'));
    if (d.call.state === 'ended') return Promise.reject(new TransferError(481, 'the call has ended'));
    return new Promise<void>((resolve, reject) => {
      const out: ReferOut = { state: 'sent', resolve, reject };
      this.#refers.set(d, out);
      const { text, branch } = d.dialog.request('REFER', [
        { name: 'Refer-To', value: `<${uri}>` },
        { name: 'Referred-By', value: `<${this.ctx.aor(d.localUser)}>` },
        { name: 'Contact', value: d.contact() },
      ]);
      this.ctx.deps.sip.audit({ action: 'sip.refer', outcome: 'ok', user: d.party, session: d.call.id, target: uri, by: 'agent', remote: d.flow.remote });
      this.ctx.deps.sip.sendRequest(d.requestFlow(), 'REFER', text, branch, (res) => {
        if (res.status < 200) return;
        if (res.status < 300) {
          if (out.state === 'sent') out.state = transition(REFER_MOVES, out.state, 'accepted', 'REFER');
          return;
        }
        this.#settle(d, new TransferError(res.status, `the caller refused the transfer (${res.reason})`));
      });
    });
  }

  /** NOTIFY `Event: refer` with `message/sipfrag` progress for a REFER the agent sent (RFC 3515 §2.4.4). */
  onNotify(d: PartyDialog, incoming: Incoming): void {
    const event = (header(incoming.req, 'Event') ?? '').split(';')[0]!.trim().toLowerCase();
    if (event !== 'refer') return incoming.respond(489, { reason: 'Bad Event' });
    incoming.respond(200);
    const frag = /^SIP\/2\.0 (\d{3})(?: ([^\r\n]*))?/.exec(incoming.req.body.toString('utf8'));
    const status = frag ? Number(frag[1]) : 0;
    const terminated = /^\s*terminated/i.test(header(incoming.req, 'Subscription-State') ?? '');
    this.ctx.deps.log.info({ session: d.call.id, status, terminated }, 'transfer progress');
    if (!this.#refers.has(d)) return;
    if (status >= 200 && status < 300) {
      this.#settle(d);
      d.call.close('transferred');
    } else if (status >= 300) {
      this.#settle(d, new TransferError(status, frag?.[2] ?? REASONS[status] ?? 'the transfer target answered nothing'));
    } else if (terminated) {
      // The subscription ended on a provisional sipfrag (or none): a 1xx is no failure status
      // for the agent to act on, so it gets 487, as for a transfer that ended unanswered.
      this.#settle(d, new TransferError(487, 'the transfer target answered nothing'));
    }
  }

  /** The call ended before a REFER it sent was done. */
  callEnded(d: PartyDialog, reason: EndReason): void {
    if (this.#refers.has(d)) this.#settle(d, new TransferError(487, `the call ended (${reason}) before the transfer completed`));
  }

  #settle(d: PartyDialog, err?: Error): void {
    const out = this.#refers.get(d);
    if (!out) return;
    this.#refers.delete(d);
    out.state = transition(REFER_MOVES, out.state, 'done', 'REFER');
    if (err) out.reject(err);
    else out.resolve();
  }

  /** A connection closed: a person being called on it for a bridge is given up at once (480). */
  flowClosed(flow: SipFlow): void {
    for (const attempt of this.#bridging.values()) {
      if (attempt.flow === flow && attempt.state === 'ringing') attempt.uac?.abandon(480, 'Temporarily Unavailable (the target disconnected)');
    }
  }

  /**
   * The call's transfer handler for callers voxgate cannot refer (WHIP): call the target, a
   * registered user, and bridge the caller to them when they answer.
   */
  async bridge(call: Call, target: string): Promise<void> {
    const { deps } = this.ctx;
    const uri = this.ctx.targetUri(target);
    if (call.state === 'ended') throw new TransferError(481, 'the call has ended');
    if (this.#bridging.has(call) || call.leg('callee')) throw new TransferError(491, 'a transfer is already in progress');
    const caller = call.leg('caller')?.endpoint;
    const agent = call.leg('agent') as AgentLeg | undefined;
    if (!caller || !agent) throw new TransferError(481, 'the call has no caller and agent to transfer');
    const attempt: BridgeAttempt = { state: 'locating' };
    this.#bridging.set(call, attempt);
    const log = deps.log.child({ session: call.id, target: uri });
    const fail = (status: number, reason: string): never => {
      attempt.state = transition(BRIDGE_MOVES, attempt.state, 'failed', `bridge of ${call.id}`);
      deps.sip.audit({ action: 'sip.transfer', outcome: 'error', status, user: call.source.name, target: uri, session: call.id, reason });
      log.info({ status, reason }, 'the transfer failed; the caller stays with the agent');
      throw new TransferError(status, reason);
    };
    try {
      const user = userOf(uri);
      const host = hostOf(uri);
      if (host !== deps.domain.toLowerCase()) fail(404, `Not Found (domain ${host ?? '?'} is not served here)`);
      if (!user || this.isAgent(user)) fail(403, 'Forbidden (a caller can be handed to a registered user only)');
      // The caller may leave at any await: nothing is placed for a call that has ended.
      const left = () => call.endReason !== undefined;
      const where = await deps.sip.locate(user!);
      if (left()) return fail(487, 'Request Terminated (the caller left)');
      if ('status' in where) return fail(where.status, where.reason);
      const out = newSendStream();
      let peer: OfferingTransport;
      try {
        peer = await deps.transports.offer(`${call.id}-callee`, offerPlan(caller.format), out);
      } catch (err) {
        log.error({ err }, 'no offer could be made for the transfer');
        return fail(500, 'Server Internal Error (no offer could be made)');
      }
      if (left()) {
        peer.close();
        return fail(487, 'Request Terminated (the caller left)');
      }
      const localUser = 'agent';
      const uac = new InviteUac(deps.sip, deps.clock, {
        flow: where.flow,
        uri: where.binding.contact,
        from: `<${this.ctx.aor(localUser)}>`,
        to: `<${uri}>`,
        contactUser: localUser,
        sdp: peer.localSdp,
        ringTimeoutMs: TRANSFER_RING_MS,
        headers: [{ name: 'Allow', value: DIALOG_ALLOW }],
      });
      attempt.uac = uac;
      attempt.flow = where.flow;
      attempt.state = transition(BRIDGE_MOVES, attempt.state, 'ringing', `bridge of ${call.id}`);
      // The caller may leave while it rings: the call we place goes with it.
      const onEnded = () => uac.cancel(487, 'Request Terminated (the caller left)');
      call.on('ended', onEnded);
      deps.sip.audit({ action: 'sip.invite', outcome: 'ok', status: 0, user: localUser, target: uri, session: call.id, by: 'voxgate', for: 'transfer', remote: where.flow.remote });
      const outcome = await uac.start().result;
      call.off('ended', onEnded);
      if (!outcome.ok) {
        peer.close();
        return fail(outcome.status, outcome.reason);
      }
      const answer = outcome.response.body.toString('utf8');
      let plan: AnswerPlan;
      try {
        plan = planAnswer(parseOffer(answer), { codecs: answerCodecs(caller.format), allowSendRecv: true, role: 'ingest' });
        peer.acceptAnswer(answer);
      } catch (err) {
        log.info({ err }, 'the person answered with SDP we cannot use');
        const bye = outcome.dialog.request('BYE', [{ name: 'Reason', value: 'SIP;cause=488;text="unusable answer"' }]);
        deps.sip.sendRequest(outcome.flow, 'BYE', bye.text, bye.branch, () => undefined);
        peer.close();
        return fail(488, 'Not Acceptable Here (unusable answer)');
      }
      if (call.endReason !== undefined) {
        const bye = outcome.dialog.request('BYE', [{ name: 'Reason', value: 'SIP;cause=487;text="the caller left"' }]);
        deps.sip.sendRequest(outcome.flow, 'BYE', bye.text, bye.branch, () => undefined);
        peer.close();
        return fail(487, 'Request Terminated (the caller left)');
      }
      const d = this.ctx.openDialog({
        dialog: outcome.dialog,
        flow: outcome.flow,
        call,
        role: 'callee',
        peer,
        party: user!,
        localUser,
        answerSdp: answerFromOffer(peer.localSdp, answer),
        acked: true,
      });
      let calleeLeft = false;
      d.hooks = {
        left: (reason) => {
          calleeLeft = true;
          call.close(reason);
        },
      };
      this.ctx.watchMedia(d);
      call.on('ended', (reason) => {
        if (!calleeLeft) d.bye(reason);
        d.forget();
      });
      // The person joins; the agent hears why it leaves, then leaves.
      call.addLeg('callee', new PartyLeg('sip-uac', new MediaEndpoint(`${call.id}-callee`, peer, formatOf(plan), call.pcmRate, out, deps.runtime)));
      agent.session.deliverTransferred(uri);
      call.removeLeg('agent', 'transferred');
      attempt.state = transition(BRIDGE_MOVES, attempt.state, 'bridged', `bridge of ${call.id}`);
      deps.sip.metricsCall('agent', 'transferred');
      deps.sip.audit({ action: 'sip.transfer', outcome: 'ok', status: 200, user: call.source.name, target: uri, session: call.id, mode: call.mode, remote: outcome.flow.remote });
      log.info({ mode: call.mode, pipeline: call.describe() }, 'the caller was bridged to the transfer target');
    } finally {
      this.#bridging.delete(call);
    }
  }
}

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
export function offerPlan(format: MediaFormat): AnswerPlan {
  const teFor = (rate: number) => ({ payloadType: rate === 48000 ? 101 : 126, clockRate: rate });
  const first = format.codec;
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
export function answerCodecs(format: MediaFormat): CodecName[] {
  return [format.codec, ...BRIDGE_CODECS.filter((c) => c !== format.codec)];
}
