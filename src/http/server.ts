import { createServer as createHttpServer, type IncomingMessage, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';

/** Takes the socket of an HTTP Upgrade and returns true, or returns false to have it refused with 404. */
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => boolean;

export interface HttpServerOptions {
  /** PEM contents (read at start-up, where a missing file is named by its config field). */
  tls?: { cert: Buffer; key: Buffer };
  /** Upgrade handlers by path (`/sip`: SIP over WebSocket, RFC 7118); any other path gets 404. */
  upgrades?: Record<string, UpgradeHandler>;
}

/** The node:http (or node:https) server, with its timeouts and the Upgrade hook; not yet listening. */
export function createServer(listener: RequestListener, opts: HttpServerOptions = {}): Server {
  const { tls, upgrades = {} } = opts;
  const server = tls
    ? createHttpsServer({ cert: tls.cert, key: tls.key }, listener)
    : createHttpServer(listener);
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (req.url ?? '').split('?')[0]!;
    if (Object.hasOwn(upgrades, path) && upgrades[path]!(req, socket, head)) return;
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  return server;
}

export async function listen(server: Server, port: number, host: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Stops accepting, closes idle keep-alive connections, and resolves once the last one is gone. */
export async function close(server: Server): Promise<void> {
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

export interface ServerAddress {
  host: string;
  port: number;
  tls: boolean;
}

/** Where a client on this machine reaches the server: the bound port once listening, else the configured one. */
export function serverUrl(server: Server | undefined, at: ServerAddress): string {
  const addr = server?.address() as AddressInfo | null | undefined;
  const host = at.host.includes(':') ? `[${at.host}]` : at.host;
  return `${at.tls ? 'https' : 'http'}://${host === '0.0.0.0' ? '127.0.0.1' : host}:${addr?.port ?? at.port}`;
}

/** Absolute base URL for Location headers: publicUrl, else what the client called us by, else `fallback`. */
export function baseUrl(req: IncomingMessage, opts: { publicUrl: string | undefined; tls: boolean; fallback: () => string }): string {
  if (opts.publicUrl) return opts.publicUrl.replace(/\/+$/, '');
  const host = req.headers.host;
  if (host && /^[A-Za-z0-9.\-:[\]]{1,255}$/.test(host)) return `${opts.tls ? 'https' : 'http'}://${host}`;
  return opts.fallback();
}
