import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { secretEquals, bearerToken } from '../auth/source-auth.js';
import { VoxgateError } from '../core/errors.js';
import { problemReply, SDP_TYPE, TRICKLE_TYPE, type EndpointReply, type EndpointRequest } from '../wish/resource.js';
import { iceServerLinks } from '../transport/webrtc/ice-servers.js';
import type { ListenerLeg } from '../call/listener-leg.js';
import type { PartyLeg } from '../call/party-leg.js';
import type { Gateway } from './gateway.js';

const EXPOSED = 'Location, ETag, Link, Accept-Post, Accept-Patch, Retry-After, WWW-Authenticate';
const ALLOWED_HEADERS = 'Authorization, Content-Type, If-Match';
const WEB_ROOT = fileURLToPath(new URL('../../web/', import.meta.url));

type Route = {
  /** Methods and what they do; OPTIONS is answered generically from this list. A handler that
   * streams its own response (server-sent events) returns undefined. */
  methods: Partial<Record<string, (ctx: Ctx) => Promise<EndpointReply | undefined> | EndpointReply | undefined>>;
  /** Added to OPTIONS answers (RFC 9725 §4.2: Accept-Post on the endpoint). */
  optionsHeaders?: Record<string, string>;
  /** ICE-server Links for a plain OPTIONS (RFC 9725 §4.6), so a client can gather relay candidates before its offer. */
  optionsLinks?: (gw: Gateway, req: IncomingMessage) => string[];
};

interface Ctx {
  gw: Gateway;
  req: IncomingMessage;
  res: ServerResponse;
  cors: Record<string, string>;
  query: URLSearchParams;
  params: string[];
  endpointRequest(): Promise<EndpointRequest>;
}

const SESSION_ID = /^[A-Za-z0-9_-]{22}$/;

function route(path: string): { route: Route; params: string[] } | undefined {
  if (path === '/whip') return { route: WHIP_ENDPOINT, params: [] };
  const m = /^\/whip\/([^/]+)$/.exec(path);
  if (m) return { route: WHIP_SESSION, params: [m[1]!] };
  const w = /^\/whep\/([^/]+)(?:\/([^/]+)(\/events)?)?$/.exec(path);
  if (w) {
    if (w[3]) return { route: WHEP_EVENTS, params: [w[1]!, w[2]!] };
    if (w[2]) return { route: WHEP_SESSION, params: [w[1]!, w[2]] };
    return { route: WHEP_ENDPOINT, params: [w[1]!] };
  }
  const r = STATIC_ROUTES[path];
  return r ? { route: r, params: [] } : undefined;
}

const noContent = (status = 204): EndpointReply => ({ status, headers: {} });

const WHIP_ENDPOINT: Route = {
  optionsHeaders: { 'Accept-Post': SDP_TYPE },
  // TURN credentials only for a valid source token: the endpoint must not be an open relay.
  optionsLinks: (gw, req) => {
    try {
      const source = gw.auth.authenticate(req.headers.authorization);
      return iceServerLinks(gw.config.iceServers, `options-${source.name}`, gw.clock.now());
    } catch {
      return iceServerLinks(gw.config.iceServers.filter((s) => !s.secret && !s.credential), '', gw.clock.now());
    }
  },
  methods: {
    POST: async ({ gw, endpointRequest }) => {
      if (gw.draining) {
        return problemReply(new VoxgateError('VG_HTTP_DRAINING', 'This node is shutting down; publish to another node.', {
          headers: { 'Retry-After': String(gw.config.limits.retryAfterSeconds) },
        }));
      }
      const target = gw.nextRedirect();
      const req = await endpointRequest();
      if (target) {
        // RFC 9725 §4.5: load balancing redirects use 307 only (301/302 would change the method).
        gw.audit.write({ action: 'whip.post', outcome: 'ok', status: 307, remote: req.remote, redirect: target });
        return { status: 307, headers: { Location: target } };
      }
      return gw.whip.post(req);
    },
    // RFC 9725 §4.1: GET answers 2xx with no content (older drafts said 405).
    GET: () => noContent(),
    // A capabilities/health probe: 200 while we accept sessions, 503 when we cannot.
    HEAD: ({ gw }) => {
      const full = gw.draining || gw.calls.size >= gw.config.limits.maxSessions;
      return {
        status: full ? 503 : 200,
        headers: {
          'Accept-Post': SDP_TYPE,
          ...(full ? { 'Retry-After': String(gw.config.limits.retryAfterSeconds) } : {}),
        },
      };
    },
  },
};

const WHIP_SESSION: Route = {
  optionsHeaders: { 'Accept-Patch': TRICKLE_TYPE },
  methods: {
    PATCH: async ({ gw, params, endpointRequest }) => gw.whip.patch(params[0]!, await endpointRequest()),
    DELETE: async ({ gw, params, endpointRequest }) => gw.whip.delete(params[0]!, await endpointRequest()),
    GET: ({ gw, params }) => (gw.whip.resources.has(params[0]!) ? noContent() : notFound(params[0]!)),
    HEAD: ({ gw, params }) => (gw.whip.resources.has(params[0]!) ? noContent() : notFound(params[0]!)),
  },
};

function notFound(id: string): EndpointReply {
  return problemReply(new VoxgateError('VG_SESSION_NOT_FOUND', `There is no live WHIP session ${SESSION_ID.test(id) ? id : ''}.`.replace(' .', '.')));
}

const WHEP_ENDPOINT: Route = {
  optionsHeaders: { 'Accept-Post': SDP_TYPE },
  methods: {
    POST: async ({ gw, params, query, endpointRequest }) => gw.whep.post(params[0]!, query.get('track'), await endpointRequest()),
    GET: () => noContent(),
    HEAD: async ({ gw, params }): Promise<EndpointReply> => {
      // 200 while the session can be heard, 409 until it is live, 404 once it has ended.
      try {
        await gw.whep.liveCall(params[0]!);
        return { status: 200, headers: { 'Accept-Post': SDP_TYPE } };
      } catch (err) {
        if (!(err instanceof VoxgateError)) throw err;
        return { status: err.status, headers: err.headers };
      }
    },
  },
};

const WHEP_SESSION: Route = {
  optionsHeaders: { 'Accept-Patch': TRICKLE_TYPE },
  methods: {
    PATCH: async ({ gw, params, endpointRequest }) => gw.whep.patch(params[0]!, params[1]!, await endpointRequest()),
    DELETE: async ({ gw, params, endpointRequest }) => gw.whep.delete(params[0]!, params[1]!, await endpointRequest()),
    GET: ({ gw, params }) => (gw.whep.resources.get(params[1]!)?.sessionId === params[0] ? noContent() : notFound(params[1]!)),
    HEAD: ({ gw, params }) => (gw.whep.resources.get(params[1]!)?.sessionId === params[0] ? noContent() : notFound(params[1]!)),
  },
};

/** The WHEP server-sent events extension: POST picks the events, GET streams them. */
const WHEP_EVENTS: Route = {
  methods: {
    POST: async ({ gw, params, req, endpointRequest }) => {
      gw.whep.forEvents(params[0]!, params[1]!, req.headers.authorization);
      await endpointRequest();
      return { status: 201, headers: { Location: `${gw.baseUrl(req)}/whep/${params[0]}/${params[1]}/events` } };
    },
    GET: ({ gw, params, req, res, cors }) => {
      const r = gw.whep.forEvents(params[0]!, params[1]!, req.headers.authorization);
      const hub = r.call.fanout;
      res.writeHead(200, { ...cors, 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
      const write = (name: string, data: unknown) => {
        if (!res.writableEnded) res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
      };
      if (r.call.state === 'connected') write('active', {});
      write('viewercount', { viewercount: hub.listeners.size });
      const onEvent = (name: string, data: unknown) => {
        write(name, data);
        if (name === 'inactive' && !res.writableEnded) res.end();
      };
      const onClosed = () => {
        if (!res.writableEnded) res.end();
      };
      hub.on('event', onEvent);
      r.leg.once('closed', onClosed);
      res.on('close', () => {
        hub.off('event', onEvent);
        r.leg.off('closed', onClosed);
      });
      return undefined;
    },
  },
};

const STATIC_ROUTES: Record<string, Route> = {
  '/healthz': {
    methods: {
      GET: ({ gw }) => ({
        status: gw.draining ? 503 : 200,
        headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' },
        body: JSON.stringify({ status: gw.draining ? 'draining' : 'ok', sessions: gw.calls.size }),
      }),
    },
  },
  '/metrics': {
    methods: {
      GET: async ({ gw }) => ({
        status: 200,
        headers: { 'Content-Type': gw.metrics.registry.contentType },
        body: await gw.metrics.registry.metrics(),
      }),
    },
  },
  '/api/sessions': {
    methods: {
      GET: ({ gw, req }) => {
        requireAdmin(gw, req);
        const now = gw.clock.now();
        const sessions = [...gw.calls.values()].map((call) => {
          const caller = call.leg('caller') as PartyLeg | undefined;
          const ep = caller?.endpoint;
          const totals = call.totals();
          return {
            id: call.id,
            source: call.source.name,
            kind: call.source.kind,
            state: call.state,
            codec: ep?.format.codec ?? null,
            direction: ep ? (ep.format.sends ? 'sendrecv' : 'recvonly') : null,
            remoteAddress: caller?.remoteAddress ?? null,
            signalingAddress: call.signalingRemote ?? null,
            packets: totals.packetsReceived,
            bytes: totals.bytesReceived,
            firstPacketAt: ep?.received.firstArrival ? new Date(ep.received.firstArrival).toISOString() : null,
            lastPacketAt: ep?.received.lastArrival ? new Date(ep.received.lastArrival).toISOString() : null,
            ageSeconds: Math.round((now - call.createdAt) / 100) / 10,
            sipCallId: call.sipCallId ?? null,
            pipeline: call.describe() || null,
            mode: call.mode,
            quality: ep?.quality ?? null,
            audio: ep ? { ...call.repairs(), codecThread: ep.codecThread } : null,
            legs: [...call.legs.entries()].map(([role, leg]) => ({ role, kind: leg.kind, codec: leg.endpoint?.format.codec ?? null, ...leg.counters() })),
            listeners: [...call.fanout.listeners.values()].map((l) => {
              const leg = l as ListenerLeg;
              return { id: leg.id, name: leg.name, track: leg.track, codec: leg.codec, forwarded: leg.passthrough, packetsSent: leg.sentPackets };
            }),
          };
        });
        return { status: 200, headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }, body: JSON.stringify({ sessions }) };
      },
    },
  },
  '/api/registrations': {
    methods: {
      GET: ({ gw, req }) => {
        requireAdmin(gw, req);
        const now = gw.clock.now();
        const registrations = gw.sip.registrar.all().map((b) => ({
          user: b.aor,
          contact: b.contact,
          instance: b.instance ?? null,
          regId: b.regId ?? null,
          flow: b.flowId,
          remoteAddress: b.remote,
          userAgent: b.userAgent ?? null,
          expiresInSeconds: Math.max(0, Math.round((b.expiresAt - now) / 1000)),
        }));
        return { status: 200, headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }, body: JSON.stringify({ registrations }) };
      },
    },
  },
  '/api/dev-token': {
    methods: {
      // Only a gateway running on its generated dev source, and only to loopback clients.
      GET: ({ gw, req }) => {
        const a = req.socket.remoteAddress ?? '';
        if (!gw.devToken || !(a === '127.0.0.1' || a === '::1' || a === '::ffff:127.0.0.1')) {
          throw new VoxgateError('VG_HTTP_NOT_FOUND', 'No development token here: this gateway has configured sources; ask its operator for a token.');
        }
        return { status: 200, headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }, body: JSON.stringify({ token: gw.devToken, source: 'dev' }) };
      },
    },
  },
  '/': page('index.html'),
  '/player': page('player.html'),
};

function page(file: string): Route {
  return {
    methods: {
      GET: async () => ({
        status: 200,
        headers: { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-cache' },
        body: await readFile(`${WEB_ROOT}${file}`, 'utf8'),
      }),
    },
  };
}

function requireAdmin(gw: Gateway, req: IncomingMessage): void {
  const token = bearerToken(req.headers.authorization);
  if (!req.headers.authorization) {
    throw new VoxgateError('VG_AUTH_MISSING', 'Send "Authorization: Bearer <admin token>".', { headers: { 'WWW-Authenticate': 'Bearer realm="voxgate-admin"' } });
  }
  if (!secretEquals(token, gw.adminToken)) {
    throw new VoxgateError('VG_AUTH_INVALID', 'The admin token is not valid.', {
      headers: { 'WWW-Authenticate': 'Bearer realm="voxgate-admin", error="invalid_token"' },
    });
  }
}

function corsHeaders(gw: Gateway, req: IncomingMessage): Record<string, string> {
  const origin = req.headers.origin;
  const allowed = gw.config.cors.origins;
  if (!origin) return {};
  if (allowed.includes('*')) return { 'Access-Control-Allow-Origin': '*', 'Access-Control-Expose-Headers': EXPOSED };
  if (allowed.includes(origin)) return { 'Access-Control-Allow-Origin': origin, Vary: 'Origin', 'Access-Control-Expose-Headers': EXPOSED };
  return {};
}

function remoteOf(req: IncomingMessage): string {
  const a = req.socket.remoteAddress ?? 'unknown';
  return `${a.includes(':') ? `[${a}]` : a}:${req.socket.remotePort ?? 0}`;
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) {
    throw new VoxgateError('VG_HTTP_BODY_TOO_LARGE', `The body is ${declared} bytes; the limit is ${limit} bytes.`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new VoxgateError('VG_HTTP_BODY_TOO_LARGE', `The body exceeds the limit of ${limit} bytes.`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function send(res: ServerResponse, reply: EndpointReply, extra: Record<string, string>, head: boolean): void {
  const headers: Record<string, string | string[]> = { ...extra, ...reply.headers };
  if (Array.isArray(headers.Link) && headers.Link.length === 0) delete headers.Link;
  const body = reply.body === undefined || head ? undefined : Buffer.from(reply.body, 'utf8');
  if (body) headers['Content-Length'] = String(body.length);
  else if (reply.status !== 204 && reply.status !== 304 && !head) headers['Content-Length'] = '0';
  res.writeHead(reply.status, headers);
  res.end(body);
}

export async function handleRequest(gw: Gateway, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const method = req.method ?? 'GET';
  res.on('finish', () => gw.metrics.httpResponses.inc({ method, status: String(res.statusCode) }));
  const cors = corsHeaders(gw, req);
  const [path = '/', search = ''] = (req.url ?? '/').split('?');
  const found = route(path);
  try {
    if (!found) throw new VoxgateError('VG_HTTP_NOT_FOUND', `Nothing is served at ${path.slice(0, 100)}; WHIP publishers POST to /whip.`);
    const { route: r, params } = found;
    const allow = [...Object.keys(r.methods), 'OPTIONS'].join(', ');
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
      const links = r.optionsLinks?.(gw, req) ?? [];
      send(res, { status: 204, headers: links.length ? { Link: links } : {} }, { ...cors, Allow: allow, ...r.optionsHeaders }, false);
      return;
    }
    const handler = r.methods[method];
    if (!handler) {
      throw new VoxgateError('VG_HTTP_METHOD_NOT_ALLOWED', `${method} is not allowed here; use ${allow}.`, { headers: { Allow: allow } });
    }
    if (method === 'POST' || method === 'PATCH' || method === 'DELETE') {
      const wait = gw.limiter.take(req.socket.remoteAddress ?? 'unknown');
      if (wait > 0) {
        throw new VoxgateError('VG_HTTP_RATE_LIMITED', `Too many requests from your address; retry in ${wait} s.`, { headers: { 'Retry-After': String(wait) } });
      }
    }
    const ctx: Ctx = {
      gw,
      req,
      res,
      cors,
      query: new URLSearchParams(search),
      params,
      endpointRequest: async () => ({
        headers: req.headers,
        body: await readBody(req, gw.config.http.maxBodyBytes),
        remote: remoteOf(req),
        baseUrl: gw.baseUrl(req),
      }),
    };
    const reply = await handler(ctx);
    if (reply) send(res, reply, cors, method === 'HEAD');
  } catch (err) {
    if (!(err instanceof VoxgateError)) throw err;
    const fields = { code: err.code, method, path: path.slice(0, 100), remote: remoteOf(req) };
    // A refusal is the client's to fix (info); a 5xx is ours, and its cause is what an operator needs.
    if (err.status >= 500) gw.log.error({ ...fields, cause: err.cause instanceof Error ? err.cause.message : err.cause }, err.message);
    else gw.log.info(fields, err.message);
    // Refusals before the WHIP endpoint saw the request (size, rate) are audited here.
    if (found && /^\/wh[ie]p\//.test(path + '/') && (method === 'POST' || method === 'PATCH' || method === 'DELETE')) {
      try {
        gw.audit.write({ action: `${path.slice(1, 5)}.${method.toLowerCase()}`, outcome: 'rejected', status: err.status, reason: err.code, remote: remoteOf(req), session: found.params[0] ?? null });
      } catch (auditErr) {
        gw.log.error({ err: auditErr }, 'audit write failed');
      }
    }
    if (err.code === 'VG_HTTP_BODY_TOO_LARGE') res.setHeader('Connection', 'close');
    send(res, problemReply(err), cors, method === 'HEAD');
  }
}
