import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';
import { SystemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';
import { bareHost, boundSentBy, canonicalHost, hostPort, type SipAddress } from './received.js';
import type { SipFlow, SipTransport, SipTransportListener } from './transport.js';

export interface UdpTransportOptions {
  /** The address to bind (`0.0.0.0`, `::`, `127.0.0.1`...): udp6 when it is IPv6, else udp4. */
  host: string;
  /** 0 binds an ephemeral port (tests). */
  port: number;
  /** Our Via sent-by, `host[:port]`, decided by the caller (externalAddress); without a port (or with 0) the bound port is added. */
  sentBy: string;
  log: Logger;
  /** Largest datagram sent, bytes (a larger message is refused, send() returns false); 65507 by default. */
  maxDatagramBytes?: number;
  /** A flow without traffic for this long is forgotten; 600_000 by default. */
  idleMs?: number;
  /** At most this many flows are kept (the least recently active go first); 100_000 by default. */
  maxFlows?: number;
  clock?: Clock;
}

/** RFC 5389 §6: the magic cookie at byte 4 of every STUN message. */
const STUN_MAGIC = 0x2112a442;
const STUN_BINDING_REQUEST = 0x0001;
const STUN_BINDING_SUCCESS = 0x0101;
const STUN_XOR_MAPPED_ADDRESS = 0x0020;

/**
 * One remote address on the UDP socket (RFC 5626 calls it a flow). Its id is derived from the
 * address, so a flow forgotten while idle comes back with the same id when the peer sends
 * again, and the registrations bound to that id find it.
 */
class UdpFlow implements SipFlow {
  authenticatedUser: string | undefined;

  constructor(
    readonly id: string,
    readonly remote: string,
    readonly transport: UdpTransport,
    readonly address: SipAddress,
    private readonly datagram: (flow: UdpFlow, text: string) => boolean,
    private readonly forget: (flow: UdpFlow) => void,
  ) {}

  send(text: string): boolean {
    return this.datagram(this, text);
  }

  /** A datagram "flow" has nothing to close: it is only forgotten (and `closed` is never emitted). */
  close(): void {
    this.forget(this);
  }
}

/** The flow id of a remote address. */
export function udpFlowId(remote: string): string {
  return `udp:${remote}`;
}

/**
 * SIP over UDP (RFC 3261 §18) on one `node:dgram` socket: unreliable, so the transactions
 * retransmit. Keep-alives (CRLF, STUN binding requests, RFC 5626 §4.4.1 and §8.4) are taken
 * here and never reach the stack. Nothing a peer sends can throw out of here.
 */
export class UdpTransport implements SipTransport {
  readonly protocol = 'UDP';
  readonly reliable = false;
  readonly sentBy: string;
  /** The bound port. */
  readonly port: number;
  /** Live flows by id, least recently active first (every datagram moves its flow to the end). */
  readonly flows = new Map<string, UdpFlow>();
  readonly #socket: Socket;
  readonly #v6: boolean;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #idleMs: number;
  readonly #maxFlows: number;
  readonly #maxDatagram: number;
  /** When each flow last carried traffic, by id (kept beside the flow so SipFlow stays as the port defines it). */
  readonly #lastSeen = new Map<string, number>();
  #sweep: TimerHandle | undefined;
  #listener: SipTransportListener | undefined;
  #closed = false;

  /** Binds the socket; resolves once bound (rejects when the address cannot be bound). */
  static async open(opts: UdpTransportOptions): Promise<UdpTransport> {
    const host = bareHost(opts.host);
    const socket = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
    await new Promise<void>((resolve, reject) => {
      const failed = (err: Error) => {
        socket.removeAllListeners();
        reject(err);
      };
      socket.once('error', failed);
      socket.bind({ port: opts.port, address: host }, () => {
        socket.off('error', failed);
        resolve();
      });
    });
    return new UdpTransport(socket, opts);
  }

  private constructor(socket: Socket, opts: UdpTransportOptions) {
    this.#socket = socket;
    this.#v6 = socket.address().family === 'IPv6';
    this.port = socket.address().port;
    this.sentBy = boundSentBy(opts.sentBy, this.port);
    this.#log = opts.log;
    this.#clock = opts.clock ?? new SystemClock();
    this.#idleMs = opts.idleMs ?? 600_000;
    this.#maxFlows = opts.maxFlows ?? 100_000;
    this.#maxDatagram = opts.maxDatagramBytes ?? 65_507;
    socket.on('message', (data, rinfo) => this.#onDatagram(data, rinfo));
    // Errors on an unconnected UDP socket are about one datagram, never the socket: logged.
    socket.on('error', (err) => this.#log.warn({ err, sentBy: this.sentBy }, 'SIP UDP socket error'));
    this.#armSweep();
  }

  listen(listener: SipTransportListener): void {
    this.#listener = listener;
  }

  /** Sends to an address (an IP, or a name the socket resolves) through its flow, made if new. */
  sendTo(address: SipAddress, text: string): SipFlow | undefined {
    if (this.#closed) return undefined;
    const flow = this.#flow(canonicalHost(address.host), address.port);
    flow.send(text);
    return flow;
  }

  /** The datagram flow of an address (made if new), without sending. */
  flowTo(address: SipAddress): SipFlow | undefined {
    if (this.#closed) return undefined;
    return this.#flow(canonicalHost(address.host), address.port);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#sweep) this.#clock.clearTimeout(this.#sweep);
    this.flows.clear();
    this.#lastSeen.clear();
    this.#socket.close();
  }

  #onDatagram(data: Buffer, rinfo: RemoteInfo): void {
    try {
      if (data.length === 0) return;
      // A dual-stack socket shows an IPv4 peer as ::ffff:a.b.c.d; the flow names the IPv4 address.
      const host = canonicalHost(rinfo.address);
      if (isCrlfOnly(data)) {
        // RFC 5626 §4.4.1: a CRLF keep-alive keeps the flow (and the peer's NAT binding) alive.
        this.#touch(udpFlowId(hostPort(host, rinfo.port)));
        return;
      }
      if (isStun(data)) {
        this.#touch(udpFlowId(hostPort(host, rinfo.port)));
        this.#answerStun(data, host, rinfo.port);
        return;
      }
      const flow = this.#flow(host, rinfo.port);
      this.#listener?.message(flow, data);
    } catch (err) {
      this.#log.error({ err, remote: `${rinfo.address}:${rinfo.port}` }, 'SIP UDP datagram handling failed');
    }
  }

  /** The flow of a remote address, made (and the least active one forgotten at the bound) when new. */
  #flow(host: string, port: number): UdpFlow {
    const remote = hostPort(host, port);
    const id = udpFlowId(remote);
    const known = this.flows.get(id);
    if (known) {
      this.#touch(id);
      return known;
    }
    while (this.flows.size >= this.#maxFlows) this.#forget(this.flows.values().next().value!);
    const flow = new UdpFlow(id, remote, this, { host, port }, (f, text) => this.#send(f, text), (f) => this.#forget(f));
    this.flows.set(id, flow);
    this.#lastSeen.set(id, this.#clock.now());
    return flow;
  }

  /** Marks traffic on a flow: it moves to the end of the map, so idle ones are always at the front. */
  #touch(id: string): void {
    const flow = this.flows.get(id);
    if (!flow) return;
    this.flows.delete(id);
    this.flows.set(id, flow);
    this.#lastSeen.set(id, this.#clock.now());
  }

  #forget(flow: UdpFlow): void {
    if (this.flows.get(flow.id) !== flow) return;
    this.flows.delete(flow.id);
    this.#lastSeen.delete(flow.id);
  }

  #send(flow: UdpFlow, text: string): boolean {
    if (this.#closed) return false;
    const data = Buffer.from(text, 'utf8');
    if (data.length > this.#maxDatagram) {
      // RFC 3261 §18.1.1 would move a large request to TCP; choosing the transport is the caller's job.
      this.#log.warn({ flow: flow.id, bytes: data.length, max: this.#maxDatagram }, 'SIP message too large for a UDP datagram; not sent');
      return false;
    }
    const target = this.#socketHost(flow.address.host);
    if (target === undefined) {
      this.#log.info({ flow: flow.id }, 'SIP UDP socket is IPv4; cannot send to an IPv6 address');
      return false;
    }
    this.#touch(flow.id);
    this.#socket.send(data, flow.address.port, target, (err) => {
      if (err) this.#log.info({ err, flow: flow.id }, 'SIP UDP send failed');
    });
    return true;
  }

  /** The host as this socket's family takes it: IPv4 peers of a udp6 socket are IPv4-mapped. */
  #socketHost(host: string): string | undefined {
    if (this.#v6) return isIPv4(host) ? `::ffff:${host}` : host;
    return isIPv6(host) ? undefined : host;
  }

  /**
   * RFC 5389 §7.3.1 / RFC 5626 §8.4: a binding request gets a success response with
   * XOR-MAPPED-ADDRESS; other STUN is dropped. Deviation: attributes of the request are not
   * read (no 420 for unknown comprehension-required ones, no FINGERPRINT back): a keep-alive
   * only needs its mapped address, and nothing here is authenticated.
   */
  #answerStun(req: Buffer, host: string, port: number): void {
    if (req.readUInt16BE(0) !== STUN_BINDING_REQUEST) return;
    const response = stunBindingSuccess(req, host, port);
    const target = this.#socketHost(host);
    if (response === undefined || target === undefined) return;
    this.#socket.send(response, port, target, (err) => {
      if (err) this.#log.info({ err, remote: hostPort(host, port) }, 'STUN binding response not sent');
    });
  }

  /** Forgets flows idle for idleMs; the map is in order of activity, so the sweep stops at the first live one. */
  #armSweep(): void {
    const every = Math.min(60_000, Math.max(1_000, this.#idleMs / 10));
    this.#sweep = this.#clock.setTimeout(() => {
      const cutoff = this.#clock.now() - this.#idleMs;
      for (const [id, flow] of this.flows) {
        if ((this.#lastSeen.get(id) ?? 0) > cutoff) break;
        this.#forget(flow);
      }
      if (!this.#closed) this.#armSweep();
    }, every);
  }
}

/** RFC 5626 §4.4.1 / RFC 3261 §7.5: a datagram of nothing but CRLFs is a keep-alive. */
function isCrlfOnly(data: Buffer): boolean {
  for (const c of data) if (c !== 0x0d && c !== 0x0a) return false;
  return true;
}

/** RFC 5389 §6 / RFC 7983: the two top bits of a STUN message are zero and the cookie is at byte 4. */
export function isStun(data: Buffer): boolean {
  return data.length >= 20 && (data[0]! & 0xc0) === 0 && data.readUInt32BE(4) === STUN_MAGIC && data.readUInt16BE(2) === data.length - 20;
}

/** RFC 5389 §7.3.1 and §15.2: the binding success response to a request, the source in XOR-MAPPED-ADDRESS. */
export function stunBindingSuccess(req: Buffer, host: string, port: number): Buffer | undefined {
  const address = ipBytes(host);
  if (address === undefined) return undefined;
  const res = Buffer.alloc(20 + 4 + 4 + address.length);
  res.writeUInt16BE(STUN_BINDING_SUCCESS, 0);
  res.writeUInt16BE(4 + 4 + address.length, 2);
  res.writeUInt32BE(STUN_MAGIC, 4);
  req.copy(res, 8, 8, 20); // the transaction id
  res.writeUInt16BE(STUN_XOR_MAPPED_ADDRESS, 20);
  res.writeUInt16BE(4 + address.length, 22);
  res[25] = address.length === 4 ? 0x01 : 0x02;
  res.writeUInt16BE(port ^ (STUN_MAGIC >>> 16), 26);
  // §15.2: the address is XORed with the cookie (IPv4), or with the cookie and transaction id (IPv6).
  for (let i = 0; i < address.length; i++) res[28 + i] = address[i]! ^ res[4 + i]!;
  return res;
}

/** The bytes of an IPv4 or IPv6 address (an IPv4-mapped one as IPv4, what the peer knows itself by). */
function ipBytes(host: string): Buffer | undefined {
  const ip = canonicalHost(host);
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  if (!isIPv6(ip)) return undefined;
  const [head = '', tail] = ip.split('::');
  const groups = (s: string | undefined) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const left = groups(head);
  const right = groups(tail);
  const all = tail === undefined ? left : [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}
