import { randomBytes } from 'node:crypto';
import type { AuditEntry, AuditLog } from '../audit/audit-log.js';
import type { ListenerAuthenticator, ListenerIdentity } from '../auth/listener-auth.js';
import type { Call } from '../call/call.js';
import { ListenerLeg, type ListenTrack } from '../call/listener-leg.js';
import type { Clock } from '../core/clock.js';
import type { CodecName, IceServerConfig } from '../core/config.js';
import { VoxgateError } from '../core/errors.js';
import { newEtag, newSessionId } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import { rtpClockRate } from '../audio/codec.js';
import { planAnswer, type AnswerPlan } from '../sdp/codec-policy.js';
import { iceServerLinks } from '../webrtc/ice-servers.js';
import { WebRtcPeer, type MediaEndpointOptions } from '../webrtc/peer.js';
import type { WhipEndpoint, WhipResource } from '../whip/whip-endpoint.js';
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
  readonly source: WhipResource;
  readonly leg: ListenerLeg;
  readonly plan: AnswerPlan;
  readonly listener: ListenerIdentity;
  readonly remoteUfrag: string | undefined;
  readonly remotePwd: string | undefined;
}

export interface WhepEndpointDeps {
  whip: WhipEndpoint;
  auth: ListenerAuthenticator;
  audit: AuditLog;
  clock: Clock;
  log: Logger;
  media: MediaEndpointOptions;
  iceServers: IceServerConfig[];
  retryAfterSeconds: number;
}

/**
 * WHEP (draft-ietf-wish-whep): authorised listeners hear a live call as the caller, the agent,
 * or both mixed. POST /whep/{session}?track=caller|agent|mix with a recvonly offer; every
 * POST and DELETE is audited with the listener's name.
 */
export class WhepEndpoint {
  readonly resources = new Map<string, WhepResource>();

  constructor(private readonly deps: WhepEndpointDeps) {}

  async post(sessionId: string, trackParam: string | null, req: EndpointRequest): Promise<EndpointReply> {
    const { deps } = this;
    let who: ListenerIdentity | undefined;
    try {
      who = deps.auth.authenticate(req.headers.authorization);
      const track = (trackParam ?? 'mix') as ListenTrack;
      if (!TRACKS.includes(track)) {
        throw new VoxgateError('VG_SDP_BAD_DIRECTION', `track must be one of ${TRACKS.join(', ')} (got '${trackParam}').`);
      }
      const source = deps.whip.resources.get(sessionId);
      if (!source) {
        if (deps.whip.ended.has(sessionId)) throw new VoxgateError('VG_SESSION_NOT_FOUND', `Session ${sessionId} has ended.`);
        // WHEP §4.3: no live publication (yet): 409 with Retry-After.
        throw new VoxgateError('VG_SESSION_NOT_STARTED', `Session ${sessionId} is not live; retry when it has started.`, {
          headers: { 'Retry-After': String(deps.retryAfterSeconds) },
        });
      }
      deps.auth.authorize(who, sessionId, source.call.source.name);
      if (source.call.state !== 'connected' || !source.bridge) {
        throw new VoxgateError('VG_SESSION_NOT_STARTED', `Session ${sessionId} has not started yet; retry shortly.`, {
          headers: { 'Retry-After': String(deps.retryAfterSeconds) },
        });
      }
      const text = requireSdp(req);
      const offer = parseOffer(text);
      const callerCodec = source.plan.audio.codec;
      const codecs = [...new Set<CodecName>([callerCodec, 'opus', 'pcmu', 'pcma', 'g722'])];
      const plan = planAnswer(offer, { codecs, allowSendRecv: false, role: 'egress' });

      const id = newSessionId();
      const ssrc = randomBytes(4).readUInt32BE(0);
      let peer: WebRtcPeer;
      try {
        peer = await WebRtcPeer.answer(id, text, plan, deps.media, { ssrc, cname: randomBytes(9).toString('base64url') });
      } catch (err) {
        throw new VoxgateError('VG_WEBRTC_FAILED', 'The WebRTC stack could not answer this offer.', { cause: err });
      }
      // The call may have ended while the answer was being made.
      if (!deps.whip.resources.has(sessionId)) {
        peer.close();
        throw new VoxgateError('VG_SESSION_NOT_FOUND', `Session ${sessionId} has ended.`);
      }
      const hub = source.bridge.egress;
      const a = plan.audio;
      const leg = new ListenerLeg(id, who.name, track, a.codec, a.payloadType, rtpClockRate(a.codec), ssrc, peer, track === 'caller' && a.codec === callerCodec, (l) => {
        hub.remove(l);
        this.resources.delete(l.id);
        source.call.removeLeg(`listener:${l.id}`);
      });
      const resource: WhepResource = {
        id,
        sessionId,
        etag: newEtag(),
        call: source.call,
        source,
        leg,
        plan,
        listener: who,
        ...offerIceCredentials(offer, a.mid),
      };
      peer.on('state', (state) => {
        if (state === 'failed') leg.close('ice-failed');
      });
      try {
        this.#audit({ action: 'whep.post', outcome: 'ok', status: 201, track, codec: a.codec }, who, req, sessionId, id);
      } catch (err) {
        peer.close();
        throw err;
      }
      this.resources.set(id, resource);
      source.call.addLeg(`listener:${id}`, leg);
      hub.add(leg);
      const location = `${req.baseUrl}/whep/${sessionId}/${id}`;
      return createdReply(
        location,
        resource.etag,
        [...iceServerLinks(deps.iceServers, id, deps.clock.now()), `<${location}/events>; rel="${SSE_EXTENSION}"; events="${SSE_EVENTS.join(',')}"`],
        peer.localSdp,
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
      const { candidates, used } = applyTricklePatch({ etag: r.etag, peer: r.leg.peer, mid: r.plan.audio.mid, remoteUfrag: r.remoteUfrag, remotePwd: r.remotePwd }, req);
      this.#audit({ action: 'whep.patch', outcome: 'ok', status: 204, candidates, used }, who, req, sessionId, id);
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
