import type { SourceIdentity } from '../auth/source-auth.js';
import type { AgentLeg } from '../call/agent-leg.js';
import type { Call, EndReason } from '../call/call.js';
import { PartyLeg } from '../call/party-leg.js';
import { formatOf, newSendStream, startCall, type StartCallDeps } from '../call/start-call.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import type { SourceConfig } from '../core/config.js';
import { VoxgateError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { MediaEndpoint } from '../media/endpoint.js';
import { planAnswer, type AnswerPlan } from '../sdp/codec-policy.js';
import { WebRtcPeer, type MediaEndpointOptions } from '../transport/webrtc/peer.js';
import { parseOffer } from '../wish/resource.js';
import { cancelFor, hostOf, newBranch, newCallId, newTag, REASONS, SERVER, tagOf, userOf } from './build.js';
import { Dialog } from './dialog.js';
import { parseNameAddr, SipParseError } from './grammar.js';
import { cseqOf, header, headerList, serializeSipMessage, type SipHeader, type SipRequest, type SipResponse } from './message.js';
import type { Incoming, SipService } from './sip-service.js';
import type { SipFlow } from './ws-transport.js';

export interface AgentCallsDeps extends StartCallDeps {
  sip: SipService;
  clock: Clock;
  log: Logger;
  media: MediaEndpointOptions;
  domain: string;
}

/** Session-Expires we accept (RFC 4028); JsSIP asks for 90 and cannot handle a 422. */
const MIN_SE = 90;

/** One browser talking to an agent: voxgate is a UA of the dialog and terminates DTLS-SRTP itself. */
class AgentCall {
  readonly key: string;
  acked = false;
  byeSent = false;
  /** The agent's REFER of this party, until its NOTIFY says how it went. */
  transferring: { resolve: () => void; reject: (err: Error) => void } | undefined;
  /** This party's REFER of the agent to someone else, until that call is answered or fails. */
  referral: Referral | undefined;
  /** Set once a referral moved the agent away: this dialog no longer carries the call. */
  detached = false;
  /** The other party left while its referral was still ringing. */
  gone: 'bye' | 'flow-closed' | undefined;
  ackTimer: TimerHandle | undefined;
  /** A moment for the other party to send its own BYE (after a transfer, or once its media closed). */
  graceTimer: TimerHandle | undefined;
  sdpVersion = 1;

  constructor(
    readonly dialog: Dialog,
    readonly flow: SipFlow,
    readonly call: Call,
    readonly peer: WebRtcPeer,
    readonly agent: AgentLeg,
    readonly plan: AnswerPlan,
    /** The other party's user name. */
    readonly party: string,
    /** Our SDP as an answer: what a re-INVITE gets back, with the direction mirrored. */
    readonly answerSdp: string,
    /** Our user part (`agent` or a `sip.agents` entry). */
    readonly agentUser: string,
  ) {
    this.key = `${dialog.callId}|${dialog.localTag}`;
  }
}

/** A browser's REFER of its agent call (RFC 3515): voxgate calls the target on the agent's behalf. */
interface Referral {
  target: string;
  /** The REFER's CSeq: the `id` of the `Event: refer` subscription. */
  id: number;
  peer: WebRtcPeer | undefined;
  out: { ssrc: number; cname: string } | undefined;
  invite: SipRequest | undefined;
  flow: SipFlow | undefined;
  lastStatus: number;
  answered: boolean;
  /** Cancelled because nobody answered in time (reported as 408, not 487). */
  timedOut: boolean;
  ringTimer: TimerHandle | undefined;
}

/** How long a referred call may ring before voxgate cancels it. */
const REFERRAL_RING_MS = 30_000;
/** How long the transferor has to hang up after a completed transfer before voxgate does. */
const TRANSFEROR_GRACE_MS = 5_000;
/** How long a party whose media closed has to send its BYE before the call ends as peer-closed. */
const PEER_CLOSED_GRACE_MS = 1_000;

/**
 * INVITEs to `sip:agent@<domain>` (and `sip.agents` user parts): each becomes a Call whose
 * WebRTC leg is the browser and whose agent leg is the same MediaBridge WHIP sources use.
 * In-dialog: BYE, INFO (dtmf-relay), UPDATE and re-INVITE (session refresh, hold), NOTIFY for
 * our own REFER (the agent transfers the caller), and the browser's REFER (the caller transfers
 * the agent: voxgate calls the target and moves the agent session onto that call).
 */
export class AgentCalls {
  readonly #byKey = new Map<string, AgentCall>();
  /** The dialog that carries each call now (it changes when a referral moves the agent). */
  readonly #current = new Map<Call, AgentCall>();
  readonly #pending = new Map<string, { cancelled: boolean; call?: Call }>();

  constructor(
    private readonly deps: AgentCallsDeps,
    private readonly agentUsers: Record<string, SourceConfig['agent']>,
  ) {}

  get size(): number {
    return this.#byKey.size;
  }

  /** Whether a Request-URI user part reaches an agent. */
  isAgent(user: string | undefined): boolean {
    return user === 'agent' || (user !== undefined && Object.hasOwn(this.agentUsers, user));
  }

  async invite(incoming: Incoming, caller: string): Promise<void> {
    const { deps } = this;
    const { req, flow } = incoming;
    const user = userOf(req.uri)!;
    const inviteKey = `${header(req, 'Call-ID')}|${header(req, 'CSeq')}`;
    const pending: { cancelled: boolean; call?: Call } = { cancelled: false };
    this.#pending.set(inviteKey, pending);
    incoming.scheduleTrying();
    const audit = (outcome: 'ok' | 'error', status: number, extra: Record<string, unknown> = {}) =>
      deps.sip.audit({ action: 'sip.invite', outcome, status, user: caller, target: req.uri, remote: flow.remote, ...extra });
    try {
      if (req.body.length === 0) throw new VoxgateError('VG_SDP_MALFORMED', 'An INVITE to the agent must carry an SDP offer');
      const type = (header(req, 'Content-Type') ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== 'application/sdp') {
        audit('error', 415);
        return incoming.respond(415, { headers: [{ name: 'Accept', value: 'application/sdp' }] });
      }
      const text = req.body.toString('utf8');
      const offer = parseOffer(text);
      const source: SourceIdentity = {
        name: `sip:${caller}`,
        kind: 'sip-ws',
        agent: user === 'agent' ? undefined : this.agentUsers[user],
        codecs: ['opus', 'g722', 'pcmu', 'pcma'],
        maxSessions: undefined,
        via: 'sip-digest',
      };
      const plan = planAnswer(offer, { codecs: source.codecs, allowSendRecv: true, role: 'ingest' });
      let peer: WebRtcPeer | undefined;
      const started = await startCall(deps, {
        source,
        kind: 'sip-ws',
        plan,
        signalingRemote: flow.remote,
        open: async (id, out) => (peer = await WebRtcPeer.answer(id, text, plan, deps.media, out)),
        onCreated: (call) => (pending.call = call),
        // The agent transfers whoever the call is with now.
        transfer: (call, target) => {
          const current = this.#current.get(call);
          return current ? this.#transfer(current, target) : Promise.reject(new Error('the call is not set up yet'));
        },
        logFields: { sipCallId: header(req, 'Call-ID') },
      });
      const { call, log } = started;
      call.sipCallId = header(req, 'Call-ID');
      const dialog = Dialog.uas(req, incoming.toTag, deps.sip.viaHost, deps.sip.transportName);
      const agentCall = new AgentCall(dialog, flow, call, peer!, started.agent, plan, caller, started.localSdp, user);
      this.#adopt(agentCall);
      call.on('ended', (reason) => this.#ended(call, reason));
      incoming.respond(200, {
        recordRoute: true,
        headers: [
          { name: 'Contact', value: this.#contact(user) },
          { name: 'Allow', value: DIALOG_ALLOW },
          { name: 'Supported', value: 'timer, replaces' },
          ...sessionTimer(req),
          { name: 'Content-Type', value: 'application/sdp' },
        ],
        body: started.localSdp,
      });
      // §13.3.1.4: no ACK within 64*T1 ends the dialog with a BYE.
      agentCall.ackTimer = deps.clock.setTimeout(() => {
        if (!agentCall.acked) call.close('no-ack');
      }, 32_000);
      deps.sip.metricsCall('agent', 'answered');
      audit('ok', 200, { session: call.id, codec: plan.audio.codec });
      log.info({ pipeline: call.describe(), agent: started.agent.agent.name, caller }, 'SIP call to the agent answered');
      started.begin();
    } catch (err) {
      // A CANCEL got its 487 already; the half-made call ended with it.
      if (pending.cancelled) return;
      pending.call?.close('setup-failed');
      const e = err instanceof VoxgateError ? err : new VoxgateError('VG_WEBRTC_FAILED', 'The WebRTC stack could not answer this offer.', { cause: err });
      const status = e.sipStatus;
      deps.log.info({ err: e, caller }, 'SIP call to the agent refused');
      deps.sip.metricsCall('agent', String(status));
      audit('error', status, { reason: e.message });
      incoming.respond(status, {
        reason: e.message.replace(/[\r\n]+/g, ' ').slice(0, 120),
        headers: status === 503 ? [{ name: 'Retry-After', value: '5' }] : [],
      });
    } finally {
      this.#pending.delete(inviteKey);
    }
  }

  cancel(invite: Incoming): void {
    const p = this.#pending.get(`${header(invite.req, 'Call-ID')}|${header(invite.req, 'CSeq')}`);
    invite.respond(487);
    if (!p) return;
    p.cancelled = true;
    p.call?.close('cancelled');
  }

  ack(req: SipRequest): boolean {
    const ac = this.#find(req);
    if (!ac) return false;
    ac.acked = true;
    return true;
  }

  inDialog(incoming: Incoming): boolean {
    const ac = this.#find(incoming.req);
    if (!ac) return false;
    const { req } = incoming;
    if (!ac.dialog.acceptSeq(req)) {
      incoming.respond(500, { reason: 'CSeq out of order' });
      return true;
    }
    if (ac.detached) {
      // The transferor's dialog after the agent moved on: it can only end.
      if (req.method !== 'BYE') {
        incoming.respond(481, { reason: 'Call/Transaction Does Not Exist (the call was transferred)' });
        return true;
      }
      incoming.respond(200);
      this.#forget(ac);
      return true;
    }
    const contact = header(req, 'Contact');
    if (contact && (req.method === 'INVITE' || req.method === 'UPDATE')) ac.dialog.remoteTarget = parseNameAddr(contact).uri;
    switch (req.method) {
      case 'BYE':
        incoming.respond(200);
        this.deps.sip.audit({ action: 'sip.bye', outcome: 'ok', status: 200, user: ac.party, session: ac.call.id, remote: incoming.flow.remote });
        this.#partyLeft(ac, 'bye');
        return true;
      case 'INFO':
        return this.#info(ac, incoming);
      case 'UPDATE':
        if (incoming.req.body.length > 0) {
          incoming.respond(488, { reason: 'Media renegotiation by UPDATE is not supported' });
          return true;
        }
        incoming.respond(200, { headers: sessionTimer(req) });
        return true;
      case 'INVITE':
        return this.#reinvite(ac, incoming);
      case 'NOTIFY':
        return this.#onNotify(ac, incoming);
      case 'OPTIONS':
        incoming.respond(200);
        return true;
      case 'REFER':
        return this.#referred(ac, incoming);
      default:
        incoming.respond(405, { headers: [{ name: 'Allow', value: DIALOG_ALLOW }] });
        return true;
    }
  }

  flowClosed(flow: SipFlow): void {
    for (const ac of [...this.#byKey.values()]) {
      // The target of a ringing referral went away: that transfer fails now, not at a timeout.
      if (ac.referral?.flow === flow && !ac.referral.answered) this.#referralFailed(ac, ac.referral, 480, 'Temporarily Unavailable (the target disconnected)');
      if (ac.flow !== flow) continue;
      if (ac.detached) this.#forget(ac);
      else this.#partyLeft(ac, 'flow-closed');
    }
  }

  /**
   * The other party hung up or its WebSocket went. The call ends with it, unless that party
   * had referred the agent to someone who is being called now (a blind transfer): then the
   * call waits for that answer, and ends only if it fails.
   */
  #partyLeft(ac: AgentCall, reason: 'bye' | 'flow-closed'): void {
    if (!ac.referral) return ac.call.close(reason);
    ac.gone = reason;
    ac.peer.close();
    this.#forget(ac);
  }

  #adopt(ac: AgentCall): void {
    this.#byKey.set(ac.key, ac);
    this.#current.set(ac.call, ac);
    ac.peer.on('state', (state, failure) => {
      if (this.#current.get(ac.call) !== ac) return;
      if (state === 'connected') ac.call.markConnected();
      else if (failure === 'peer-closed') {
        // A UA hanging up sends BYE and closes its media at the same moment, and the DTLS
        // close_notify may arrive first. The dialog decides how the call ended: the BYE gets a
        // moment, and only without one does the call end as peer-closed.
        ac.graceTimer ??= this.deps.clock.setTimeout(() => {
          if (this.#current.get(ac.call) === ac) ac.call.close('peer-closed');
        }, PEER_CLOSED_GRACE_MS);
      } else if (state === 'failed') ac.call.close(failure ?? 'ice-failed');
    });
  }

  #forget(ac: AgentCall): void {
    this.#byKey.delete(ac.key);
    if (ac.ackTimer) this.deps.clock.clearTimeout(ac.ackTimer);
    if (ac.graceTimer) this.deps.clock.clearTimeout(ac.graceTimer);
    ac.ackTimer = ac.graceTimer = undefined;
  }

  /** The call ended (any reason): the dialog that carried it says goodbye unless the other side did. */
  #ended(call: Call, reason: EndReason): void {
    const ac = this.#current.get(call);
    if (!ac) return;
    this.#current.delete(call);
    this.#forget(ac);
    if (ac.referral) this.#abandonReferral(ac, ac.referral);
    if (reason !== 'bye' && reason !== 'flow-closed' && reason !== 'cancelled' && !ac.gone) this.#bye(ac, reason);
    ac.transferring?.reject(new Error(`the call ended (${reason}) before the transfer completed`));
    this.deps.sip.audit({ action: 'sip.call.ended', outcome: 'ok', user: ac.party, session: call.id, reason, remote: ac.flow.remote });
  }

  #contact(user: string): string {
    return `<sip:${user}@${this.deps.sip.viaHost};transport=ws>`;
  }

  #find(req: SipRequest): AgentCall | undefined {
    const toTag = tagOf(header(req, 'To'));
    const ac = this.#byKey.get(`${header(req, 'Call-ID')}|${toTag}`);
    return ac && ac.dialog.matches(req) ? ac : undefined;
  }

  /** JsSIP's default DTMF: INFO application/dtmf-relay with `Signal=` and `Duration=`. */
  #info(ac: AgentCall, incoming: Incoming): boolean {
    const type = (header(incoming.req, 'Content-Type') ?? '').split(';')[0]!.trim().toLowerCase();
    const body = incoming.req.body.toString('utf8');
    let digit: string | undefined;
    if (type === 'application/dtmf-relay') digit = /^\s*Signal\s*=\s*([0-9A-Da-d*#])\s*$/m.exec(body)?.[1];
    else if (type === 'application/dtmf') digit = /^\s*([0-9A-Da-d*#])\s*$/.exec(body)?.[1];
    else {
      incoming.respond(415, { headers: [{ name: 'Accept', value: 'application/dtmf-relay, application/dtmf' }] });
      return true;
    }
    if (!digit) {
      incoming.respond(400, { reason: 'No Signal= digit in the dtmf-relay body' });
      return true;
    }
    incoming.respond(200);
    this.deps.log.info({ session: ac.call.id, digit }, 'dtmf (SIP INFO)');
    ac.call.dtmf('caller', digit.toUpperCase());
    return true;
  }

  /**
   * re-INVITE: a session refresh or hold. The DTLS and ICE transport stays; the answer is our
   * original one with the direction mirrored (sendonly -> recvonly, inactive -> inactive).
   */
  #reinvite(ac: AgentCall, incoming: Incoming): boolean {
    const { req } = incoming;
    let direction = 'sendrecv';
    if (req.body.length) {
      const sdp = req.body.toString('utf8');
      const audio = sdp.split(/\r?\nm=/).find((s) => s.startsWith('audio')) ?? sdp;
      const dir = /\r?\na=(sendrecv|sendonly|recvonly|inactive)\b/.exec(audio)?.[1] ?? 'sendrecv';
      direction = { sendonly: 'recvonly', recvonly: 'sendonly', inactive: 'inactive', sendrecv: 'sendrecv' }[dir]!;
      const ufrag = /a=ice-ufrag:(\S+)/.exec(sdp)?.[1];
      const original = /a=ice-ufrag:(\S+)/.exec(ac.dialog.remoteSdp)?.[1];
      if (ufrag && original && ufrag !== original) {
        incoming.respond(488, { reason: 'ICE restart is not supported' });
        return true;
      }
    }
    ac.sdpVersion++;
    const answer = ac.answerSdp
      .replace(/^(o=\S+ \S+ )(\d+)/m, (_m, pre: string) => `${pre}${ac.sdpVersion}`)
      .replace(/a=(sendrecv|sendonly|recvonly|inactive)\b/g, `a=${direction}`);
    this.deps.log.info({ session: ac.call.id, direction }, 'SIP re-INVITE answered');
    incoming.respond(200, {
      recordRoute: true,
      headers: [{ name: 'Contact', value: this.#contact(ac.agentUser) }, ...sessionTimer(req), { name: 'Content-Type', value: 'application/sdp' }],
      body: answer,
    });
    return true;
  }

  /** NOTIFY `Event: refer` with `message/sipfrag` progress for a transfer the agent started. */
  #onNotify(ac: AgentCall, incoming: Incoming): boolean {
    const event = (header(incoming.req, 'Event') ?? '').split(';')[0]!.trim().toLowerCase();
    if (event !== 'refer') {
      incoming.respond(489, { reason: 'Bad Event' });
      return true;
    }
    incoming.respond(200);
    const frag = /^SIP\/2\.0 (\d{3})/.exec(incoming.req.body.toString('utf8'));
    const status = frag ? Number(frag[1]) : 0;
    const terminated = /^\s*terminated/i.test(header(incoming.req, 'Subscription-State') ?? '');
    this.deps.log.info({ session: ac.call.id, status, terminated }, 'transfer progress');
    if (!ac.transferring) return true;
    if (status >= 200 && status < 300) {
      ac.transferring.resolve();
      ac.transferring = undefined;
      ac.call.close('transferred');
    } else if (status >= 300 || (terminated && status < 200)) {
      ac.transferring.reject(new Error(`the transfer target answered ${status || 'nothing'}`));
      ac.transferring = undefined;
    }
    return true;
  }

  /** The agent's transfer(): REFER the caller to the target (RFC 3515) and follow its NOTIFYs. */
  #transfer(ac: AgentCall, target: string): Promise<void> {
    let uri = target.trim();
    if (!/^sips?:/i.test(uri)) uri = `sip:${uri.includes('@') ? uri : `${uri}@${this.deps.domain}`}`;
    if (ac.transferring || ac.referral) return Promise.reject(new Error('a transfer is already in progress'));
    if (ac.call.state === 'ended') return Promise.reject(new Error('the call has ended'));
    return new Promise<void>((resolve, reject) => {
      ac.transferring = { resolve, reject };
      const { text, branch } = ac.dialog.request('REFER', [
        { name: 'Refer-To', value: `<${uri}>` },
        { name: 'Referred-By', value: `<sip:${ac.agentUser}@${this.deps.domain}>` },
        { name: 'Contact', value: this.#contact(ac.agentUser) },
      ]);
      this.deps.sip.audit({ action: 'sip.refer', outcome: 'ok', user: ac.party, session: ac.call.id, target: uri, by: 'agent', remote: ac.flow.remote });
      this.deps.sip.sendRequest(ac.flow, 'REFER', text, branch, (res: SipResponse) => {
        if (res.status < 200) return;
        if (res.status >= 300 && ac.transferring) {
          ac.transferring.reject(new Error(`the caller refused the transfer (${res.status} ${res.reason})`));
          ac.transferring = undefined;
        }
      });
    });
  }

  /**
   * The browser's REFER (RFC 3515, a blind transfer of the agent): 202, then voxgate calls the
   * target as the agent and reports progress by NOTIFY `message/sipfrag`. When the target
   * answers, the agent session moves onto that call and the subscription ends with 200.
   */
  #referred(ac: AgentCall, incoming: Incoming): boolean {
    const { req } = incoming;
    const refuse = (status: number, reason: string) => {
      this.deps.sip.audit({ action: 'sip.refer', outcome: 'error', status, user: ac.party, session: ac.call.id, remote: incoming.flow.remote, reason });
      incoming.respond(status, { reason });
      return true;
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
    if (ac.referral || ac.transferring) return refuse(491, 'A transfer of this call is already in progress');
    const target = uri.split('?')[0]!;
    const referral: Referral = { target, id: cseqOf(req), peer: undefined, out: undefined, invite: undefined, flow: undefined, lastStatus: 100, answered: false, timedOut: false, ringTimer: undefined };
    ac.referral = referral;
    incoming.respond(202, { headers: [{ name: 'Contact', value: this.#contact(ac.agentUser) }] });
    this.deps.sip.audit({ action: 'sip.refer', outcome: 'ok', status: 202, user: ac.party, session: ac.call.id, target, remote: incoming.flow.remote });
    this.deps.log.info({ session: ac.call.id, by: ac.party, target }, 'the caller transfers the agent');
    this.#sendNotify(ac, referral, 100);
    void this.#callReferred(ac, referral, header(req, 'Referred-By')).catch((err: unknown) => {
      this.deps.log.error({ err, session: ac.call.id }, 'placing the referred call failed');
      this.#referralFailed(ac, referral, 500, 'Server Internal Error');
    });
    return true;
  }

  /** Calls the referral's target as the agent: an offer from a new peer, to their newest binding. */
  async #callReferred(ac: AgentCall, referral: Referral, referredBy: string | undefined): Promise<void> {
    const { deps } = this;
    const user = userOf(referral.target);
    const host = hostOf(referral.target);
    if (host !== deps.domain.toLowerCase()) return this.#referralFailed(ac, referral, 404, `Not Found (domain ${host ?? '?'} is not served here)`);
    if (!user || this.isAgent(user)) return this.#referralFailed(ac, referral, 403, 'Forbidden (the agent can be handed to a registered user only)');
    const where = deps.sip.locate(user);
    if ('status' in where) return this.#referralFailed(ac, referral, where.status, where.reason);
    const out = newSendStream();
    const peer = await WebRtcPeer.offer(`${ac.call.id}-refer-${referral.id}`, offerPlan(ac.plan), deps.media, out);
    if (ac.referral !== referral) return peer.close();
    referral.peer = peer;
    referral.out = out;
    referral.flow = where.flow;
    const branch = newBranch();
    const headers: SipHeader[] = [
      { name: 'Via', value: `SIP/2.0/${deps.sip.transportName} ${deps.sip.viaHost};branch=${branch}` },
      { name: 'Max-Forwards', value: '70' },
      { name: 'From', value: `<sip:${ac.agentUser}@${deps.domain}>;tag=${newTag()}` },
      { name: 'To', value: `<${referral.target}>` },
      { name: 'Call-ID', value: newCallId() },
      { name: 'CSeq', value: '1 INVITE' },
      { name: 'Contact', value: this.#contact(ac.agentUser) },
      // RFC 3892: who asked for this call.
      { name: 'Referred-By', value: referredBy ?? `<sip:${ac.party}@${deps.domain}>` },
      { name: 'Allow', value: DIALOG_ALLOW },
      { name: 'User-Agent', value: SERVER },
      { name: 'Content-Type', value: 'application/sdp' },
    ];
    const invite: SipRequest = { kind: 'request', method: 'INVITE', uri: where.binding.contact, version: 'SIP/2.0', headers, body: Buffer.from(peer.localSdp) };
    referral.invite = invite;
    deps.sip.audit({ action: 'sip.invite', outcome: 'ok', status: 0, user: ac.agentUser, target: referral.target, session: ac.call.id, by: 'voxgate', referredBy: ac.party, remote: where.flow.remote });
    referral.ringTimer = deps.clock.setTimeout(() => {
      referral.timedOut = true;
      this.#cancel(referral);
      // §9.1: a CANCEL that brings no final response within 64*T1 ends the attempt anyway.
      referral.ringTimer = deps.clock.setTimeout(() => this.#referralFailed(ac, referral, 408, 'Request Timeout (no answer)'), 32_000);
    }, REFERRAL_RING_MS);
    let dialog: Dialog | undefined;
    deps.sip.sendRequest(where.flow, 'INVITE', serializeSipMessage(invite), branch, (res) => {
      if (res.status < 200) {
        if (res.status > referral.lastStatus && ac.referral === referral) {
          referral.lastStatus = res.status;
          this.#sendNotify(ac, referral, res.status, res.reason);
        }
        return;
      }
      if (res.status >= 300) {
        if (ac.referral === referral) this.#referralFailed(ac, referral, referral.timedOut ? 408 : res.status, referral.timedOut ? 'Request Timeout (no answer)' : res.reason);
        return;
      }
      // §13.2.2.4: every 2xx (retransmissions too) is ACKed by us, the UAC core.
      dialog ??= Dialog.uac(invite, res, deps.sip.viaHost, deps.sip.transportName);
      where.flow.send(dialog.ack(1));
      if (referral.answered) return;
      referral.answered = true;
      if (ac.referral !== referral) {
        // We gave up on it meanwhile (the call ended): hang up the late answer.
        const bye = dialog.request('BYE');
        deps.sip.sendRequest(where.flow, 'BYE', bye.text, bye.branch, () => undefined);
        return;
      }
      this.#completeReferral(ac, referral, dialog, where.flow, res);
    });
  }

  /** The target answered: the agent session, its pacer and outgoing stream move onto the new call. */
  #completeReferral(old: AgentCall, referral: Referral, dialog: Dialog, flow: SipFlow, ok: SipResponse): void {
    const { deps } = this;
    const peer = referral.peer!;
    const answer = ok.body.toString('utf8');
    let plan: AnswerPlan;
    try {
      plan = planAnswer(parseOffer(answer), { codecs: [old.plan.audio.codec], allowSendRecv: true, role: 'ingest' });
      peer.acceptAnswer(answer);
    } catch (err) {
      deps.log.info({ err, session: old.call.id }, 'the referred party answered with SDP we cannot use');
      const bye = dialog.request('BYE', [{ name: 'Reason', value: 'SIP;cause=488;text="unusable answer"' }]);
      deps.sip.sendRequest(flow, 'BYE', bye.text, bye.branch, () => undefined);
      return this.#referralFailed(old, referral, 488, 'Not Acceptable Here');
    }
    if (referral.ringTimer) deps.clock.clearTimeout(referral.ringTimer);
    old.referral = undefined;
    const { call } = old;
    // The transferee's leg replaces the transferor's; the agent leg stays and is wired to it.
    const endpoint = new MediaEndpoint(`${call.id}-refer-${referral.id}`, peer, formatOf(plan), call.pcmRate, referral.out!, deps.runtime);
    const next = new AgentCall(dialog, flow, call, peer, old.agent, plan, userOf(referral.target)!, answerFromOffer(peer.localSdp, answer), old.agentUser);
    next.acked = true;
    this.#adopt(next);
    // The transferor's dialog is done: its media stops now, and it has a moment to hang up itself.
    old.detached = true;
    call.replaceLeg('caller', new PartyLeg('sip-ws', endpoint), 'transferred');
    call.sipCallId = dialog.callId;
    call.signalingRemote = flow.remote;
    this.#sendNotify(old, referral, 200);
    if (old.gone) this.#forget(old);
    else {
      old.graceTimer = deps.clock.setTimeout(() => {
        this.#bye(old, 'transferred');
        this.#forget(old);
      }, TRANSFEROR_GRACE_MS);
    }
    old.agent.session.deliverTransferred(referral.target);
    deps.sip.metricsCall('agent', 'transferred');
    deps.sip.audit({ action: 'sip.transfer', outcome: 'ok', status: 200, user: old.party, target: referral.target, session: call.id, remote: flow.remote });
    deps.log.info({ session: call.id, from: old.party, to: next.party, sipCallId: dialog.callId }, 'the agent was transferred');
  }

  /** The referred call failed: the transferor hears why, and keeps the agent (if still there). */
  #referralFailed(ac: AgentCall, referral: Referral, status: number, reason: string): void {
    if (ac.referral !== referral) return;
    ac.referral = undefined;
    if (referral.ringTimer) this.deps.clock.clearTimeout(referral.ringTimer);
    referral.peer?.close();
    this.#sendNotify(ac, referral, status, reason);
    this.deps.sip.audit({ action: 'sip.transfer', outcome: 'error', status, user: ac.party, target: referral.target, session: ac.call.id, reason });
    this.deps.log.info({ session: ac.call.id, target: referral.target, status, reason }, 'the referred call failed');
    // The transferor hung up meanwhile: nobody is left to talk to the agent.
    if (ac.gone) ac.call.close(ac.gone);
  }

  /** The call ended while its referral was ringing: cancel that call and end the subscription. */
  #abandonReferral(ac: AgentCall, referral: Referral): void {
    ac.referral = undefined;
    if (referral.ringTimer) this.deps.clock.clearTimeout(referral.ringTimer);
    this.#cancel(referral);
    referral.peer?.close();
    this.#sendNotify(ac, referral, 487, 'Request Terminated');
  }

  #cancel(referral: Referral): void {
    if (!referral.invite || !referral.flow || referral.answered) return;
    const { text, branch } = cancelFor(referral.invite);
    this.deps.sip.sendRequest(referral.flow, 'CANCEL', text, branch, () => undefined);
  }

  /** NOTIFY `message/sipfrag` (RFC 3515 §2.4.5): progress, and with a final status the end of the subscription. */
  #sendNotify(ac: AgentCall, referral: Referral, status: number, reason = REASONS[status] ?? 'Unknown'): void {
    if (ac.gone) return;
    const final = status >= 200;
    const { text, branch } = ac.dialog.request(
      'NOTIFY',
      [
        { name: 'Event', value: `refer;id=${referral.id}` },
        { name: 'Subscription-State', value: final ? 'terminated;reason=noresource' : 'active;expires=60' },
        { name: 'Contact', value: this.#contact(ac.agentUser) },
      ],
      { type: 'message/sipfrag;version=2.0', content: `SIP/2.0 ${status} ${reason.replace(/[\r\n]+/g, ' ')}\r\n` },
    );
    this.deps.sip.sendRequest(ac.flow, 'NOTIFY', text, branch, () => undefined);
  }

  #bye(ac: AgentCall, reason: string): void {
    if (ac.byeSent) return;
    ac.byeSent = true;
    const { text, branch } = ac.dialog.request('BYE', [{ name: 'Reason', value: `SIP;cause=200;text="${reason}"` }]);
    this.deps.sip.audit({ action: 'sip.bye', outcome: 'ok', user: ac.party, session: ac.call.id, by: 'voxgate', reason, remote: ac.flow.remote });
    this.deps.sip.sendRequest(ac.flow, 'BYE', text, branch, () => undefined);
  }
}


/** Our offer for a call we place on the agent's behalf: the codec the agent's bridge already uses. */
function offerPlan(current: AnswerPlan): AnswerPlan {
  const a = current.audio;
  const telephoneEvent = a.telephoneEvent ?? { payloadType: a.payloadType === 101 ? 126 : 101, clockRate: a.clockRate };
  return { audio: { ...a, mid: '0', direction: 'sendrecv', offered: 'sendrecv', telephoneEvent }, inactive: [], hasDataChannel: false };
}

/**
 * Our offer, reused as the answer to a re-INVITE in a dialog we started: the DTLS role is fixed
 * by now (RFC 5763 §5), the opposite of theirs.
 */
function answerFromOffer(offer: string, theirAnswer: string): string {
  const theirs = /a=setup:(\w+)/.exec(theirAnswer)?.[1];
  return offer.replace(/a=setup:actpass/g, `a=setup:${theirs === 'passive' ? 'active' : 'passive'}`);
}

/** What we allow inside an agent dialog. */
const DIALOG_ALLOW = 'INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY';

/** RFC 4028: take the requested interval (never below 90) and let the caller refresh. */
function sessionTimer(req: SipRequest): { name: string; value: string }[] {
  const se = header(req, 'Session-Expires');
  if (!se) return [];
  const seconds = Math.max(MIN_SE, Number(/^\s*(\d+)/.exec(se)?.[1] ?? MIN_SE));
  // A caller without timer support would leave the refreshing to us; we answer without timers.
  if (!headerList(req, 'Supported').some((s) => s.toLowerCase() === 'timer')) return [];
  return [{ name: 'Session-Expires', value: `${seconds};refresher=uac` }, { name: 'Require', value: 'timer' }];
}
