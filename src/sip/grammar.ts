/**
 * RFC 3261 §25 grammar pieces used by the parser and by the SIP layers above it: header
 * lists, name-addr, Via, CSeq, generic parameters, SIP URIs. Pure: values or SipParseError.
 */
export class SipParseError extends Error {
  constructor(
    message: string,
    /** The status a server answers with (400, 505, 413, 416). */
    readonly status = 400,
  ) {
    super(message);
    this.name = 'SipParseError';
  }
}

const TOKEN = /^[A-Za-z0-9\-.!%*_+`'~]+$/;

export function isToken(s: string): boolean {
  return TOKEN.test(s);
}

/**
 * Positions of `sep` outside quoted strings (quoted-pairs skipped) and, when `angles`, outside
 * <...>: the one scanner behind header lists, parameters and name-addr.
 */
function topLevel(text: string, sep: string, angles: boolean): number[] {
  const at: number[] = [];
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (angles && c === '<' && sep !== '<') depth++;
    else if (angles && c === '>') depth = Math.max(0, depth - 1);
    else if (c === sep && depth === 0) at.push(i);
  }
  if (quoted) throw new SipParseError('unterminated quoted string');
  return at;
}

function splitAt(text: string, at: number[]): string[] {
  const out: string[] = [];
  let start = 0;
  for (const i of at) {
    out.push(text.slice(start, i));
    start = i + 1;
  }
  out.push(text.slice(start));
  return out;
}

/** Splits a header value at top-level commas (not inside quotes or <>), RFC 3261 §7.3.1. */
export function splitList(value: string): string[] {
  if (!value.includes(',')) {
    const one = value.trim();
    return one ? [one] : [];
  }
  return splitAt(value, topLevel(value, ',', true))
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** `a;b=1;c="x;y"` split at its top-level semicolons (quoted strings kept whole), as written. */
export function splitParamText(text: string): string[] {
  return splitAt(text, topLevel(text, ';', false));
}

/** `;name=value;flag` generic parameters; names are case-insensitive, lower-cased. */
export function parseParams(text: string): Map<string, string | null> {
  const params = new Map<string, string | null>();
  if (!text) return params;
  if (text.includes('"')) {
    for (const part of splitParamText(text)) addParam(params, part);
    return params;
  }
  // Without quotes every ';' separates (the usual case: branch, tag, expires, transport).
  let start = 0;
  for (;;) {
    const semi = text.indexOf(';', start);
    if (semi < 0) {
      addParam(params, text.slice(start));
      return params;
    }
    if (semi > start) addParam(params, text.slice(start, semi));
    start = semi + 1;
  }
}

function addParam(params: Map<string, string | null>, raw: string): void {
  const part = raw.trim();
  if (!part) return;
  const eq = part.indexOf('=');
  const name = (eq < 0 ? part : part.slice(0, eq).trimEnd()).toLowerCase();
  if (!isToken(name)) throw new SipParseError(`bad parameter name ${JSON.stringify(name.slice(0, 30))}`);
  let value: string | null = eq < 0 ? null : part.slice(eq + 1).trimStart();
  if (value !== null && value.startsWith('"')) value = unquote(value);
  params.set(name, value);
}

/** A quoted-string's content with quoted-pairs resolved (RFC 3261 §25.1). */
export function unquote(q: string): string {
  if (!q.startsWith('"') || !q.endsWith('"') || q.length < 2) throw new SipParseError(`bad quoted string ${JSON.stringify(q.slice(0, 30))}`);
  let out = '';
  for (let i = 1; i < q.length - 1; i++) {
    if (q[i] === '\\') {
      i++;
      if (i >= q.length - 1) throw new SipParseError('quoted string ends in a backslash');
    } else if (q[i] === '"') throw new SipParseError('stray quote in a quoted string');
    out += q[i];
  }
  return out;
}

export interface NameAddr {
  displayName: string | undefined;
  uri: string;
  params: Map<string, string | null>;
}

/**
 * name-addr / addr-spec with header parameters (From, To, Contact, Route, Refer-To).
 * Without <>, parameters after the URI belong to the header, not the URI (§20.10).
 */
export function parseNameAddr(value: string): NameAddr {
  const v = value.trim();
  const lt = v.includes('"') ? topLevel(v, '<', false)[0] ?? -1 : v.indexOf('<');
  if (lt >= 0) {
    const gt = v.indexOf('>', lt);
    if (gt < 0) throw new SipParseError('"<" without ">"');
    let display: string | undefined = v.slice(0, lt).trim();
    if (display.startsWith('"')) display = unquote(display);
    else if (display === '') display = undefined;
    else if (!display.split(/\s+/).every(isToken)) throw new SipParseError(`bad display name ${JSON.stringify(display.slice(0, 30))}`);
    const uri = v.slice(lt + 1, gt).trim();
    if (!uri) throw new SipParseError('empty URI in <>');
    if (/\s/.test(uri)) throw new SipParseError('whitespace inside a URI');
    return { displayName: display, uri, params: parseParams(v.slice(gt + 1)) };
  }
  if (v.startsWith('"')) throw new SipParseError('display name without a <URI>');
  const semi = v.indexOf(';');
  const uri = (semi < 0 ? v : v.slice(0, semi)).trim();
  if (!uri || /\s/.test(uri)) throw new SipParseError(`bad addr-spec ${JSON.stringify(uri.slice(0, 40))}`);
  return { displayName: undefined, uri, params: parseParams(semi < 0 ? '' : v.slice(semi)) };
}

export interface Via {
  protocol: string; // SIP/2.0
  transport: string; // UDP, TCP, TLS, WS, WSS (upper-case)
  host: string;
  port: number | undefined;
  params: Map<string, string | null>;
}

const VIA = /^\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*\/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*\/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+([^;\s]+)\s*(;.*)?$/s;
/** `SIP/2.0/WS host[:port]` then `;` or the end: how clients write a Via, without odd spacing. */
const PLAIN_VIA = /^SIP\/2\.0\/([A-Za-z]+) ([^;\s]+)(?=;|$)/;
const SENT_BY = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?::(\d{1,5}))?$/;

/** One Via value: `SIP / 2.0 / UDP host:port ;params` (LWS allowed around the slashes). */
export function parseVia(value: string): Via {
  let protocol: string;
  let transport: string;
  let sentBy: string;
  let params: string;
  const plain = PLAIN_VIA.exec(value);
  if (plain) {
    protocol = 'SIP/2.0';
    transport = plain[1]!;
    sentBy = plain[2]!;
    params = value.slice(plain[0].length);
  } else {
    const m = VIA.exec(value);
    if (!m) throw new SipParseError(`bad Via ${JSON.stringify(value.slice(0, 60))}`);
    protocol = `${m[1]!.toUpperCase()}/${m[2]!}`;
    transport = m[3]!;
    sentBy = m[4]!;
    params = m[5] ?? '';
  }
  const hp = SENT_BY.exec(sentBy);
  if (!hp) throw new SipParseError(`bad Via sent-by ${JSON.stringify(sentBy.slice(0, 60))}`);
  const port = hp[2] === undefined ? undefined : Number(hp[2]);
  if (port !== undefined && port > 65535) throw new SipParseError(`Via port ${port} out of range`);
  return { protocol, transport: transport.toUpperCase(), host: hp[1]!, port, params: parseParams(params) };
}

/** `CSeq: 4711 INVITE`; the number is below 2**31 (§8.1.1.5). */
export function parseCSeq(value: string): { seq: number; method: string } {
  const m = /^\s*(\d{1,10})\s+([A-Za-z0-9\-.!%*_+`'~]+)\s*$/.exec(value);
  if (!m) throw new SipParseError(`bad CSeq ${JSON.stringify(value.slice(0, 40))}`);
  const seq = Number(m[1]);
  if (seq >= 2 ** 31) throw new SipParseError(`CSeq ${m[1]} is not below 2**31`);
  return { seq, method: m[2]! };
}

export interface SipUri {
  scheme: 'sip' | 'sips';
  user: string | undefined;
  password: string | undefined;
  host: string;
  port: number | undefined;
  params: Map<string, string | null>;
  headers: string | undefined;
}

/** sip:/sips: URIs (§19.1); escapes are checked and left in place. */
export function parseSipUri(uri: string): SipUri {
  const m = /^(sips?):(?:([^@]*)@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?::(\d{1,5}))?((?:;[^?]*)?)(?:\?(.*))?$/i.exec(uri);
  if (!m) throw new SipParseError(`not a SIP URI: ${JSON.stringify(uri.slice(0, 60))}`);
  const userinfo = m[2];
  for (const part of [userinfo ?? '', m[5] ?? '']) {
    if (/%(?![0-9A-Fa-f]{2})/.test(part)) throw new SipParseError(`bad escape in URI ${JSON.stringify(uri.slice(0, 60))}`);
  }
  const colon = userinfo?.indexOf(':') ?? -1;
  const port = m[4] === undefined ? undefined : Number(m[4]);
  if (port !== undefined && port > 65535) throw new SipParseError(`URI port ${port} out of range`);
  return {
    scheme: m[1]!.toLowerCase() as 'sip' | 'sips',
    user: userinfo === undefined ? undefined : colon < 0 ? userinfo : userinfo.slice(0, colon),
    password: colon < 0 || userinfo === undefined ? undefined : userinfo.slice(colon + 1),
    host: m[3]!.toLowerCase(),
    port,
    params: parseParams(m[5] ?? ''),
    headers: m[6],
  };
}
