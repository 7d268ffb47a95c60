import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import type { AuditEntry } from '../../audit/audit-log.js';
import { SourceAuthenticator } from '../../auth/source-auth.js';
import { FakeClock } from '../../core/clock.js';
import { VoxgateError } from '../../core/errors.js';
import { createLogger } from '../../core/logger.js';
import type { DialAuthority, DialRequest, OutboundCallsApi, OutboundCallView, TrunkView } from '../../call/outbound-types.js';
import { Router } from '../router.js';
import { callsPlugin, type CallsPluginDeps } from './calls.js';

const ADMIN = 'admin-token-0123456789abcdef';
const KIOSK = 'kiosk-token-0123456789abcdef';
const DIALER = 'dialer-token-0123456789abcdef';
const ROBOCALLER = 'robo-token-0123456789abcdef';

const TRUNKS: TrunkView[] = [
  {
    name: 'carrier',
    inbound: { numbers: ['+15551230000'] },
    outbound: { addresses: ['203.0.113.5:5060'], transport: 'udp', numbers: ['+15551230000'] },
    calls: { inbound: 0, outbound: 1 },
    registration: null,
  },
];

/** Records what it was asked; places every call on `carrier` in state `dialing`. */
class FakeOutboundCalls implements OutboundCallsApi {
  readonly dialed: { req: DialRequest; by: DialAuthority }[] = [];
  readonly hungUp: string[] = [];
  readonly views = new Map<string, OutboundCallView>();
  failWith: VoxgateError | undefined;

  dial(req: DialRequest, by: DialAuthority): OutboundCallView {
    if (this.failWith) throw this.failWith;
    this.dialed.push({ req, by });
    const id = `call${String(this.dialed.length).padStart(18, '0')}`;
    const view: OutboundCallView = {
      id,
      state: 'dialing',
      to: req.to,
      from: req.from ?? '+15551230000',
      trunk: req.trunk ?? 'carrier',
      agent: typeof req.agent === 'string' ? req.agent : null,
      createdAt: '2026-01-01T00:00:00.000Z',
      answeredAt: null,
      endedAt: null,
      sipCallId: null,
      status: null,
      reason: null,
      cause: null,
      endReason: null,
    };
    this.views.set(id, view);
    return view;
  }

  get(id: string): OutboundCallView | undefined {
    return this.views.get(id);
  }

  list(): OutboundCallView[] {
    return [...this.views.values()];
  }

  hangup(id: string): OutboundCallView | undefined {
    const view = this.views.get(id);
    if (!view) return undefined;
    this.hungUp.push(id);
    const ended: OutboundCallView = { ...view, state: 'ended', endedAt: '2026-01-01T00:00:05.000Z', status: 487, reason: 'Request Terminated', endReason: 'deleted' };
    this.views.set(id, ended);
    return ended;
  }
}

/** The plugin behind the real Router on an ephemeral port; closed when the test ends. */
async function gateway(t: TestContext, overrides: Partial<CallsPluginDeps> = {}) {
  const audited: AuditEntry[] = [];
  const calls = new FakeOutboundCalls();
  const auth = new SourceAuthenticator(
    [
      { name: 'kiosk', kind: 'browser', token: KIOSK },
      { name: 'dialer', kind: 'service', token: DIALER, outbound: true },
      { name: 'robocaller', kind: 'service', token: ROBOCALLER, outbound: true },
    ],
    undefined,
    new FakeClock(),
  );
  const log = createLogger('silent');
  const router = new Router({
    corsOrigins: [],
    maxBodyBytes: 64 * 1024,
    limiter: { take: () => 0 },
    baseUrl: (req) => `http://${req.headers.host}`,
    audit: { write: (e) => void audited.push(e) },
    log,
  });
  router.use(
    callsPlugin({
      adminToken: ADMIN,
      authenticateSource: (authorization) => auth.authenticate(authorization),
      calls,
      trunks: () => TRUNKS,
      audit: { write: (e) => void audited.push(e) },
      log,
      ...overrides,
    }),
  );
  const server = createServer(router.listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const send = async (method: string, path: string, opts: { token?: string; body?: unknown; type?: string; raw?: string } = {}) => {
    const headers: Record<string, string> = {};
    if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
    let body: string | undefined;
    if (opts.raw !== undefined || opts.body !== undefined) {
      headers['Content-Type'] = opts.type ?? 'application/json';
      body = opts.raw ?? JSON.stringify(opts.body);
    }
    const res = await fetch(`${base}${path}`, { method, headers, body });
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, json: text ? (JSON.parse(text) as Record<string, unknown>) : undefined };
  };
  return { base, send, calls, audited };
}

const dial = { to: '+15557654321' };

test('POST /api/calls with the admin token dials and answers 201 with Location and the call', async (t) => {
  const g = await gateway(t);
  const r = await g.send('POST', '/api/calls', { token: ADMIN, body: { ...dial, agent: 'receptionist', customParameters: { ticket: '42' }, timeoutSeconds: 20 } });
  assert.equal(r.status, 201);
  assert.equal(r.headers.get('content-type'), 'application/json');
  assert.equal(r.headers.get('cache-control'), 'no-store');
  const id = 'call000000000000000001';
  assert.equal(r.headers.get('location'), `${g.base}/api/calls/${id}`);
  assert.deepEqual(r.json, { ...g.calls.views.get(id) });
  assert.equal(r.json?.state, 'dialing');
  assert.deepEqual(g.calls.dialed, [{ req: { to: '+15557654321', agent: 'receptionist', customParameters: { ticket: '42' }, timeoutSeconds: 20 }, by: { source: undefined } }]);
  assert.equal(g.audited.length, 1);
  assert.deepEqual(
    { ...g.audited[0], remote: undefined },
    { action: 'call.create', outcome: 'ok', status: 201, state: 'dialing', by: 'admin', source: null, sourceKind: null, remote: undefined, to: '+15557654321', trunk: 'carrier', session: id },
  );
  assert.match(String(g.audited[0]!.remote), /^127\.0\.0\.1:\d+$/);
});

test('a source without sources[].outbound gets 403 problem+json and nothing is dialed', async (t) => {
  const g = await gateway(t);
  const r = await g.send('POST', '/api/calls', { token: KIOSK, body: dial });
  assert.equal(r.status, 403);
  assert.equal(r.headers.get('content-type'), 'application/problem+json');
  assert.equal(r.headers.get('cache-control'), 'no-store');
  assert.equal(r.json?.code, 'VG_AUTH_FORBIDDEN');
  assert.match(String(r.json?.detail), /source kiosk may not place calls: set sources\[\]\.outbound/i);
  assert.equal(g.calls.dialed.length, 0);
  assert.deepEqual(
    [g.audited[0]?.action, g.audited[0]?.outcome, g.audited[0]?.status, g.audited[0]?.reason, g.audited[0]?.by],
    ['call.create', 'rejected', 403, 'VG_AUTH_FORBIDDEN', 'kiosk'],
  );
});

test('a source with sources[].outbound places a call that dial sees as its own', async (t) => {
  const g = await gateway(t);
  const r = await g.send('POST', '/api/calls', { token: DIALER, body: { to: 'sip:alice@voxgate.example', earlyMedia: true } });
  assert.equal(r.status, 201);
  assert.equal(r.json?.to, 'sip:alice@voxgate.example');
  assert.equal(g.calls.dialed.length, 1);
  const { req, by } = g.calls.dialed[0]!;
  assert.deepEqual(req, { to: 'sip:alice@voxgate.example', earlyMedia: true });
  assert.equal(by.source?.name, 'dialer');
  assert.equal(by.source?.outbound, true);
  assert.equal(g.audited[0]?.by, 'dialer');
  assert.equal(g.audited[0]?.source, 'dialer');
});

test('POST without a token is 401 with a Bearer challenge; an unknown token is 401 invalid_token', async (t) => {
  const g = await gateway(t);
  const missing = await g.send('POST', '/api/calls', { body: dial });
  assert.equal(missing.status, 401);
  assert.equal(missing.json?.code, 'VG_AUTH_MISSING');
  assert.equal(missing.headers.get('www-authenticate'), 'Bearer realm="voxgate"');
  const unknown = await g.send('POST', '/api/calls', { token: 'not-a-token-0123456789', body: dial });
  assert.equal(unknown.status, 401);
  assert.equal(unknown.json?.code, 'VG_AUTH_INVALID');
  assert.match(unknown.headers.get('www-authenticate') ?? '', /^Bearer realm="voxgate", error="invalid_token"/);
  assert.equal(g.calls.dialed.length, 0);
  assert.deepEqual(g.audited.map((e) => [e.action, e.outcome, e.status, e.by]), [
    ['call.create', 'rejected', 401, null],
    ['call.create', 'rejected', 401, null],
  ]);
});

test('a bad `to` is 400 naming the field and what to send', async (t) => {
  const g = await gateway(t);
  const r = await g.send('POST', '/api/calls', { token: ADMIN, body: { to: '5557654321' } });
  assert.equal(r.status, 400);
  assert.equal(r.headers.get('content-type'), 'application/problem+json');
  assert.equal(r.json?.code, 'VG_REQUEST_INVALID');
  assert.match(String(r.json?.detail), /to: an E\.164 number such as \+15557654321 or a sip: URI/);
  assert.deepEqual(r.json?.errors, [{ field: 'to', message: 'an E.164 number such as +15557654321 or a sip: URI' }]);
  const missing = await g.send('POST', '/api/calls', { token: ADMIN, body: { from: '+15551230000' } });
  assert.deepEqual(missing.json?.errors, [{ field: 'to', message: 'required: an E.164 number such as +15557654321 or a sip: URI' }]);
  assert.equal(g.calls.dialed.length, 0);
  assert.equal(g.audited[0]?.reason, 'VG_REQUEST_INVALID');
});

test('unknown fields, out-of-range values, too many customParameters and broken JSON are 400', async (t) => {
  const g = await gateway(t);
  const unknown = await g.send('POST', '/api/calls', { token: ADMIN, body: { ...dial, ringFor: 10 } });
  assert.equal(unknown.status, 400);
  assert.deepEqual(unknown.json?.errors, [{ field: 'ringFor', message: 'not a field; send only to, from, trunk, agent, timeoutSeconds, customParameters, earlyMedia' }]);
  const range = await g.send('POST', '/api/calls', { token: ADMIN, body: { ...dial, timeoutSeconds: 301, from: '555' } });
  assert.deepEqual(
    (range.json?.errors as { field: string }[]).map((e) => e.field).sort(),
    ['from', 'timeoutSeconds'],
  );
  const many = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v']));
  const params = await g.send('POST', '/api/calls', { token: ADMIN, body: { ...dial, customParameters: many } });
  assert.equal(params.status, 400);
  assert.deepEqual(params.json?.errors, [{ field: 'customParameters', message: 'an object of at most 32 string values, keys of 1 to 64 characters, values up to 1024' }]);
  const broken = await g.send('POST', '/api/calls', { token: ADMIN, raw: '{"to": ' });
  assert.equal(broken.status, 400);
  assert.equal((broken.json?.errors as { field: string }[])[0]?.field, '(body)');
  const notObject = await g.send('POST', '/api/calls', { token: ADMIN, body: ['+15557654321'] });
  assert.equal(notObject.status, 400);
  assert.equal(g.calls.dialed.length, 0);
});

test('a body that is not application/json is 415 with Accept-Post', async (t) => {
  const g = await gateway(t);
  const r = await g.send('POST', '/api/calls', { token: ADMIN, raw: 'to=+15557654321', type: 'application/x-www-form-urlencoded' });
  assert.equal(r.status, 415);
  assert.equal(r.json?.code, 'VG_HTTP_UNSUPPORTED_MEDIA_TYPE');
  assert.equal(r.headers.get('accept-post'), 'application/json');
  assert.equal(g.calls.dialed.length, 0);
  const charset = await g.send('POST', '/api/calls', { token: ADMIN, raw: JSON.stringify(dial), type: 'application/json; charset=utf-8' });
  assert.equal(charset.status, 201);
});

test("dial's VG_TRUNK_LIMIT comes back as 429 with its Retry-After, and is audited", async (t) => {
  const g = await gateway(t);
  g.calls.failWith = new VoxgateError('VG_TRUNK_LIMIT', 'Trunk carrier is at its calls-per-second limit; retry in 1 s.', { headers: { 'Retry-After': '1' } });
  const r = await g.send('POST', '/api/calls', { token: DIALER, body: { ...dial, trunk: 'carrier' } });
  assert.equal(r.status, 429);
  assert.equal(r.headers.get('retry-after'), '1');
  assert.equal(r.headers.get('content-type'), 'application/problem+json');
  assert.equal(r.json?.code, 'VG_TRUNK_LIMIT');
  assert.equal(r.json?.detail, 'Trunk carrier is at its calls-per-second limit; retry in 1 s.');
  const e = g.audited[0]!;
  assert.deepEqual([e.action, e.outcome, e.status, e.reason, e.by, e.to, e.trunk, e.session], ['call.create', 'rejected', 429, 'VG_TRUNK_LIMIT', 'dialer', '+15557654321', 'carrier', null]);
});

test('a call whose audit record cannot be written is hung up and answered 500', async (t) => {
  let writes = 0;
  const g = await gateway(t, {
    audit: {
      write: () => {
        writes++;
        throw new Error('disk full');
      },
    },
  });
  const r = await g.send('POST', '/api/calls', { token: ADMIN, body: dial });
  assert.equal(r.status, 500);
  assert.equal(r.json?.code, 'VG_AUDIT_WRITE_FAILED');
  assert.equal(g.calls.dialed.length, 1);
  assert.deepEqual(g.calls.hungUp, ['call000000000000000001']);
  assert.equal(writes, 1);
});

test('GET /api/calls/:id shows a call to the admin and to the source that placed it, 404 to anyone else', async (t) => {
  const g = await gateway(t);
  const placed = await g.send('POST', '/api/calls', { token: DIALER, body: dial });
  const path = new URL(placed.headers.get('location')!).pathname;
  const byAdmin = await g.send('GET', path, { token: ADMIN });
  assert.equal(byAdmin.status, 200);
  assert.equal(byAdmin.headers.get('cache-control'), 'no-store');
  assert.deepEqual(byAdmin.json, placed.json);
  assert.deepEqual((await g.send('GET', path, { token: DIALER })).json, placed.json);
  const other = await g.send('GET', path, { token: ROBOCALLER });
  assert.equal(other.status, 404);
  assert.equal(other.json?.code, 'VG_SESSION_NOT_FOUND');
  const unknown = await g.send('GET', '/api/calls/call000000000000000099', { token: ADMIN });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.headers.get('content-type'), 'application/problem+json');
  assert.equal(unknown.headers.get('cache-control'), 'no-store');
  assert.match(String(unknown.json?.detail), /no call call000000000000000099/);
  assert.equal((await g.send('GET', path)).status, 401);
});

test('DELETE /api/calls/:id hangs up, answers 200 with the ended call, and is audited', async (t) => {
  const g = await gateway(t);
  const placed = await g.send('POST', '/api/calls', { token: DIALER, body: dial });
  const id = String(placed.json?.id);
  const refused = await g.send('DELETE', `/api/calls/${id}`, { token: ROBOCALLER });
  assert.equal(refused.status, 404);
  assert.deepEqual(g.calls.hungUp, []);
  const r = await g.send('DELETE', `/api/calls/${id}`, { token: DIALER });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'application/json');
  assert.deepEqual([r.json?.state, r.json?.endReason, r.json?.status], ['ended', 'deleted', 487]);
  assert.deepEqual(g.calls.hungUp, [id]);
  assert.deepEqual(
    g.audited.slice(1).map((e) => [e.action, e.outcome, e.status, e.by, e.session]),
    [
      ['call.delete', 'rejected', 404, 'robocaller', id],
      ['call.delete', 'ok', 200, 'dialer', id],
    ],
  );
  const unknown = await g.send('DELETE', '/api/calls/call000000000000000099', { token: ADMIN });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.json?.code, 'VG_SESSION_NOT_FOUND');
  assert.deepEqual(g.calls.hungUp, [id]);
});

test('GET /api/calls and GET /api/trunks are the admin token only', async (t) => {
  const g = await gateway(t);
  await g.send('POST', '/api/calls', { token: ADMIN, body: dial });
  const list = await g.send('GET', '/api/calls', { token: ADMIN });
  assert.equal(list.status, 200);
  assert.equal(list.headers.get('cache-control'), 'no-store');
  assert.deepEqual(list.json, { calls: g.calls.list() });
  const trunks = await g.send('GET', '/api/trunks', { token: ADMIN });
  assert.equal(trunks.status, 200);
  assert.equal(trunks.headers.get('content-type'), 'application/json');
  assert.deepEqual(trunks.json, { trunks: TRUNKS });
  // RFC 6750 §3.1: a good source token without the scope is 403 insufficient_scope.
  const bySource = await g.send('GET', '/api/trunks', { token: DIALER });
  assert.equal(bySource.status, 403);
  assert.match(bySource.headers.get('www-authenticate') ?? '', /error="insufficient_scope"/);
  const missing = await g.send('GET', '/api/calls');
  assert.equal(missing.status, 401);
  assert.equal(missing.headers.get('www-authenticate'), 'Bearer realm="voxgate-admin"');
  const wrong = await g.send('GET', '/api/calls', { token: 'not-a-token-0123456789' });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.headers.get('www-authenticate'), 'Bearer realm="voxgate-admin", error="invalid_token"');
});

test('OPTIONS /api/calls advertises JSON bodies; DELETE of the collection is 405, audited by the router', async (t) => {
  const g = await gateway(t);
  const options = await g.send('OPTIONS', '/api/calls');
  assert.equal(options.status, 204);
  assert.equal(options.headers.get('accept-post'), 'application/json');
  assert.equal(options.headers.get('allow'), 'POST, GET, HEAD, OPTIONS');
  const del = await g.send('DELETE', '/api/calls', { token: ADMIN });
  assert.equal(del.status, 405);
  assert.deepEqual([g.audited[0]?.action, g.audited[0]?.outcome, g.audited[0]?.status], ['call.delete', 'rejected', 405]);
});
