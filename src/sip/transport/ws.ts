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
}

/**
 * One WebSocket connection carrying SIP (RFC 7118). Responses and requests for a WebSocket
 * client always go back down the flow it came on (its Via host is a random `.invalid` name
 * that is never resolved).
 */
class WsFlow implements SipFlow {
  authenticatedUser: string | undefined;
  alive = true;

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

/** SIP over WebSocket (RFC 7118) on the gateway's HTTP(S) server: a reliable transport. */
export class WsTransport implements SipTransport {
  readonly protocol: 'WS' | 'WSS';
  readonly reliable = true;
  /** RFC 7118 §5: a random name that is never resolved; clients answer on the same connection. */
  readonly sentBy = `${newTag()}.invalid`;
  readonly flows = new Map<string, SipFlow>();
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
      socket.end(`HTTP/1.1 ${status} ${status === 403 ? 'Forbidden' : 'Bad Request'}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n${reason}\n`);
    };
    const protocols = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim().toLowerCase());
    if (!protocols.includes('sip')) return refuse(400, 'Request the WebSocket subprotocol "sip" (RFC 7118).');
    const origin = req.headers.origin;
    if (origin !== undefined && !this.opts.origins.includes('*') && !this.opts.origins.includes(origin)) {
      return refuse(403, `Origin ${origin} is not allowed; add it to cors.origins.`);
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, req));
  }

  #accept(ws: WebSocket, req: IncomingMessage): void {
    const remote = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? 0}`;
    const flow = new WsFlow(newToken().slice(0, 16), remote, this, ws);
    this.flows.set(flow.id, flow);
    ws.on('pong', () => (flow.alive = true));
    ws.on('message', (data: Buffer, isBinary) => {
      flow.alive = true;
      // A bare CRLF (RFC 5626 keep-alive) is answered with CRLF, never parsed.
      if (!isBinary && data.length <= 4 && /^(\r\n)+$/.test(data.toString())) {
        if (data.length === 4) ws.send('\r\n');
        return;
      }
      this.#listener?.message(flow, data);
    });
    ws.on('error', (err) => this.opts.log.info({ err, flow: flow.id }, 'SIP WebSocket error'));
    ws.on('close', () => {
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
