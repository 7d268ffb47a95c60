import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuditLog } from '../audit/audit-log.js';
import { logRefusal, VoxgateError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { problemReply, type EndpointReply, type EndpointRequest } from '../wish/resource.js';

const EXPOSED = 'Location, ETag, Link, Accept-Post, Accept-Patch, Retry-After, WWW-Authenticate';
const ALLOWED_HEADERS = 'Authorization, Content-Type, If-Match';

/** What a route's method handler gets: the raw request, its parsed parts, and the body on demand. */
export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  /** CORS headers for this request's Origin, for a handler that writes its own response. */
  cors: Record<string, string>;
  query: URLSearchParams;
  /** The `:name` segments of the route's pattern. */
  params: Record<string, string>;
  /** Reads the body (within the size limit) into the shape WHIP and WHEP resources take. */
  endpointRequest(): Promise<EndpointRequest>;
}

/** A handler that streams its own response (server-sent events) returns undefined. */
export type MethodHandler = (ctx: RequestContext) => Promise<EndpointReply | undefined> | EndpointReply | undefined;

export interface Route {
  /** Methods and what they do; OPTIONS is answered generically from this list. */
  methods: Partial<Record<string, MethodHandler>>;
  /** Added to OPTIONS answers (RFC 9725 §4.2: Accept-Post on the endpoint). */
  optionsHeaders?: Record<string, string>;
  /** ICE-server Links for a plain OPTIONS (RFC 9725 §4.6), so a client can gather relay candidates before its offer. */
  optionsLinks?: (req: IncomingMessage) => string[];
  /**
   * Refusals of a POST, PATCH or DELETE before the resource saw the request (size, rate, method)
   * are audited as `<action>.<method>`, with the session named by `sessionParam`.
   */
  auditRefusals?: { action: string; sessionParam?: string };
  /** Same-origin only: no CORS headers, whatever `cors.origins` allows (the dev token). */
  sameOrigin?: boolean;
}

/** Routes by pattern (`/whip/:id`): what a plugin hands the router. */
export type PluginRoutes = Record<string, Route>;

export interface RouterDeps {
  corsOrigins: readonly string[];
  maxBodyBytes: number;
  /** Per-address token bucket for POST, PATCH and DELETE: 0 to go ahead, else seconds to wait. */
  limiter: { take(key: string): number };
  baseUrl: (req: IncomingMessage) => string;
  audit: Pick<AuditLog, 'write'>;
  log: Logger;
  /** Called once each response has been sent. */
  onResponse?: (method: string, status: number) => void;
}

type Matcher = (segments: string[]) => Record<string, string> | undefined;

/** `/whep/:session/:id` matches a path segment by segment; a `:name` takes one non-empty segment. */
function compile(pattern: string): Matcher {
  const parts = pattern.split('/');
  return (segments) => {
    if (segments.length !== parts.length) return undefined;
    const params: Record<string, string> = {};
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      const seg = segments[i]!;
      if (part.startsWith(':')) {
        if (seg === '') return undefined;
        params[part.slice(1)] = seg;
      } else if (part !== seg) return undefined;
    }
    return params;
  };
}

const noContent = (): EndpointReply => ({ status: 204, headers: {} });
const MUTATING = new Set(['POST', 'PATCH', 'DELETE']);

/**
 * The route table, and everything about a request that is not one route's business: OPTIONS
 * (CORS preflight included), 405 with Allow, the rate limit, the body limit, problem+json replies,
 * HEAD without a body and Content-Length.
 */
export class Router {
  readonly #routes: { pattern: string; match: Matcher; route: Route }[] = [];

  constructor(private readonly deps: RouterDeps) {}

  add(pattern: string, route: Route): this {
    if (this.#routes.some((r) => r.pattern === pattern)) throw new Error(`route ${pattern} is registered twice`);
    this.#routes.push({ pattern, match: compile(pattern), route });
    return this;
  }

  /** Adds every route a plugin returns. */
  use(routes: PluginRoutes): this {
    for (const [pattern, route] of Object.entries(routes)) this.add(pattern, route);
    return this;
  }

  /** Every route's pattern and methods (HEAD where GET is), in registration order. */
  routes(): { pattern: string; methods: string[] }[] {
    return this.#routes.map((r) => ({ pattern: r.pattern, methods: [...Object.keys(r.route.methods), ...(r.route.methods.GET && !r.route.methods.HEAD ? ['HEAD'] : [])] }));
  }

  match(path: string): { route: Route; params: Record<string, string> } | undefined {
    const segments = path.split('/');
    for (const r of this.#routes) {
      const params = r.match(segments);
      if (params) return { route: r.route, params };
    }
    return undefined;
  }

  /** The node:http request listener: anything but a VoxgateError that escapes a handler is a 500. */
  readonly listener = (req: IncomingMessage, res: ServerResponse): void => {
    this.handle(req, res).catch((err: unknown) => {
      if (err instanceof ClientClosedError) {
        this.deps.log.info({ method: req.method, path: (req.url ?? '').split('?')[0]!.slice(0, 100), remote: remoteOf(req) }, err.message);
        return void res.destroy();
      }
      this.deps.log.error({ err }, 'request handler failed');
      if (!res.headersSent) {
        res.writeHead(500, { 'Content-Type': 'application/problem+json' });
        res.end(JSON.stringify({ type: 'urn:voxgate:error:VG_INTERNAL', title: 'Internal error', status: 500 }));
      } else res.destroy();
    });
  };

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { deps } = this;
    const method = req.method ?? 'GET';
    const { onResponse } = deps;
    if (onResponse) res.on('finish', () => onResponse(method, res.statusCode));
    // Read now: a request refused mid-body may have lost its socket by the time it is logged and audited.
    const remote = remoteOf(req);
    const [path = '/', search = ''] = (req.url ?? '/').split('?');
    const found = this.match(path);
    const cors = found?.route.sameOrigin ? {} : corsHeaders(deps.corsOrigins, req);
    try {
      if (!found) throw new VoxgateError('VG_HTTP_NOT_FOUND', `Nothing is served at ${path.slice(0, 100)}; WHIP publishers POST to /whip.`);
      const { route: r, params } = found;
      // HEAD works wherever GET does (RFC 9110 §9.3.2): GET's answer without its body.
      const headFromGet = method === 'HEAD' && !r.methods.HEAD && !!r.methods.GET;
      const allow = [...Object.keys(r.methods), ...(r.methods.GET && !r.methods.HEAD ? ['HEAD'] : []), 'OPTIONS'].join(', ');
      if (method === 'OPTIONS') {
        if (req.headers['access-control-request-method']) {
          // CORS preflight: permissions only, no Link (RFC 9725 §4.6 keeps ICE servers off preflights).
          send(res, noContent(), {
            ...cors,
            'Access-Control-Allow-Methods': allow,
            'Access-Control-Allow-Headers': ALLOWED_HEADERS,
            'Access-Control-Max-Age': '600',
          }, false);
          return;
        }
        const links = r.optionsLinks?.(req) ?? [];
        send(res, { status: 204, headers: links.length ? { Link: links } : {} }, { ...cors, Allow: allow, ...r.optionsHeaders }, false);
        return;
      }
      const handler = headFromGet ? r.methods.GET : r.methods[method];
      if (!handler) {
        throw new VoxgateError('VG_HTTP_METHOD_NOT_ALLOWED', `${method} is not allowed here; use ${allow}.`, { headers: { Allow: allow } });
      }
      if (MUTATING.has(method)) {
        const wait = deps.limiter.take(req.socket.remoteAddress ?? 'unknown');
        if (wait > 0) {
          throw new VoxgateError('VG_HTTP_RATE_LIMITED', `Too many requests from your address; retry in ${wait} s.`, { headers: { 'Retry-After': String(wait) } });
        }
      }
      const reply = await handler({
        req,
        res,
        cors,
        query: new URLSearchParams(search),
        params,
        endpointRequest: async () => ({
          headers: req.headers,
          body: await readBody(req, deps.maxBodyBytes),
          remote,
          baseUrl: deps.baseUrl(req),
        }),
      });
      if (reply) send(res, reply, cors, method === 'HEAD');
      else if (headFromGet && !res.writableEnded) res.end(); // a stream (SSE): its headers, then the end
    } catch (err) {
      if (!(err instanceof VoxgateError)) throw err;
      const fields = { code: err.code, method, path: path.slice(0, 100), remote };
      logRefusal(deps.log, err, fields);
      const audited = found?.route.auditRefusals;
      if (audited && MUTATING.has(method)) {
        const session = audited.sessionParam ? (found.params[audited.sessionParam] ?? null) : null;
        try {
          deps.audit.write({ action: `${audited.action}.${method.toLowerCase()}`, outcome: 'rejected', status: err.status, reason: err.code, remote, session });
        } catch (auditErr) {
          deps.log.error({ err: auditErr }, 'audit write failed');
        }
      }
      if (err.code === 'VG_HTTP_BODY_TOO_LARGE') res.setHeader('Connection', 'close');
      send(res, problemReply(err), cors, method === 'HEAD');
    }
  }
}

function corsHeaders(allowed: readonly string[], req: IncomingMessage): Record<string, string> {
  const origin = req.headers.origin;
  if (!origin) return {};
  if (allowed.includes('*')) return { 'Access-Control-Allow-Origin': '*', 'Access-Control-Expose-Headers': EXPOSED };
  if (allowed.includes(origin)) return { 'Access-Control-Allow-Origin': origin, Vary: 'Origin', 'Access-Control-Expose-Headers': EXPOSED };
  return {};
}

/** The client's address as host:port, IPv6 in brackets. */
export function remoteOf(req: IncomingMessage): string {
  const a = req.socket?.remoteAddress ?? 'unknown';
  return `${a.includes(':') ? `[${a}]` : a}:${req.socket?.remotePort ?? 0}`;
}

/** The client went away before its request body was in: nobody to answer, and nothing wrong with us. */
export class ClientClosedError extends Error {
  constructor() {
    super('the client closed the connection before its request body was complete');
    this.name = 'ClientClosedError';
  }
}

/**
 * The body, within `limit`. Over it: 413, with the rest of the body read and dropped rather than
 * the request destroyed, so the 413 reaches the client (and the refusal is audited) before the
 * connection closes.
 */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) {
    return Promise.reject(new VoxgateError('VG_HTTP_BODY_TOO_LARGE', `The body is ${declared} bytes; the limit is ${limit} bytes.`));
  }
  if (req.readableEnded) return Promise.resolve(Buffer.alloc(0)); // read before: nothing more will come
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onGone);
      req.off('close', onGone);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) return void chunks.push(chunk);
      done();
      req.resume(); // the rest is read and dropped
      reject(new VoxgateError('VG_HTTP_BODY_TOO_LARGE', `The body exceeds the limit of ${limit} bytes.`));
    };
    const onEnd = () => {
      done();
      resolve(Buffer.concat(chunks));
    };
    const onGone = () => {
      done();
      reject(new ClientClosedError());
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onGone);
    req.on('close', onGone);
  });
}

function send(res: ServerResponse, reply: EndpointReply, extra: Record<string, string>, head: boolean): void {
  const headers: Record<string, string | string[]> = { ...extra, ...reply.headers };
  if (Array.isArray(headers.Link) && headers.Link.length === 0) delete headers.Link;
  const body = reply.body === undefined ? undefined : Buffer.from(reply.body, 'utf8');
  // HEAD: the Content-Length GET would have (RFC 9110 §8.6), and no body.
  if (body) headers['Content-Length'] = String(body.length);
  else if (reply.status !== 204 && reply.status !== 304 && !head) headers['Content-Length'] = '0';
  res.writeHead(reply.status, headers);
  res.end(head ? undefined : body);
}
