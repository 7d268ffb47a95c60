import { isIP } from 'node:net';
import { parseNameAddr, parseSipUri } from '../grammar.js';
import type { SipFlow } from './transport.js';

/** RFC 1918, RFC 6598 (CGN), link-local and unique-local: addresses a NATed phone writes in its Contact. */
function isPrivate(host: string): boolean {
  if (isIP(host) === 4) {
    const [a, b] = host.split('.').map(Number) as [number, number];
    return a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127) || (a === 169 && b === 254);
  }
  return /^f[cd]|^fe80:/i.test(host);
}

/**
 * Where a request inside a dialog goes (RFC 3261 §12.2.1.1 and §8.1.2): the first Route of the
 * route set (loose routing), else the remote target, over the flow's transport; a connection
 * (TCP, TLS, WebSocket) is reused as it is (§18.3; RFC 5626). Deviation, as Kamailio's
 * nathelper does: a target that is a private address other than the flow's source is a phone
 * behind NAT, and the request goes back down the flow it signalled on.
 */
export function nextHopFlow(routeSet: readonly string[], remoteTarget: string, flow: SipFlow): SipFlow {
  const t = flow.transport;
  if (t.protocol === 'WS' || t.protocol === 'WSS' || !t.flowTo) return flow;
  let uri;
  try {
    uri = parseSipUri(routeSet.length ? parseNameAddr(routeSet[0]!).uri : remoteTarget);
  } catch {
    return flow;
  }
  const host = uri.host.replace(/^\[|\]$/g, '');
  const maddr = uri.params.get('maddr');
  const target = { host: maddr ?? host, port: uri.port ?? (t.protocol === 'TLS' ? 5061 : 5060) };
  const source = flow.remote.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  const dead = t.reliable && t.flows.get(flow.id) !== flow;
  // Deviation: no RFC 3263 lookup yet: a name (or a NATed private address) is reached at the
  // flow's own host, on the flow while it lives, else on a new connection to the target's port.
  if (isIP(target.host) === 0 || (isPrivate(target.host) && target.host !== source)) {
    return dead ? t.flowTo({ host: source, port: target.port }) ?? flow : flow;
  }
  if (target.host === source && `${target.port}` === flow.remote.slice(flow.remote.lastIndexOf(':') + 1)) return flow;
  // A connection to that host still open is reused (RFC 5923's idea): a carrier's SBC sends from
  // an ephemeral port, and a new TLS connection to its Contact would need its certificate checked.
  if (t.reliable && target.host === source && t.flows.get(flow.id) === flow) return flow;
  return t.flowTo(target) ?? flow;
}
