import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { newTag } from '../build.js';
import { newToken } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import type { SipFlow, SipTransport, SipTransportListener } from './transport.js';

export type { SipFlow };

export interface WsTransportOptions {
  /** Allowed Origin values; `*` allows any. A request without Origin (not a browser) is allowed. */
  origins: string[];
  /** SIP-level limit (413); the WebSocket itself closes (1009) only past max(8 MiB, 4x this). */
  maxMessageBytes: number;
  pingIntervalMs: number;
  tls: boolean;
  log: Logger;
  /** Open flows at most (503 past it), and from one IP address (429 past it). */
  maxFlows: number;
  maxFlowsPerAddress: number;
  /** A flow that has neither registered nor sent an INVITE by then is closed (1008). */
  setupTimeoutMs: number;
}

/**
 * One WebSocket connection carrying SIP (RFC 7118). Responses and requests for a WebSocket
 * client always go back down the flow it came on (its Via host is a random `.invalid` name
 * that is never resolved).
 */
class WsFlow implements SipFlow {
  authenticatedUser: string | undefined;
  alive = true;
  /** It sent an INVITE (a caller that authenticates per call never registers). */
  called = false;

  constructor(
    readonly id: string,
    readonly remote: string,
    readonly transport: WsTransport,
    readonly ws: WebSocket,
  ) {}

  send(text: string): boolean {
    if (this.ws.readyState !== this.ws.OPEN) return false;
    this.ws.send(text);
    return true;
  }

  close(): void {
    this.ws.close(1000, '');
  }
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 403: 'Forbidden', 429: 'Too Many Requests', 503: 'Service Unavailable' };

/** SIP over WebSocket (RFC 7118) on the gateway's HTTP(S) server: a reliable transport. */
export class WsTransport implements SipTransport {
  readonly protocol: 'WS' | 'WSS';
  readonly reliable = true;
  /** RFC 7118 §5: a random name that is never resolved; clients answer on the same connection. */
  readonly sentBy = `${newTag()}.invalid`;
  readonly flows = new Map<string, SipFlow>();
  /** Open flows per IP address. */
  readonly #perAddress = new Map<string, number>();
  readonly #wss: WebSocketServer;
  readonly #ping: NodeJS.Timeout;
  #listener: SipTransportListener | undefined;

  constructor(private readonly opts: WsTransportOptions) {
    this.protocol = opts.tls ? 'WSS' : 'WS';
    this.#wss = new WebSocketServer({
      noServer: true,
      // Oversized SIP gets a 413 on an open socket; only past this does the socket close (1009).
      maxPayload: Math.max(8 << 20, opts.maxMessageBytes * 4),
      perMessageDeflate: false,
      handleProtocols: (protocols) => (protocols.has('sip') ? 'sip' : false),
    });
    // RFC 7118 §4: keep-alive with WebSocket Ping (SIP.js never answers a server's CRLF ping);
    // a flow that missed a whole interval's Pong is dead, and its registrations go at once.
    this.#ping = setInterval(() => {
      for (const flow of this.flows.values()) {
        const f = flow as WsFlow;
        if (!f.alive) {
          opts.log.info({ flow: f.id, remote: f.remote }, 'SIP WebSocket missed its pong; closing');
          f.ws.terminate();
          continue;
        }
        f.alive = false;
        f.ws.ping();
      }
    }, opts.pingIntervalMs);
    this.#ping.unref();
  }

  listen(listener: SipTransportListener): void {
    this.#listener = listener;
  }

  /** A WebSocket server cannot open a connection to a client: only its own flows reach it. */
  sendTo(): undefined {
    return undefined;
  }

  /** Takes an HTTP upgrade for `/sip`; refuses it with an HTTP status when it is not SIP over WebSocket. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const refuse = (status: number, reason: string) => {
      this.opts.log.info({ remote: req.socket.remoteAddress, status, reason }, 'SIP WebSocket refused');
      const retry = status === 503 || status === 429 ? 'Retry-After: 5\r\n' : '';
      socket.end(`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Bad Request'}\r\nContent-Type: text/plain\r\n${retry}Connection: close\r\n\r\n${reason}\n`);
    };
    const address = req.socket.remoteAddress ?? '?';
    if (this.flows.size >= this.opts.maxFlows) return refuse(503, `This gateway holds its maximum of ${this.opts.maxFlows} SIP connections (sip.ws.maxConnections); retry later.`);
    if ((this.#perAddress.get(address) ?? 0) >= this.opts.maxFlowsPerAddress) {
      return refuse(429, `Your address holds ${this.opts.maxFlowsPerAddress} SIP connections already (sip.ws.maxConnectionsPerAddress); close one first.`);
    }
    const protocols = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim().toLowerCase());
    if (!protocols.includes('sip')) return refuse(400, 'Request the WebSocket subprotocol "sip" (RFC 7118).');
    const origin = req.headers.origin;
    if (origin !== undefined && !this.opts.origins.includes('*') && !this.opts.origins.includes(origin)) {
      return refuse(403, `Origin ${origin} is not allowed; add it to cors.origins.`);
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, req));
  }

  #accept(ws: WebSocket, req: IncomingMessage): void {
    const address = req.socket.remoteAddress ?? '?';
    const remote = `${address}:${req.socket.remotePort ?? 0}`;
    const flow = new WsFlow(newToken().slice(0, 16), remote, this, ws);
    this.flows.set(flow.id, flow);
    this.#perAddress.set(address, (this.#perAddress.get(address) ?? 0) + 1);
    // A socket that never registers nor calls is not kept for ever (about 7 KB and a descriptor each).
    const setup = setTimeout(() => {
      if (flow.authenticatedUser !== undefined || flow.called) return;
      this.opts.log.info({ flow: flow.id, remote }, 'SIP WebSocket neither registered nor called in time; closing');
      ws.close(1008, `register or call within ${Math.round(this.opts.setupTimeoutMs / 1000)} s`);
    }, this.opts.setupTimeoutMs);
    setup.unref();
    ws.on('pong', () => (flow.alive = true));
    ws.on('message', (data: Buffer, isBinary) => {
      flow.alive = true;
      // A bare CRLF (RFC 5626 keep-alive) is answered with CRLF, never parsed.
      if (!isBinary && data.length <= 4 && /^(\r\n)+$/.test(data.toString())) {
        if (data.length === 4) ws.send('\r\n');
        return;
      }
      if (!flow.called && data.subarray(0, 7).toString('latin1') === 'INVITE ') flow.called = true;
      this.#listener?.message(flow, data);
    });
    ws.on('error', (err) => this.opts.log.info({ err, flow: flow.id }, 'SIP WebSocket error'));
    ws.on('close', () => {
      clearTimeout(setup);
      const n = (this.#perAddress.get(address) ?? 1) - 1;
      if (n > 0) this.#perAddress.set(address, n);
      else this.#perAddress.delete(address);
      this.flows.delete(flow.id);
      this.#listener?.closed(flow);
    });
  }

  /**
   * Shutdown: every flow gets a WebSocket close frame (1001 Going Away, RFC 6455 §7.4.1) and
   * its closing handshake, so clients see a clean close (not 1006) and the flows' last records
   * (bindings removed) are written while the audit log is open; after `ms`, the rest are cut.
   */
  async goAway(ms: number): Promise<void> {
    const flows = [...this.flows.values()] as WsFlow[];
    for (const flow of flows) flow.ws.close(1001, 'voxgate is shutting down');
    // Wall-clock bounded on purpose: shutdown must end even when the signalling clock is a test's.
    const end = Date.now() + ms;
    while (flows.some((f) => this.flows.has(f.id)) && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  }

  close(): void {
    clearInterval(this.#ping);
    for (const flow of this.flows.values()) (flow as WsFlow).ws.terminate();
    this.#wss.close();
  }
}
