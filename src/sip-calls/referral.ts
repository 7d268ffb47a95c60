import type { AgentLeg } from '../call/agent-leg.js';
import type { Call } from '../call/call.js';
import { transition } from '../core/state.js';
import { PartyLeg } from '../call/party-leg.js';
import { formatOf } from '../call/start-call.js';
import { MediaEndpoint } from '../media/endpoint.js';
import { hostOf, REASONS, userOf } from '../sip/build.js';
import { parseNameAddr, SipParseError } from '../sip/grammar.js';
import { cseqOf, header, headerList } from '../sip/message.js';
import type { Incoming } from '../sip/sip-service.js';
import type { SipFlow } from '../sip/transport/transport.js';
import type { RtpTransports } from '../transport/rtp-udp/factory.js';
import type { SipCallsContext } from './context.js';
import type { PartyDialog } from './party-dialog.js';
import { assertedPhoneCaller, dropAnswered, NumberCallee, TRANSFER_RING_MS, trunkOfferCodecs, UserCallee, type Answered, type Callee } from './callee.js';
import { callerIdFor, phoneNumberOf } from './trunk/routes.js';
import type { Trunk } from './trunk/trunks.js';

type ReferralState = 'calling' | 'answered' | 'failed' | 'abandoned';

/** `calling` ends one way only: the target answered, the attempt failed, or the call went first. */
const REFERRAL_MOVES: Record<ReferralState, ReferralState[]> = { calling: ['answered', 'failed', 'abandoned'], answered: [], failed: [], abandoned: [] };

/** A browser's REFER of its agent call (RFC 3515): voxgate calls the target on the agent's behalf. */
interface Referral {
  state: ReferralState;
  target: string;
  /** The REFER's CSeq: the `id` of the `Event: refer` subscription. */
  id: number;
  /** Whoever voxgate is calling for it, once the call is placed. */
  callee: Callee | undefined;
  lastStatus: number;
  /** The transferor hung up (or its connection went) while the target was being called. */
  gone: 'bye' | 'flow-closed' | undefined;
}

/** How long the transferor has to hang up after a completed transfer before voxgate does. */
const TRANSFEROR_GRACE_MS = 5_000;

/**
 * The caller's REFER of its agent call (a blind transfer, RFC 3515): 202, then voxgate calls
 * the target as the agent and reports progress by NOTIFY `message/sipfrag`. When the target
 * answers, the transferee's leg replaces the transferor's in the same call: the agent session,
 * its pacer and its queued audio carry on, and the subscription ends with 200.
 */
export class Referrals {
  readonly #byDialog = new Map<PartyDialog, Referral>();

  constructor(
    private readonly ctx: SipCallsContext,
    private readonly hooks: {
      isAgent(user: string | undefined): boolean;
      /** A user part of ours (an agent, a SIP user): `sip:1001@domain` is them, not a number. */
      isLocalUser(user: string): boolean;
      adopt(d: PartyDialog): void;
      /** Calls to numbers: the trunk a transferor may reach a number through. */
      numbers?: { rtp: RtpTransports; trunkFor(number: string, user: string): Trunk | undefined };
    },
  ) {}

  referred(d: PartyDialog, incoming: Incoming): void {
    const { req } = incoming;
    const refuse = (status: number, reason: string) => {
      this.ctx.deps.sip.audit({ action: 'sip.refer', outcome: 'error', status, user: d.party, session: d.call.id, remote: incoming.flow.remote, reason });
      incoming.respond(status, { reason });
    };
    const referTo = headerList(req, 'Refer-To');
    if (referTo.length !== 1) return refuse(400, 'A REFER needs exactly one Refer-To');
    let uri: string;
    try {
      uri = parseNameAddr(referTo[0]!).uri;
    } catch (err) {
      if (!(err instanceof SipParseError)) throw err;
      return refuse(400, `Unparseable Refer-To: ${err.message}`);
    }
    if (/[?&]replaces=/i.test(uri)) return refuse(501, 'Attended transfer (Refer-To with Replaces) is not supported');
    if (!/^sip:/i.test(uri)) return refuse(416, 'Refer-To must be a sip: URI');
    if (this.#byDialog.has(d) || d.call.leg('callee')) return refuse(491, 'A transfer of this call is already in progress');
    const target = uri.split('?')[0]!;
    const referral: Referral = { state: 'calling', target, id: cseqOf(req), callee: undefined, lastStatus: 100, gone: undefined };
    this.#byDialog.set(d, referral);
    incoming.respond(202, { headers: [{ name: 'Contact', value: d.contact() }] });
    this.ctx.deps.sip.audit({ action: 'sip.refer', outcome: 'ok', status: 202, user: d.party, session: d.call.id, target, remote: incoming.flow.remote });
    this.ctx.deps.log.info({ session: d.call.id, by: d.party, target }, 'the caller transfers the agent');
    this.#sendNotify(d, referral, 100);
    void this.#call(d, referral, header(req, 'Referred-By')).catch((err: unknown) => {
      this.ctx.deps.log.error({ err, session: d.call.id }, 'placing the referred call failed');
      this.#failed(d, referral, 500, 'Server Internal Error');
    });
  }

  /**
   * The transferor hung up or its connection went. The call ends with it, unless it had referred
   * the agent to someone who is being called now (a blind transfer): then the call waits for that
   * answer, and ends only if it fails.
   */
  partyLeft(d: PartyDialog, reason: 'bye' | 'flow-closed'): void {
    const referral = this.#byDialog.get(d);
    if (!referral) return d.call.close(reason);
    referral.gone = reason;
    d.transport.close();
    d.forget();
  }

  /** The call ended while its referral was ringing: cancel that call and end the subscription. */
  callEnded(call: Call): void {
    // Found by call, not by the call's current dialog: a transferor that hung up after its REFER
    // has left the dialog table already, and the target it referred us to must still be cancelled.
    for (const [d, referral] of [...this.#byDialog]) {
      if (d.call !== call) continue;
      this.#settle(d, referral, 'abandoned');
      referral.callee?.cancel(487, 'Request Terminated');
      this.#sendNotify(d, referral, 487, 'Request Terminated');
    }
  }

  /** A connection closed: a referral ringing there fails now (480), not at a timeout. */
  flowClosed(flow: SipFlow): void {
    for (const referral of this.#byDialog.values()) referral.callee?.flowClosed(flow);
  }

  /**
   * Calls the referral's target as the agent: a registered user at their newest binding, or a
   * phone number through a trunk the transferor may use (`sip.users[].trunks`).
   */
  async #call(d: PartyDialog, referral: Referral, referredBy: string | undefined): Promise<void> {
    const { deps } = this.ctx;
    const caller = d.call.leg('caller')?.endpoint;
    if (!caller) return this.#failed(d, referral, 481, 'Call/Transaction Does Not Exist');
    const headers = [{ name: 'Referred-By', value: referredBy ?? `<${this.ctx.aor(d.party)}>` }];
    const log = deps.log.child({ session: d.call.id, target: referral.target });
    const number = phoneNumberOf(referral.target);
    let callee: Callee;
    if (number && !this.hooks.isLocalUser(userOf(referral.target) ?? '')) {
      const trunk = this.hooks.numbers?.trunkFor(number, d.party);
      if (!trunk || !this.hooks.numbers || !trunk.mayDial(number)) return this.#failed(d, referral, 403, `Forbidden (${d.party} may not call ${number}: no route among the user's trunks)`);
      const from = callerIdFor(trunk);
      if (!from) return this.#failed(d, referral, 403, `Forbidden (trunk ${trunk.name} has no outbound.numbers to present)`);
      callee = new NumberCallee(this.ctx, this.hooks.numbers.rtp, trunk, number, { from, ringTimeoutMs: TRANSFER_RING_MS, codecs: trunkOfferCodecs(trunk.config.codecs, caller.format.codec), log, headers });
    } else {
      const user = userOf(referral.target);
      const host = hostOf(referral.target);
      if (host !== deps.domain.toLowerCase()) return this.#failed(d, referral, 404, `Not Found (domain ${host ?? '?'} is not served here)`);
      if (!user || this.hooks.isAgent(user)) return this.#failed(d, referral, 403, 'Forbidden (the agent can be handed to a registered user or a phone number only)');
      callee = new UserCallee(this.ctx, user, { id: `${d.call.id}-refer-${referral.id}`, format: caller.format, ringTimeoutMs: TRANSFER_RING_MS, localUser: d.localUser, log, headers: [...headers, ...assertedPhoneCaller(this.ctx, d.call.trunk)] });
    }
    referral.callee = callee;
    const progress = (status: number, reason: string) => {
      if (status > referral.lastStatus && referral.state === 'calling') {
        referral.lastStatus = status;
        this.#sendNotify(d, referral, status, reason);
      }
    };
    callee.on('ringing', progress);
    callee.on('early-media', () => progress(183, 'Session Progress'));
    deps.sip.audit({ action: 'sip.invite', outcome: 'ok', status: 0, user: d.localUser, target: referral.target, session: d.call.id, by: 'voxgate', referredBy: d.party });
    const outcome = await callee.result;
    if (referral.state !== 'calling') {
      // We gave up on it meanwhile (the call ended, the target's connection went): hang up a late answer.
      if (outcome.ok) dropAnswered(this.ctx, outcome, 'the transfer was abandoned');
      return;
    }
    if (!outcome.ok) return this.#failed(d, referral, outcome.status, outcome.reason);
    this.#answered(d, referral, outcome);
  }

  /** The target answered: the transferee's leg replaces the transferor's, the agent carries on with it. */
  #answered(old: PartyDialog, referral: Referral, a: Answered): void {
    const { deps } = this.ctx;
    const call = old.call;
    this.#settle(old, referral, 'answered');
    const next = this.ctx.openDialog({
      dialog: a.dialog,
      flow: a.flow,
      call,
      role: 'caller',
      peer: a.transport,
      party: a.party,
      localUser: a.localUser,
      answerSdp: a.answerSdp,
      acked: true,
      answer: a.response,
    });
    next.carrier = a.kind === 'sip-trunk';
    this.hooks.adopt(next);
    // The transferor's dialog is done: its media stops now, and it has a moment to hang up itself.
    if (old.state !== 'ended') old.transition('detached');
    call.replaceLeg('caller', new PartyLeg(a.kind, new MediaEndpoint(`${call.id}-refer-${referral.id}`, a.transport, formatOf(a.plan), call.pcmRate, a.out, deps.runtime)), 'transferred');
    call.sipCallId = a.dialog.callId;
    call.signalingRemote = a.flow.remote;
    this.#sendNotify(old, referral, 200);
    if (!referral.gone) {
      old.byeAfter(TRANSFEROR_GRACE_MS, 'transferred', () => old.forget());
    }
    (call.leg('agent') as AgentLeg | undefined)?.session.deliverTransferred(referral.target);
    deps.sip.metricsCall('agent', 'transferred');
    deps.sip.audit({ action: 'sip.transfer', outcome: 'ok', status: 200, user: old.party, target: referral.target, session: call.id, remote: a.flow.remote });
    deps.log.info({ session: call.id, from: old.party, to: next.party, sipCallId: a.dialog.callId }, 'the agent was transferred');
  }

  /** The referred call failed: the transferor hears why, and keeps the agent (if still there). */
  #failed(d: PartyDialog, referral: Referral, status: number, reason: string): void {
    if (referral.state !== 'calling') return;
    this.#settle(d, referral, 'failed');
    referral.callee?.cancel(status, reason);
    this.#sendNotify(d, referral, status, reason);
    this.ctx.deps.sip.audit({ action: 'sip.transfer', outcome: 'error', status, user: d.party, target: referral.target, session: d.call.id, reason });
    this.ctx.deps.log.info({ session: d.call.id, target: referral.target, status, reason }, 'the referred call failed');
    // The transferor hung up meanwhile: nobody is left to talk to the agent.
    if (referral.gone) d.call.close(referral.gone);
  }

  #settle(d: PartyDialog, referral: Referral, to: Exclude<ReferralState, 'calling'>): void {
    referral.state = transition(REFERRAL_MOVES, referral.state, to, `referral ${referral.id} of ${d.call.id}`);
    if (this.#byDialog.get(d) === referral) this.#byDialog.delete(d);
  }

  /** NOTIFY `message/sipfrag` (RFC 3515 §2.4.5): progress, and with a final status the end of the subscription. */
  #sendNotify(d: PartyDialog, referral: Referral, status: number, reason = REASONS[status] ?? 'Unknown'): void {
    if (referral.gone) return;
    const final = status >= 200;
    const { text, branch } = d.dialog.request(
      'NOTIFY',
      [
        { name: 'Event', value: `refer;id=${referral.id}` },
        { name: 'Subscription-State', value: final ? 'terminated;reason=noresource' : 'active;expires=60' },
        { name: 'Contact', value: d.contact() },
      ],
      { type: 'message/sipfrag;version=2.0', content: `SIP/2.0 ${status} ${reason.replace(/[\r\n]+/g, ' ')}\r\n` },
    );
    this.ctx.deps.sip.sendRequest(d.requestFlow(), 'NOTIFY', text, branch, () => undefined);
  }
}
