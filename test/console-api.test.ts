/**
 * The console's API without a browser: `GET /api/events` (the snapshot, then each change in
 * order) and `POST /api/sessions/:id/transfer` (every refusal with what to send, audited).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { publishConnected, readSse } from './helpers/ndc-publisher.js';
import { ADMIN_TOKEN, SOURCE_TOKEN, startGateway, waitFor } from './helpers/gateway.js';

const admin = { Authorization: `Bearer ${ADMIN_TOKEN}` };

test('GET /api/events: admin only; a snapshot, then the call as it begins, connects, reports quality and ends with its record', async (t) => {
  const tg = await startGateway();
  t.after(() => tg.stop());
  const refused = await fetch(`${tg.url}/api/events`);
  assert.equal(refused.status, 401);
  assert.equal(refused.headers.get('content-type'), 'application/problem+json');
  assert.match(((await refused.json()) as { detail: string }).detail, /Authorization: Bearer <admin token>/);

  const sse = readSse(`${tg.url}/api/events`, ADMIN_TOKEN);
  t.after(() => sse.abort());
  await waitFor('the snapshot', async () => sse.events.length > 0);
  assert.equal(sse.events[0]!.event, 'snapshot');
  assert.deepEqual(sse.events[0]!.data, { node: 'local', calls: [], fleet: [], recent: [] });
  await waitFor('a watcher', async () => tg.gw.monitor.watchers === 1);

  const pub = await publishConnected(`${tg.url}/whip`, SOURCE_TOKEN);
  pub.startRtp();
  const id = pub.location!.split('/').pop()!;
  await waitFor('a quality point', async () => sse.events.some((e) => e.event === 'quality' && (e.data as { id: string }).id === id), 8000);
  await waitFor('levels', async () => sse.events.some((e) => e.event === 'levels' && id in (e.data as { levels: object }).levels));
  // publishConnected may have retried (a libdatachannel client that failed is deleted, a fresh one
  // publishes): this call's events are the ones with its id.
  const sessions = sse.events.filter((e) => e.event === 'session').map((e) => (e.data as { session: { id: string; state: string; sessionKind: string } }).session).filter((s) => s.id === id);
  assert.deepEqual([...new Set(sessions.map((s) => s.state))], ['connecting', 'connected']);
  assert.equal(sessions[0]!.sessionKind, 'whip');
  const q = sse.events.find((e) => e.event === 'quality' && (e.data as { id: string }).id === id)!.data as { id: string; point: { t: number; mos: number } };
  assert.ok(q.point.t >= 4 && q.point.t <= 7, `the first point ~5 s into the call: ${q.point.t}`);

  assert.equal((await fetch(`${tg.url}/api/sessions/${id}`, { method: 'DELETE', headers: admin })).status, 200);
  await waitFor('ended', async () => sse.events.some((e) => e.event === 'ended' && (e.data as { id: string }).id === id));
  const ended = sse.events.find((e) => e.event === 'ended' && (e.data as { id: string }).id === id)!.data as { id: string; call: { reason: string; codec: string } };
  assert.deepEqual([ended.id, ended.call.reason, ended.call.codec], [id, 'admin', 'opus']);
  pub.close();

  // A second console starts from the snapshot: the call in its recent calls.
  const later = readSse(`${tg.url}/api/events`, ADMIN_TOKEN);
  t.after(() => later.abort());
  await waitFor('the second snapshot', async () => later.events.length > 0);
  const snap = later.events[0]!.data as { calls: unknown[]; recent: { id: string }[] };
  assert.deepEqual([snap.calls.length, snap.recent[0]!.id], [0, id]);
  sse.abort();
  later.abort();
  await waitFor('the watchers gone', async () => tg.gw.monitor.watchers === 0);
});

test('POST /api/sessions/:id/transfer: each refusal says what to send; a target that is not registered is 409 with the SIP status, audited', async (t) => {
  const tg = await startGateway({ sip: { domain: 'voxgate.test', users: [{ user: 'bob', password: 'bob-secret' }] } });
  t.after(() => tg.stop());
  const pub = await publishConnected(`${tg.url}/whip`, SOURCE_TOKEN);
  t.after(() => pub.close());
  pub.startRtp();
  const id = pub.location!.split('/').pop()!;
  const post = (body: string, headers: Record<string, string> = { ...admin, 'Content-Type': 'application/json' }, session = id) => fetch(`${tg.url}/api/sessions/${session}/transfer`, { method: 'POST', headers, body });
  const problem = async (res: Response) => ({ ...((await res.json()) as { detail: string; sipStatus?: number }), status: res.status, contentType: res.headers.get('content-type') });

  assert.equal((await post('{"to":"bob"}', { 'Content-Type': 'application/json' })).status, 401);
  const notJson = await problem(await post('to=bob', { ...admin, 'Content-Type': 'application/x-www-form-urlencoded' }));
  assert.equal(notJson.status, 415);
  assert.match(notJson.detail, /application\/json: send \{"to": "alice"\}/);
  const badField = await problem(await post('{"to":"bob","when":"now"}'));
  assert.deepEqual([badField.status, badField.contentType], [400, 'application/problem+json']);
  assert.match(badField.detail, /^Bad field when: send \{"to"/);
  assert.equal((await post('{"to":42}')).status, 400);
  assert.equal((await post('{"to":"bob"}', undefined, 'no-such-session')).status, 404);

  const refused = await problem(await post('{"to":"bob","timeoutSeconds":5}'));
  assert.equal(refused.status, 409);
  assert.equal(refused.sipStatus, 480);
  assert.match(refused.detail, /^The transfer to bob failed: 480 .*; the caller stays where they were\.$/);
  assert.equal(tg.gw.calls.get(id)?.state, 'connected', 'the call goes on with its agent');
  // The default agent may have said something first (its greeting); the transfer's two entries follow.
  const timeline = tg.gw.monitor.snapshot()[0]!.timeline.map((e) => e.event).filter((e) => e.type === 'transfer');
  assert.deepEqual(timeline.map((e) => [e.type, e.target, typeof e.result === 'string' ? e.result.slice(0, 10) : e.result]), [['transfer', 'bob', undefined], ['transfer', 'bob', 'failed (48']]);

  const audit = readFileSync(tg.auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; outcome: string; status?: number; target?: string });
  assert.ok(audit.some((r) => r.action === 'admin.session.transfer' && r.outcome === 'ok' && r.target === 'bob'), 'the act is audited');
  assert.ok(audit.some((r) => r.action === 'admin.session.transfer.post' && r.outcome === 'rejected' && r.status === 401), 'the stranger is audited');
});

test('a console left open does not hold the gateway up: stop ends its stream, the calls end with reason shutdown first', async (t) => {
  const tg = await startGateway();
  let stopped = false;
  t.after(() => (stopped ? undefined : tg.stop()));
  const pub = await publishConnected(`${tg.url}/whip`, SOURCE_TOKEN);
  t.after(() => pub.close());
  const sse = readSse(`${tg.url}/api/events`, ADMIN_TOKEN);
  t.after(() => sse.abort());
  await waitFor('the snapshot with the call', async () => ((sse.events[0]?.data as { calls?: unknown[] } | undefined)?.calls?.length ?? 0) === 1);
  const t0 = Date.now();
  await tg.stop();
  stopped = true;
  assert.ok(Date.now() - t0 < 8000, `stopped in ${Date.now() - t0} ms`);
  await sse.done; // the stream ended (the server closed it), it was not aborted
  const ended = sse.events.find((e) => e.event === 'ended')?.data as { call: { reason: string } } | undefined;
  assert.equal(ended?.call.reason, 'shutdown');
});
