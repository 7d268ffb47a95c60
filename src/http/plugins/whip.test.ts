import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AuditEntry } from '../../audit/audit-log.js';
import { FakeClock } from '../../core/clock.js';
import type { WhipEndpoint } from '../../whip/whip-endpoint.js';
import type { EndpointRequest } from '../../wish/resource.js';
import { whipPlugin, type WhipPluginDeps } from './whip.js';

const request: EndpointRequest = { headers: {}, body: Buffer.alloc(0), remote: '192.0.2.7:5004', baseUrl: 'https://gw.example' };

function plugin(overrides: Partial<WhipPluginDeps> = {}) {
  const audited: AuditEntry[] = [];
  const posted: EndpointRequest[] = [];
  const whip = {
    resources: new Map([['live', {}]]),
    post: async (req: EndpointRequest) => (posted.push(req), { status: 201, headers: {} }),
    patch: () => ({ status: 204, headers: {} }),
    delete: () => ({ status: 200, headers: {} }),
  } as unknown as WhipEndpoint;
  const routes = whipPlugin({
    whip,
    auth: { authenticate: () => ({ name: 'widget', kind: 'browser' }) as ReturnType<WhipPluginDeps['auth']['authenticate']> },
    iceServers: [],
    clock: new FakeClock(),
    draining: () => false,
    sessions: () => 0,
    maxSessions: 2,
    nextRedirect: () => undefined,
    retryAfterSeconds: 7,
    audit: { write: (e) => void audited.push(e) },
    ...overrides,
  });
  const call = (pattern: string, method: string, params: Record<string, string> = {}) =>
    routes[pattern]!.methods[method]!({ params, query: new URLSearchParams(), endpointRequest: async () => request } as never);
  return { routes, call, audited, posted };
}

test('HEAD /whip is 200 while sessions can be taken, 503 with Retry-After when full or draining', async () => {
  assert.equal((await plugin().call('/whip', 'HEAD'))?.status, 200);
  const full = await plugin({ sessions: () => 2 }).call('/whip', 'HEAD');
  assert.equal(full?.status, 503);
  assert.equal(full?.headers['Retry-After'], '7');
  assert.equal((await plugin({ draining: () => true }).call('/whip', 'HEAD'))?.status, 503);
});

test('POST /whip while draining is 503 and never reaches the endpoint', async () => {
  const p = plugin({ draining: () => true });
  const r = await p.call('/whip', 'POST');
  assert.equal(r?.status, 503);
  assert.equal(r?.headers['Retry-After'], '7');
  assert.equal(p.posted.length, 0);
});

test('POST /whip on a redirecting node is a 307 (RFC 9725 §4.5), audited with its target', async () => {
  const p = plugin({ nextRedirect: () => 'https://other.example/whip' });
  const r = await p.call('/whip', 'POST');
  assert.deepEqual(r, { status: 307, headers: { Location: 'https://other.example/whip' } });
  assert.deepEqual(p.audited, [{ action: 'whip.post', outcome: 'ok', status: 307, remote: '192.0.2.7:5004', redirect: 'https://other.example/whip' }]);
  assert.equal(p.posted.length, 0);
});

test('GET of a session resource is 204 while it lives and 404 after', async () => {
  const p = plugin();
  assert.equal((await p.call('/whip/:id', 'GET', { id: 'live' }))?.status, 204);
  assert.equal((await p.call('/whip/:id', 'GET', { id: 'gone' }))?.status, 404);
});
