import type { IncomingHttpHeaders } from 'node:http';
import type { AuditEntry, AuditLog } from '../audit/audit-log.js';
import { isVoxgateError, logRefusal, VoxgateError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { parseOffer } from '../sdp/offer.js';
import { attr, type SessionDescription } from '../sdp/sdp.js';

export { parseOffer };
import { parseTrickleFragment, TrickleParseError } from '../sdp/trickle.js';

/**
 * What WHIP (RFC 9725) and WHEP (draft-ietf-wish-whep) resources share: the request and reply
 * shapes, problem replies, and the trickle-ICE PATCH rules (ETag, 428/412, restart -> 422).
 */
export interface EndpointRequest {
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** Client address as host:port. */
  remote: string;
  /** Absolute base URL (scheme://host[:port]) for Location headers. */
  baseUrl: string;
}

export interface EndpointReply {
  status: number;
  headers: Record<string, string | string[]>;
  body?: string;
}

export const SDP_TYPE = 'application/sdp';
export const TRICKLE_TYPE = 'application/trickle-ice-sdpfrag';

/** The media type of a Content-Type header, lower-cased, parameters dropped. */
export function mediaType(header: string | undefined): string | undefined {
  return header?.split(';')[0]?.trim().toLowerCase() || undefined;
}

export function problemReply(e: VoxgateError, instance?: string): EndpointReply {
  return {
    status: e.status,
    headers: { 'Content-Type': 'application/problem+json', ...e.headers },
    body: JSON.stringify(e.toProblem(instance)),
  };
}

export function requireSdp(req: EndpointRequest): string {
  // RFC 9725 §4.2 / WHEP §4.3: the offer is application/sdp.
  const type = mediaType(req.headers['content-type']);
  if (type !== SDP_TYPE) {
    throw new VoxgateError('VG_HTTP_UNSUPPORTED_MEDIA_TYPE', `Send the SDP offer with Content-Type: ${SDP_TYPE} (got ${type ?? 'none'}).`, {
      headers: { 'Accept-Post': SDP_TYPE },
    });
  }
  const text = req.body.toString('utf8');
  if (text.trim() === '') throw new VoxgateError('VG_SDP_MALFORMED', 'The request body is empty; send an SDP offer.');
  return text;
}

/** A WebRTC resource a PATCH can trickle candidates into. */
export interface TrickleTarget {
  etag: string;
  /** Takes a candidate, or says false when it cannot use it (it is then dropped silently). */
  peer: { addRemoteCandidate(candidate: string, mid: string): boolean };
  mid: string;
  remoteUfrag: string | undefined;
  remotePwd: string | undefined;
}

/**
 * RFC 9725 §4.3 (and WHEP §4.5): a trickle PATCH carries the session's ETag in If-Match
 * (428 without, 412 when stale); an ICE restart (If-Match "*", new credentials) gets 422
 * because libdatachannel cannot restart ICE, and the session stays as it was.
 * `audit` is called once the request is valid and before any candidate is used; returns the
 * number of candidates offered and used.
 */
export function applyTricklePatch(target: TrickleTarget, req: EndpointRequest, audit: (candidates: number) => void): { candidates: number; used: number } {
  const type = mediaType(req.headers['content-type']);
  if (type !== TRICKLE_TYPE) {
    throw new VoxgateError('VG_HTTP_UNSUPPORTED_MEDIA_TYPE', `Send candidates with Content-Type: ${TRICKLE_TYPE} (got ${type ?? 'none'}).`, {
      headers: { 'Accept-Patch': TRICKLE_TYPE },
    });
  }
  const ifMatch = req.headers['if-match'];
  let frag;
  try {
    frag = parseTrickleFragment(req.body.toString('utf8'));
  } catch (err) {
    if (err instanceof TrickleParseError) throw new VoxgateError('VG_TRICKLE_MALFORMED', `The sdpfrag is malformed: ${err.message}.`);
    throw err;
  }
  const restart =
    ifMatch === '*' || (frag.ufrag !== undefined && frag.ufrag !== target.remoteUfrag) || (frag.pwd !== undefined && frag.pwd !== target.remotePwd);
  if (restart) {
    throw new VoxgateError('VG_ICE_RESTART_UNSUPPORTED', 'ICE restart is not supported; DELETE this session and POST a new offer.');
  }
  if (ifMatch === undefined) {
    throw new VoxgateError('VG_PRECONDITION_REQUIRED', `Send If-Match: ${target.etag} with trickle PATCH requests.`);
  }
  if (!ifMatch.split(',').map((t) => t.trim()).includes(target.etag)) {
    throw new VoxgateError('VG_PRECONDITION_FAILED', `If-Match ${ifMatch} does not match the session's ETag ${target.etag}.`);
  }
  // Audited before anything is applied: a PATCH whose record cannot be written is not carried out.
  audit(frag.candidates.length);
  let used = 0;
  for (const c of frag.candidates) {
    if (target.peer.addRemoteCandidate(c.candidate, c.mid ?? target.mid)) used++;
  }
  return { candidates: frag.candidates.length, used };
}

/** Writes an audit record, turning a failed write into a 500 so the request is not carried out. */
export function auditOrFail(audit: Pick<AuditLog, 'write'>, log: Logger, entry: AuditEntry): void {
  try {
    audit.write(entry);
  } catch (err) {
    log.error({ err }, 'audit write failed');
    throw new VoxgateError('VG_AUDIT_WRITE_FAILED', 'The audit log could not be written; the request was not carried out.', { cause: err });
  }
}

/**
 * The answer to a refused request: logged, audited with its reason (an unexpected error is a
 * 500 and logged with its stack), and returned as problem+json.
 */
export function refuse(err: unknown, log: Logger, action: string, context: Record<string, unknown>, audit: (entry: AuditEntry) => void): EndpointReply {
  const e = isVoxgateError(err) ? err : new VoxgateError('VG_INTERNAL', 'Unexpected error; see the gateway log.', { cause: err });
  if (!isVoxgateError(err)) log.error({ err, action }, 'unexpected error');
  else logRefusal(log, e, { action, ...context });
  if (e.code !== 'VG_AUDIT_WRITE_FAILED') {
    try {
      audit({ action, outcome: e.status >= 500 ? 'error' : 'rejected', status: e.status, reason: e.code });
    } catch (auditErr) {
      return problemReply(auditErr as VoxgateError);
    }
  }
  return problemReply(e);
}

/** The offerer's ICE credentials for a media section (media level first, then session level). */
export function offerIceCredentials(offer: SessionDescription, mid: string): { remoteUfrag: string | undefined; remotePwd: string | undefined } {
  const m = offer.media.find((x) => attr(x.attributes, 'mid') === mid);
  return {
    remoteUfrag: (m && attr(m.attributes, 'ice-ufrag')) ?? attr(offer.attributes, 'ice-ufrag'),
    remotePwd: (m && attr(m.attributes, 'ice-pwd')) ?? attr(offer.attributes, 'ice-pwd'),
  };
}

/** RFC 9725 §4.2 / WHEP §4.3: 201 with the answer, absolute Location, ETag and Links. */
export function createdReply(location: string, etag: string, links: string[], answerSdp: string): EndpointReply {
  return {
    status: 201,
    headers: { 'Content-Type': SDP_TYPE, Location: location, ETag: etag, 'Accept-Patch': TRICKLE_TYPE, Link: links },
    body: answerSdp,
  };
}
