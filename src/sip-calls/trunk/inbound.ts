import { TransferError, type CallDetails, type TransferOptions, type TransferTarget } from '../../agent/agent.js';
import type { SourceIdentity } from '../../auth/source-auth.js';
import type { Call } from '../../call/call.js';
import { startCall, type CallLimit } from '../../call/start-call.js';
import type { SourceConfig } from '../../core/config.js';
import type { TimerHandle } from '../../core/clock.js';
import { logRefusal, VoxgateError } from '../../core/errors.js';
import { parseOffer } from '../../sdp/offer.js';
import { planRtpAnswer } from '../../sdp/profile-rtp.js';
import { tagOf, uriOf, userOf } from '../../sip/build.js';
import { Dialog } from '../../sip/dialog.js';
import { header, type SipRequest } from '../../sip/message.js';
import { stirInputOf } from '../../sip/identity/stir.js';
import { callerIdOf, carrierHeaders, diversionOf, e164Of } from '../../sip/phone-number.js';
import type { Incoming } from '../../sip/sip-service.js';
import type { RtpTransports } from '../../transport/rtp-udp/factory.js';
import type { RtpUdpTransport } from '../../transport/rtp-udp/rtp-udp-transport.js';
import type { AgentUas } from '../agent-uas.js';
import type { AgentTransfers } from '../transfer.js';
import type { SipCallsContext } from '../context.js';
import { negotiateSessionTimer } from '../session-timer.js';
import type { RoutingDecision } from './routing-webhook.js';
import { LateOffers } from './late-offer.js';
import type { TrunkMetrics } from './trunk-metrics.js';
import { phoneNumberOf } from './routes.js';
import { remoteHost, type Trunk, type TrunkTable } from './trunks.js';

/** An inbound trunk INVITE from its arrival to its answer. */
type InviteState = 'ringing' | 'cancelled' | 'answered' | 'refused';

const INVITE_MOVES: Record<InviteState, InviteState[]> = {
  ringing: ['cancelled', 'answered', 'refused'],
  cancelled: [],
  answered: [],
  refused: [],
};

/**
 * How often 180 Ringing is repeated while the agent starts. RFC 3261 §13.3.1.1 asks for one at
 * least every minute; over UDP the caller stops retransmitting its INVITE after our 100, so a
 * lost 180 would otherwise leave it without ringback until the 200.
 */
const RING_REPEAT_MS = 5_000;

class PendingTrunkInvite {
  state: InviteState = 'ringing';
  call: Call | undefined;
  ringTimer: TimerHandle | undefined;
  /** Ends the wait for the agent (a CANCEL came). */
  abort: (() => void) | undefined;

  constructor(
    readonly trunk: Trunk,
    readonly incoming: Incoming,
  ) {}

  /** Read through a method: a CANCEL can change the state across an await. */
  get cancelled(): boolean {
    return this.state === 'cancelled';
  }

  transition(to: InviteState): boolean {
    if (!INVITE_MOVES[this.state].includes(to)) return false;
    this.state = to;
    return true;
  }
}

export interface TrunkInboundDeps {
  ctx: SipCallsContext;
  trunks: TrunkTable;
  rtp: RtpTransports;
  /** `sip.agents`: user parts and numbers that pick an agent. */
  agentsByUser: Record<string, SourceConfig['agent']>;
  /** Whether a Request-URI user part is ours to serve without a trunk (an agent user, a SIP user). */
  isLocalUser(user: string): boolean;
  agents: AgentUas;
  transfers: AgentTransfers;
  metrics: TrunkMetrics;
}

/**
 * INVITEs from carriers' SIP trunks and phones over UDP, TCP and TLS. The trunk is identified
 * by source address (its CIDR list) and/or digest (407); the called number picks the trunk and
 * the agent (the routing webhook's reply, `sip.agents` by number, the trunk's `inbound.agent`);
 * the caller hears 180 until the agent is attached, and only then the 200 with our RTP/AVP (or
 * SDES RTP/SAVP) answer. The answered call is an agent call like any other (the agent UAS's
 * dialog handling, transfer and teardown).
 */
export class TrunkInbound {
  readonly #pending = new Map<string, PendingTrunkInvite>();

  /** INVITEs without SDP answered with our offer, waiting for the ACK's answer. */
  readonly late: LateOffers;

  constructor(private readonly deps: TrunkInboundDeps) {
    this.late = new LateOffers({ ctx: deps.ctx, agents: deps.agents, metrics: deps.metrics, audit: (i, outcome, status, extra) => this.#audit(i, outcome, status, extra) });
  }

  /**
   * Takes an out-of-dialog INVITE that is a trunk call (anything over UDP, TCP or TLS that is not
   * for a local user from outside every trunk), and answers it; false leaves it to the SIP users' path.
   */
  claims(incoming: Incoming): boolean {
    const { req, flow } = incoming;
    if (flow.transport.protocol === 'WS' || flow.transport.protocol === 'WSS') return false;
    const { trunks } = this.deps;
    const source = remoteHost(flow.remote);
    const number = e164Of(req.uri);
    const user = userOf(req.uri);
    const fromAcl = trunks.byAddress(source);
    const owner = trunks.byNumber(number);
    if (!owner && fromAcl.length === 0 && user !== undefined && this.deps.isLocalUser(user)) return false;
    if (!trunks.all.length) return false;

    const refuse = (status: number, reason: string, trunk?: Trunk, headers: { name: string; value: string }[] = []) => {
      this.deps.metrics.inbound(trunk?.name ?? 'unknown', String(status));
      this.#audit(incoming, 'error', status, { trunk: trunk?.name ?? null, reason, number: number ?? null });
      incoming.respond(status, { reason, headers });
      return true;
    };
    const challenge = (stale: boolean) => incoming.respond(407, { headers: trunks.digest.challenges(stale).map((value) => ({ name: 'Proxy-Authenticate', value })) });
    const checkDigest = (trunk: Trunk | undefined): string | true | undefined => {
      const outcome = trunks.digest.verify(header(req, 'Proxy-Authorization'), req.method);
      if (outcome.ok && (!trunk || outcome.user === trunk.config.inbound?.auth?.user)) return outcome.user;
      if (!outcome.ok && (outcome.reason === 'no credentials' || outcome.stale || outcome.reason === 'nonce was not issued here')) {
        challenge(outcome.stale);
        return true;
      }
      // Audited under the trunk the username names, when it names one.
      const named = trunk ?? trunks.all.find((t) => t.config.inbound?.auth?.user === outcome.user);
      refuse(403, `Forbidden (${outcome.ok ? `user ${outcome.user} is not this trunk's` : outcome.reason})`, named);
      return true;
    };

    // A call on our registration with the carrier (T18): the called number is in To (or the trunk's own).
    const registered = trunks.byRegistration(user, source);
    if (registered) {
      const called = e164Of(uriOf(header(req, 'To') ?? '')) ?? number ?? registered.inbound.numbers[0] ?? registered.config.outbound?.numbers[0];
      if (!called) return refuse(404, `Not Found (no called number in the Request-URI or To, and trunk ${registered.name} has no numbers)`, registered);
      void this.#invite(incoming, registered, called);
      return true;
    }
    if (fromAcl.length === 0) {
      // RFC 3261 §22.3 / the trunk's ACL: a source outside every list may only prove a trunk's password.
      if (trunks.authOnly.length === 0) return refuse(403, `Forbidden (source address ${source} is not allowed)`);
      const who = checkDigest(undefined);
      if (who === true || who === undefined) return true;
      const candidates = trunks.authOnly.filter((t) => t.config.inbound?.auth?.user === who);
      if (!owner || !candidates.includes(owner)) return refuse(404, `Not Found (${number ?? req.uri} is not a number of this trunk)`, candidates[0]);
      void this.#invite(incoming, owner, number!);
      return true;
    }
    if (!owner) return refuse(404, `Not Found (${number ?? userOf(req.uri) ?? req.uri} is not served here)`, fromAcl[0]);
    if (owner.acl && !owner.acl.has(source)) return refuse(403, `Forbidden (source address ${source} is not allowed for trunk ${owner.name})`, owner);
    if (owner.config.inbound?.auth) {
      const who = checkDigest(owner);
      if (who === true || who === undefined) return true;
    }
    void this.#invite(incoming, owner, number!);
    return true;
  }

  /** CANCEL of a trunk INVITE still ringing: 487, and the half-made call ends as cancelled. */
  cancel(invite: Incoming): boolean {
    const p = this.#pending.get(pendingKey(invite.req));
    if (!p?.transition('cancelled')) return false;
    this.#stopRinging(p);
    invite.respond(487, { headers: [{ name: 'Reason', value: 'SIP;cause=487;text="Request Terminated"' }] });
    this.deps.metrics.inbound(p.trunk.name, 'cancelled');
    p.abort?.();
    this.#audit(invite, 'ok', 487, { trunk: p.trunk.name, reason: 'cancelled while ringing' });
    p.call?.close('cancelled');
    return true;
  }

  /**
   * A BYE on the early dialog our 180 made (RFC 3261 §15: the caller may end it so): 200, the
   * INVITE gets 487, and the half-made call ends as `bye`. False when no ringing INVITE is its.
   */
  byeWhileRinging(bye: Incoming): boolean {
    if (bye.req.method !== 'BYE') return false;
    if (this.late.bye(bye)) return true;
    const callId = header(bye.req, 'Call-ID');
    const fromTag = tagOf(header(bye.req, 'From'));
    const toTag = tagOf(header(bye.req, 'To'));
    for (const p of this.#pending.values()) {
      const inv = p.incoming.req;
      if (header(inv, 'Call-ID') !== callId || tagOf(header(inv, 'From')) !== fromTag || p.incoming.toTag !== toTag) continue;
      if (!p.transition('cancelled')) return false;
      this.#stopRinging(p);
      bye.respond(200);
      p.incoming.respond(487);
      this.deps.metrics.inbound(p.trunk.name, 'cancelled');
      this.#audit(p.incoming, 'ok', 487, { trunk: p.trunk.name, reason: 'BYE while ringing' });
      p.abort?.();
      p.call?.close('bye');
      return true;
    }
    return false;
  }

  /** Calls on each trunk now, for the metrics. */
  active(): { trunk: string; calls: number }[] {
    return this.deps.trunks.all.map((t) => ({ trunk: t.name, calls: t.active.size }));
  }

  async #invite(incoming: Incoming, trunk: Trunk, number: string): Promise<void> {
    const { ctx, rtp, metrics } = this.deps;
    const { deps } = ctx;
    const { req, flow } = incoming;
    const key = pendingKey(req);
    const pending = new PendingTrunkInvite(trunk, incoming);
    this.#pending.set(key, pending);
    incoming.scheduleTrying();
    const inbound = trunk.inbound;
    const callerId = callerIdOf(req);
    let admitted = false;
    let transport: RtpUdpTransport | undefined;
    let release: (() => void) | undefined;
    try {
      if (trunk.full) {
        throw new VoxgateError('VG_CAPACITY', `Service Unavailable (trunk ${trunk.name} is at its ${trunk.config.maxCalls} calls)`, { headers: { 'Retry-After': '5' } });
      }
      // The slot is held from here: INVITEs arriving while this one asks the webhook count against maxCalls.
      release = trunk.reserve();
      const type = (header(req, 'Content-Type') ?? '').split(';')[0]!.trim().toLowerCase();
      // RFC 3261 §13.2.1: no SDP in the INVITE is a late offer (ours goes in the 200).
      const late = req.body.length === 0;
      if (late && trunk.config.mediaEncryption === 'require') {
        throw new VoxgateError('VG_SDP_PROFILE', 'Not Acceptable Here (this trunk requires SRTP: send the SDES offer in the INVITE)');
      }
      if (!late && type !== 'application/sdp') {
        pending.transition('refused');
        metrics.inbound(trunk.name, '415');
        this.#audit(incoming, 'error', 415, { trunk: trunk.name, number, reason: `Content-Type ${type}` });
        return incoming.respond(415, { headers: [{ name: 'Accept', value: 'application/sdp' }] });
      }
      const st = negotiateSessionTimer(req);
      if (st.kind === 'too-small') {
        pending.transition('refused');
        metrics.inbound(trunk.name, '422');
        this.#audit(incoming, 'error', 422, { trunk: trunk.name, number, reason: `Session-Expires below Min-SE ${st.minSe}` });
        return incoming.respond(422, { headers: [{ name: 'Min-SE', value: String(st.minSe) }] });
      }
      const plan = late ? undefined : planRtpAnswer(parseOffer(req.body.toString('utf8')), { codecs: trunk.config.codecs, encryption: trunk.config.mediaEncryption });
      const details: CallDetails = {
        from: callerId.number,
        to: number,
        trunk: trunk.name,
        callerName: callerId.name,
        callerIdSource: callerId.source,
        diversion: diversionOf(req),
        headers: carrierHeaders(req),
        customParameters: {},
      };
      // RFC 8224 §6.2: verified before routing, against the caller ID presented and the number called.
      const stir = trunk.config.stirShaken?.verify ? await deps.stir?.verifier?.verify(stirInputOf(req, number), deps.clock.now()) : undefined;
      if (pending.cancelled) return;
      if (stir) {
        Object.assign(details, { verstat: stir.verstat, ...(stir.attest ? { attest: stir.attest } : {}), ...(stir.origTn ? { origTn: stir.origTn } : {}) });
        metrics.stir(trunk.name, stir.verstat);
        if (stir.reason) deps.log.info({ trunk: trunk.name, verstat: stir.verstat, reason: stir.reason, claimed: stir.claimed, certificate: stir.certificateDetail }, 'STIR/SHAKEN verification failed');
        if (stir.refuse) {
          pending.transition('refused');
          metrics.inbound(trunk.name, String(stir.refuse.status));
          this.#audit(incoming, 'rejected', stir.refuse.status, { trunk: trunk.name, number, reason: stir.refuse.reason, verstat: stir.verstat, by: 'stir-shaken', check: stir.refuse.check });
          return incoming.respond(stir.refuse.status, { reason: stir.refuse.reason });
        }
      }
      const decision = await this.#route(trunk, incoming, details);
      if (pending.cancelled) return;
      if (decision.kind === 'reject') {
        pending.transition('refused');
        metrics.inbound(trunk.name, String(decision.status));
        this.#audit(incoming, 'rejected', decision.status, { trunk: trunk.name, number, reason: decision.reason, by: 'webhook' });
        return incoming.respond(decision.status, { reason: decision.reason });
      }
      // Twilio's own webhook names the verdict StirVerstat; a Twilio-protocol agent finds it there.
      details.customParameters = { ...decision.customParameters, ...(stir ? { StirVerstat: stir.verstat } : {}) };
      const source: SourceIdentity = {
        name: `trunk:${trunk.name}`,
        kind: 'sip-trunk',
        agent: decision.agent ?? agentForNumber(this.deps.agentsByUser, number) ?? inbound.agent,
        codecs: [...trunk.config.codecs],
        maxSessions: undefined,
        via: 'sip-trunk',
      };
      // The ports first: a range used up is a 503 before any ringing.
      transport = plan ? await rtp.answer(plan, remoteHost(flow.remote)) : await rtp.offer(trunk.config.codecs, remoteHost(flow.remote));
      if (pending.cancelled) return;
      if (!plan) {
        pending.transition('answered');
        const held = release;
        release = undefined;
        admitted = true; // the late offer owns the transport and the slot from here
        return this.late.offer({ incoming, trunk, number, callerId, source, details, transport, release: () => held?.(), transfer: (call, target, opts) => this.#transfer(call, target, opts, trunk, flow.remote) });
      }
      // The gateway's own limit refuses before any ringing too (startCall checks it again).
      deps.calls.checkAdmission(source);
      // RFC 3261 §13.3.1.1: ringing until the agent is attached, so the caller never hears dead air.
      this.#ring(incoming, pending, this.deps.ctx.deps.sip.contact(flow, number));
      const opened = transport;
      const started = await startCall(deps, {
        source,
        kind: 'sip-trunk',
        plan,
        signalingRemote: flow.remote,
        open: () => Promise.resolve(opened),
        onCreated: (call) => {
          pending.call = call;
          trunk.active.add(call.id);
          release?.();
          release = undefined;
          call.on('ended', () => trunk.active.delete(call.id));
        },
        transfer: (call, target, opts) => this.#transfer(call, target, opts, trunk, flow.remote),
        logFields: { sipCallId: header(req, 'Call-ID'), trunk: trunk.name },
        details,
        ...(trunk.config.maxCalls !== undefined ? { limit: trunkLimit(trunk.name, trunk.config.maxCalls) } : {}),
      });
      // The call's caller leg owns the transport now.
      admitted = true;
      const { call, log } = started;
      call.sipCallId = header(req, 'Call-ID');
      call.trunk = { name: trunk.name, direction: 'inbound', from: callerId.number, to: number, ...(stir ? { verstat: stir.verstat } : {}) };
      await this.#attachAgent(started.agent.start(), inbound.ringTimeoutSeconds * 1000, pending);
      if (pending.cancelled) return;
      if (call.state === 'ended') throw new VoxgateError('VG_AGENT_NOT_READY', `Temporarily Unavailable (the call ended while the agent started: ${call.endReason ?? 'unknown'})`);
      this.#stopRinging(pending);
      const d = ctx.openDialog({
        dialog: Dialog.uas(req, incoming.toTag, flow.transport),
        flow,
        call,
        role: 'caller',
        peer: transport!,
        party: callerId.number,
        localUser: number,
        answerSdp: started.localSdp,
        acked: false,
      });
      this.deps.agents.adopt(d);
      d.startSessionTimer(req);
      // Media that arrived while it rang (early RTP) connected the transport before anyone watched.
      if (transport!.state === 'connected') call.markConnected();
      call.on('ended', (reason) => this.deps.agents.callEnded(call, reason));
      pending.transition('answered');
      transport!.answered();
      d.answerInvite(incoming);
      metrics.inbound(trunk.name, 'answered');
      this.#audit(incoming, 'ok', 200, { trunk: trunk.name, number, session: call.id, codec: plan.audio.codec, from: callerId.number, media: transport!.remoteAddress(), srtp: plan.rtp.profile === 'RTP/SAVP', ...(stir ? { verstat: stir.verstat, attest: stir.attest ?? null } : {}) });
      log.info({ pipeline: call.describe(), agent: started.agent.agent.name, from: callerId.number, to: number }, 'trunk call answered');
    } catch (err) {
      this.#stopRinging(pending);
      if (pending.cancelled) return;
      pending.transition('refused');
      pending.call?.close('setup-failed');
      const e = err instanceof VoxgateError ? err : new VoxgateError('VG_INTERNAL', 'Server Internal Error', { cause: err });
      const status = e.sipStatus;
      logRefusal(deps.log, e, { trunk: trunk.name, number, admitted, reason: e.message }, status, 'trunk call refused');
      metrics.inbound(trunk.name, String(status));
      this.#audit(incoming, 'error', status, { trunk: trunk.name, number, reason: e.message });
      incoming.respond(status, {
        reason: e.message.replace(/[\r\n]+/g, ' ').slice(0, 120),
        headers: status === 503 ? [{ name: 'Retry-After', value: e.headers['Retry-After'] ?? '5' }] : [],
      });
    } finally {
      this.#stopRinging(pending);
      this.#pending.delete(key);
      release?.();
      // Ports not handed to a call (a refusal or CANCEL before it was made) go back now.
      if (transport && !admitted) transport.close();
    }
  }

  /**
   * The agent's transfer(target) on a trunk call: a blind REFER to the carrier when the trunk
   * takes them (`inbound.refer`, RFC 3515), numbers as `sip:+E164@carrier;user=phone`; otherwise
   * voxgate bridges the caller to the target itself (a registered SIP user, a number dialled on
   * this trunk's outbound side or the route's trunk), as it does for a list of targets.
   */
  #transfer(call: Call, target: TransferTarget, opts: TransferOptions | undefined, trunk: Trunk, carrier: string): Promise<void> {
    if (typeof target !== 'string') return this.deps.transfers.bridge(call, target, opts);
    const number = phoneNumberOf(target);
    if (trunk.config.inbound?.refer) {
      const d = this.deps.ctx.dialogs.current(call);
      if (!d) return Promise.reject(new TransferError(481, 'the call is not set up yet'));
      const host = remoteHost(carrier);
      const uri = number ? `sip:${number}@${host.includes(':') ? `[${host}]` : host};user=phone` : target;
      return this.deps.transfers.refer(d, uri);
    }
    return this.deps.transfers.bridge(call, target, opts);
  }

  /** The routing webhook's decision, or the trunk's default when there is no webhook or it failed. */
  async #route(trunk: Trunk, incoming: Incoming, details: CallDetails): Promise<Exclude<RoutingDecision, { kind: 'fallback' }>> {
    const hook = trunk.webhook;
    const inbound = trunk.inbound;
    if (!hook) return { kind: 'accept', agent: undefined, customParameters: {}, by: 'webhook' };
    const { req, flow } = incoming;
    const decision = await hook.decide({
      event: 'call.incoming',
      sipCallId: header(req, 'Call-ID') ?? '',
      trunk: trunk.name,
      from: details.from ?? 'anonymous',
      to: details.to ?? '',
      callerId: { number: details.from ?? 'anonymous', name: details.callerName, privacy: details.from === 'anonymous', source: (details.callerIdSource ?? 'From') as 'From' },
      diversion: details.diversion,
      headers: details.headers ?? {},
      remote: flow.remote,
      transport: flow.transport.protocol,
    });
    this.deps.ctx.deps.sip.audit({ action: 'sip.route', outcome: decision.kind === 'fallback' ? 'error' : 'ok', trunk: trunk.name, decision: decision.kind, why: decision.kind === 'fallback' ? decision.why : undefined, status: decision.kind === 'reject' ? decision.status : undefined, remote: flow.remote, sourceKind: 'sip-trunk' });
    if (decision.kind !== 'fallback') return decision;
    this.deps.ctx.deps.log.warn({ trunk: trunk.name, why: decision.why }, 'routing webhook failed; falling back');
    if (inbound.webhook?.onFailure === 'reject') return { kind: 'reject', status: 503, reason: `Service Unavailable (routing webhook: ${decision.why})`, by: 'webhook' };
    return { kind: 'accept', agent: undefined, customParameters: {}, by: 'webhook' };
  }

  /** 180 now and every RING_REPEAT_MS until the answer. */
  #ring(incoming: Incoming, pending: PendingTrunkInvite, contact: string): void {
    const clock = this.deps.ctx.deps.clock;
    const once = () => {
      if (pending.state !== 'ringing') return;
      // §12.1.1: a 180 with a To tag makes an early dialog, so it carries our Contact.
      incoming.respond(180, { headers: [{ name: 'Contact', value: contact }] });
      pending.ringTimer = clock.setTimeout(once, RING_REPEAT_MS);
    };
    once();
  }

  #stopRinging(pending: PendingTrunkInvite): void {
    if (pending.ringTimer) this.deps.ctx.deps.clock.clearTimeout(pending.ringTimer);
    pending.ringTimer = undefined;
  }

  /** The agent's attach, within the ring timeout: a failure or a timeout refuses the call (480). */
  #attachAgent(attach: Promise<void>, timeoutMs: number, pending: PendingTrunkInvite): Promise<void> {
    const clock = this.deps.ctx.deps.clock;
    return new Promise<void>((resolve, reject) => {
      const timer = clock.setTimeout(() => reject(new VoxgateError('VG_AGENT_NOT_READY', `Temporarily Unavailable (the agent did not start within ${timeoutMs / 1000} s)`)), timeoutMs);
      // A CANCEL ends the wait at once: nothing of the call is left for the timeout.
      pending.abort = () => {
        clock.clearTimeout(timer);
        resolve();
      };
      attach.then(
        () => {
          clock.clearTimeout(timer);
          resolve();
        },
        (err: unknown) => {
          clock.clearTimeout(timer);
          if (pending.cancelled) return resolve();
          reject(new VoxgateError('VG_AGENT_NOT_READY', 'Temporarily Unavailable (the agent failed to start)', { cause: err }));
        },
      );
    });
  }

  #audit(incoming: Incoming, outcome: 'ok' | 'error' | 'rejected', status: number, extra: Record<string, unknown>): void {
    const { req, flow } = incoming;
    this.deps.ctx.deps.sip.audit({
      action: 'sip.invite',
      outcome,
      status,
      target: req.uri,
      remote: flow.remote,
      transport: flow.transport.protocol,
      sourceKind: 'sip-trunk',
      ...extra,
    });
  }
}

/** `sip.agents` may name numbers as well as user parts. */
function agentForNumber(agents: Record<string, SourceConfig['agent']>, number: string): SourceConfig['agent'] {
  return Object.hasOwn(agents, number) ? agents[number] : undefined;
}

function pendingKey(req: SipRequest): string {
  return `${header(req, 'Call-ID')}|${header(req, 'CSeq')}`;
}

/** A trunk's maxCalls, counted across the fleet: one more is a 503, as on one node. */
export function trunkLimit(name: string, max: number): CallLimit {
  return { name: `trunk:${name}`, max, refuse: () => new VoxgateError('VG_CAPACITY', `Service Unavailable (trunk ${name} is at its ${max} calls across the fleet)`, { headers: { 'Retry-After': '5' } }) };
}
