/** The transports SIP runs on (RFC 3261 §18, RFC 7118). */
export type SipProtocol = 'UDP' | 'TCP' | 'TLS' | 'WS' | 'WSS';

/**
 * Where a message came from and where its answer goes: one connection (TCP, TLS, WebSocket),
 * or for UDP one remote address. RFC 5626 calls this a flow.
 */
export interface SipFlow {
  readonly id: string;
  readonly transport: SipTransport;
  /** The far end as the connection or the datagram shows it: host:port, IPv6 in brackets. */
  readonly remote: string;
  /** The user this flow proved to be (a successful digest REGISTER), if any. */
  authenticatedUser: string | undefined;
  send(text: string): boolean;
  close(): void;
}

export interface SipTransportListener {
  message(flow: SipFlow, data: Buffer): void;
  /** A connection closed (never for UDP): its registrations go at once. */
  closed(flow: SipFlow): void;
}

/**
 * A SIP transport as the stack sees it: its protocol, whether it is reliable (it decides the
 * transaction timers, §17), the sent-by that goes into our Via, and sending to a flow or to an
 * address. Registered with the stack from outside; Via, Contact and Record-Route are built from
 * it (below), never written by hand.
 */
export interface SipTransport {
  readonly protocol: SipProtocol;
  readonly reliable: boolean;
  /** Our Via sent-by on this transport: host[:port] (a random `.invalid` name on WebSocket, RFC 7118 §5). */
  readonly sentBy: string;
  /** Its live flows by id. */
  readonly flows: ReadonlyMap<string, SipFlow>;
  /** Where received messages and closed flows go (the stack). */
  listen(listener: SipTransportListener): void;
  /** Sends to an address, opening a connection if this transport needs one; undefined when it cannot (a WebSocket server cannot call out). */
  sendTo(address: { host: string; port: number }, text: string): SipFlow | undefined;
  /**
   * The flow to an address without sending anything yet (UDP: the datagram flow; TCP/TLS: a
   * live connection to it, or a new one); undefined when this transport cannot reach out.
   */
  flowTo?(address: { host: string; port: number }): SipFlow | undefined;
  close(): void;
}

/** RFC 3261 §20.42 / RFC 3581: our Via on this transport (`rport` asked for on UDP, §4 of RFC 3581). */
export function viaFor(t: Pick<SipTransport, 'protocol' | 'sentBy'>, branch: string): string {
  return `SIP/2.0/${t.protocol} ${t.sentBy};branch=${branch}${t.protocol === 'UDP' ? ';rport' : ''}`;
}

/** The transport parameter of our URIs: RFC 7118 §5.2 uses `ws` for WS and WSS alike. */
function transportParam(p: SipProtocol): string {
  return p === 'WS' || p === 'WSS' ? 'ws' : p.toLowerCase();
}

/** A SIP URI that reaches us over this transport: `sip:[user@]sent-by;transport=…`. */
export function transportUri(t: Pick<SipTransport, 'protocol' | 'sentBy'>, user?: string): string {
  return `sip:${user ? `${user}@` : ''}${t.sentBy};transport=${transportParam(t.protocol)}`;
}

/**
 * Our Contact on this transport (§8.1.1.8), as a name-addr.
 * Deviation: always `sip:` (with `transport=tls` over TLS), also for a `sips:` Request-URI,
 * where §12.1.1 asks for a SIPS Contact; the carriers we serve send sip: over TLS.
 */
export function contactFor(t: Pick<SipTransport, 'protocol' | 'sentBy'>, user: string): string {
  return `<${transportUri(t, user)}>`;
}

/** Our Record-Route on this transport (§16.6 step 4, loose routing). */
export function recordRouteFor(t: Pick<SipTransport, 'protocol' | 'sentBy'>): string {
  return `<${transportUri(t)};lr>`;
}

/** The host of a sent-by, lower-cased (the port, if any, removed). */
export function sentByHost(sentBy: string): string {
  const v6 = /^\[[^\]]*\]/.exec(sentBy);
  return (v6 ? v6[0] : sentBy.split(':')[0]!).toLowerCase();
}
