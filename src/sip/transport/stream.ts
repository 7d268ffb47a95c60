import { connect as netConnect, createServer as netCreateServer, isIP, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as tlsCreateServer, type ConnectionOptions } from 'node:tls';
import { SystemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import { newToken } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import { salvageResponse } from '../build.js';
import { StreamFramer, type FramedItem } from './framer.js';
import { bareHost, boundSentBy, canonicalHost, hostPort, type SipAddress } from './received.js';
import type { SipFlow, SipTransport, SipTransportListener } from './transport.js';

export interface StreamTransportOptions {
  /** The address to listen on (`0.0.0.0`, `::`, `127.0.0.1`...). */
  host: string;
  /** 0 listens on an ephemeral port (tests). */
  port: number;
  /** Our Via sent-by, `host[:port]`, decided by the caller; without a port (or with 0) the listening port is added. */
  sentBy: string;
  log: Logger;
  /** The server's certificate and key: with them the transport is TLS (RFC 3261 §26.3.1), without them TCP. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** For the TLS connections we open: passed to tls.connect (servername defaults to the host when it is a name). */
  tlsClient?: { ca?: string | Buffer | (string | Buffer)[]; rejectUnauthorized?: boolean; servername?: string };
  /** A connection without traffic either way for this long is closed; 600_000 by default. */
  idleMs?: number;
  /** Largest message, bytes (413 and the connection closed beyond); 65_536 by default. */
  maxMessageBytes?: number;
  /** Connections beyond this many (accepted and opened together) are refused; 10_000 by default. */
  maxConnections?: number;
  /** A connection we open that is not up after this long is given up; 10_000 by default. */
  connectTimeoutMs?: number;
  clock?: Clock;
}

/** Messages written to a connection still being opened, at most (the transactions retransmit or time out). */
const MAX_PENDING = 64;
/** Bytes written but not yet taken by the peer, at most: past this the peer is not reading, and the connection goes. */
const MAX_BACKLOG = 8 << 20;
/** How long a connection closed for a framing error may take to flush its last answer. */
const LINGER_MS = 2_000;

/** One TCP or TLS connection carrying SIP: a flow (RFC 5626), accepted or opened by us. */
class StreamFlow implements SipFlow {
  authenticatedUser: string | undefined;
  /** Messages written before the connection was up; undefined once it is. */
  pending: string[] | undefined;
  lastActivity: number;
  timer: TimerHandle | undefined;
  /** The keys this flow is found by in the transport's map by remote address. */
  readonly keys: string[] = [];
  closed = false;
  /** Framing failed: nothing more is read or written but the last answer. */
  ending = false;

  constructor(
    readonly id: string,
    readonly remote: string,
    readonly transport: StreamTransport,
    readonly socket: Socket,
    readonly framer: StreamFramer,
    connected: boolean,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    this.pending = connected ? undefined : [];
    this.lastActivity = clock.now();
  }

  send(text: string): boolean {
    if (this.closed || this.ending || this.socket.destroyed) return false;
    this.lastActivity = this.clock.now();
    if (this.pending) {
      if (this.pending.length >= MAX_PENDING) {
        this.log.info({ flow: this.id, remote: this.remote }, 'SIP connection still opening; message dropped');
        return false;
      }
      this.pending.push(text);
      return true;
    }
    this.socket.write(text);
    if (this.socket.writableLength > MAX_BACKLOG) {
      this.log.warn({ flow: this.id, remote: this.remote, backlog: this.socket.writableLength }, 'SIP peer is not reading; closing its connection');
      this.socket.destroy();
    }
    return true;
  }

  /** The connection is up: what was written while it opened goes now, in order. */
  connected(): void {
    const queued = this.pending ?? [];
    this.pending = undefined;
    for (const text of queued) this.send(text);
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * SIP over TCP or TLS (RFC 3261 §18.3, §26.3.1): reliable, framed by Content-Length. One flow
 * per connection; responses and new requests to an address reuse its open connection,
 * accepted or opened (§18.2.2, §18.3). Idle connections are closed; every closed connection
 * is told to the stack once. Nothing a peer sends can throw out of here.
 */
export class StreamTransport implements SipTransport {
  readonly protocol: 'TCP' | 'TLS';
  readonly reliable = true;
  readonly flows = new Map<string, StreamFlow>();
  /** Open connections by remote `host:port` (the address we dialled, and the one the socket shows). */
  readonly #byRemote = new Map<string, StreamFlow>();
  readonly #server: Server;
  readonly #opts: StreamTransportOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #idleMs: number;
  readonly #maxMessage: number;
  readonly #maxConnections: number;
  #sentBy = '';
  #port = 0;
  #listener: SipTransportListener | undefined;
  #closed = false;

  /** Listens; resolves once listening (rejects when the address cannot be bound). */
  static async open(opts: StreamTransportOptions): Promise<StreamTransport> {
    const transport = new StreamTransport(opts);
    await transport.#listen();
    return transport;
  }

  private constructor(opts: StreamTransportOptions) {
    this.#opts = opts;
    this.protocol = opts.tls ? 'TLS' : 'TCP';
    this.#log = opts.log;
    this.#clock = opts.clock ?? new SystemClock();
    this.#idleMs = opts.idleMs ?? 600_000;
    this.#maxMessage = opts.maxMessageBytes ?? 65_536;
    this.#maxConnections = opts.maxConnections ?? 10_000;
    if (opts.tls) {
      const server = tlsCreateServer({ cert: opts.tls.cert, key: opts.tls.key });
      server.on('secureConnection', (socket) => this.#accept(socket));
      server.on('tlsClientError', (err, socket) => this.#log.info({ err, remote: socket.remoteAddress }, 'SIP TLS handshake failed'));
      this.#server = server;
    } else {
      this.#server = netCreateServer((socket) => this.#accept(socket));
    }
    // Refused at accept, before any TLS handshake is spent on it.
    this.#server.maxConnections = this.#maxConnections;
    this.#server.on('error', (err) => this.#log.warn({ err, protocol: this.protocol }, 'SIP stream server error'));
  }

  /** Our Via sent-by (known once listening). */
  get sentBy(): string {
    return this.#sentBy;
  }

  /** The listening port. */
  get port(): number {
    return this.#port;
  }

  async #listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ host: bareHost(this.#opts.host), port: this.#opts.port }, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    const address = this.#server.address();
    this.#port = typeof address === 'object' && address !== null ? address.port : this.#opts.port;
    this.#sentBy = boundSentBy(this.#opts.sentBy, this.#port);
  }

  listen(listener: SipTransportListener): void {
    this.#listener = listener;
  }

  /**
   * RFC 3261 §18.2.2 / §18.3: sends over the open connection to the address when there is one
   * (ours or the peer's), else opens one; what is written before it is up waits for it.
   * Undefined when no connection can be had (closed, or at maxConnections).
   */
  sendTo(address: SipAddress, text: string): SipFlow | undefined {
    const flow = this.flowTo(address);
    flow?.send(text);
    return flow;
  }

  /** A live connection to the address (§18.3: reused), or a new one being opened. */
  flowTo(address: SipAddress): SipFlow | undefined {
    if (this.#closed) return undefined;
    const host = canonicalHost(address.host);
    const remote = hostPort(host, address.port);
    const open = this.#byRemote.get(remote);
    if (open) return open;
    if (this.flows.size >= this.#maxConnections) {
      this.#log.warn({ remote, max: this.#maxConnections }, 'SIP connection limit reached; not opening another');
      return undefined;
    }
    return this.#adopt(this.#dial(host, address.port), remote, false);
  }

  #dial(host: string, port: number): Socket {
    if (this.protocol === 'TCP') return netConnect({ host, port });
    const client = this.#opts.tlsClient ?? {};
    const options: ConnectionOptions = { host, port };
    if (client.ca !== undefined) options.ca = client.ca;
    if (client.rejectUnauthorized !== undefined) options.rejectUnauthorized = client.rejectUnauthorized;
    // RFC 5922 §7.2 / RFC 6066 §3: SNI names the host we meant; an IP is never sent as SNI.
    const servername = client.servername ?? (isIP(host) ? undefined : host);
    if (servername !== undefined) options.servername = servername;
    return tlsConnect(options);
  }

  #accept(socket: Socket): void {
    const address = socket.remoteAddress;
    const port = socket.remotePort;
    if (this.#closed || address === undefined || port === undefined) {
      socket.destroy();
      return;
    }
    const remote = hostPort(canonicalHost(address), port);
    if (this.flows.size >= this.#maxConnections) {
      this.#log.warn({ remote, max: this.#maxConnections }, 'SIP connection limit reached; connection refused');
      socket.destroy();
      return;
    }
    this.#adopt(socket, remote, true);
  }

  /** Makes a connection a flow: framed input to the stack, idle and connect timers, closed told once. */
  #adopt(socket: Socket, remote: string, connected: boolean): StreamFlow {
    const framer = new StreamFramer({ maxMessageBytes: this.#maxMessage });
    const flow = new StreamFlow(`${this.protocol.toLowerCase()}-${newToken().slice(0, 16)}`, remote, this, socket, framer, connected, this.#clock, this.#log);
    this.flows.set(flow.id, flow);
    this.#remember(flow, remote);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(flow, chunk));
    socket.on('error', (err) => this.#log.info({ err, flow: flow.id, remote: flow.remote }, connected || !flow.pending ? 'SIP connection error' : 'SIP connection could not be opened'));
    socket.on('close', () => this.#onClosed(flow));
    if (!connected) {
      socket.once(this.protocol === 'TLS' ? 'secureConnect' : 'connect', () => {
        // Found by the address the socket shows too, so an answer to it finds this connection.
        if (socket.remoteAddress !== undefined && socket.remotePort !== undefined) this.#remember(flow, hostPort(canonicalHost(socket.remoteAddress), socket.remotePort));
        this.#armIdle(flow, this.#idleMs);
        flow.connected();
      });
      flow.timer = this.#clock.setTimeout(() => {
        if (!flow.pending) return;
        this.#log.info({ flow: flow.id, remote: flow.remote }, 'SIP connection not up in time; given up');
        socket.destroy();
      }, this.#opts.connectTimeoutMs ?? 10_000);
    } else this.#armIdle(flow, this.#idleMs);
    return flow;
  }

  #remember(flow: StreamFlow, key: string): void {
    if (flow.keys.includes(key)) return;
    flow.keys.push(key);
    this.#byRemote.set(key, flow);
  }

  #onData(flow: StreamFlow, chunk: Buffer): void {
    if (flow.ending || flow.closed) return;
    flow.lastActivity = this.#clock.now();
    let items: FramedItem[];
    try {
      items = flow.framer.push(chunk);
    } catch (err) {
      this.#log.error({ err, flow: flow.id }, 'SIP stream framing failed');
      flow.socket.destroy();
      return;
    }
    for (const item of items) {
      if (flow.socket.destroyed) return;
      if (item.kind === 'message') {
        try {
          this.#listener?.message(flow, item.data);
        } catch (err) {
          this.#log.error({ err, flow: flow.id }, 'SIP message handling failed');
        }
      } else if (item.kind === 'ping') {
        // RFC 5626 §4.4.1: a CRLFCRLF ping is answered with a CRLF pong.
        flow.send('\r\n');
      } else {
        // RFC 3261 §18.3: past a framing error the stream cannot be read; answer if it was a request, then close.
        const reply = salvageResponse(item.head, item.status, item.reason);
        this.#log.info({ flow: flow.id, remote: flow.remote, code: item.code, status: item.status, answered: reply !== undefined }, 'SIP stream unframeable; closing');
        this.#end(flow, reply);
      }
    }
  }

  /** Closes after the last answer has gone (the peer's FIN or the linger time, whichever comes first). */
  #end(flow: StreamFlow, last: string | undefined): void {
    flow.ending = true;
    if (flow.timer) this.#clock.clearTimeout(flow.timer);
    flow.timer = this.#clock.setTimeout(() => flow.socket.destroy(), LINGER_MS);
    if (last !== undefined && !flow.pending) flow.socket.end(last);
    else flow.socket.end();
  }

  /** Closes a connection idle for idleMs; the timer is re-armed for what is left otherwise (one timer per connection). */
  #armIdle(flow: StreamFlow, ms: number): void {
    if (flow.timer) this.#clock.clearTimeout(flow.timer);
    flow.timer = this.#clock.setTimeout(() => {
      flow.timer = undefined;
      if (flow.closed) return;
      const idleFor = this.#clock.now() - flow.lastActivity;
      if (idleFor < this.#idleMs) return this.#armIdle(flow, this.#idleMs - idleFor);
      this.#log.info({ flow: flow.id, remote: flow.remote, idleMs: this.#idleMs }, 'SIP connection idle; closing');
      flow.socket.destroy();
    }, ms);
  }

  /** Once per connection, however it ended: out of the maps, then the stack is told. */
  #onClosed(flow: StreamFlow): void {
    if (flow.closed) return;
    flow.closed = true;
    flow.pending = undefined;
    if (flow.timer) this.#clock.clearTimeout(flow.timer);
    flow.timer = undefined;
    this.flows.delete(flow.id);
    for (const key of flow.keys) if (this.#byRemote.get(key) === flow) this.#byRemote.delete(key);
    try {
      this.#listener?.closed(flow);
    } catch (err) {
      this.#log.error({ err, flow: flow.id }, 'SIP flow close handling failed');
    }
  }

  /** Stops listening and closes every connection; each is told closed now, so no map holds anything after. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    for (const flow of [...this.flows.values()]) {
      flow.socket.destroy();
      this.#onClosed(flow);
    }
  }
}
