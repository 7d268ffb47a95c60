import { randomBytes } from 'node:crypto';
import { TransferError, type Agent, type CallDetails, type TransferOptions, type TransferTarget } from '../agent/agent.js';
import type { SourceIdentity } from '../auth/source-auth.js';
import type { Clock } from '../core/clock.js';
import { VoxgateError } from '../core/errors.js';
import { newSessionId } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import { MediaEndpoint, type MediaFormat, type MediaRuntime } from '../media/endpoint.js';
import type { AnswerPlan } from '../sdp/codec-policy.js';
import type { MediaTransport, SendStream } from '../transport/media-transport.js';
import { AgentLeg } from './agent-leg.js';
import { Call, NATURAL_RATE } from './call.js';
import type { ActivityEvent } from './call-activity.js';
import type { CallTable } from './call-table.js';
import { PartyLeg } from './party-leg.js';

export type { SendStream };

export function newSendStream(): SendStream {
  return { ssrc: randomBytes(4).readUInt32BE(0), cname: randomBytes(9).toString('base64url') };
}

export interface StartCallDeps {
  calls: CallTable;
  runtime: MediaRuntime;
  /** The signalling clock: the call's idle timer runs on it. */
  clock: Clock;
  log: Logger;
  idleTimeoutMs: number;
  /** The agent for a call; `naturalRate` is the caller's codec's own rate (an agent with no rate of its own may take it). */
  resolveAgent(spec: SourceIdentity['agent'], hint?: { naturalRate: number }): Agent;
  /** In a fleet: limits counted on every node (cluster/nats/limits.ts). */
  limits?: FleetLimitsApi;
}

/** Places under a name counted fleet-wide: a source's maxSessions, a trunk's maxCalls. */
export interface FleetLimitsApi {
  acquire(name: string, id: string, max: number): Promise<boolean>;
  release(name: string, id: string): Promise<void>;
}

/** A limit a call counts against fleet-wide, and the refusal when it is reached. */
export interface CallLimit {
  name: string;
  max: number;
  refuse(): VoxgateError;
}

export interface StartCallRequest {
  /** The session id, when it was handed out before the call existed (a call voxgate places). */
  id?: string;
  /** The stream the caller's transport already sends as (a transport made before the call). */
  out?: SendStream;
  source: SourceIdentity;
  /** How the caller reached us, as its leg's kind: `whip`, `sip-ws`. */
  kind: string;
  /** The caller's audio, as negotiated from its offer. */
  plan: AnswerPlan;
  /** Opens the caller's transport once the call is admitted (answers its offer). */
  open(id: string, out: SendStream): Promise<MediaTransport & { localSdp: string }>;
  signalingRemote: string;
  /** What the agent's transfer(target) does for this call; without it, transfer() is refused. */
  transfer?(call: Call, target: TransferTarget, opts?: TransferOptions): Promise<void>;
  /** The call exists (admitted, in the table) and its transport is being opened. */
  onCreated?(call: Call): void;
  logFields?: Record<string, unknown>;
  /** What the agent is told about the call (numbers, caller ID, custom parameters). */
  details?: CallDetails;
  /** The fleet-wide limit this call counts against; default: its source's maxSessions. */
  limit?: CallLimit;
}

export interface StartedCall {
  call: Call;
  caller: PartyLeg;
  agent: AgentLeg;
  /** Our SDP for the caller. */
  localSdp: string;
  log: Logger;
  /** Attaches the agent; one whose attach fails ends the call with `agent-failed`. */
  begin(): void;
}

/**
 * In a fleet, the call's place under its limit on every node (a source's maxSessions by
 * default); returns what gives it back. A store that cannot be reached lets the call in (each
 * node's own count still holds): a NATS outage must not refuse every call.
 */
async function fleetPlace(deps: StartCallDeps, req: StartCallRequest, id: string): Promise<(() => void) | undefined> {
  const { source } = req;
  const limit: CallLimit | undefined =
    req.limit ??
    (source.maxSessions === undefined
      ? undefined
      : { name: `source:${source.name}`, max: source.maxSessions, refuse: () => new VoxgateError('VG_SOURCE_SESSION_LIMIT', `Source '${source.name}' already has its maximum of ${source.maxSessions} sessions across the fleet; end one first.`) });
  const limits = deps.limits;
  if (!limits || !limit) return undefined;
  let taken: boolean;
  try {
    taken = await limits.acquire(limit.name, id, limit.max);
  } catch (err) {
    // Lost every race for the entry (a burst at the limit): refused, as full. NATS away: this node's own count decides.
    if ((err as Error).name === 'LimitContention') throw limit.refuse();
    deps.log.warn({ err, limit: limit.name }, 'the fleet-wide limit could not be checked; this node\'s own count decides');
    return undefined;
  }
  if (!taken) throw limit.refuse();
  return () => void releaseWithRetry(limits, limit.name, id, deps.log);
}

/** A place given back, retried a few times (a failed release would hold it until this node goes). */
async function releaseWithRetry(limits: FleetLimitsApi, name: string, id: string, log: Logger): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await limits.release(name, id);
    } catch (err) {
      if (attempt === 5) return log.warn({ err, limit: name }, 'a fleet-wide place could not be given back (this node drops it later)');
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
}

/**
 * An agent elsewhere (a worker) takes its place before the call is answered: none taking it
 * refuses the call (VG_AGENT_NOT_READY: WHIP 503, SIP 480). A call that ends before the agent
 * is attached (refused, cancelled, its transport failed) gives the place back.
 */
async function reserveAgent(agent: Agent, call: Call, req: StartCallRequest): Promise<void> {
  call.once('ended', () => agent.unreserve?.());
  try {
    await agent.reserve!({ id: call.id, source: req.source, details: req.details });
  } catch (err) {
    call.close('setup-failed');
    if (err instanceof VoxgateError) throw err;
    throw new VoxgateError('VG_AGENT_NOT_READY', 'Temporarily Unavailable (the agent could not take the call)', { cause: err });
  }
  if (call.state === 'ended') throw new VoxgateError('VG_SETUP_ABORTED', 'The session ended while it was being set up.');
}

/** The stream a plan's audio section describes. */
export function formatOf(plan: AnswerPlan): MediaFormat {
  const a = plan.audio;
  return { codec: a.codec, payloadType: a.payloadType, clockRate: a.clockRate, telephoneEvent: a.telephoneEvent, sends: a.direction === 'sendrecv' || a.direction === 'sendonly' };
}

/**
 * A caller reaches an agent, however it came (WHIP, SIP): admission (503 at capacity, 429/486
 * over a source's limit), the Call in the table, the caller's transport and media endpoint,
 * and the agent leg with its pacer. The one place this is wired, for every kind of caller.
 */
export async function startCall(deps: StartCallDeps, req: StartCallRequest): Promise<StartedCall> {
  deps.calls.checkAdmission(req.source);
  const agent = deps.resolveAgent(req.source.agent, { naturalRate: NATURAL_RATE[req.plan.audio.codec] });
  const id = req.id ?? newSessionId();
  const release = await fleetPlace(deps, req, id);
  const call = new Call(id, req.source, deps.clock, deps.idleTimeoutMs, { pcmRate: agent.sampleRate, kind: req.kind, mediaNow: () => deps.runtime.clock.now() });
  call.signalingRemote = req.signalingRemote;
  try {
    deps.calls.add(call);
  } catch (err) {
    release?.();
    throw err;
  }
  if (release) call.once('ended', release);
  req.onCreated?.(call);
  if (agent.reserve) await reserveAgent(agent, call, req);
  const out = req.out ?? newSendStream();
  let transport: MediaTransport & { localSdp: string };
  try {
    transport = await req.open(id, out);
  } catch (err) {
    call.close('setup-failed');
    // A refusal with its own status (no RTP port free: 503; unusable SDES keys: 488) keeps it.
    if (err instanceof VoxgateError) throw err;
    throw new VoxgateError('VG_WEBRTC_FAILED', 'The WebRTC stack could not answer this offer.', { cause: err });
  }
  if (call.state === 'ended') {
    transport.close();
    throw new VoxgateError('VG_SETUP_ABORTED', 'The session ended while it was being set up.');
  }
  const log = deps.log.child({ session: id, ...req.logFields });
  const caller = new PartyLeg(req.kind, new MediaEndpoint(id, transport, formatOf(req.plan), agent.sampleRate, out, deps.runtime));
  call.addLeg('caller', caller);
  const agentLeg = new AgentLeg(agent, id, req.source, {
    clock: deps.runtime.clock,
    hangup: (reason) => {
      log.info({ reason }, 'agent hung up');
      call.closeByAgent(reason);
    },
    transfer: (target, opts) => (call.transferHandler ? call.transferHandler(target, opts) : Promise.reject(new Error('this call cannot be transferred'))),
    send: (data) => {
      call.message('caller', data);
      const type = (data as { type?: unknown } | null)?.type;
      if (type === 'turn' || type === 'agent-text') call.fanout.publish(type, data);
      // Marks go on the timeline as they resolve (below), whether or not the agent reports them.
      if (typeof type === 'string' && type !== 'mark') call.activity.event(data as ActivityEvent);
    },
    marked: (name, result) => call.activity.event({ type: 'mark', name, result }),
    sendDtmf: (digits) => call.sendDtmf('agent', digits),
    // With the call's own authority: only a source with `outbound` may place calls (not a phone caller's agent).
    dial: (dial, callId) => deps.calls.dial({ ...dial, customParameters: { ...dial.customParameters, parentSession: id } }, { source: req.source, ...(callId ? { id: callId } : {}) }),
  }, req.details);
  call.addLeg('agent', agentLeg);
  if (req.transfer) call.transferHandler = recordedTransfer(call, (target, opts) => req.transfer!(call, target, opts));
  call.on('dtmf', (from, digit) => log.info({ from, digit }, 'dtmf'));
  return {
    call,
    caller,
    agent: agentLeg,
    localSdp: transport.localSdp,
    log,
    begin: () => {
      agentLeg.start().catch((err: unknown) => {
        log.error({ err, agent: agent.name }, 'agent failed to start; ending the call');
        call.close('agent-failed');
      });
    },
  };
}

/** A transfer handler whose attempts and outcomes go on the call's timeline (the agent's and the operator's alike). */
export function recordedTransfer(call: Call, transfer: NonNullable<Call['transferHandler']>): NonNullable<Call['transferHandler']> {
  return async (target, opts) => {
    const to = [target].flat().join(', ');
    call.activity.event({ type: 'transfer', target: to });
    try {
      await transfer(target, opts);
      call.activity.event({ type: 'transfer', target: to, result: 'connected' });
    } catch (err) {
      const why = err instanceof TransferError ? `${err.status} ${err.reason}` : (err as Error).message;
      call.activity.event({ type: 'transfer', target: to, result: `failed (${why})` });
      throw err;
    }
  };
}
