import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import type { AuditEntry } from '../audit/audit-log.js';
import { FakeClock } from '../core/clock.js';
import { createLogger } from '../core/logger.js';
import { RateLimiter } from './rate-limit.js';
import { Router, type RouterDeps } from './router.js';

interface Sent {
  status: number;
  headers: Record<string, string | string[]>;
  body: string;
}

/** Just what the router reads of a request and writes of a response. */
function request(method: string, url: string, opts: { headers?: Record<string, string>; body?: string; remote?: string } = {}) {
  const req = Readable.from(opts.body === undefined ? [] : [Buffer.from(opts.body)]) as unknown as IncomingMessage;
  Object.assign(req, { method, url, headers: opts.headers ?? {}, socket: { remoteAddress: opts.remote ?? '192.0.2.7', remotePort: 5004 } });
  const sent: Sent = { status: 0, headers: {}, body: '' };
  let finished!: (sent: Sent) => void;
  const done = new Promise<Sent>((resolve) => (finished = resolve));
  const emitter = new EventEmitter();
  const res = Object.assign(emitter, {
    headersSent: false,
    statusCode: 200,
    setHeader(name: string, value: string) {
      sent.headers[name] = value;
    },
    writeHead(status: number, headers: Record<string, string | string[]>) {
      this.statusCode = sent.status = status;
      this.headersSent = true;
      Object.assign(sent.headers, headers);
    },
    end(body?: Buffer | string) {
      sent.body = body?.toString() ?? '';
      emitter.emit('finish');
      finished(sent);
    },
  }) as unknown as ServerResponse;
  return { req, res, done };
}

function setup(overrides: Partial<RouterDeps> = {}) {
  const clock = new FakeClock();
  const audited: AuditEntry[] = [];
  const responses: string[] = [];
  const router = new Router({
    corsOrigins: ['https://app.example'],
    maxBodyBytes: 16,
    limiter: new RateLimiter(1, 2, () => clock.now()),
    baseUrl: () => 'https://gw.example',
    audit: { write: (e) => void audited.push(e) },
    log: createLogger('silent'),
    onResponse: (method, status) => responses.push(`${method} ${status}`),
    ...overrides,
  });
  router.add('/things/:id', {
    optionsHeaders: { 'Accept-Patch': 'application/trickle-ice-sdpfrag' },
    optionsLinks: () => ['<stun:stun.example>; rel="ice-server"'],
    auditRefusals: { action: 'thing', sessionParam: 'id' },
    methods: {
      GET: ({ params, query }) => ({ status: 200, headers: { 'Content-Type': 'text/plain' }, body: `thing ${params.id} ${query.get('q') ?? ''}` }),
      HEAD: () => ({ status: 200, headers: {}, body: 'not sent' }),
      POST: async ({ endpointRequest }) => {
        const r = await endpointRequest();
        return { status: 201, headers: { Location: `${r.baseUrl}/things/new` }, body: r.body.toString('utf8') };
      },
    },
  });
  router.add('/plain', { methods: { GET: () => ({ status: 200, headers: { 'Content-Type': 'text/plain' }, body: 'hello' }) } });
  router.add('/boom', { methods: { GET: () => Promise.reject(new Error('bug')) } });
  const send = (...args: Parameters<typeof request>): Promise<Sent> => {
    const { req, res, done } = request(...args);
    router.listener(req, res);
    return done;
  };
  return { router, send, audited, responses, clock };
}

test('a pattern matches segment by segment; a :name takes one non-empty segment', () => {
  const { router } = setup();
  assert.deepEqual(router.match('/things/abc')?.params, { id: 'abc' });
  assert.equal(router.match('/things/'), undefined);
  assert.equal(router.match('/things'), undefined);
  assert.equal(router.match('/things/abc/more'), undefined);
  assert.throws(() => router.add('/things/:id', { methods: {} }), /registered twice/);
});

test('GET answers with Content-Length; HEAD with no body; an unknown path is a problem+json 404', async () => {
  const { send, responses } = setup();
  const get = await send('GET', '/things/abc?q=1');
  assert.equal(get.status, 200);
  assert.equal(get.body, 'thing abc 1');
  assert.equal(get.headers['Content-Length'], String(get.body.length));
  const head = await send('HEAD', '/things/abc');
  assert.equal(head.body, '');
  assert.equal(head.headers['Content-Length'], '8', "HEAD's own handler: its body's length, not the body");
  const headGet = await send('HEAD', '/plain');
  assert.equal(headGet.status, 200, 'HEAD where only GET is defined');
  assert.equal(headGet.body, '');
  assert.equal(headGet.headers['Content-Length'], '5');
  assert.equal(headGet.headers['Content-Type'], 'text/plain');
  assert.equal((await send('OPTIONS', '/plain')).headers.Allow, 'GET, HEAD, OPTIONS');
  const missing = await send('GET', '/nowhere');
  assert.equal(missing.status, 404);
  assert.equal(missing.headers['Content-Type'], 'application/problem+json');
  assert.match(JSON.parse(missing.body).type, /VG_HTTP_NOT_FOUND/);
  assert.deepEqual(responses, ['GET 200', 'HEAD 200', 'HEAD 200', 'OPTIONS 204', 'GET 404']);
});

test('OPTIONS lists the methods with the route headers and Links; a CORS preflight gets permissions and no Link', async () => {
  const { send } = setup();
  const plain = await send('OPTIONS', '/things/abc');
  assert.equal(plain.status, 204);
  assert.equal(plain.headers.Allow, 'GET, HEAD, POST, OPTIONS');
  assert.equal(plain.headers['Accept-Patch'], 'application/trickle-ice-sdpfrag');
  assert.deepEqual(plain.headers.Link, ['<stun:stun.example>; rel="ice-server"']);
  const preflight = await send('OPTIONS', '/things/abc', { headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' } });
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers['Access-Control-Allow-Origin'], 'https://app.example');
  assert.equal(preflight.headers['Access-Control-Allow-Methods'], 'GET, HEAD, POST, OPTIONS');
  assert.equal(preflight.headers.Link, undefined);
  const other = await send('OPTIONS', '/things/abc', { headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
  assert.equal(other.headers['Access-Control-Allow-Origin'], undefined, 'an origin not configured gets no CORS headers');
});

test('a method the route lacks is 405 with Allow, and a mutating one is audited as a refusal', async () => {
  const { send, audited } = setup();
  const r = await send('DELETE', '/things/abc');
  assert.equal(r.status, 405);
  assert.equal(r.headers.Allow, 'GET, HEAD, POST, OPTIONS');
  assert.deepEqual(audited, [{ action: 'thing.delete', outcome: 'rejected', status: 405, reason: 'VG_HTTP_METHOD_NOT_ALLOWED', remote: '192.0.2.7:5004', session: 'abc' }]);
});

test('POST reads the body for the handler; one over the limit is 413 with Connection: close, before the handler runs', async () => {
  const { send, audited } = setup({ limiter: { take: () => 0 } });
  const ok = await send('POST', '/things/abc', { body: 'small' });
  assert.equal(ok.status, 201);
  assert.equal(ok.headers.Location, 'https://gw.example/things/new');
  assert.equal(ok.body, 'small');
  const big = await send('POST', '/things/abc', { body: 'x'.repeat(17) });
  assert.equal(big.status, 413);
  assert.equal(big.headers.Connection, 'close');
  const declared = await send('POST', '/things/abc', { headers: { 'content-length': '1000' }, body: '' });
  assert.equal(declared.status, 413);
  assert.deepEqual(audited.map((e) => [e.action, e.status, e.reason]), [['thing.post', 413, 'VG_HTTP_BODY_TOO_LARGE'], ['thing.post', 413, 'VG_HTTP_BODY_TOO_LARGE']]);
});

test('POST, PATCH and DELETE are rate-limited per address with 429 and Retry-After; GET is not', async () => {
  const { send, audited, clock } = setup();
  assert.equal((await send('POST', '/things/a', { body: '' })).status, 201);
  assert.equal((await send('POST', '/things/a', { body: '' })).status, 201);
  const limited = await send('POST', '/things/a', { body: '' });
  assert.equal(limited.status, 429);
  assert.equal(limited.headers['Retry-After'], '1');
  assert.equal(audited.at(-1)?.reason, 'VG_HTTP_RATE_LIMITED');
  assert.equal((await send('POST', '/things/a', { body: '', remote: '192.0.2.8' })).status, 201, 'another address has its own bucket');
  assert.equal((await send('GET', '/things/a')).status, 200);
  clock.advance(1000);
  assert.equal((await send('POST', '/things/a', { body: '' })).status, 201, 'the bucket refills on the clock');
});

test('a handler that throws something other than a VoxgateError is a 500 problem, not a crash', async () => {
  const { send } = setup();
  const r = await send('GET', '/boom');
  assert.equal(r.status, 500);
  assert.match(JSON.parse(r.body).type, /VG_INTERNAL/);
});
