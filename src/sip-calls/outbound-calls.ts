import type { CallDetails, TransferOptions, TransferTarget } from '../agent/agent.js';
import type { SourceIdentity } from '../auth/source-auth.js';
import type { Call, EndReason } from '../call/call.js';
import { startCall, type SendStream } from '../call/start-call.js';
import type { Logger } from '../core/logger.js';
import { TypedEmitter } from '../core/events.js';
import { VoxgateError } from '../core/errors.js';
import { newSessionId } from '../core/ids.js';
import type { AnswerPlan } from '../sdp/codec-policy.js';
import { hostOf, userOf } from '../sip/build.js';
import type { SipFlow } from '../sip/transport/transport.js';
import type { NegotiatedTransport } from '../transport/factory.js';
import type { RtpTransports } from '../transport/rtp-udp/factory.js';
import type { AgentUas } from './agent-uas.js';
import { dropAnswered, NumberCallee, UserCallee, type Answered, type Callee } from './callee.js';
import type { SipCallsContext } from './context.js';
import type { DialAuthority, DialRequest, OutboundCallState, OutboundCallView, OutboundCallsApi } from '../call/outbound-types.js';
import { callerIdFor, phoneNumberOf, type OutboundRoutes } from './trunk/routes.js';
import type { Trunk } from './trunk/trunks.js';
import type { TrunkMetrics } from './trunk/trunk-metrics.js';

/** The moves of an outbound call (outbound-types.ts says what each state is). */
const MOVES: Record<OutboundCallState, OutboundCallState[]> = {
  dialing: ['ringing', 'early-media', 'answered', 'ended'],
  ringing: ['early-media', 'answered', 'ended'],
  'early-media': ['answered', 'ended'],
  answered: ['ended'],
  ended: [],
};

/** Ended calls kept for `GET /api/calls/{id}`: the newest this many, for at most this long. */
const HISTORY = 1000;
const HISTORY_MS = 3_600_000;
const DEFAULT_RING_S = 30;

class OutboundCall {
  state: OutboundCallState = 'dialing';
  answeredAt: number | undefined;
  endedAt: number | undefined;
  sipCallId: string | undefined;
  status: number | undefined;
  reason: string | undefined;
  cause: number | undefined;
  endReason: string | undefined;
  callee: Callee | undefined;
  call: Call | undefined;
  /** A hang-up asked for before the INVITE was out. */
  hungUp = false;

  constructor(
    readonly id: string,
    readonly req: DialRequest,
    readonly source: SourceIdentity,
    readonly trunk: Trunk | undefined,
    readonly from: string | undefined,
    readonly createdAt: number,
  ) {}

  move(to: OutboundCallState): boolean {
    if (to === this.state || !MOVES[this.state].includes(to)) return false;
    this.state = to;
    return true;
  }

  view(): OutboundCallView {
    const iso = (t: number | undefined) => (t === undefined ? null : new Date(t).toISOString());
    const agent = this.source.agent;
    return {
      id: this.id,
      state: this.state,
      to: this.req.to,
      from: this.from ?? null,
      trunk: this.trunk?.name ?? null,
      agent: agent === undefined ? null : typeof agent === 'string' ? agent : String((agent as { type?: unknown }).type ?? 'custom'),
      createdAt: iso(this.createdAt)!,
      answeredAt: iso(this.answeredAt),
      endedAt: iso(this.endedAt),
      sipCallId: this.sipCallId ?? null,
      status: this.status ?? null,
      reason: this.reason ?? null,
      cause: this.cause ?? null,
      endReason: this.endReason ?? null,
    };
  }
}

export interface OutboundCallsEvents extends Record<string, unknown[]> {
  /** Any change of a call's state (tests, logs, an agent's `dial`). */
  state: [view: OutboundCallView];
}

export interface OutboundCallsDeps {
  ctx: SipCallsContext;
  routes: OutboundRoutes | undefined;
  rtp: RtpTransports | undefined;
  agents: AgentUas;
  metrics: TrunkMetrics | undefined;
  draining(): boolean;
}

/**
 * Calls voxgate places for an application (`POST /api/calls`, `gateway.calls.dial`): a phone
 * number through a trunk, or a registered user. The INVITE goes out at once; whoever answers is
 * the call's `caller` leg (the party the agent talks with) and the agent is attached then, or at
 * the first early media when the request asks for it. `hangup` CANCELs before the answer and
 * BYEs after. Ended calls stay readable for an hour.
 */
export class OutboundCalls extends TypedEmitter<OutboundCallsEvents> implements OutboundCallsApi {
  readonly #calls = new Map<string, OutboundCall>();

  constructor(private readonly deps: OutboundCallsDeps) {
    super();
  }

  dial(req: DialRequest, by: DialAuthority): OutboundCallView {
    const { ctx } = this.deps;
    const now = ctx.deps.clock.now();
    if (this.deps.draining()) throw new VoxgateError('VG_HTTP_DRAINING', 'This gateway is shutting down; place the call on another node.', { headers: { 'Retry-After': '5' } });
    if (by.source && !by.source.outbound) throw new VoxgateError('VG_AUTH_FORBIDDEN', `Source ${by.source.name} may not place calls: set sources[].outbound: true for it.`);
    // An agent spec with its own endpoint (a twilio-stream URL) would stream the callee's audio anywhere: the admin's to give.
    if (by.source && req.agent !== undefined && typeof req.agent !== 'string') {
      throw new VoxgateError('VG_AUTH_FORBIDDEN', `agent: source ${by.source.name} may name a configured agent only; agent specs with their own settings take the admin token.`);
    }
    const invalid = (field: string, message: string) => new VoxgateError('VG_REQUEST_INVALID', `${field}: ${message}`, { extra: { errors: [{ field, message }] } });
    // An id handed out in advance (an agent on a worker chose it) must be new.
    if (by.id !== undefined && (this.#calls.has(by.id) || ctx.deps.calls.get(by.id))) throw invalid('id', `session ${by.id} exists already`);
    const timeout = req.timeoutSeconds ?? DEFAULT_RING_S;
    if (!(timeout >= 1 && timeout <= 300)) throw invalid('timeoutSeconds', 'between 1 and 300 seconds');
    const number = phoneNumberOf(req.to);
    let trunk: Trunk | undefined;
    let from: string | undefined;
    if (number) {
      const routes = this.deps.routes;
      if (req.trunk !== undefined) {
        trunk = routes?.trunks.byName(req.trunk);
        if (!trunk) throw invalid('trunk', `there is no trunk '${req.trunk}' (sip.trunks[].name)`);
        if (!trunk.config.outbound) throw invalid('trunk', `trunk '${req.trunk}' has no outbound section: it cannot place calls`);
      } else {
        trunk = routes?.trunkFor(number);
        if (!trunk) throw invalid('trunk', `no sip.outboundRoutes entry takes ${number}; name the trunk`);
      }
      if (!trunk.mayDial(number)) throw new VoxgateError('VG_AUTH_FORBIDDEN', `to: trunk ${trunk.name} may not call ${number} (outbound.allowedPrefixes)`);
      from = callerIdFor(trunk, req.from);
      if (req.from !== undefined && from === undefined) {
        throw new VoxgateError('VG_CALLER_ID_FORBIDDEN', `from: ${req.from} is not one of trunk ${trunk.name}'s numbers (outbound.numbers); present one of ${trunk.config.outbound!.numbers.join(', ') || 'none configured'}.`);
      }
      if (from === undefined) throw invalid('from', `trunk ${trunk.name} has no outbound.numbers: give the caller ID to present`);
    } else {
      const uri = ctx.targetUri(req.to);
      const user = userOf(uri);
      if (!/^sips?:/i.test(req.to.trim()) || !user || hostOf(uri) !== ctx.deps.domain.toLowerCase()) {
        throw invalid('to', `an E.164 number such as +15557654321, or a registered user as sip:alice@${ctx.deps.domain}`);
      }
    }
    const source: SourceIdentity = {
      name: by.source?.name ?? 'admin',
      kind: 'outbound',
      // Its agent may place calls too (session.dial) if whoever placed this one may.
      outbound: by.source ? by.source.outbound === true : true,
      agent: req.agent ?? by.source?.agent,
      codecs: trunk ? [...trunk.config.codecs] : ['opus', 'g722', 'pcmu', 'pcma'],
      maxSessions: by.source?.maxSessions,
      via: by.source?.via ?? 'token',
    };
    // Fail before anything rings: an agent that cannot be made, a full gateway, a busy trunk.
    try {
      ctx.deps.resolveAgent(source.agent);
    } catch (err) {
      throw invalid('agent', (err as Error).message);
    }
    ctx.deps.calls.checkAdmission(source);
    const wait = trunk ? trunk.admitOutbound(now) : 0;
    if (wait > 0) {
      this.deps.metrics?.outbound(trunk!.name, '429');
      throw new VoxgateError('VG_TRUNK_LIMIT', `Trunk ${trunk!.name} is at its outbound limit (outbound.maxCalls or callsPerSecond); try again in ${wait} s.`, { headers: { 'Retry-After': String(wait) } });
    }
    const oc = new OutboundCall(by.id ?? newSessionId(), { ...req, timeoutSeconds: timeout }, source, trunk, from, now);
    this.#calls.set(oc.id, oc);
    trunk?.outbound.add(oc.id);
    this.#prune(now);
    void this.#place(oc, number).catch((err: unknown) => {
      ctx.deps.log.error({ err, call: oc.id }, 'outbound call failed');
      this.#end(oc, 500, 'Server Internal Error', undefined, 'failed');
    });
    return oc.view();
  }

  get(id: string): OutboundCallView | undefined {
    return this.#calls.get(id)?.view();
  }

  list(): OutboundCallView[] {
    const all = [...this.#calls.values()];
    return [...all.filter((c) => c.state !== 'ended'), ...all.filter((c) => c.state === 'ended').reverse()].map((c) => c.view());
  }

  hangup(id: string): OutboundCallView | undefined {
    const oc = this.#calls.get(id);
    if (!oc) return undefined;
    if (oc.state === 'ended') return oc.view();
    if (oc.call && oc.state === 'answered') {
      oc.call.close('deleted');
    } else {
      oc.hungUp = true;
      oc.endReason = 'deleted';
      oc.callee?.cancel(487, 'Request Terminated (hung up)');
      // With early media the call exists already: it ends with the CANCEL.
      oc.call?.close('deleted');
    }
    return oc.view();
  }

  /** Shutdown: every call still ringing is given up (CANCEL), ended with endReason `shutdown`. */
  cancelAll(): void {
    for (const oc of this.#calls.values()) {
      if (oc.state === 'ended' || oc.state === 'answered') continue;
      oc.hungUp = true;
      oc.endReason ??= 'shutdown';
      oc.callee?.cancel(503, 'Service Unavailable (shutting down)');
      oc.call?.close('shutdown');
    }
  }

  /** A connection closed: a call ringing on it fails over or fails. */
  flowClosed(flow: SipFlow): void {
    for (const oc of this.#calls.values()) if (oc.state !== 'ended' && oc.state !== 'answered') oc.callee?.flowClosed(flow);
  }

  async #place(oc: OutboundCall, number: string | undefined): Promise<void> {
    const { ctx } = this.deps;
    const log = ctx.deps.log.child({ call: oc.id, to: oc.req.to, trunk: oc.trunk?.name });
    const ringTimeoutMs = oc.req.timeoutSeconds! * 1000;
    const callee: Callee =
      number && oc.trunk
        ? new NumberCallee(ctx, this.deps.rtp!, oc.trunk, number, { from: oc.from!, ringTimeoutMs, codecs: [...oc.trunk.config.codecs], log })
        : new UserCallee(ctx, userOf(ctx.targetUri(oc.req.to))!, { id: oc.id, format: undefined, ringTimeoutMs, localUser: oc.source.name === 'admin' ? 'voxgate' : oc.source.name, log });
    oc.callee = callee;
    if (oc.hungUp) callee.cancel(487, 'Request Terminated (hung up)');
    callee.on('dialing', (callId) => {
      oc.sipCallId = callId;
      this.#emit(oc);
    });
    callee.on('ringing', () => {
      if (oc.move('ringing')) this.#emit(oc);
    });
    callee.on('early-media', (transport, plan, out) => {
      if (oc.move('early-media')) this.#emit(oc);
      // The agent hears a 183's audio only if the request asked for it.
      if (oc.req.earlyMedia && !oc.call) void this.#start(oc, transport, plan, out, log).catch((err: unknown) => log.warn({ err }, 'the agent could not start on early media'));
    });
    ctx.deps.sip.audit({ action: 'sip.invite', outcome: 'ok', status: 0, by: 'voxgate', for: 'api', session: oc.id, target: oc.req.to, trunk: oc.trunk?.name ?? null, from: oc.from ?? null, user: oc.source.name });
    const outcome = await callee.result;
    if (!outcome.ok) {
      const endReason = oc.endReason ?? (outcome.status === 408 ? 'timeout' : 'failed');
      // The call's status is the carrier's final answer, not the early call's own end.
      this.#end(oc, outcome.status, outcome.reason, outcome.cause, endReason);
      oc.call?.close('setup-failed');
      log.info({ status: outcome.status, reason: outcome.reason, cause: outcome.cause }, 'outbound call not answered');
      return;
    }
    if (oc.hungUp || oc.call?.state === 'ended') {
      // Hung up (or the early call ended) while the 200 was on its way: ACKed, and BYE at once.
      dropAnswered(ctx, outcome, 'the caller hung up');
      this.#end(oc, 487, 'Request Terminated (hung up)', undefined, oc.endReason ?? 'deleted');
      return;
    }
    await this.#answered(oc, outcome, log);
  }

  /** The callee answered: the call (made now, or at early media) gets its dialog and the agent. */
  async #answered(oc: OutboundCall, a: Answered, log: Logger): Promise<void> {
    const { ctx } = this.deps;
    oc.status = 200;
    oc.reason = a.response.reason;
    oc.answeredAt = ctx.deps.clock.now();
    if (!oc.call) {
      try {
        await this.#start(oc, a.transport, a.plan, a.out, log);
      } catch (err) {
        log.info({ err }, 'the answered call could not start');
        dropAnswered(ctx, a, 'the call could not start');
        this.#end(oc, (err as VoxgateError).sipStatus ?? 500, (err as Error).message, undefined, 'setup-failed');
        return;
      }
    }
    const call = oc.call!;
    call.sipCallId = a.dialog.callId;
    const d = ctx.openDialog({ dialog: a.dialog, flow: a.flow, call, role: 'caller', peer: a.transport, party: a.party, localUser: a.localUser, answerSdp: a.answerSdp, acked: true, answer: a.response });
    this.deps.agents.adopt(d);
    call.on('ended', (reason) => this.deps.agents.callEnded(call, reason));
    if (a.transport.state === 'connected') call.markConnected();
    oc.move('answered');
    this.#emit(oc);
    this.deps.metrics?.outbound(oc.trunk?.name ?? 'users', 'answered');
    ctx.deps.sip.audit({ action: 'sip.invite', outcome: 'ok', status: 200, by: 'voxgate', for: 'api', session: oc.id, target: oc.req.to, trunk: oc.trunk?.name ?? null, codec: a.plan.audio.codec, remote: a.flow.remote });
    log.info({ pipeline: call.describe() }, 'outbound call answered');
  }

  /** The call and its agent, on the callee's media (its answer, or its early media). */
  async #start(oc: OutboundCall, transport: NegotiatedTransport, plan: AnswerPlan, out: SendStream, log: Logger): Promise<void> {
    const { ctx } = this.deps;
    const details: CallDetails = { to: oc.req.to, ...(oc.from ? { from: oc.from } : {}), ...(oc.trunk ? { trunk: oc.trunk.name } : {}), customParameters: oc.req.customParameters ?? {} };
    const started = await startCall(ctx.deps, {
      id: oc.id,
      source: oc.source,
      kind: 'outbound',
      plan,
      out,
      signalingRemote: oc.callee?.target ?? oc.req.to,
      open: () => Promise.resolve(transport),
      // A party reached by a call we placed is transferred by voxgate calling the target.
      transfer: (call, target, opts) => this.transfer(call, target, opts),
      logFields: { trunk: oc.trunk?.name, to: oc.req.to },
      details,
    });
    oc.call = started.call;
    if (oc.trunk) started.call.trunk = { name: oc.trunk.name, direction: 'outbound', from: oc.from ?? '', to: oc.req.to };
    started.call.on('ended', (reason: EndReason) => {
      // An early call that ends (the agent hung up, a DELETE, shutdown) ends the attempt: the phone stops ringing.
      if (oc.state !== 'answered') {
        oc.hungUp = true;
        oc.callee?.cancel(487, 'Request Terminated (the call ended)');
      }
      this.#end(oc, oc.status ?? 487, oc.reason ?? 'Request Terminated', oc.cause, oc.endReason ?? reason);
    });
    started.begin();
    log.info({ agent: started.agent.agent.name }, 'agent attached to the outbound call');
  }

  /** Set by the router: the agent's transfer(target) on a call voxgate placed. */
  transfer: (call: Call, target: TransferTarget, opts?: TransferOptions) => Promise<void> = () => Promise.reject(new Error('transfers are not wired'));

  #end(oc: OutboundCall, status: number, reason: string, cause: number | undefined, endReason: string): void {
    if (oc.state === 'ended') return;
    oc.status ??= status;
    oc.reason ??= reason;
    oc.cause ??= cause;
    oc.endReason ??= endReason;
    oc.endedAt = this.deps.ctx.deps.clock.now();
    oc.move('ended');
    oc.trunk?.outbound.delete(oc.id);
    if (!oc.answeredAt) this.deps.metrics?.outbound(oc.trunk?.name ?? 'users', String(status));
    this.deps.ctx.deps.sip.audit({ action: 'call.ended', outcome: oc.answeredAt ? 'ok' : 'error', session: oc.id, status: oc.status, reason: oc.reason, cause: oc.cause ?? null, endReason: oc.endReason, to: oc.req.to, trunk: oc.trunk?.name ?? null });
    this.#emit(oc);
  }

  #emit(oc: OutboundCall): void {
    this.emit('state', oc.view());
  }

  /** Ended calls beyond the history's size or age are forgotten. */
  #prune(now: number): void {
    let ended = 0;
    for (const oc of [...this.#calls.values()].reverse()) {
      if (oc.state !== 'ended') continue;
      if (++ended > HISTORY || now - (oc.endedAt ?? now) > HISTORY_MS) this.#calls.delete(oc.id);
    }
  }
}
