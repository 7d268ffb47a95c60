import type { SourceIdentity } from '../auth/source-auth.js';
import type { Call, EndReason } from '../call/call.js';
import { startCall } from '../call/start-call.js';
import type { SourceConfig } from '../core/config.js';
import { logRefusal, VoxgateError } from '../core/errors.js';
import { planAnswer } from '../sdp/codec-policy.js';
import { userOf } from '../sip/build.js';
import { Dialog } from '../sip/dialog.js';
import { header, type SipRequest } from '../sip/message.js';
import { sourceKindOf, type Incoming } from '../sip/sip-service.js';
import type { NegotiatedTransport } from '../transport/factory.js';
import { parseOffer } from '../sdp/offer.js';
import type { SipCallsContext } from './context.js';
import type { PartyDialog } from './party-dialog.js';
import { negotiateSessionTimer } from './session-timer.js';
import type { Referrals } from './referral.js';
import type { AgentTransfers } from './transfer.js';

/** An INVITE to the agent, from its arrival to its answer. */
type InviteState = 'setting-up' | 'cancelled' | 'answered' | 'refused';

const INVITE_MOVES: Record<InviteState, InviteState[]> = {
  'setting-up': ['cancelled', 'answered', 'refused'],
  cancelled: [],
  answered: [],
  refused: [],
};

class PendingInvite {
  state: InviteState = 'setting-up';
  call: Call | undefined;

  transition(to: InviteState): boolean {
    if (!INVITE_MOVES[this.state].includes(to)) return false;
    this.state = to;
    return true;
  }
}

/**
 * INVITEs to `sip:agent@<domain>` (and `sip.agents` user parts): voxgate answers as the UA.
 * Each becomes a Call (startCall, as WHIP sources do) whose caller leg is the browser's WebRTC
 * peer and whose agent leg is the agent; the dialog is a PartyDialog whose REFER and NOTIFY go
 * to the referral and transfer jobs.
 */
export class AgentUas {
  readonly #pending = new Map<string, PendingInvite>();

  constructor(
    private readonly ctx: SipCallsContext,
    private readonly agentUsers: Record<string, SourceConfig['agent']>,
    private readonly transfers: AgentTransfers,
    private readonly referrals: Referrals,
  ) {}

  /** Whether a Request-URI user part reaches an agent. */
  isAgent(user: string | undefined): boolean {
    return user === 'agent' || (user !== undefined && Object.hasOwn(this.agentUsers, user));
  }

  async invite(incoming: Incoming, caller: string): Promise<void> {
    const { deps } = this.ctx;
    const { req, flow } = incoming;
    const user = userOf(req.uri)!;
    const inviteKey = pendingKey(req);
    const pending = new PendingInvite();
    this.#pending.set(inviteKey, pending);
    incoming.scheduleTrying();
    const audit = (outcome: 'ok' | 'error', status: number, extra: Record<string, unknown> = {}) =>
      deps.sip.audit({ action: 'sip.invite', outcome, status, user: caller, target: req.uri, remote: flow.remote, ...extra });
    try {
      if (req.body.length === 0) throw new VoxgateError('VG_SDP_MALFORMED', 'An INVITE to the agent must carry an SDP offer');
      const type = (header(req, 'Content-Type') ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== 'application/sdp') {
        pending.transition('refused');
        audit('error', 415);
        return incoming.respond(415, { headers: [{ name: 'Accept', value: 'application/sdp' }] });
      }
      const st = negotiateSessionTimer(req);
      if (st.kind === 'too-small') {
        pending.transition('refused');
        audit('error', 422);
        return incoming.respond(422, { headers: [{ name: 'Min-SE', value: String(st.minSe) }] });
      }
      const text = req.body.toString('utf8');
      const offer = parseOffer(text);
      const source: SourceIdentity = {
        name: `sip:${caller}`,
        kind: 'sip-ws',
        agent: user === 'agent' ? undefined : this.agentUsers[user],
        codecs: ['opus', 'g722', 'pcmu', 'pcma'],
        maxSessions: deps.maxCalls?.get(caller),
        via: 'sip-digest',
      };
      const plan = planAnswer(offer, { codecs: source.codecs, allowSendRecv: true, role: 'ingest' });
      let peer: NegotiatedTransport | undefined;
      const started = await startCall(deps, {
        source,
        kind: 'sip-ws',
        plan,
        signalingRemote: flow.remote,
        open: async (id, out) => (peer = await deps.transports.answer(id, text, plan, out)),
        onCreated: (call) => (pending.call = call),
        // The agent transfers whoever the call is with now.
        transfer: (call, target, opts) => this.transfers.transfer(call, target, opts),
        logFields: { sipCallId: header(req, 'Call-ID') },
      });
      const { call, log } = started;
      call.sipCallId = header(req, 'Call-ID');
      const d = this.ctx.openDialog({
        dialog: Dialog.uas(req, incoming.toTag, flow.transport),
        flow,
        call,
        role: 'caller',
        peer: peer!,
        party: caller,
        localUser: user,
        answerSdp: started.localSdp,
        acked: false,
      });
      this.adopt(d);
      d.startSessionTimer(req);
      call.on('ended', (reason) => this.callEnded(call, reason));
      pending.transition('answered');
      d.answerInvite(incoming);
      deps.sip.metricsCall('agent', 'answered');
      audit('ok', 200, { session: call.id, codec: plan.audio.codec });
      log.info({ pipeline: call.describe(), agent: started.agent.agent.name, caller }, 'SIP call to the agent answered');
      started.begin();
    } catch (err) {
      // A CANCEL got its 487 already; the half-made call ended with it.
      if (pending.state === 'cancelled') return;
      pending.transition('refused');
      pending.call?.close('setup-failed');
      const e = err instanceof VoxgateError ? err : new VoxgateError('VG_WEBRTC_FAILED', 'The WebRTC stack could not answer this offer.', { cause: err });
      const status = e.sipStatus;
      logRefusal(deps.log, e, { caller }, status, 'SIP call to the agent refused');
      deps.sip.metricsCall('agent', String(status));
      audit('error', status, { reason: e.message });
      incoming.respond(status, {
        reason: e.message.replace(/[\r\n]+/g, ' ').slice(0, 120),
        headers: status === 503 ? [{ name: 'Retry-After', value: e.headers['Retry-After'] ?? '5' }] : [],
      });
    } finally {
      this.#pending.delete(inviteKey);
    }
  }

  /** CANCEL of an INVITE being set up: 487, and the half-made call ends as cancelled. */
  cancel(invite: Incoming): boolean {
    const p = this.#pending.get(pendingKey(invite.req));
    if (!p?.transition('cancelled')) return false;
    invite.respond(487);
    p.call?.close('cancelled');
    return true;
  }

  /** The dialog now carries its call's caller: its media and its REFER and NOTIFY are watched. */
  adopt(d: PartyDialog): void {
    d.hooks = {
      left: (reason) => this.referrals.partyLeft(d, reason),
      refer: (incoming) => this.referrals.referred(d, incoming),
      notify: (incoming) => this.transfers.onNotify(d, incoming),
    };
    this.ctx.watchMedia(d);
  }

  /** The call ended (any reason): the dialog that carried it says goodbye unless the other side did. */
  callEnded(call: Call, reason: EndReason): void {
    const d = this.ctx.dialogs.current(call);
    this.ctx.dialogs.release(call);
    // Before the dialog check: a referral whose transferor hung up rings on with no current dialog.
    this.referrals.callEnded(call);
    if (!d) return;
    d.forget();
    if (reason !== 'bye' && reason !== 'flow-closed' && reason !== 'cancelled') d.bye(reason);
    this.transfers.callEnded(d, reason);
    this.ctx.deps.sip.audit({ action: 'sip.call.ended', outcome: 'ok', user: d.party, session: call.id, reason, remote: d.flow.remote, sourceKind: sourceKindOf(d.flow) });
  }
}

function pendingKey(req: SipRequest): string {
  return `${header(req, 'Call-ID')}|${header(req, 'CSeq')}`;
}
