import type { IncomingMessage } from 'node:http';
import { bearerToken, secretEquals } from '../../auth/source-auth.js';
import type { Call } from '../../call/call.js';
import type { SessionRecord } from '../../call/session-directory.js';
import { describeCall } from '../../call/describe-call.js';
import type { Clock } from '../../core/clock.js';
import { VoxgateError } from '../../core/errors.js';
import type { Binding } from '../../sip/registrar.js';
import { z } from 'zod';
import { TransferError } from '../../agent/agent.js';
import { auditOrFail, mediaType, type EndpointReply, type EndpointRequest } from '../../wish/resource.js';
import type { AuditLog } from '../../audit/audit-log.js';
import type { CallHistory } from '../../call/call-history.js';
import type { Logger } from '../../core/logger.js';
import type { ListenerAuthenticator, ListenerIdentity } from '../../auth/listener-auth.js';
import type { PluginRoutes } from '../router.js';

export interface AdminPluginDeps {
  /** Bearer token for `/api/sessions` and `/api/registrations`. */
  adminToken: string;
  /** The generated dev source's token, when the gateway runs on one; `/api/dev-token` hands it to loopback clients. */
  devToken: string | undefined;
  /** This node's live calls. */
  calls: () => Iterable<Call>;
  /** SIP registrations (RFC 3261 §10) this node holds. */
  registrations: () => Binding[] | Promise<Binding[]>;
  /** For session ages and registration expiries. */
  clock: Pick<Clock, 'now'>;
  /** This node's name in the fleet ('local' alone). */
  nodeId?: string;
  /** In a fleet: every node's live sessions from the shared directory (the other nodes' are listed from it). */
  fleet?: () => Promise<SessionRecord[]>;
  /** This node's live call by id. */
  call: (id: string) => Call | undefined;
  /** Recently ended calls, newest first (`admin.recentCalls` of them). */
  history: Pick<CallHistory, 'recent' | 'get'>;
  /** Admin acts are audited before they are carried out. */
  audit: Pick<AuditLog, 'write'>;
  log: Logger;
  /** In a fleet: a request for a session another node holds, answered by that node (undefined: not elsewhere). */
  elsewhere?: (op: 'session.delete' | 'session.transfer', id: string, req: EndpointRequest) => Promise<EndpointReply | undefined>;
  /** WHEP listener tokens: one may list the sessions it may hear on `/api/sessions`. */
  listeners?: Pick<ListenerAuthenticator, 'authenticate' | 'authorize'>;
  /** In a fleet: another node's session as the directory has it. */
  record?: (id: string) => Promise<SessionRecord | undefined>;
}

/** `Authorization: Bearer <admin token>`, or the 401 that says what to send. */
export function requireAdminToken(authorization: string | undefined, adminToken: string): void {
  if (!authorization) {
    throw new VoxgateError('VG_AUTH_MISSING', 'Send "Authorization: Bearer <admin token>".', { headers: { 'WWW-Authenticate': 'Bearer realm="voxgate-admin"' } });
  }
  if (!secretEquals(bearerToken(authorization), adminToken)) {
    throw new VoxgateError('VG_AUTH_INVALID', 'The admin token is not valid.', {
      headers: { 'WWW-Authenticate': 'Bearer realm="voxgate-admin", error="invalid_token"' },
    });
  }
}

/**
 * `DELETE /api/sessions/:id` on the node holding the call (another node's admin DELETE is
 * forwarded here): audited, then the call ends with reason `admin`; the answer is its record.
 */
export function adminEndSession(deps: Pick<AdminPluginDeps, 'adminToken' | 'call' | 'history' | 'audit' | 'log'>): (id: string, req: EndpointRequest) => EndpointReply {
  return (id, req) => {
    requireAdminToken(req.headers.authorization as string | undefined, deps.adminToken);
    const call = deps.call(id);
    if (!call) {
      const ended = deps.history.get(id);
      if (ended) throw new VoxgateError('VG_SESSION_NOT_FOUND', `Session ${id} already ended (${ended.reason}, ${ended.endedAt}).`);
      throw new VoxgateError('VG_SESSION_NOT_FOUND', `No session ${id} on this gateway; GET /api/sessions lists the live ones.`);
    }
    auditOrFail(deps.audit, deps.log, { action: 'admin.session.delete', outcome: 'ok', remote: req.remote, session: id, source: call.source.name });
    deps.log.info({ session: id, remote: req.remote }, 'session ended by the admin');
    call.close('admin');
    return json(deps.history.get(id) ?? { id, reason: 'admin' });
  };
}

/** `POST /api/sessions/:id/transfer`'s body: who the caller goes to (one, or several rung at once), how long they may ring. */
export function parseTransferRequest(req: Pick<EndpointRequest, 'headers' | 'body'>): { to: string | string[]; timeoutSeconds?: number } {
  const hint = 'send {"to": "alice"} (a registered user, a sip: URI or an E.164 number; or a list rung at once) and optionally "timeoutSeconds" (1 to 600)';
  if (mediaType(req.headers['content-type']) !== 'application/json') {
    throw new VoxgateError('VG_HTTP_UNSUPPORTED_MEDIA_TYPE', `Send the transfer as Content-Type: application/json: ${hint}.`, { headers: { 'Accept-Post': 'application/json' } });
  }
  let body: unknown;
  try {
    body = JSON.parse(req.body.toString('utf8'));
  } catch {
    throw new VoxgateError('VG_REQUEST_INVALID', `The body is not JSON: ${hint}.`);
  }
  const target = z.union([z.string().min(1).max(256), z.array(z.string().min(1).max(256)).min(1).max(10)]);
  const parsed = z.strictObject({ to: target, timeoutSeconds: z.number().min(1).max(600).optional() }).safeParse(body);
  if (!parsed.success) {
    const fields = [...new Set(parsed.error.issues.map((i) => (i.code === 'unrecognized_keys' ? i.keys.join(', ') : String(i.path[0] ?? '(body)'))))];
    throw new VoxgateError('VG_REQUEST_INVALID', `Bad field ${fields.join(', ')}: ${hint}.`, { extra: { errors: fields.map((field) => ({ field })) } });
  }
  return parsed.data;
}

/**
 * `POST /api/sessions/:id/transfer` on the node holding the call: audited, then the call's own
 * transfer (the agent's `transfer()`: a SIP caller is referred or bridged, a WHIP caller bridged);
 * answers when the target has answered (200) or the transfer has failed (409 with the SIP status).
 */
export function adminTransferSession(deps: Pick<AdminPluginDeps, 'adminToken' | 'call' | 'audit' | 'log'>): (id: string, req: EndpointRequest) => Promise<EndpointReply> {
  return async (id, req) => {
    requireAdminToken(req.headers.authorization as string | undefined, deps.adminToken);
    const { to, timeoutSeconds } = parseTransferRequest(req);
    const call = deps.call(id);
    if (!call) throw new VoxgateError('VG_SESSION_NOT_FOUND', `No live session ${id} on this gateway; GET /api/sessions lists them.`);
    if (!call.transferHandler) throw new VoxgateError('VG_TRANSFER_FAILED', `Session ${id} (${call.kind}) cannot be transferred: it has no agent handing it over.`);
    const target = [to].flat().join(', ');
    auditOrFail(deps.audit, deps.log, { action: 'admin.session.transfer', outcome: 'ok', remote: req.remote, session: id, source: call.source.name, target });
    deps.log.info({ session: id, target, remote: req.remote }, 'transfer by the admin');
    try {
      await call.transferHandler(to, timeoutSeconds === undefined ? {} : { timeoutSeconds });
    } catch (err) {
      if (!(err instanceof TransferError)) throw err;
      const extra = { extra: { sipStatus: err.status, sipReason: err.reason } };
      if (call.state === 'ended') throw new VoxgateError('VG_TRANSFER_FAILED', `The call ended (${call.endReason ?? 'ended'}) before the transfer to ${target} completed.`, extra);
      if (err.status === 400) throw new VoxgateError('VG_REQUEST_INVALID', `The transfer target is not usable: ${err.reason}.`, extra);
      if (err.status === 503) throw new VoxgateError('VG_CAPACITY', `The transfer could not be placed: ${err.reason}.`, { ...extra, headers: { 'Retry-After': '5' } });
      throw new VoxgateError('VG_TRANSFER_FAILED', `The transfer to ${target} failed: ${err.status} ${err.reason}; the caller stays where they were.`, extra);
    }
    return json({ id, target, result: 'transferred' });
  };
}

const json = (body: unknown): EndpointReply => ({ status: 200, headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }, body: JSON.stringify(body) });

/**
 * The operator's API: live sessions (and ending one), recently ended calls, SIP registrations,
 * and the dev token for the demo page.
 */
export function adminPlugin(deps: AdminPluginDeps): PluginRoutes {
  const requireAdmin = (req: IncomingMessage): void => requireAdminToken(req.headers.authorization, deps.adminToken);
  const endSession = adminEndSession(deps);
  const transfer = adminTransferSession(deps);
  /** A WHEP listener's token (not the admin's) on /api/sessions; undefined lets the admin check answer. */
  const listenerOf = (req: IncomingMessage): ListenerIdentity | undefined => {
    if (!deps.listeners || !req.headers.authorization || secretEquals(bearerToken(req.headers.authorization), deps.adminToken)) return undefined;
    try {
      return deps.listeners.authenticate(req.headers.authorization);
    } catch {
      return undefined; // neither token: the admin check's 401 says what to send
    }
  };
  /** The live sessions a listener may hear, each with the WHEP URL to hear it at. */
  const hearable = async (who: ListenerIdentity, base: string) => {
    const now = deps.clock.now();
    const may = (id: string, source: string) => {
      try {
        deps.listeners!.authorize(who, id, source);
        return true;
      } catch {
        return false;
      }
    };
    const local = [...deps.calls()].map((c) => ({ id: c.id, source: c.source.name, kind: c.kind, state: c.state, createdAt: c.createdAt }));
    const mine = new Set(local.map((c) => c.id));
    const others = deps.fleet ? (await deps.fleet().catch(() => [])).filter((r) => !mine.has(r.id)) : [];
    return [...local, ...others]
      .filter((c) => may(c.id, c.source))
      .map((c) => ({ id: c.id, source: c.source, kind: c.kind, state: c.state, ageSeconds: Math.round((now - c.createdAt) / 100) / 10, whep: `${base}/whep/${c.id}` }));
  };
  return {
    '/api/sessions': {
      methods: {
        GET: async ({ req, endpointRequest }) => {
          const listener = listenerOf(req);
          if (listener) return json({ listener: listener.name, sessions: await hearable(listener, (await endpointRequest()).baseUrl) });
          requireAdmin(req);
          const now = deps.clock.now();
          const node = deps.nodeId ?? 'local';
          const local = [...deps.calls()].map((call) => ({ ...describeCall(call, now), node }));
          const mine = new Set(local.map((s) => s.id));
          // Another node's session: what the directory knows (its node has the media counters).
          let fleet: SessionRecord[] = [];
          let fleetError: string | undefined;
          try {
            fleet = deps.fleet ? await deps.fleet() : [];
          } catch (err) {
            fleetError = `the other nodes' sessions could not be read: ${(err as Error).message}`; // this node's still are
          }
          const others = fleet
            .filter((r) => r.node !== node && !mine.has(r.id))
            .map((r) => ({ id: r.id, node: r.node, source: r.source, kind: r.sourceKind, state: r.state, ageSeconds: Math.round((now - r.createdAt) / 100) / 10 }));
          return json({ sessions: [...local, ...others], ...(fleetError ? { fleetError } : {}) });
        },
      },
    },
    '/api/sessions/:id': {
      auditRefusals: { action: 'admin.session', sessionParam: 'id' },
      methods: {
        GET: async ({ req, params }) => {
          requireAdmin(req);
          const id = params.id!;
          const call = deps.call(id);
          if (call) return json({ ...describeCall(call, deps.clock.now()), node: deps.nodeId ?? 'local' });
          const ended = deps.history.get(id);
          if (ended) return json({ ...ended, state: 'ended' });
          const record = await deps.record?.(id);
          if (record) return json({ id: record.id, node: record.node, source: record.source, kind: record.kind, state: record.state, ageSeconds: Math.round((deps.clock.now() - record.createdAt) / 100) / 10 });
          throw new VoxgateError('VG_SESSION_NOT_FOUND', `No session ${id}, live or recently ended; GET /api/sessions lists the live ones.`);
        },
        DELETE: async (ctx) => {
          const req = await ctx.endpointRequest();
          const id = ctx.params.id!;
          if (!deps.call(id)) {
            requireAdmin(ctx.req); // a stranger learns nothing of other nodes' sessions
            const there = await deps.elsewhere?.('session.delete', id, req);
            if (there) return there;
          }
          return endSession(id, req);
        },
      },
    },
    '/api/sessions/:id/transfer': {
      auditRefusals: { action: 'admin.session.transfer', sessionParam: 'id' },
      methods: {
        POST: async (ctx) => {
          const req = await ctx.endpointRequest();
          const id = ctx.params.id!;
          if (!deps.call(id)) {
            requireAdmin(ctx.req);
            const there = await deps.elsewhere?.('session.transfer', id, req);
            if (there) return there;
          }
          return transfer(id, req);
        },
      },
    },
    '/api/history': {
      methods: {
        GET: ({ req, query }) => {
          requireAdmin(req);
          const limit = Number(query.get('limit') ?? NaN);
          return json({ calls: deps.history.recent(Number.isInteger(limit) && limit > 0 ? limit : undefined) });
        },
      },
    },
    '/api/registrations': {
      methods: {
        GET: async ({ req }) => {
          requireAdmin(req);
          const bindings = await deps.registrations();
          const now = deps.clock.now();
          const registrations = bindings.map((b) => ({
            user: b.aor,
            contact: b.contact,
            instance: b.instance ?? null,
            regId: b.regId ?? null,
            flow: b.flowId,
            remoteAddress: b.remote,
            userAgent: b.userAgent ?? null,
            expiresInSeconds: Math.max(0, Math.round((b.expiresAt - now) / 1000)),
          }));
          return json({ registrations });
        },
      },
    },
    '/api/dev-token': {
      sameOrigin: true,
      methods: {
        // Only a gateway running on its generated dev source, only to loopback clients, and only
        // to its own pages: no CORS headers, an Origin other than ours refused, and a Host that is
        // not a loopback name refused too (DNS rebinding: evil.example resolving to 127.0.0.1).
        GET: ({ req }) => {
          const a = req.socket.remoteAddress ?? '';
          const host = req.headers.host ?? '';
          const loopbackHost = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/i.test(host);
          const origin = req.headers.origin;
          const sameOrigin = origin === undefined ? req.headers['sec-fetch-site'] !== 'cross-site' : origin === `http://${host}` || origin === `https://${host}`;
          if (!deps.devToken || !(a === '127.0.0.1' || a === '::1' || a === '::ffff:127.0.0.1') || !loopbackHost || !sameOrigin) {
            throw new VoxgateError('VG_HTTP_NOT_FOUND', 'No development token here: it is given only to this gateway\'s own pages opened on loopback (http://127.0.0.1 or localhost) while no source is configured; ask the operator for a token.');
          }
          return json({ token: deps.devToken, source: 'dev' });
        },
      },
    },
  };
}
