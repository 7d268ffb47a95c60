import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request, type IncomingHttpHeaders } from 'node:http';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { listenConnected, publishConnected } from './helpers/ndc-publisher.js';
import { ADMIN_TOKEN, OTHER_TOKEN, SOURCE_TOKEN, startGateway, waitFor } from './helpers/gateway.js';

const admin = { Authorization: `Bearer ${ADMIN_TOKEN}` };

test('admin: GET and DELETE /api/sessions/:id end any call with reason admin, audited; it moves to /api/history and the CDR file', async (t) => {
  const tg = await startGateway();
  t.after(() => tg.stop());
  const pub = await publishConnected(`${tg.url}/whip`, SOURCE_TOKEN);
  t.after(() => pub.close());
  pub.startRtp();
  const id = pub.location!.split('/').pop()!;
  await waitFor('packets counted', async () => ((await (await fetch(`${tg.url}/api/sessions/${id}`, { headers: admin })).json()) as { packets: number }).packets > 20 || undefined);

  const live = (await (await fetch(`${tg.url}/api/sessions/${id}`, { headers: admin })).json()) as Record<string, unknown>;
  assert.equal(live.id, id);
  assert.equal(live.state, 'connected');
  assert.equal(live.codec, 'opus');
  assert.equal(live.source, 'browser-widget');
  assert.equal(live.node, 'local');

  // Not the admin: told what to send; a stranger's DELETE ends nothing.
  assert.equal((await fetch(`${tg.url}/api/sessions/${id}`)).status, 401);
  const wrong = await fetch(`${tg.url}/api/sessions/${id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${SOURCE_TOKEN}` } });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.headers.get('content-type'), 'application/problem+json');
  assert.equal(tg.gw.calls.get(id)?.state, 'connected');
  assert.equal((await fetch(`${tg.url}/api/sessions/no-such-session`, { headers: admin })).status, 404);
  assert.equal((await fetch(`${tg.url}/api/sessions/no-such-session`, { method: 'DELETE', headers: admin })).status, 404);

  const del = await fetch(`${tg.url}/api/sessions/${id}`, { method: 'DELETE', headers: admin });
  assert.equal(del.status, 200);
  const ended = (await del.json()) as { id: string; reason: string; codec: string; durationMs: number; summary: { packetsReceived: number } };
  assert.equal(ended.id, id);
  assert.equal(ended.reason, 'admin');
  assert.equal(ended.codec, 'opus');
  assert.ok(ended.summary.packetsReceived > 20, `packets in the summary: ${ended.summary.packetsReceived}`);
  assert.equal(tg.gw.calls.get(id), undefined, 'the call is gone');
  // The WHIP resource went with it: the publisher's own DELETE finds nothing.
  assert.equal((await fetch(pub.location!, { method: 'DELETE', headers: { Authorization: `Bearer ${SOURCE_TOKEN}` } })).status, 404);
  assert.equal((await fetch(`${tg.url}/api/sessions/${id}`, { method: 'DELETE', headers: admin })).status, 404, 'a second DELETE: already ended');

  // Still readable as ended, in the history, and as one CDR line.
  const after = (await (await fetch(`${tg.url}/api/sessions/${id}`, { headers: admin })).json()) as { state: string; reason: string };
  assert.deepEqual([after.state, after.reason], ['ended', 'admin']);
  const history = (await (await fetch(`${tg.url}/api/history`, { headers: admin })).json()) as { calls: { id: string; reason: string }[] };
  // publishConnected may have retried: an attempt whose client failed is in the history too (dtls-failed).
  assert.deepEqual(history.calls.filter((c) => c.id === id).map((c) => [c.id, c.reason]), [[id, 'admin']]);
  assert.equal(history.calls[0]!.id, id, 'newest first');
  const cdr = readFileSync(join(dirname(tg.auditPath), 'voxgate-cdr.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { id: string; reason: string; startedAt: string; endedAt: string; summary: object }).filter((r) => r.id === id);
  assert.equal(cdr.length, 1);
  assert.equal(cdr[0]!.id, id);
  assert.equal(cdr[0]!.reason, 'admin');
  assert.ok(Date.parse(cdr[0]!.endedAt) >= Date.parse(cdr[0]!.startedAt));

  const audit = readFileSync(tg.auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; outcome: string; session?: string; reason?: string; status?: number });
  const act = audit.findIndex((r) => r.action === 'admin.session.delete' && r.outcome === 'ok' && r.session === id);
  const end = audit.findIndex((r) => r.action === 'session.ended' && r.session === id);
  assert.ok(act >= 0 && end > act, 'the admin act is audited before the end it causes');
  assert.equal(audit[end]!.reason, 'admin');
  assert.equal(audit[end]!.outcome, 'ok', 'an operator ending a call is not a failure');
  assert.ok(audit.some((r) => r.action === 'admin.session.delete' && r.outcome === 'rejected' && r.status === 401), 'the refused DELETE is audited');
});

test('HEAD answers wherever GET does, with GET\'s status and headers and no body', async (t) => {
  const tg = await startGateway();
  t.after(() => tg.stop());
  const pub = await publishConnected(`${tg.url}/whip`, SOURCE_TOKEN);
  t.after(() => pub.close());
  const id = pub.location!.split('/').pop()!;
  // The publisher may be connected a moment before the gateway's side is (WHEP answers 409 until then).
  await waitFor('the call live', async () => tg.gw.calls.get(id)?.state === 'connected');
  const listener = await listenConnected(`${tg.url}/whep/${id}`, ADMIN_TOKEN);
  t.after(() => listener.close());
  const lid = listener.location!.split('/').pop()!;
  const auth = { '/api/sessions': admin, '/api/sessions/:id': admin, '/api/history': admin, '/api/registrations': admin, '/api/calls': admin, '/api/calls/:id': admin, '/api/trunks': admin, '/whep/:session/:id/events': admin } as Record<string, Record<string, string>>;
  const paths: Record<string, string> = {
    '/': '/', '/player': '/player', '/timeline.js': '/timeline.js', '/healthz': '/healthz', '/metrics': '/metrics', '/whip': '/whip', [`/whip/:id`]: `/whip/${id}`,
    '/whep/:session': `/whep/${id}`, '/whep/:session/:id': `/whep/${id}/${lid}`,
    '/api/sessions': '/api/sessions', '/api/sessions/:id': `/api/sessions/${id}`, '/api/history': '/api/history', '/api/registrations': '/api/registrations',
    '/api/calls': '/api/calls', '/api/calls/:id': '/api/calls/no-such-call', '/api/trunks': '/api/trunks', '/api/dev-token': '/api/dev-token',
    '/client.js': '/client.js', '/console': '/console', '/console.js': '/console.js', '/vendor/uplot.js': '/vendor/uplot.js', '/vendor/uplot.css': '/vendor/uplot.css',
  };
  const files = new Set(['/', '/player', '/timeline.js', '/healthz', '/client.js', '/console', '/console.js', '/vendor/uplot.js', '/vendor/uplot.css']);
  const streams = new Set(['/whep/:session/:id/events', '/api/events']);
  // Every route the gateway has with a GET is here (a new one must be added).
  const withGet = tg.gw.routes().filter((r) => r.methods.includes('GET')).map((r) => r.pattern);
  assert.deepEqual(withGet.filter((p) => !(p in paths) && !streams.has(p)), [], 'routes with a GET and no HEAD check');
  for (const [pattern, path] of Object.entries(paths)) {
    const headers = auth[pattern] ?? {};
    const get = await fetch(`${tg.url}${path}`, { headers });
    const getBody = await get.arrayBuffer();
    const head = await fetch(`${tg.url}${path}`, { method: 'HEAD', headers });
    // WHIP's and WHEP's endpoints have a HEAD of their own: a capacity probe (200) where GET is 204.
    if (pattern === '/whip' || pattern === '/whep/:session') assert.equal(head.status, 200, `HEAD ${pattern}`);
    else assert.equal(head.status, get.status, `HEAD ${pattern}: ${head.status} vs GET ${get.status}`);
    assert.notEqual(head.status, 405, `HEAD ${pattern}`);
    if (head.status === get.status) assert.equal(head.headers.get('content-type'), get.headers.get('content-type'), `HEAD ${pattern} content-type`);
    assert.equal((await head.arrayBuffer()).byteLength, 0, `HEAD ${pattern} has no body`);
    // The pages are the same bytes each time; the API's bodies carry ages and counters that move.
    if (files.has(pattern)) assert.equal(head.headers.get('content-length'), String(getBody.byteLength), `HEAD ${pattern} content-length`);
    else if (get.status === 200) assert.match(head.headers.get('content-length') ?? '', /^\d+$/, `HEAD ${pattern} content-length`);
    assert.match(head.headers.get('allow') ?? (await fetch(`${tg.url}${path}`, { method: 'OPTIONS' })).headers.get('allow') ?? '', /\bHEAD\b/, `OPTIONS ${pattern} lists HEAD`);
  }
  // The SSE streams: their headers, then the end (not a stream left open).
  for (const path of [`/whep/${id}/${lid}/events`, '/api/events']) {
    const sse = await fetch(`${tg.url}${path}`, { method: 'HEAD', headers: admin });
    assert.equal(sse.status, 200, path);
    assert.equal(sse.headers.get('content-type'), 'text/event-stream', path);
    assert.equal((await sse.arrayBuffer()).byteLength, 0, path);
  }
});

test('a listener token lists on /api/sessions the live sessions it may hear, each with its WHEP URL', async (t) => {
  const LISTENER = 'ward-listener-token-0123456789';
  const tg = await startGateway({ listeners: [{ name: 'ward-nurse', token: LISTENER, sources: ['ward-7-mic'] }] });
  t.after(() => tg.stop());
  const widget = await publishConnected(`${tg.url}/whip`, SOURCE_TOKEN);
  const ward = await publishConnected(`${tg.url}/whip`, OTHER_TOKEN);
  t.after(() => [widget, ward].forEach((p) => p.close()));
  const wardId = ward.location!.split('/').pop()!;
  const res = await fetch(`${tg.url}/api/sessions`, { headers: { Authorization: `Bearer ${LISTENER}` } });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { listener: string; sessions: { id: string; source: string; whep: string; packets?: number }[] };
  assert.equal(body.listener, 'ward-nurse');
  assert.deepEqual(body.sessions.map((s) => [s.id, s.source, s.whep]), [[wardId, 'ward-7-mic', `${tg.url}/whep/${wardId}`]]);
  assert.equal(body.sessions[0]!.packets, undefined, "a listener sees what it may hear, not the admin's detail");
  // What it lists, it can hear.
  const l = await listenConnected(body.sessions[0]!.whep, LISTENER);
  l.close();
  // The admin still sees both; a token that is neither is told to send the admin token.
  const all = (await (await fetch(`${tg.url}/api/sessions`, { headers: admin })).json()) as { sessions: unknown[] };
  assert.equal(all.sessions.length, 2);
  assert.equal((await fetch(`${tg.url}/api/sessions`, { headers: { Authorization: 'Bearer not-a-token-of-anyone-here' } })).status, 401);
});

test('/api/dev-token: only to the gateway\'s own pages on loopback, never with CORS headers', async (t) => {
  const tg = await startGateway({ sources: [] }); // no source configured: the generated dev source
  t.after(() => tg.stop());
  const port = new URL(tg.url).port;
  const ask = (headers: Record<string, string>) =>
    new Promise<{ status: number; headers: IncomingHttpHeaders; body: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/api/dev-token', headers }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      });
      req.on('error', reject);
      req.end();
    });
  const own = await ask({ Host: `127.0.0.1:${port}` });
  assert.equal(own.status, 200);
  assert.equal((JSON.parse(own.body) as { token: string }).token, tg.gw.devToken);
  assert.equal(own.headers['access-control-allow-origin'], undefined, 'no CORS: another site cannot read it');
  const page = await ask({ Host: `localhost:${port}`, Origin: `http://localhost:${port}`, 'Sec-Fetch-Site': 'same-origin' });
  assert.equal(page.status, 200, 'the demo page fetching it from its own origin');
  for (const [what, headers] of [
    ['another origin', { Host: `127.0.0.1:${port}`, Origin: 'https://evil.example' }],
    ['a cross-site fetch without Origin', { Host: `127.0.0.1:${port}`, 'Sec-Fetch-Site': 'cross-site' }],
    ['a Host that is not loopback (DNS rebinding)', { Host: `evil.example:${port}`, Origin: `http://evil.example:${port}` }],
  ] as const) {
    const r = await ask(headers);
    assert.equal(r.status, 404, what);
    assert.equal(r.headers['access-control-allow-origin'], undefined, what);
  }
});

test('every voxgate_ metric /metrics serves is in the README\'s table (prom-client\'s process and Node.js ones are named there as a family)', async (t) => {
  const tg = await startGateway({ sip: { domain: 'voxgate.test', users: [{ user: 'alice', password: 'alice-secret' }], listen: [{ transport: 'udp', host: '127.0.0.1', port: 0 }], trunks: [{ name: 'carrier-a', inbound: { numbers: ['+15550100'], allowedAddresses: ['127.0.0.1/32'], agent: 'echo' } }] } });
  t.after(() => tg.stop());
  const text = await (await fetch(`${tg.url}/metrics`)).text();
  const names = new Set([...text.matchAll(/^# TYPE (voxgate_\S+) /gm)].map((m) => m[1]!).filter((n) => !/^voxgate_(process|nodejs)_/.test(n)));
  assert.ok(names.size > 20, `metrics served: ${[...names]}`);
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const undocumented = [...names].filter((n) => !readme.includes(`\`${n}\``) && !readme.includes(`\`${n.replace(/_total$/, '')}\``));
  assert.deepEqual(undocumented, [], 'each metric has its row');
  assert.match(readme, /voxgate_process_\*/);
});
