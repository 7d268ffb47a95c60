import { tagOf } from '../build.js';
import { cseqOf, header, headerList, topVia, type SipRequest, type SipResponse } from '../message.js';

/** RFC 3261 §8.1.1.7: a branch that starts with this was made by an RFC 3261 client. */
export const MAGIC_COOKIE = 'z9hG4bK';

/** Which server transaction a request belongs to, and how the ACK of a non-2xx is checked. */
export interface ServerMatch {
  /** The transaction key: an ACK and a CANCEL map to their INVITE's where §17.2.3 says so. */
  key: string;
  /** RFC 2543 matching: an ACK's To tag must also equal the tag of the response it acknowledges. */
  legacy: boolean;
}

/** `host:port` of the top Via, lower-cased, the default port written out (§18.1: 5060, 5061 for TLS). */
function sentBy(req: SipRequest): string {
  const via = topVia(req)!;
  const port = via.port ?? (via.transport === 'TLS' || via.transport === 'WSS' ? 5061 : 5060);
  return `${via.host.toLowerCase()}:${port}`;
}

/**
 * §17.2.3: a request matches a server transaction by the top Via's branch (with the magic
 * cookie), sent-by and method, an ACK matching its INVITE; CANCEL is a transaction of its own.
 * Without the cookie (RFC 2543) it is the Request-URI, To tag, From tag, Call-ID, CSeq and the
 * whole top Via; an ACK then matches the INVITE on all of those but the To tag, which must be
 * the one we answered with.
 */
export function serverKey(req: SipRequest): ServerMatch {
  const branch = topVia(req)!.params.get('branch') ?? '';
  const method = req.method === 'ACK' ? 'INVITE' : req.method;
  if (branch.startsWith(MAGIC_COOKIE)) return { key: `${branch}|${sentBy(req)}|${method}`, legacy: false };
  return { key: legacyKey(req, method, req.method === 'ACK' || req.method === 'INVITE'), legacy: true };
}

/** The key of the INVITE transaction a CANCEL cancels (§9.2: same branch, or the RFC 2543 fields). */
export function cancelledInviteKey(cancel: SipRequest): string {
  const branch = topVia(cancel)!.params.get('branch') ?? '';
  if (branch.startsWith(MAGIC_COOKIE)) return `${branch}|${sentBy(cancel)}|INVITE`;
  return legacyKey(cancel, 'INVITE', true);
}

function legacyKey(req: SipRequest, method: string, withoutToTag: boolean): string {
  const to = withoutToTag ? '' : tagOf(header(req, 'To')) ?? '';
  return [req.uri, to, tagOf(header(req, 'From')) ?? '', header(req, 'Call-ID') ?? '', cseqOf(req), method, headerList(req, 'Via')[0] ?? ''].join('|');
}

/** §17.1.3: a response matches the client transaction whose request had its top branch and CSeq method. */
export function clientKey(msg: SipRequest | SipResponse, method?: string): string {
  const branch = topVia(msg)?.params.get('branch') ?? '';
  return `${branch}|${method ?? header(msg, 'CSeq')!.trim().split(/\s+/)[1]!}`;
}
