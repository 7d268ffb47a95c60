import type { IncomingMessage } from 'node:http';
import { z } from 'zod';
import type { AuditEntry, AuditLog } from '../../audit/audit-log.js';
import { bearerToken, secretEquals, type SourceIdentity } from '../../auth/source-auth.js';
import { isVoxgateError, logRefusal, VoxgateError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { DialRequest, OutboundCallsApi, OutboundCallView, TrunkView } from '../../call/outbound-types.js';
import { mediaType, problemReply, refuse, type EndpointReply, type EndpointRequest } from '../../wish/resource.js';
import { remoteOf, type MethodHandler, type PluginRoutes, type RequestContext } from '../router.js';

export interface CallsPluginDeps {
  /** Bearer token that may do everything here. */
  adminToken: string;
  /**
   * Resolves an Authorization header to a source, as `SourceAuthenticator.authenticate` does:
   * throws VG_AUTH_MISSING / VG_AUTH_INVALID / VG_AUTH_EXPIRED (401, with a challenge) otherwise.
   */
  authenticateSource(authorization: string | undefined): SourceIdentity;
  calls: OutboundCallsApi;
  trunks: () => TrunkView[];
  /** Every POST and DELETE, accepted or refused; a failed write refuses the request (500). */
  audit: Pick<AuditLog, 'write'>;
  log: Logger;
}

const JSON_TYPE = 'application/json';
const SOURCE_CHALLENGE = 'Bearer realm="voxgate"';
const ADMIN_CHALLENGE = 'Bearer realm="voxgate-admin"';

/**
 * Which source placed each call, so that source (and only it) can GET and DELETE it. Bound:
 * past MAX_PLACEMENTS entries, calls the service has forgotten are dropped first, then the oldest.
 */
const MAX_PLACEMENTS = 10_000;

const E164 = /^\+[1-9]\d{1,14}$/;
// RFC 3261 §19.1.1 / §25.1: the scheme is case-insensitive; a URI is printable ASCII without
// space, '"', '<' or '>' (anything else must be %-escaped), so nothing can break out of a header.
const SIP_URI = /^sips?:[!#-;=?-~]+$/i;

/** What to send, per field: every 400 names the field and says this. */
const FIELD_HINTS = {
  to: 'an E.164 number such as +15557654321 or a sip: URI',
  from: "an E.164 caller ID such as +15551230000, one of the trunk's outbound.numbers",
  trunk: 'the name of a trunk in sip.trunks (GET /api/trunks lists them)',
  agent: 'an agent name, or an agent spec object',
  timeoutSeconds: 'a number of seconds from 1 to 300',
  customParameters: 'an object of at most 32 string values, keys of 1 to 64 characters, values up to 1024',
  earlyMedia: 'true or false',
} as const satisfies Record<keyof DialRequest, string>;

const FIELDS = Object.keys(FIELD_HINTS).join(', ');

const dialRequestSchema = z.strictObject({
  to: z.string().max(256).refine((s) => E164.test(s) || SIP_URI.test(s)),
  from: z.string().regex(E164).optional(),
  trunk: z.string().min(1).max(64).optional(),
  agent: z.union([z.string().min(1).max(256), z.record(z.string(), z.unknown())]).optional(),
  timeoutSeconds: z.number().min(1).max(300).optional(),
  customParameters: z
    .record(z.string().min(1).max(64), z.string().max(1024))
    .refine((r) => Object.keys(r).length <= 32)
    .optional(),
  earlyMedia: z.boolean().optional(),
});

/** One bad field of a request body, as the `errors` member of a 400 lists them. */
export interface FieldError {
  field: string;
  message: string;
}

/**
 * Reads `POST /api/calls`'s JSON body into a DialRequest, or throws 415 (not JSON) or 400
 * naming every bad field and what to send instead.
 */
export function parseDialRequest(req: Pick<EndpointRequest, 'headers' | 'body'>): DialRequest {
  const type = mediaType(req.headers['content-type']);
  if (type !== JSON_TYPE) {
    throw new VoxgateError('VG_HTTP_UNSUPPORTED_MEDIA_TYPE', `Send the call with Content-Type: ${JSON_TYPE} (got ${type ?? 'none'}).`, {
      headers: { 'Accept-Post': JSON_TYPE },
    });
  }
  let input: unknown;
  try {
    input = JSON.parse(req.body.toString('utf8'));
  } catch (err) {
    const message = `not JSON (${err instanceof Error ? err.message : String(err)}); send an object such as {"to": "+15557654321"}`;
    throw invalid([{ field: '(body)', message }]);
  }
  const result = dialRequestSchema.safeParse(input);
  if (result.success) return result.data;
  const present = typeof input === 'object' && input !== null ? (input as Record<string, unknown>) : {};
  const errors: FieldError[] = [];
  const seen = new Set<string>();
  const add = (e: FieldError) => {
    if (seen.has(e.field) || errors.length >= 10) return;
    seen.add(e.field);
    errors.push(e);
  };
  for (const issue of result.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) add({ field: clip(key), message: `not a field; send only ${FIELDS}` });
      continue;
    }
    const [top] = issue.path;
    if (typeof top !== 'string' || !(top in FIELD_HINTS)) {
      add({ field: '(body)', message: 'a JSON object such as {"to": "+15557654321"}' });
      continue;
    }
    const hint = FIELD_HINTS[top as keyof typeof FIELD_HINTS];
    add({ field: issue.path.map((p) => clip(String(p))).join('.'), message: present[top] === undefined ? `required: ${hint}` : hint });
  }
  throw invalid(errors);
}

function invalid(errors: FieldError[]): VoxgateError {
  return new VoxgateError('VG_REQUEST_INVALID', `Fix the call request: ${errors.map((e) => `${e.field}: ${e.message}`).join('; ')}.`, { extra: { errors } });
}

/** A field name from the client goes into the reply and the log: keep it short. */
function clip(s: string): string {
  return s.length > 64 ? `${s.slice(0, 64)}…` : s;
}

/** Who is asking: the operator, or a source by its token. */
type Caller = { admin: true; source?: undefined } | { admin: false; source: SourceIdentity };

const noStore = (reply: EndpointReply): EndpointReply => ({ ...reply, headers: { ...reply.headers, 'Cache-Control': 'no-store' } });

const json = (status: number, body: unknown, headers: Record<string, string> = {}): EndpointReply => ({
  status,
  headers: { 'Content-Type': JSON_TYPE, 'Cache-Control': 'no-store', ...headers },
  body: JSON.stringify(body),
});

/** A call id is echoed back only when it looks like one. */
const shownId = (id: string): string => (/^[A-Za-z0-9_-]{1,64}$/.test(id) ? ` ${id}` : '');

/**
 * Outbound calls over HTTP: `POST /api/calls` places one (the admin token, or a source with
 * `sources[].outbound`), `GET`/`DELETE /api/calls/:id` show and end it (the admin, or the source
 * that placed it), `GET /api/calls` and `GET /api/trunks` are the operator's.
 * DELETE answers 200 with the call's view after the hangup, so a client sees how it ended.
 * Every POST and DELETE is audited (`call.create`, `call.delete`) with who asked.
 */
export function callsPlugin(deps: CallsPluginDeps): PluginRoutes {
  const placedBy = new Map<string, string>();

  const isAdmin = (authorization: string | undefined): boolean => secretEquals(bearerToken(authorization), deps.adminToken);

  /** The admin token or any source token; a source's own 401 (with its challenge) passes through. */
  const callerOf = (req: IncomingMessage): Caller => {
    const authorization = req.headers.authorization;
    if (!authorization) {
      throw new VoxgateError('VG_AUTH_MISSING', 'Send "Authorization: Bearer <token>": the admin token, or a token of a source with sources[].outbound.', {
        headers: { 'WWW-Authenticate': SOURCE_CHALLENGE },
      });
    }
    if (isAdmin(authorization)) return { admin: true };
    return { admin: false, source: deps.authenticateSource(authorization) };
  };

  const requireAdmin = (req: IncomingMessage, what: string): void => {
    const authorization = req.headers.authorization;
    if (!authorization) {
      throw new VoxgateError('VG_AUTH_MISSING', 'Send "Authorization: Bearer <admin token>".', { headers: { 'WWW-Authenticate': ADMIN_CHALLENGE } });
    }
    if (isAdmin(authorization)) return;
    let source: SourceIdentity | undefined;
    try {
      source = deps.authenticateSource(authorization);
    } catch {
      throw new VoxgateError('VG_AUTH_INVALID', 'The admin token is not valid.', {
        headers: { 'WWW-Authenticate': `${ADMIN_CHALLENGE}, error="invalid_token"` },
      });
    }
    // RFC 6750 §3.1: a good token without the right to this is 403 insufficient_scope.
    throw new VoxgateError('VG_AUTH_FORBIDDEN', `${what} needs the admin token; source ${source.name} sees only its own calls, at /api/calls/{id}.`, {
      headers: { 'WWW-Authenticate': `${ADMIN_CHALLENGE}, error="insufficient_scope"` },
    });
  };

  /** A call the caller may see. Another source's call is 404, not 403: its ids are not for probing. */
  const visible = (id: string, caller: Caller): OutboundCallView => {
    const view = deps.calls.get(id);
    if (!view || (!caller.admin && placedBy.get(id) !== caller.source.name)) {
      throw new VoxgateError('VG_SESSION_NOT_FOUND', `There is no call${shownId(id)}; ended calls are kept only for a while.`);
    }
    return view;
  };

  const remember = (id: string, source: string): void => {
    placedBy.set(id, source);
    if (placedBy.size <= MAX_PLACEMENTS) return;
    for (const known of placedBy.keys()) if (!deps.calls.get(known)) placedBy.delete(known);
    // Still full of live calls: forget the oldest, leaving room so the sweep is not run every POST.
    for (const oldest of placedBy.keys()) {
      if (placedBy.size <= MAX_PLACEMENTS * 0.9) break;
      placedBy.delete(oldest);
    }
  };

  /** Writes an audit record; a failed write becomes a 500 and the request is not carried out. */
  const record = (entry: AuditEntry): void => {
    try {
      deps.audit.write(entry);
    } catch (err) {
      deps.log.error({ err }, 'audit write failed');
      throw new VoxgateError('VG_AUDIT_WRITE_FAILED', 'The audit log could not be written; the request was not carried out.', { cause: err });
    }
  };

  const who = (caller: Caller | undefined) => ({
    by: caller ? (caller.admin ? 'admin' : caller.source.name) : null,
    source: caller?.source?.name ?? null,
    sourceKind: caller?.source?.kind ?? null,
  });

  /** A read: refusals are logged and answered here, so they carry no-store too. */
  const read = (handler: (ctx: RequestContext) => EndpointReply): MethodHandler => (ctx) => {
    try {
      return handler(ctx);
    } catch (err) {
      if (!isVoxgateError(err)) throw err;
      logRefusal(deps.log, err, { path: ctx.req.url?.slice(0, 100), remote: remoteOf(ctx.req) });
      return noStore(problemReply(err));
    }
  };

  const create: MethodHandler = async ({ req, endpointRequest }) => {
    const remote = remoteOf(req);
    let caller: Caller | undefined;
    let body: DialRequest | undefined;
    let view: OutboundCallView | undefined;
    const audit = (entry: AuditEntry) =>
      record({ ...entry, ...who(caller), remote, to: view?.to ?? body?.to ?? null, trunk: view?.trunk ?? body?.trunk ?? null, session: view?.id ?? null });
    try {
      caller = callerOf(req);
      if (caller.source && !caller.source.outbound) {
        throw new VoxgateError('VG_AUTH_FORBIDDEN', `Source ${caller.source.name} may not place calls: set sources[].outbound: true for it, or use the admin token.`);
      }
      const request = await endpointRequest();
      body = parseDialRequest(request);
      view = deps.calls.dial(body, { source: caller.source });
      if (caller.source) remember(view.id, caller.source.name);
      try {
        audit({ action: 'call.create', outcome: 'ok', status: 201, state: view.state });
      } catch (err) {
        // Nothing unaudited happens: a call whose record could not be written is ended at once.
        placedBy.delete(view.id);
        deps.calls.hangup(view.id);
        throw err;
      }
      return json(201, view, { Location: `${request.baseUrl}/api/calls/${encodeURIComponent(view.id)}` });
    } catch (err) {
      return noStore(refuse(err, deps.log, 'call.create', { remote, ...who(caller) }, audit));
    }
  };

  const remove: MethodHandler = ({ req, params }) => {
    const id = params.id!;
    const remote = remoteOf(req);
    let caller: Caller | undefined;
    let view: OutboundCallView | undefined;
    const audit = (entry: AuditEntry) => record({ ...entry, ...who(caller), remote, to: view?.to ?? null, trunk: view?.trunk ?? null, session: id });
    try {
      caller = callerOf(req);
      view = visible(id, caller);
      audit({ action: 'call.delete', outcome: 'ok', status: 200, state: view.state });
      // CANCEL before the answer, BYE after (the service decides); the view shows which.
      return json(200, deps.calls.hangup(id) ?? view);
    } catch (err) {
      return noStore(refuse(err, deps.log, 'call.delete', { remote, session: id, ...who(caller) }, audit));
    }
  };

  return {
    '/api/calls': {
      optionsHeaders: { 'Accept-Post': JSON_TYPE },
      // The router audits what it refuses before a handler runs (rate limit, 405) as `call.post`.
      auditRefusals: { action: 'call' },
      methods: {
        POST: create,
        GET: read(({ req }) => {
          requireAdmin(req, 'GET /api/calls');
          return json(200, { calls: deps.calls.list() });
        }),
      },
    },
    '/api/calls/:id': {
      auditRefusals: { action: 'call', sessionParam: 'id' },
      methods: {
        GET: read(({ req, params }) => json(200, visible(params.id!, callerOf(req)))),
        DELETE: remove,
      },
    },
    '/api/trunks': {
      methods: {
        GET: read(({ req }) => {
          requireAdmin(req, 'GET /api/trunks');
          return json(200, { trunks: deps.trunks() });
        }),
      },
    },
  };
}
