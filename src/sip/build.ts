import { pooledRandom } from '../core/ids.js';
import { parseNameAddr, parseSipUri, parseVia, splitList } from './grammar.js';
import { cseqOf, header, headerList, keyHeaders, serializeSipMessage, type SipHeader, type SipRequest, type SipResponse } from './message.js';

/** Reason phrases (RFC 3261 §21 and the extensions voxgate answers with). */
export const REASONS: Record<number, string> = {
  100: 'Trying', 180: 'Ringing', 200: 'OK', 202: 'Accepted', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden',
  404: 'Not Found', 405: 'Method Not Allowed', 407: 'Proxy Authentication Required', 408: 'Request Timeout', 413: 'Request Entity Too Large',
  415: 'Unsupported Media Type', 416: 'Unsupported URI Scheme', 420: 'Bad Extension', 422: 'Session Interval Too Small', 423: 'Interval Too Brief', 480: 'Temporarily Unavailable',
  481: 'Call/Transaction Does Not Exist', 482: 'Loop Detected', 483: 'Too Many Hops', 486: 'Busy Here', 487: 'Request Terminated',
  488: 'Not Acceptable Here', 491: 'Request Pending', 500: 'Server Internal Error', 501: 'Not Implemented', 503: 'Service Unavailable',
  505: 'Version Not Supported',
};

// MESSAGE (RFC 3428) is not handled, so it is not advertised: it gets 405 like SUBSCRIBE.
export const ALLOW = 'INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY, REGISTER';
export const SERVER = 'voxgate';

export function newTag(): string {
  return pooledRandom(6, 'hex');
}

export function newBranch(): string {
  return `z9hG4bK${pooledRandom(9, 'base64url')}`;
}

export function newCallId(): string {
  return pooledRandom(12, 'base64url');
}

/**
 * §8.2.6: a response copies Via (all values, in order), From, To (adding our tag when the
 * request had none), Call-ID and CSeq; a 100 never gets a To tag.
 */
export function buildResponse(
  req: SipRequest,
  status: number,
  opts: { reason?: string; toTag?: string; headers?: SipHeader[]; body?: string | Buffer; recordRoute?: boolean } = {},
): SipResponse {
  const k = keyHeaders(req.headers);
  const headers: SipHeader[] = [];
  for (const line of k.vias) for (const value of splitList(line)) headers.push({ name: 'Via', value });
  if (opts.recordRoute) for (const line of k.recordRoutes) for (const value of splitList(line)) headers.push({ name: 'Record-Route', value });
  let to = k.to ?? '';
  if (status > 100 && opts.toTag && !/;\s*tag=/i.test(to)) to = `${to};tag=${opts.toTag}`;
  headers.push({ name: 'From', value: k.from ?? '' }, { name: 'To', value: to });
  if (k.callId !== undefined) headers.push({ name: 'Call-ID', value: k.callId });
  headers.push({ name: 'CSeq', value: k.cseq ?? '' });
  headers.push(...(opts.headers ?? []));
  headers.push({ name: 'Server', value: SERVER });
  const body = opts.body === undefined ? Buffer.alloc(0) : Buffer.from(opts.body);
  return { kind: 'response', version: 'SIP/2.0', status, reason: reasonPhrase(opts.reason ?? REASONS[status] ?? 'Unknown'), headers, body };
}

/**
 * A Reason-Phrase as RFC 3261 §25.1 allows it (reserved, unreserved, escaped, UTF-8, SP, HTAB):
 * brackets become parentheses, other ASCII it forbids (`"<>#%{}|\^` and controls) a space.
 * JsSIP drops a response whose phrase breaks the grammar, and the call then hangs until Timer B.
 */
export function reasonPhrase(text: string): string {
  return text
    .replace(/\[/g, '(')
    .replace(/]/g, ')')
    .replace(/[\x00-\x08\x0a-\x1f\x7f"<>#%{}|\\^`]/g, ' ')
    .slice(0, 200);
}

export function responseText(req: SipRequest, status: number, opts: Parameters<typeof buildResponse>[2] = {}): string {
  return serializeSipMessage(buildResponse(req, status, opts));
}

/**
 * §9.1: the CANCEL of an INVITE we sent: its Request-URI, top Via (same branch), Route,
 * Call-ID, From, To and CSeq number.
 */
export function cancelFor(invite: SipRequest, extra: SipHeader[] = []): { text: string; branch: string } {
  const via = headerList(invite, 'Via')[0]!;
  const headers: SipHeader[] = [
    { name: 'Via', value: via },
    { name: 'Max-Forwards', value: '70' },
    ...headerList(invite, 'Route').map((value) => ({ name: 'Route', value })),
    { name: 'From', value: header(invite, 'From')! },
    { name: 'To', value: header(invite, 'To')! },
    { name: 'Call-ID', value: header(invite, 'Call-ID')! },
    { name: 'CSeq', value: `${cseqOf(invite)} CANCEL` },
    ...extra,
  ];
  const text = serializeSipMessage({ kind: 'request', method: 'CANCEL', uri: invite.uri, version: 'SIP/2.0', headers, body: Buffer.alloc(0) });
  return { text, branch: parseVia(via).params.get('branch') ?? '' };
}

/** The tag parameter of a From or To value. */
export function tagOf(value: string | undefined): string | undefined {
  return value ? /;\s*tag=([^;\s>]+)/i.exec(value)?.[1] : undefined;
}

/** A token display name (no quotes: no `@` can hide in it), `<sip:`, a user without escapes, `@host`, then `;`, `>` or `:port`. */
const PLAIN_ADDRESS = /^[ \t]*(?:[A-Za-z0-9\-.!*_+`'~]+(?:[ \t]+[A-Za-z0-9\-.!*_+`'~]+)*[ \t]*)?<sips?:([A-Za-z0-9\-_.!~*'()&=+$,]+)@([A-Za-z0-9.-]+)(?=[;>:])/i;

/**
 * The user (unescaped) and host (lower-cased) of the SIP URI in a name-addr, addr-spec or bare
 * URI, read with the grammar (§20.10, §19.1): a display name may hold any character, `@` too.
 * Undefined when the value is not a sip:/sips: address.
 */
export function sipAddressOf(value: string): { user: string | undefined; host: string } | undefined {
  // The usual shape, `<sip:user@host...>` with an unquoted display name or none, is read with one
  // anchored pattern (every REGISTER's To, every INVITE's From); anything else takes the grammar.
  const plain = PLAIN_ADDRESS.exec(value);
  if (plain) return { user: plain[1]!, host: plain[2]!.toLowerCase() };
  try {
    const uri = parseSipUri(parseNameAddr(value).uri);
    return { user: uri.user === undefined ? undefined : decodeURIComponent(uri.user), host: uri.host };
  } catch {
    return undefined;
  }
}

/** The user part of the SIP URI in a name-addr or a bare URI. */
export function userOf(value: string): string | undefined {
  return sipAddressOf(value)?.user;
}

/** The host of a SIP URI or name-addr, lower-cased (undefined when it is not a SIP address with a user part). */
export function hostOf(value: string): string | undefined {
  const a = sipAddressOf(value);
  return a?.user === undefined ? undefined : a.host;
}

/** The URI inside a name-addr (or the value itself when there are no brackets). */
export function uriOf(value: string): string {
  const m = /<([^>]*)>/.exec(value);
  return (m ? m[1]! : value.split(';')[0]!).trim();
}

/** A best-effort header reader for a message that failed to parse: enough to answer it. */
export function salvageHeaders(data: Buffer): { startLine: string; headers: SipHeader[] } {
  const end = data.indexOf('\r\n\r\n');
  const head = data.subarray(0, end < 0 ? Math.min(data.length, 65536) : Math.min(end, 65536)).toString('utf8');
  const lines = head.replace(/^(\r\n)+/, '').split('\r\n');
  const compact: Record<string, string> = { v: 'Via', f: 'From', t: 'To', i: 'Call-ID' };
  const headers: SipHeader[] = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const raw = line.slice(0, colon).trim();
    const name = compact[raw.toLowerCase()] ?? ['Via', 'From', 'To', 'Call-ID', 'CSeq'].find((n) => n.toLowerCase() === raw.toLowerCase());
    if (name) headers.push({ name, value: line.slice(colon + 1).trim() });
  }
  return { startLine: lines[0] ?? '', headers };
}

/** A response to a message we could not parse, when it is a request with a Via and a CSeq. */
export function salvageResponse(data: Buffer, status: number, reason: string): string | undefined {
  const { startLine, headers } = salvageHeaders(data);
  if (!/^[A-Za-z]+ \S+ SIP\/2\.0$/i.test(startLine) || /^ACK /i.test(startLine)) return undefined;
  const has = (n: string) => headers.some((h) => h.name === n);
  if (!has('Via') || !has('CSeq')) return undefined;
  const ordered = ['Via', 'From', 'To', 'Call-ID', 'CSeq'].flatMap((n) => headers.filter((h) => h.name === n));
  const lines = ordered.map((h) => `${h.name}: ${h.value}`);
  return `SIP/2.0 ${status} ${reason.replace(/[\r\n]+/g, ' ').slice(0, 200)}\r\n${lines.join('\r\n')}\r\nServer: ${SERVER}\r\nContent-Length: 0\r\n\r\n`;
}

let dateSecond = NaN;
let dateText = '';
/** An HTTP-date for the Date header (§20.17), formatted once a second. */
export function httpDate(now: number): string {
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(second * 1000).toUTCString();
  }
  return dateText;
}

/** Removes the first Via header value (ours) from a response text, keeping the rest verbatim. */
export function stripTopVia(text: string): string {
  const m = /\r\n(Via|v)[ \t]*:[ \t]*([^\r\n]*)/i.exec(text);
  if (!m) return text;
  const start = m.index;
  const end = start + m[0].length;
  const value = m[2]!;
  const parts = value.split(',');
  if (parts.length > 1) return `${text.slice(0, start)}\r\n${m[1]}: ${parts.slice(1).join(',').trim()}${text.slice(end)}`;
  return text.slice(0, start) + text.slice(end);
}

/** A reason text for a status line: first letter up, one line, at most 200 characters. */
export function capitalise(s: string): string {
  return (s.charAt(0).toUpperCase() + s.slice(1)).replace(/[\r\n]+/g, ' ').slice(0, 200);
}

export function quoteIfNeeded(v: string): string {
  return v.startsWith('"') ? v : `"${v}"`;
}

const METHODS = new Set(['INVITE', 'ACK', 'CANCEL', 'BYE', 'OPTIONS', 'INFO', 'UPDATE', 'REFER', 'NOTIFY', 'REGISTER', 'MESSAGE', 'SUBSCRIBE', 'PRACK', 'PUBLISH']);

/** Metric label values stay a known set, whatever methods clients invent. */
export function knownMethod(m: string): string {
  return METHODS.has(m) ? m : 'other';
}
