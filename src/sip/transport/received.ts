import { isIP, isIPv6 } from 'node:net';
import { parseVia, splitList, splitParamText, type Via } from '../grammar.js';
import { TOP_VIA, type SipRequest } from '../message.js';

/**
 * Where a message came from, as the stack uses it: the Via stamping of RFC 3261 §18.2.1 and
 * RFC 3581 §4 on a received request, and where its response goes (§18.2.2). Pure functions,
 * plus the address spellings the transports share (IPv6 in brackets only inside host:port).
 */

/** An address as a socket takes it: an IP (IPv6 without brackets) or a name, and a port. */
export interface SipAddress {
  host: string;
  port: number;
}

/** `[2001:db8::1]` → `2001:db8::1`; other hosts unchanged. */
export function bareHost(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/**
 * The one spelling of an IP, so two spellings compare equal: lower-case, IPv6 compressed
 * (RFC 5952), an IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) as the
 * IPv4 address it maps. A name is returned lower-cased. Never throws (sockets call it).
 */
export function canonicalHost(host: string): string {
  const bare = bareHost(host).toLowerCase();
  if (!isIPv6(bare)) return bare;
  // A link-local address's zone (fe80::1%eth0) is kept as it is; URL has no room for it.
  const zone = bare.indexOf('%');
  if (zone >= 0) return `${canonicalHost(bare.slice(0, zone))}${bare.slice(zone)}`;
  // The WHATWG URL parser serialises IPv6 in the RFC 5952 form.
  const compressed = URL.canParse(`http://[${bare}]/`) ? new URL(`http://[${bare}]/`).hostname.slice(1, -1) : bare;
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(compressed);
  if (!mapped) return compressed;
  const hi = parseInt(mapped[1]!, 16);
  const lo = parseInt(mapped[2]!, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** `host:port` as SIP and our flows write it (§19.1.1): an IPv6 address in brackets. */
export function hostPort(host: string, port: number): string {
  const bare = bareHost(host);
  return isIPv6(bare) ? `[${bare}]:${port}` : `${bare}:${port}`;
}

/**
 * The sent-by a transport puts in its Via once bound: the caller's `host[:port]` (its external
 * address), with the bound port when it names none or port 0 (a test's ephemeral port).
 */
export function boundSentBy(sentBy: string, boundPort: number): string {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(sentBy);
  if (v6) return `[${v6[1]}]:${v6[2] === undefined || v6[2] === '0' ? boundPort : v6[2]}`;
  if (isIPv6(sentBy)) return `[${sentBy}]:${boundPort}`;
  const [host, port] = sentBy.split(':');
  return `${host}:${port === undefined || port === '0' ? boundPort : port}`;
}

/** Whether a Via sent-by host is the address a packet came from (a name never is, §18.2.1). */
function sameIp(viaHost: string, source: string): boolean {
  const a = canonicalHost(viaHost);
  return isIP(a) !== 0 && a === canonicalHost(source);
}

const paramName = (part: string) => part.split('=')[0]!.trim().toLowerCase();

/** One Via value with `received` set and, when given, `rport` filled; other parameters kept as written. */
function stampValue(value: string, received: string, rport: number | undefined): string {
  // The protocol and sent-by hold no `;` and no quote, so the first `;` starts the parameters.
  const semi = value.indexOf(';');
  const head = semi < 0 ? value : value.slice(0, semi);
  const params = semi < 0 ? [] : splitParamText(value.slice(semi + 1)).filter((p) => p.trim() !== '');
  let placed = false;
  const out: string[] = [];
  for (const p of params) {
    const name = paramName(p);
    if (name === 'received') continue;
    if (name === 'rport' && rport !== undefined) {
      // RFC 3581 §4: received goes with the filled rport, as the RFC's own example writes them.
      out.push(`received=${received}`, `rport=${rport}`);
      placed = true;
    } else out.push(p.trim());
  }
  if (!placed) out.push(`received=${received}`);
  return `${head.trimEnd()};${out.join(';')}`;
}

/**
 * RFC 3261 §18.2.1: a server adds `received` with the source IP to the top Via when its
 * sent-by is a name or another address. RFC 3581 §4: a bare `rport` is filled with the source
 * port, and then `received` is added even when it equals the sent-by. Only the first value of
 * the first Via line changes; the parsed top Via (TOP_VIA) is kept in step with it.
 */
export function stampVia(req: SipRequest, source: SipAddress): void {
  const line = req.headers.find((h) => h.name === 'Via');
  if (!line) return;
  const values = splitList(line.value);
  const top = values[0];
  if (top === undefined) return;
  const via = parseVia(top);
  const rport = via.params.has('rport') && via.params.get('rport') === null ? source.port : undefined;
  if (rport === undefined && sameIp(via.host, source.host)) return;
  // RFC 3261 §25.1: `received` holds an IPv4address or IPv6address, without brackets.
  const received = canonicalHost(source.host);
  const stamped = stampValue(top, received, rport);
  values[0] = stamped;
  line.value = values.join(', ');
  req[TOP_VIA] = parseVia(stamped);
}

/** A port parameter (`rport=9988`), or undefined when absent, bare or not a port. */
function portParam(value: string | null | undefined): number | undefined {
  if (value === null || value === undefined || !/^\d{1,5}$/.test(value)) return undefined;
  const n = Number(value);
  return n > 0 && n <= 65535 ? n : undefined;
}

/**
 * Where the response to a request goes. RFC 3261 §18.2.2: on a reliable transport, back down
 * the connection it came on (the source; the caller decides what to do when it is gone). On an
 * unreliable one: `maddr` with the sent-by port (5060 by default); else `received` with the
 * `rport` value (RFC 3581 §4) or the sent-by port; else the sent-by itself.
 */
export function responseTarget(via: Via, source: SipAddress, reliable: boolean): SipAddress {
  if (reliable) return { host: bareHost(source.host), port: source.port };
  const sentByPort = via.port ?? 5060;
  const maddr = via.params.get('maddr');
  if (maddr) return { host: bareHost(maddr), port: sentByPort };
  const received = via.params.get('received') || undefined;
  const rport = portParam(via.params.get('rport'));
  // RFC 3581 §4: rport without received (stamped by someone who left it out) uses the sent-by host.
  if (rport !== undefined) return { host: bareHost(received ?? via.host), port: rport };
  if (received !== undefined) return { host: bareHost(received), port: sentByPort };
  return { host: bareHost(via.host), port: sentByPort };
}
