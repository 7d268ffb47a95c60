import type { TransferOptions, TransferTarget } from '../agent/agent.js';
import type { AuditLog, AuditEntry } from '../audit/audit-log.js';
import type { SourceAuthenticator, SourceIdentity } from '../auth/source-auth.js';
import type { Call } from '../call/call.js';
import type { CallTable } from '../call/call-table.js';
import type { PartyLeg } from '../call/party-leg.js';
import { startCall, type StartCallDeps } from '../call/start-call.js';
import type { Clock } from '../core/clock.js';
import type { IceServerConfig } from '../core/config.js';
import { VoxgateError } from '../core/errors.js';
import { newEtag } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import { planAnswer, type AnswerPlan } from '../sdp/codec-policy.js';
import { iceServerLinks } from '../transport/webrtc/ice-servers.js';
import type { TrickleAnswerer, TrickleTransport } from '../transport/factory.js';
import { applyTricklePatch, auditOrFail, createdReply, offerIceCredentials, parseOffer, refuse, requireSdp, type EndpointReply, type EndpointRequest } from '../wish/resource.js';

/** The HTTP face of a live WHIP session. */
export interface WhipResource {
  readonly id: string;
  etag: string;
  readonly call: Call;
  /** The publisher's leg (the call's caller). */
  readonly leg: PartyLeg;
  /** The publisher's transport, which takes its trickled candidates. */
  readonly transport: TrickleTransport;
  readonly plan: AnswerPlan;
  readonly remoteUfrag: string | undefined;
  readonly remotePwd: string | undefined;
}

export interface WhipEndpointDeps extends StartCallDeps {
  auth: SourceAuthenticator;
  calls: CallTable;
  audit: AuditLog;
  clock: Clock;
  log: Logger;
  /** Answers the publisher's offer (WebRTC: webRtcTransports(); a fake in tests). */
  transports: TrickleAnswerer;
  iceServers: IceServerConfig[];
  /** What the agent's transfer(target) does for a WHIP call (voxgate calls the target and bridges). */
  transfer?: (call: Call, target: TransferTarget, opts?: TransferOptions) => Promise<void>;
}

/**
 * WHIP (RFC 9725): POST creates a session from an SDP offer, PATCH trickles candidates,
 * DELETE ends it. Every attempt, accepted or not, is audited with who made it.
 */
export class WhipEndpoint {
  readonly resources = new Map<string, WhipResource>();

  constructor(private readonly deps: WhipEndpointDeps) {
    deps.calls.on('ended', (call) => this.resources.delete(call.id));
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
      let transport: TrickleTransport | undefined;
      const started = await startCall(deps, {
        source,
        kind: 'whip',
        plan,
        signalingRemote: req.remote,
        open: async (id, out) => (transport = await deps.transports.answer(id, text, plan, out)),
        onCreated: (call) => (sessionId = call.id),
        transfer: deps.transfer,
      });
      const { call, caller: leg, log } = started;
      const resource: WhipResource = { id: call.id, etag: newEtag(), call, leg, transport: transport!, plan, ...offerIceCredentials(offer, plan.audio.mid) };
      leg.transport.on('state', (state, failure) => {
        if (state === 'connected') call.markConnected();
        else if (state === 'failed') call.close(failure ?? 'ice-failed');
      });
      this.resources.set(call.id, resource);
      try {
        this.#audit({ action: 'whip.post', outcome: 'ok', status: 201, codec: plan.audio.codec }, source, req, call.id);
      } catch (err) {
        call.close('setup-failed');
        throw err;
      }
      log.info({ pipeline: call.describe(), agent: started.agent.agent.name }, 'session created');
      started.begin();
      return createdReply(`${req.baseUrl}/whip/${call.id}`, resource.etag, iceServerLinks(deps.iceServers, call.id, deps.clock.now()), started.localSdp);
    } catch (err) {
      return this.#reject(err, 'whip.post', source, req, sessionId);
    }
  }

  patch(id: string, req: EndpointRequest): EndpointReply {
    let source: SourceIdentity | undefined;
    try {
      source = this.deps.auth.authenticate(req.headers.authorization);
      const resource = this.#owned(id, source);
      const target = { etag: resource.etag, peer: resource.transport, mid: resource.plan.audio.mid, remoteUfrag: resource.remoteUfrag, remotePwd: resource.remotePwd };
      const { used } = applyTricklePatch(target, req, (candidates) => this.#audit({ action: 'whip.patch', outcome: 'ok', status: 204, candidates }, source, req, id));
      this.deps.log.debug({ session: id, used }, 'trickled candidates applied');
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
