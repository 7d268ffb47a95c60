import { parseCSeq, parseNameAddr, parseVia, SipParseError, splitList, type Via } from './grammar.js';

export { SipParseError };

/**
 * RFC 3261 messages as values: a start line, headers in order (canonical names, compact
 * forms expanded, folded lines unfolded), and the body. Pure: parse and serialize only.
 */
export interface SipHeader {
  name: string;
  value: string;
}

/** Where the parser keeps the top Via it checked (transactions match on it); not a header. */
export const TOP_VIA: unique symbol = Symbol('topVia');

interface Base {
  version: string;
  headers: SipHeader[];
  body: Buffer;
  [TOP_VIA]?: Via;
}

export interface SipRequest extends Base {
  kind: 'request';
  method: string;
  uri: string;
}

export interface SipResponse extends Base {
  kind: 'response';
  status: number;
  reason: string;
}

export type SipMessage = SipRequest | SipResponse;

/** RFC 3261 §7.3.3 and the compact forms registered since (IANA SIP parameters). */
const COMPACT: Record<string, string> = {
  a: 'Accept-Contact', b: 'Referred-By', c: 'Content-Type', d: 'Request-Disposition', e: 'Content-Encoding', f: 'From', i: 'Call-ID',
  j: 'Reject-Contact', k: 'Supported', l: 'Content-Length', m: 'Contact', o: 'Event', r: 'Refer-To', s: 'Subject', t: 'To',
  u: 'Allow-Events', v: 'Via', x: 'Session-Expires', y: 'Identity',
};

const CANONICAL = new Map(
  [
    'Accept', 'Accept-Contact', 'Accept-Encoding', 'Accept-Language', 'Alert-Info', 'Allow', 'Allow-Events', 'Authentication-Info',
    'Authorization', 'Call-ID', 'Call-Info', 'Contact', 'Content-Disposition', 'Content-Encoding', 'Content-Language', 'Content-Length',
    'Content-Type', 'CSeq', 'Date', 'Error-Info', 'Event', 'Expires', 'From', 'In-Reply-To', 'Max-Forwards', 'Min-Expires', 'Min-SE',
    'MIME-Version', 'Organization', 'Path', 'Priority', 'Proxy-Authenticate', 'Proxy-Authorization', 'Proxy-Require', 'RAck', 'Reason',
    'Record-Route', 'Refer-To', 'Referred-By', 'Reply-To', 'Require', 'Retry-After', 'Route', 'RSeq', 'Server', 'Session-Expires',
    'Subject', 'Subscription-State', 'Supported', 'Timestamp', 'To', 'Unsupported', 'User-Agent', 'Via', 'Warning', 'WWW-Authenticate',
    // What carriers send: RFC 3325, RFC 3323, RFC 5806, RFC 8224, and the older Remote-Party-ID.
    'P-Asserted-Identity', 'P-Preferred-Identity', 'Privacy', 'Diversion', 'Identity', 'Remote-Party-ID',
  ].map((n) => [n.toLowerCase(), n]),
);

/** Spellings already seen of known names (every header() call passes one), bounded. */
const SPELLINGS = new Map<string, string>();

export function canonicalName(name: string): string {
  const seen = SPELLINGS.get(name);
  if (seen !== undefined) return seen;
  const lower = name.toLowerCase();
  const known = COMPACT[lower] ?? CANONICAL.get(lower);
  if (known === undefined) return name;
  if (SPELLINGS.size < 4096) SPELLINGS.set(name, known);
  return known;
}

/** Canonical names by length and lower-cased first letter, for canonicalAt. */
const BY_SHAPE = new Map<number, string[]>();
for (const name of CANONICAL.values()) {
  const key = name.length * 128 + (name.charCodeAt(0) | 0x20);
  BY_SHAPE.set(key, [...(BY_SHAPE.get(key) ?? []), name]);
}

/** The canonical name when text[start, end) is spelled exactly as it, else undefined. */
function canonicalAt(text: string, start: number, end: number): string | undefined {
  const candidates = BY_SHAPE.get((end - start) * 128 + (text.charCodeAt(start) | 0x20));
  if (candidates === undefined) return undefined;
  for (const name of candidates) if (text.startsWith(name, start)) return name;
  return undefined;
}

/** Trimmed around header values: what String.prototype.trim takes that SIP's LWS allows. */
const isLws = (c: number) => c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;

/** Headers whose values may be comma-separated lists (§7.3.1); others are taken whole. */
const LIST_HEADERS = new Set(['Via', 'Contact', 'Route', 'Record-Route', 'Supported', 'Require', 'Allow', 'Proxy-Require', 'Unsupported', 'Path']);

const TOKEN_NAME = /^[A-Za-z0-9\-.!%*_+`'~]+$/;
const REQUEST_LINE = /^([A-Za-z0-9\-.!%*_+`'~]+) (\S+) (SIP\/\d+\.\d+)$/i;
const STATUS_LINE = /^(SIP\/\d+\.\d+) (\d{3}) (.*)$/i;

export interface ParseOptions {
  /** Largest message accepted, bytes (413 beyond). */
  maxBytes?: number;
}

export function parseSipMessage(input: Buffer | string, opts: ParseOptions = {}): SipMessage {
  const buf = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  if (opts.maxBytes !== undefined && buf.length > opts.maxBytes) throw new SipParseError(`message of ${buf.length} bytes exceeds ${opts.maxBytes}`, 413);
  // §7.5: CRLF before the start line is ignored.
  let start = 0;
  while (buf[start] === 0x0d || buf[start] === 0x0a) start++;
  const end = buf.indexOf('\r\n\r\n', start);
  const headEnd = end < 0 ? buf.length : end;
  const head = buf.toString('utf8', start, headEnd);
  let body = end < 0 ? Buffer.alloc(0) : buf.subarray(end + 4);
  const firstEnd = head.indexOf('\r\n');
  const first = firstEnd < 0 ? head : head.slice(0, firstEnd);
  let msg: SipMessage;
  const req = REQUEST_LINE.exec(first);
  const res = req ? null : STATUS_LINE.exec(first);
  if (req) {
    const [, method, uri, version] = req as unknown as [string, string, string, string];
    if (uri.startsWith('<')) throw new SipParseError('the Request-URI must not be enclosed in <>');
    if (!/^[A-Za-z][A-Za-z0-9+\-.]*:/.test(uri)) throw new SipParseError(`bad Request-URI ${JSON.stringify(uri.slice(0, 60))}`);
    msg = { kind: 'request', method, uri, version: version.toUpperCase(), headers: [], body, [TOP_VIA]: undefined };
  } else if (res) {
    const [, version, status, reason] = res as unknown as [string, string, string, string];
    msg = { kind: 'response', status: Number(status), reason, version: version.toUpperCase(), headers: [], body, [TOP_VIA]: undefined };
  } else {
    throw new SipParseError(`bad start line ${JSON.stringify(first.slice(0, 80))}`);
  }
  if (msg.version !== 'SIP/2.0') throw new SipParseError(`${msg.version} is not supported`, 505);

  // Every CRLF starts a line (so a stray trailing one is an empty, bad line).
  const headers = msg.headers;
  let at = firstEnd < 0 ? -1 : firstEnd + 2;
  while (at >= 0) {
    const eol = head.indexOf('\r\n', at);
    const lineEnd = eol < 0 ? head.length : eol;
    const lineStart = at;
    at = eol < 0 ? -1 : eol + 2;
    // §7.3.1: a line starting with whitespace continues the previous header (folding).
    const c0 = head.charCodeAt(lineStart);
    if (c0 === 0x20 || c0 === 0x09) {
      const prev = headers[headers.length - 1];
      if (!prev) throw new SipParseError('the first header line is a continuation');
      prev.value = `${prev.value} ${head.slice(lineStart, lineEnd).trim()}`.trim();
      continue;
    }
    const colon = head.indexOf(':', lineStart);
    if (colon <= lineStart || colon >= lineEnd) throw new SipParseError(`bad header line ${JSON.stringify(head.slice(lineStart, Math.min(lineEnd, lineStart + 60)))}`);
    // A name spelled as its canonical form is matched in place (no string made, nothing
    // hashed); a spelling seen before is a known, valid name; only others are checked.
    let canonical = canonicalAt(head, lineStart, colon);
    if (canonical === undefined) {
      const name = head.slice(lineStart, colon);
      canonical = SPELLINGS.get(name);
      if (canonical === undefined) {
        const trimmed = name.trim();
        if (!TOKEN_NAME.test(trimmed)) throw new SipParseError(`bad header name ${JSON.stringify(trimmed.slice(0, 40))}`);
        canonical = canonicalName(trimmed);
      }
    }
    let from = colon + 1;
    let to = lineEnd;
    while (from < to && isLws(head.charCodeAt(from))) from++;
    while (to > from && isLws(head.charCodeAt(to - 1))) to--;
    headers.push({ name: canonical, value: head.slice(from, to) });
  }

  const known = keyHeaders(headers);
  // §20.14 / §18.3: Content-Length frames the body; a shorter body is an error.
  const cl = known.contentLength;
  if (cl !== undefined) {
    if (!/^\d{1,9}$/.test(cl)) throw new SipParseError(`bad Content-Length ${JSON.stringify(cl.slice(0, 20))}`);
    const n = Number(cl);
    if (n > body.length) throw new SipParseError(`Content-Length ${n} exceeds the ${body.length} bytes of body`);
    body = body.subarray(0, n);
    msg.body = body;
  }
  validate(msg, known);
  return msg;
}

/**
 * From one pass over the headers: the first value of each header the parser checks or a
 * response copies (§8.2.6), and every Via and Record-Route line as written.
 */
export interface KeyHeaders {
  callId?: string;
  cseq?: string;
  from?: string;
  to?: string;
  contentLength?: string;
  maxForwards?: string;
  expires?: string;
  vias: string[];
  recordRoutes: string[];
}

export function keyHeaders(headers: SipHeader[]): KeyHeaders {
  const k: KeyHeaders = { vias: [], recordRoutes: [] };
  for (const h of headers) {
    switch (h.name) {
      case 'Via':
        k.vias.push(h.value);
        break;
      case 'Record-Route':
        k.recordRoutes.push(h.value);
        break;
      case 'Call-ID':
        k.callId ??= h.value;
        break;
      case 'CSeq':
        k.cseq ??= h.value;
        break;
      case 'From':
        k.from ??= h.value;
        break;
      case 'To':
        k.to ??= h.value;
        break;
      case 'Content-Length':
        k.contentLength ??= h.value;
        break;
      case 'Max-Forwards':
        k.maxForwards ??= h.value;
        break;
      case 'Expires':
        k.expires ??= h.value;
        break;
    }
  }
  return k;
}

/** §8.1.1 / §8.2.2: the headers every request needs, and their syntax. */
function validate(msg: SipMessage, k: KeyHeaders): void {
  if (k.callId === undefined) throw new SipParseError('missing Call-ID');
  if (k.cseq === undefined) throw new SipParseError('missing CSeq');
  if (k.from === undefined) throw new SipParseError('missing From');
  if (k.to === undefined) throw new SipParseError('missing To');
  if (k.vias.length === 0) throw new SipParseError('missing Via');
  const cseq = parseCSeq(k.cseq);
  if (msg.kind === 'request' && cseq.method !== msg.method) {
    throw new SipParseError(`CSeq method ${cseq.method} does not match the request method ${msg.method}`);
  }
  const vias = k.vias.length === 1 ? splitList(k.vias[0]!) : k.vias.flatMap(splitList);
  if (vias.length === 0) throw new SipParseError('empty Via');
  msg[TOP_VIA] = parseVia(vias[0]!);
  for (let i = 1; i < vias.length; i++) parseVia(vias[i]!);
  parseNameAddr(k.from);
  parseNameAddr(k.to);
  const mf = k.maxForwards;
  if (mf !== undefined && (!/^\d{1,5}$/.test(mf) || Number(mf) > 255)) throw new SipParseError(`bad Max-Forwards ${JSON.stringify(mf.slice(0, 20))}`);
  const ex = k.expires;
  if (ex !== undefined && !/^\d{1,10}$/.test(ex)) throw new SipParseError(`bad Expires ${JSON.stringify(ex.slice(0, 20))}`);
  if (msg.kind === 'response' && (msg.status < 100 || msg.status > 699)) throw new SipParseError(`status ${msg.status} out of range`);
}

/** The top Via, parsed (undefined when the message has none); throws SipParseError when bad. */
export function topVia(msg: SipMessage): Via | undefined {
  const known = msg[TOP_VIA];
  if (known) return known;
  const top = headerList(msg, 'Via')[0];
  return top === undefined ? undefined : parseVia(top);
}

/** The first value of a header (names case-insensitive, compact forms accepted). */
export function header(msg: SipMessage, name: string): string | undefined {
  const n = canonicalName(name);
  const exact = msg.headers.find((h) => h.name === n);
  if (exact || CANONICAL.has(n.toLowerCase())) return exact?.value;
  // RFC 3261 §7.3.1: names outside the table keep their spelling, and still match in any case.
  const lower = n.toLowerCase();
  return msg.headers.find((h) => h.name.toLowerCase() === lower)?.value;
}

/** The sequence number of the CSeq header (the parser has checked that it is one). */
export function cseqOf(msg: SipMessage): number {
  return Number(header(msg, 'CSeq')!.trim().split(/\s+/)[0]);
}

/** Every value of a header, repeated lines and comma-separated lists alike. */
export function headerList(msg: SipMessage, name: string): string[] {
  const n = canonicalName(name);
  const list = LIST_HEADERS.has(n);
  const values: string[] = [];
  // RFC 3261 §7.3.1: names outside the table match in any case.
  const lower = CANONICAL.has(n.toLowerCase()) ? undefined : n.toLowerCase();
  for (const h of msg.headers) {
    if (h.name !== n && (lower === undefined || h.name.toLowerCase() !== lower)) continue;
    if (list) values.push(...splitList(h.value));
    else values.push(h.value);
  }
  return values;
}

export function serializeSipMessage(msg: SipMessage): string {
  let text = msg.kind === 'request' ? `${msg.method} ${msg.uri} SIP/2.0\r\n` : `SIP/2.0 ${msg.status} ${msg.reason}\r\n`;
  for (const h of msg.headers) if (h.name !== 'Content-Length') text += `${h.name}: ${h.value}\r\n`;
  return `${text}Content-Length: ${msg.body.length}\r\n\r\n${msg.body.length ? msg.body.toString('utf8') : ''}`;
}
