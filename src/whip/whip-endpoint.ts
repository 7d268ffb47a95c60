import type { AuditLog, AuditEntry } from '../audit/audit-log.js';
import type { SourceAuthenticator, SourceIdentity } from '../auth/source-auth.js';
import { Call } from '../call/call.js';
import type { CallTable } from '../call/call-table.js';
import { WebRtcLeg } from '../call/webrtc-leg.js';
import type { Clock } from '../core/clock.js';
import type { IceServerConfig } from '../core/config.js';
import { VoxgateError } from '../core/errors.js';
import { newEtag, newSessionId } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import { planAnswer, type AnswerPlan } from '../sdp/codec-policy.js';
import { iceServerLinks } from '../webrtc/ice-servers.js';
import { applyTricklePatch, auditOrFail, createdReply, offerIceCredentials, parseOffer, refuse, requireSdp, type EndpointReply, type EndpointRequest } from '../wish/resource.js';
import { WebRtcPeer, type MediaEndpointOptions } from '../webrtc/peer.js';
import type { AgentRegistry } from '../agent/registry.js';
import { MediaBridge, type MediaRuntime, type Quality } from '../call/media-bridge.js';
import { randomBytes } from 'node:crypto';

/** The HTTP face of a live WHIP session. */
export interface WhipResource {
  readonly id: string;
  etag: string;
  readonly call: Call;
  readonly leg: WebRtcLeg;
  readonly plan: AnswerPlan;
  readonly remoteUfrag: string | undefined;
  readonly remotePwd: string | undefined;
  readonly signalingRemote: string;
  readonly bridge: MediaBridge | undefined;
}

export interface WhipEndpointDeps {
  auth: SourceAuthenticator;
  calls: CallTable;
  audit: AuditLog;
  clock: Clock;
  log: Logger;
  media: MediaEndpointOptions;
  iceServers: IceServerConfig[];
  idleTimeoutMs: number;
  agents: AgentRegistry;
  /** What every media bridge shares (frame clock, codec threads, jitter cap). */
  runtime: MediaRuntime;
  onQuality?: (resource: WhipResource, q: Quality) => void;
}

/**
 * WHIP (RFC 9725): POST creates a session from an SDP offer, PATCH trickles candidates,
 * DELETE ends it. Every attempt, accepted or not, is audited with who made it.
 */
export class WhipEndpoint {
  readonly resources = new Map<string, WhipResource>();
  /** Recently ended session ids, so WHEP can answer 404 (ended) rather than 409 (not yet). */
  readonly ended = new Set<string>();

  constructor(private readonly deps: WhipEndpointDeps) {
    deps.calls.on('ended', (call) => {
      this.resources.delete(call.id);
      this.ended.add(call.id);
      if (this.ended.size > 10_000) this.ended.delete(this.ended.values().next().value!);
    });
  }

  async post(req: EndpointRequest): Promise<EndpointReply> {
    const { deps } = this;
    let source: SourceIdentity | undefined;
    let sessionId: string | undefined;
    try {
      source = deps.auth.authenticate(req.headers.authorization);
      const text = requireSdp(req);
      const offer = parseOffer(text);
      const plan = planAnswer(offer, { codecs: source.codecs, allowSendRecv: true, role: 'ingest' });
      deps.calls.checkAdmission(source);
      const agent = deps.agents.resolve(source.agent);

      sessionId = newSessionId();
      const call = new Call(sessionId, source, deps.clock, deps.idleTimeoutMs);
      deps.calls.add(call);
      let peer: WebRtcPeer;
      const out = { ssrc: randomBytes(4).readUInt32BE(0), cname: randomBytes(9).toString('base64url') };
      try {
        peer = await WebRtcPeer.answer(sessionId, text, plan, deps.media, out);
      } catch (err) {
        call.close('setup-failed');
        throw new VoxgateError('VG_WEBRTC_FAILED', 'The WebRTC stack could not answer this offer.', { cause: err });
      }
      if (call.state === 'ended') {
        peer.close();
        throw new VoxgateError('VG_HTTP_DRAINING', 'The session ended while it was being set up.');
      }
      const leg = new WebRtcLeg(peer, deps.clock);
      call.addLeg('publisher', leg);
      const log = deps.log.child({ session: sessionId });
      const bridge = new MediaBridge(peer, plan, agent, sessionId, source, out, {
        ...deps.runtime,
        log,
        onHangup: (reason) => {
          log.info({ reason }, 'agent hung up');
          call.closeByAgent(reason);
        },
        onQuality: (q) => deps.onQuality?.(resource, q),
      });
      leg.received.next = bridge;
      call.addLeg('agent', bridge);
      const resource: WhipResource = {
        id: sessionId,
        etag: newEtag(),
        call,
        leg,
        plan,
        ...offerIceCredentials(offer, plan.audio.mid),
        signalingRemote: req.remote,
        bridge,
      };
      peer.on('state', (state, failure) => {
        if (state === 'connected') {
          call.markConnected();
        } else if (state === 'failed') {
          call.close(failure ?? 'ice-failed');
        }
      });
      this.resources.set(sessionId, resource);
      try {
        this.#audit({ action: 'whip.post', outcome: 'ok', status: 201, codec: plan.audio.codec }, source, req, sessionId);
      } catch (err) {
        call.close('setup-failed');
        throw err;
      }
      log.info({ pipeline: bridge.describe(), agent: agent.name }, 'session created');
      bridge.start().catch((err: unknown) => {
        log.error({ err, agent: agent.name }, 'agent failed to start; ending the call');
        call.close('agent-failed');
      });
      return createdReply(`${req.baseUrl}/whip/${sessionId}`, resource.etag, iceServerLinks(deps.iceServers, sessionId, deps.clock.now()), peer.localSdp);
    } catch (err) {
      return this.#reject(err, 'whip.post', source, req, sessionId);
    }
  }

  patch(id: string, req: EndpointRequest): EndpointReply {
    let source: SourceIdentity | undefined;
    try {
      source = this.deps.auth.authenticate(req.headers.authorization);
      const resource = this.#owned(id, source);
      const { candidates, used } = applyTricklePatch({ etag: resource.etag, peer: resource.leg.peer, mid: resource.plan.audio.mid, remoteUfrag: resource.remoteUfrag, remotePwd: resource.remotePwd }, req);
      this.#audit(
        { action: 'whip.patch', outcome: 'ok', status: 204, candidates, used },
        source,
        req,
        id,
      );
      return { status: 204, headers: {} };
    } catch (err) {
      return this.#reject(err, 'whip.patch', source, req, id);
    }
  }

  delete(id: string, req: EndpointRequest): EndpointReply {
    let source: SourceIdentity | undefined;
    try {
      source = this.deps.auth.authenticate(req.headers.authorization);
      const resource = this.#owned(id, source);
      this.#audit({ action: 'whip.delete', outcome: 'ok', status: 200 }, source, req, id);
      resource.call.close('deleted');
      // RFC 9725 §4.2: 200 OK (OBS warns on anything else).
      return { status: 200, headers: {} };
    } catch (err) {
      return this.#reject(err, 'whip.delete', source, req, id);
    }
  }

  #owned(id: string, source: SourceIdentity): WhipResource {
    const resource = this.resources.get(id);
    if (!resource) throw new VoxgateError('VG_SESSION_NOT_FOUND', `There is no live WHIP session ${id}; it may have ended.`);
    if (resource.call.source.name !== source.name) {
      throw new VoxgateError('VG_AUTH_FORBIDDEN', 'This session belongs to another source; use the token that created it.');
    }
    return resource;
  }

  #audit(entry: AuditEntry, source: SourceIdentity | undefined, req: EndpointRequest, session: string | undefined): void {
    auditOrFail(this.deps.audit, this.deps.log, { ...entry, source: source?.name ?? null, sourceKind: source?.kind ?? null, remote: req.remote, session: session ?? null });
  }

  #reject(err: unknown, action: string, source: SourceIdentity | undefined, req: EndpointRequest, session: string | undefined): EndpointReply {
    return refuse(err, this.deps.log, action, { remote: req.remote, source: source?.name, session }, (entry) => this.#audit(entry, source, req, session));
  }
}
