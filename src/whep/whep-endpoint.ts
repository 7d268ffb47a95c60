import type { AuditEntry, AuditLog } from '../audit/audit-log.js';
import type { ListenerAuthenticator, ListenerIdentity } from '../auth/listener-auth.js';
import type { Call } from '../call/call.js';
import type { CallTable } from '../call/call-table.js';
import { ListenerLeg, type ListenTrack } from '../call/listener-leg.js';
import type { SessionDirectory, SessionRecord } from '../call/session-directory.js';
import { newSendStream } from '../call/start-call.js';
import type { Clock } from '../core/clock.js';
import type { CodecName, IceServerConfig } from '../core/config.js';
import { VoxgateError } from '../core/errors.js';
import { newEtag, newSessionId } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import { rtpClockRate } from '../audio/codec.js';
import { planAnswer, type AnswerPlan } from '../sdp/codec-policy.js';
import { iceServerLinks } from '../transport/webrtc/ice-servers.js';
import type { TrickleAnswerer, TrickleTransport } from '../transport/factory.js';
import { applyTricklePatch, auditOrFail, createdReply, offerIceCredentials, parseOffer, refuse, requireSdp, type EndpointReply, type EndpointRequest } from '../wish/resource.js';

export const SSE_EXTENSION = 'urn:ietf:params:whep:ext:core:server-sent-events';
export const SSE_EVENTS = ['active', 'inactive', 'viewercount', 'quality', 'turn'];
const TRACKS: ListenTrack[] = ['caller', 'agent', 'mix'];

/** A WHEP viewer of a live call. */
export interface WhepResource {
  readonly id: string;
  readonly sessionId: string;
  readonly etag: string;
  readonly call: Call;
  readonly leg: ListenerLeg;
  /** The listener's transport, which takes its trickled candidates. */
  readonly transport: TrickleTransport;
  readonly plan: AnswerPlan;
  readonly listener: ListenerIdentity;
  readonly remoteUfrag: string | undefined;
  readonly remotePwd: string | undefined;
}

export interface WhepEndpointDeps {
  /** Where any session is found, whatever its kind (WHIP, SIP, ...). */
  directory: SessionDirectory;
  /** This node's live calls. */
  calls: CallTable;
  auth: ListenerAuthenticator;
  audit: AuditLog;
  clock: Clock;
  log: Logger;
  /** Answers the listener's offer (WebRTC: webRtcTransports(); a fake in tests). */
  transports: TrickleAnswerer;
  iceServers: IceServerConfig[];
  retryAfterSeconds: number;
}

/**
 * WHEP (draft-ietf-wish-whep): authorised listeners hear a live call as the caller, the agent
 * (or whoever the caller talks with), or both mixed, whatever kind of call it is.
 * POST /whep/{session}?track=caller|agent|mix with a recvonly offer; every POST and DELETE is
 * audited with the listener's name.
 */
export class WhepEndpoint {
  readonly resources = new Map<string, WhepResource>();

  constructor(private readonly deps: WhepEndpointDeps) {}

  /**
   * A call that can be listened to now, or the refusal: 404 for an id that never existed (here or,
   * in a fleet, anywhere) or has ended; 409 with Retry-After while it exists but is not live yet
   * (WHEP §4.3). A 409 for an unknown id made clients retry for ever.
   */
  async liveCall(sessionId: string): Promise<Call> {
    return this.#live(sessionId, await this.deps.directory.lookup(sessionId));
  }

  #live(sessionId: string, record: SessionRecord | undefined): Call {
    if (record?.state === 'ended') throw new VoxgateError('VG_SESSION_NOT_FOUND', `Session ${sessionId} has ended.`);
    const call = this.deps.calls.get(sessionId);
    if (!call && !record) throw new VoxgateError('VG_SESSION_NOT_FOUND', `There is no session ${sessionId}: check the id in the WHIP Location or GET /api/sessions.`);
    if (!call || call.state !== 'connected') {
      throw new VoxgateError('VG_SESSION_NOT_STARTED', `Session ${sessionId} is not live; retry when it has started.`, {
        headers: { 'Retry-After': String(this.deps.retryAfterSeconds) },
      });
    }
    return call;
  }

  async post(sessionId: string, trackParam: string | null, req: EndpointRequest): Promise<EndpointReply> {
    const { deps } = this;
    let who: ListenerIdentity | undefined;
    try {
      who = deps.auth.authenticate(req.headers.authorization);
      const track = (trackParam ?? 'mix') as ListenTrack;
      if (!TRACKS.includes(track)) {
        throw new VoxgateError('VG_SDP_BAD_DIRECTION', `track must be one of ${TRACKS.join(', ')} (got '${trackParam}').`);
      }
      const record = await deps.directory.lookup(sessionId);
      const sourceName = deps.calls.get(sessionId)?.source.name ?? record?.source;
      if (sourceName !== undefined) deps.auth.authorize(who, sessionId, sourceName);
      const call = this.#live(sessionId, record);
      const caller = call.leg('caller')?.endpoint;
      if (!caller) throw new VoxgateError('VG_SESSION_NOT_STARTED', `Session ${sessionId} has no caller yet; retry shortly.`, { headers: { 'Retry-After': String(deps.retryAfterSeconds) } });
      const text = requireSdp(req);
      const offer = parseOffer(text);
      const callerCodec = caller.format.codec;
      const codecs = [...new Set<CodecName>([callerCodec, 'opus', 'pcmu', 'pcma', 'g722'])];
      const plan = planAnswer(offer, { codecs, allowSendRecv: false, role: 'egress' });

      const id = newSessionId();
      const out = newSendStream();
      let transport: TrickleTransport;
      try {
        transport = await deps.transports.answer(id, text, plan, out);
      } catch (err) {
        if (err instanceof VoxgateError) throw err; // the offer refused (400): the client's to fix
        throw new VoxgateError('VG_WEBRTC_FAILED', 'The WebRTC stack could not answer this offer.', { cause: err });
      }
      // The call may have ended while the answer was being made.
      if (call.state === 'ended') {
        transport.close();
        throw new VoxgateError('VG_SESSION_NOT_FOUND', `Session ${sessionId} has ended.`);
      }
      const a = plan.audio;
      const leg = new ListenerLeg(id, who.name, track, a.codec, a.payloadType, rtpClockRate(a.codec), out.ssrc, transport, track === 'caller' && a.codec === callerCodec, (l) => {
        this.resources.delete(l.id);
        call.removeLeg(`listener:${l.id}`, 'deleted');
      });
      const resource: WhepResource = { id, sessionId, etag: newEtag(), call, leg, transport, plan, listener: who, ...offerIceCredentials(offer, a.mid) };
      transport.on('state', (state) => {
        if (state === 'failed') leg.close('ice-failed');
      });
      try {
        this.#audit({ action: 'whep.post', outcome: 'ok', status: 201, track, codec: a.codec }, who, req, sessionId, id);
      } catch (err) {
        transport.close();
        throw err;
      }
      this.resources.set(id, resource);
      call.addListener(leg);
      const location = `${req.baseUrl}/whep/${sessionId}/${id}`;
      return createdReply(
        location,
        resource.etag,
        [...iceServerLinks(deps.iceServers, id, deps.clock.now()), `<${location}/events>; rel="${SSE_EXTENSION}"; events="${SSE_EVENTS.join(',')}"`],
        transport.localSdp,
      );
    } catch (err) {
      return this.#reject(err, 'whep.post', who, req, sessionId, undefined);
    }
  }

  patch(sessionId: string, id: string, req: EndpointRequest): EndpointReply {
    let who: ListenerIdentity | undefined;
    try {
      who = this.deps.auth.authenticate(req.headers.authorization);
      const r = this.#owned(sessionId, id, who);
      const target = { etag: r.etag, peer: r.transport, mid: r.plan.audio.mid, remoteUfrag: r.remoteUfrag, remotePwd: r.remotePwd };
      const { used } = applyTricklePatch(target, req, (candidates) => this.#audit({ action: 'whep.patch', outcome: 'ok', status: 204, candidates }, who, req, sessionId, id));
      this.deps.log.debug({ session: sessionId, listener: id, used }, 'trickled candidates applied');
      return { status: 204, headers: {} };
    } catch (err) {
      return this.#reject(err, 'whep.patch', who, req, sessionId, id);
    }
  }

  delete(sessionId: string, id: string, req: EndpointRequest): EndpointReply {
    let who: ListenerIdentity | undefined;
    try {
      who = this.deps.auth.authenticate(req.headers.authorization);
      const r = this.#owned(sessionId, id, who);
      this.#audit({ action: 'whep.delete', outcome: 'ok', status: 200 }, who, req, sessionId, id);
      r.leg.close('deleted');
      return { status: 200, headers: {} };
    } catch (err) {
      return this.#reject(err, 'whep.delete', who, req, sessionId, id);
    }
  }

  /** The listener resource for an SSE stream, after the same checks as PATCH/DELETE. */
  forEvents(sessionId: string, id: string, authorization: string | undefined): WhepResource {
    return this.#owned(sessionId, id, this.deps.auth.authenticate(authorization));
  }

  #owned(sessionId: string, id: string, who: ListenerIdentity): WhepResource {
    const r = this.resources.get(id);
    if (!r || r.sessionId !== sessionId) throw new VoxgateError('VG_SESSION_NOT_FOUND', `There is no live WHEP session ${id} on ${sessionId}.`);
    if (r.listener.name !== who.name) throw new VoxgateError('VG_AUTH_FORBIDDEN', 'This WHEP session belongs to another listener.');
    return r;
  }

  #audit(entry: AuditEntry, who: ListenerIdentity | undefined, req: EndpointRequest, session: string, listenerSession: string | undefined): void {
    auditOrFail(this.deps.audit, this.deps.log, { ...entry, source: who?.name ?? null, sourceKind: who ? 'listener' : null, remote: req.remote, session, listenerSession: listenerSession ?? null });
  }

  #reject(err: unknown, action: string, who: ListenerIdentity | undefined, req: EndpointRequest, session: string, id: string | undefined): EndpointReply {
    return refuse(err, this.deps.log, action, { remote: req.remote, listener: who?.name, session }, (entry) => this.#audit(entry, who, req, session, id));
  }
}
