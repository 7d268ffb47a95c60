import { randomBytes } from 'node:crypto';
import type { AgentRegistry } from '../agent/registry.js';
import type { SourceIdentity } from '../auth/source-auth.js';
import type { FrameClock } from '../audio/frame-clock.js';
import { Call } from '../call/call.js';
import type { CallTable } from '../call/call-table.js';
import { MediaBridge } from '../call/media-bridge.js';
import { WebRtcLeg } from '../call/webrtc-leg.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import type { SourceConfig } from '../core/config.js';
import { VoxgateError } from '../core/errors.js';
import { newSessionId } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import { planAnswer, type AnswerPlan } from '../sdp/codec-policy.js';
import { WebRtcPeer, type MediaEndpointOptions } from '../webrtc/peer.js';
import { parseOffer } from '../wish/resource.js';
import { tagOf, userOf } from './build.js';
import { UasDialog } from './dialog.js';
import { parseNameAddr } from './grammar.js';
import { header, headerList, type SipRequest, type SipResponse } from './message.js';
import type { Incoming, SipService } from './sip-service.js';
import type { SipFlow } from './ws-transport.js';

export interface AgentCallsDeps {
  sip: SipService;
  calls: CallTable;
  agents: AgentRegistry;
  clock: Clock;
  frameClock: FrameClock;
  log: Logger;
  media: MediaEndpointOptions;
  idleTimeoutMs: number;
  maxJitterMs: number;
  domain: string;
}

/** Session-Expires we accept (RFC 4028); JsSIP asks for 90 and cannot handle a 422. */
const MIN_SE = 90;

/** One browser talking to an agent: voxgate is the UAS and terminates DTLS-SRTP itself. */
class AgentCall {
  readonly key: string;
  acked = false;
  byeSent = false;
  transferring: { resolve: () => void; reject: (err: Error) => void } | undefined;
  ackTimer: TimerHandle | undefined;
  sdpVersion = 1;

  constructor(
    readonly dialog: UasDialog,
    readonly flow: SipFlow,
    readonly call: Call,
    readonly peer: WebRtcPeer,
    readonly bridge: MediaBridge,
    readonly plan: AnswerPlan,
    readonly caller: string,
  ) {
    this.key = `${dialog.callId}|${dialog.localTag}`;
  }
}

/**
 * INVITEs to `sip:agent@<domain>` (and `sip.agents` user parts): each becomes a Call whose
 * WebRTC leg is the browser and whose agent leg is the same MediaBridge WHIP sources use.
 * In-dialog: BYE, INFO (dtmf-relay), UPDATE and re-INVITE (session refresh, hold), REFER
 * from the browser is refused, NOTIFY for our own REFER (agent transfer) is tracked.
 */
export class AgentCalls {
  readonly #byKey = new Map<string, AgentCall>();
  readonly #pending = new Map<string, { cancelled: boolean }>();

  constructor(
    private readonly deps: AgentCallsDeps,
    private readonly agentUsers: Record<string, SourceConfig['agent']>,
  ) {}

  get size(): number {
    return this.#byKey.size;
  }

  /** Live agent calls, for /api/sessions. */
  list(): { call: Call; leg: WebRtcLeg; plan: AnswerPlan; bridge: MediaBridge; signalingRemote: string; sipCallId: string }[] {
    return [...this.#byKey.values()].flatMap((ac) => {
      const leg = ac.call.legs.get('caller') as WebRtcLeg | undefined;
      return leg ? [{ call: ac.call, leg, plan: ac.plan, bridge: ac.bridge, signalingRemote: ac.flow.remote, sipCallId: ac.dialog.callId }] : [];
    });
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
    const pending = { cancelled: false };
    this.#pending.set(inviteKey, pending);
    incoming.scheduleTrying();
    const audit = (outcome: 'ok' | 'error', status: number, extra: Record<string, unknown> = {}) =>
      deps.sip.audit({ action: 'sip.invite', outcome, status, user: caller, target: req.uri, remote: flow.remote, ...extra });
    let call: Call | undefined;
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
      deps.calls.checkAdmission(source);
      const agent = deps.agents.resolve(source.agent);
      const id = newSessionId();
      call = new Call(id, source, deps.clock, deps.idleTimeoutMs);
      deps.calls.add(call);
      const out = { ssrc: randomBytes(4).readUInt32BE(0), cname: randomBytes(9).toString('base64url') };
      const peer = await WebRtcPeer.answer(id, text, plan, deps.media, out);
      if (pending.cancelled || call.state === 'ended') {
        peer.close();
        call.close('cancelled');
        return;
      }
      const leg = new WebRtcLeg(peer, deps.clock);
      call.addLeg('caller', leg);
      const log = deps.log.child({ session: id, sipCallId: header(req, 'Call-ID') });
      // The bridge is built before the AgentCall that owns it; transfer() finds it through here.
      const ref: { ac?: AgentCall } = {};
      const bridge = new MediaBridge(peer, plan, agent, id, source, out, {
        clock: deps.clock,
        frameClock: deps.frameClock,
        log,
        maxJitterMs: deps.maxJitterMs,
        onHangup: (reason) => {
          log.info({ reason }, 'agent hung up');
          call!.closeByAgent(reason);
        },
        transfer: (target) => (ref.ac ? this.#transfer(ref.ac, target) : Promise.reject(new Error('the call is not set up yet'))),
      });
      leg.received.next = bridge;
      call.addLeg('agent', bridge);
      const dialog = new UasDialog(req, incoming.toTag, deps.sip.viaHost, deps.sip.transportName);
      const agentCall = new AgentCall(dialog, flow, call, peer, bridge, plan, caller);
      ref.ac = agentCall;
      this.#byKey.set(agentCall.key, agentCall);
      peer.on('state', (state, failure) => {
        if (state === 'connected') call!.markConnected();
        else if (state === 'failed') call!.close(failure ?? 'ice-failed');
      });
      call.on('ended', (reason) => {
        this.#byKey.delete(agentCall.key);
        if (agentCall.ackTimer) deps.clock.clearTimeout(agentCall.ackTimer);
        // Ended here (agent, idle, ICE): tell the browser.
        if (reason !== 'bye' && reason !== 'flow-closed' && reason !== 'cancelled') this.#bye(agentCall, reason);
        agentCall.transferring?.reject(new Error(`the call ended (${reason}) before the transfer completed`));
        deps.sip.audit({ action: 'sip.call.ended', outcome: 'ok', user: caller, session: id, reason, remote: flow.remote });
      });
      incoming.respond(200, {
        recordRoute: true,
        headers: [
          { name: 'Contact', value: `<sip:${user}@${deps.sip.viaHost};transport=ws>` },
          { name: 'Allow', value: 'INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY' },
          { name: 'Supported', value: 'timer, replaces' },
          ...sessionTimer(req),
          { name: 'Content-Type', value: 'application/sdp' },
        ],
        body: peer.answerSdp,
      });
      // §13.3.1.4: no ACK within 64*T1 ends the dialog with a BYE.
      agentCall.ackTimer = deps.clock.setTimeout(() => {
        if (!agentCall.acked) call!.close('no-ack');
      }, 32_000);
      deps.sip.metricsCall('agent', 'answered');
      audit('ok', 200, { session: id, codec: plan.audio.codec });
      log.info({ pipeline: bridge.describe(), agent: agent.name, caller }, 'SIP call to the agent answered');
      bridge.start().catch((err: unknown) => {
        log.error({ err, agent: agent.name }, 'agent failed to start; ending the call');
        call!.close('agent-failed');
      });
    } catch (err) {
      call?.close('setup-failed');
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
    if (p) p.cancelled = true;
    invite.respond(487);
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
    const contact = header(req, 'Contact');
    if (contact && (req.method === 'INVITE' || req.method === 'UPDATE')) ac.dialog.remoteTarget = parseNameAddr(contact).uri;
    switch (req.method) {
      case 'BYE':
        incoming.respond(200);
        this.deps.sip.audit({ action: 'sip.bye', outcome: 'ok', status: 200, user: ac.caller, session: ac.call.id, remote: incoming.flow.remote });
        ac.call.close('bye');
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
        return this.#notify(ac, incoming);
      case 'OPTIONS':
        incoming.respond(200);
        return true;
      case 'REFER':
        // The agent leg cannot be handed to someone else yet; say so plainly.
        incoming.respond(501, { reason: 'Transferring the agent is not supported; transfer from the agent side' });
        this.deps.sip.audit({ action: 'sip.refer', outcome: 'error', status: 501, user: ac.caller, session: ac.call.id, remote: incoming.flow.remote });
        return true;
      default:
        incoming.respond(405, { headers: [{ name: 'Allow', value: 'INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, NOTIFY' }] });
        return true;
    }
  }

  flowClosed(flow: SipFlow): void {
    for (const ac of [...this.#byKey.values()]) if (ac.flow === flow) ac.call.close('flow-closed');
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
    ac.bridge.session.deliverDtmf(digit.toUpperCase());
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
      const original = /a=ice-ufrag:(\S+)/.exec(ac.dialog.offerSdp ?? '')?.[1];
      if (ufrag && original && ufrag !== original) {
        incoming.respond(488, { reason: 'ICE restart is not supported' });
        return true;
      }
    }
    ac.sdpVersion++;
    const answer = ac.peer.answerSdp
      .replace(/^(o=\S+ \S+ )(\d+)/m, (_m, pre: string) => `${pre}${ac.sdpVersion}`)
      .replace(/a=(sendrecv|sendonly|recvonly|inactive)\b/g, `a=${direction}`);
    this.deps.log.info({ session: ac.call.id, direction }, 'SIP re-INVITE answered');
    incoming.respond(200, {
      recordRoute: true,
      headers: [{ name: 'Contact', value: `<sip:agent@${this.deps.sip.viaHost};transport=ws>` }, ...sessionTimer(req), { name: 'Content-Type', value: 'application/sdp' }],
      body: answer,
    });
    return true;
  }

  /** NOTIFY `Event: refer` with `message/sipfrag` progress for a transfer the agent started. */
  #notify(ac: AgentCall, incoming: Incoming): boolean {
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
    if (ac.transferring) return Promise.reject(new Error('a transfer is already in progress'));
    if (ac.call.state === 'ended') return Promise.reject(new Error('the call has ended'));
    return new Promise<void>((resolve, reject) => {
      ac.transferring = { resolve, reject };
      const { text, branch } = ac.dialog.request('REFER', [
        { name: 'Refer-To', value: `<${uri}>` },
        { name: 'Referred-By', value: `<sip:agent@${this.deps.domain}>` },
        { name: 'Contact', value: `<sip:agent@${this.deps.sip.viaHost};transport=ws>` },
      ]);
      this.deps.sip.audit({ action: 'sip.refer', outcome: 'ok', user: ac.caller, session: ac.call.id, target: uri, by: 'agent', remote: ac.flow.remote });
      this.deps.sip.sendRequest(ac.flow, 'REFER', text, branch, (res: SipResponse) => {
        if (res.status < 200) return;
        if (res.status >= 300 && ac.transferring) {
          ac.transferring.reject(new Error(`the caller refused the transfer (${res.status} ${res.reason})`));
          ac.transferring = undefined;
        }
      });
    });
  }

  #bye(ac: AgentCall, reason: string): void {
    if (ac.byeSent) return;
    ac.byeSent = true;
    const { text, branch } = ac.dialog.request('BYE', [{ name: 'Reason', value: `SIP;cause=200;text="${reason}"` }]);
    this.deps.sip.audit({ action: 'sip.bye', outcome: 'ok', user: ac.caller, session: ac.call.id, by: 'voxgate', reason, remote: ac.flow.remote });
    this.deps.sip.sendRequest(ac.flow, 'BYE', text, branch, () => undefined);
  }
}


/** RFC 4028: take the requested interval (never below 90) and let the caller refresh. */
function sessionTimer(req: SipRequest): { name: string; value: string }[] {
  const se = header(req, 'Session-Expires');
  if (!se) return [];
  const seconds = Math.max(MIN_SE, Number(/^\s*(\d+)/.exec(se)?.[1] ?? MIN_SE));
  // A caller without timer support would leave the refreshing to us; we answer without timers.
  if (!headerList(req, 'Supported').some((s) => s.toLowerCase() === 'timer')) return [];
  return [{ name: 'Session-Expires', value: `${seconds};refresher=uac` }, { name: 'Require', value: 'timer' }];
}
