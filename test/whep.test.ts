/** WHEP (draft-ietf-wish-whep) on the wire: the checklist rows, listener tokens, fan-out and teardown. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { listenConnected, listenWithNdc, publishConnected, publishWithNdc, readSse, type NdcListener, type NdcPublisher } from './helpers/ndc-publisher.js';
import { ADMIN_TOKEN, adminSessions, OTHER_TOKEN, SOURCE_TOKEN, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { offerSdp, trickleFor, VIDEO_ONLY_OFFER } from './helpers/offers.js';

const SUPERVISOR = 'supervisor-token-0123456789';
const QA = 'qa-tool-token-0123456789abc';
const NARROW = 'narrow-listener-token-012345';

function recvOffer(direction = 'recvonly', codecs: [number, string][] = [[111, 'opus/48000/2']]): string {
  return offerSdp({ codecs }).replace('a=sendonly', `a=${direction}`);
}

describe('WHEP', () => {
  let tg: TestGateway;
  let pub: NdcPublisher;
  let sid: string;
  let whep: string;

  before(async () => {
    tg = await startGateway({
      defaultAgent: 'echo',
      iceServers: [{ urls: 'stun:127.0.0.1:3478' }],
      listeners: [
        { name: 'supervisor', token: SUPERVISOR },
        { name: 'qa', token: QA, sources: ['browser-widget'] },
        { name: 'narrow', token: NARROW, sessions: ['AAAAAAAAAAAAAAAAAAAAAA'] },
      ],
    });
    pub = await publishConnected(`${tg.url}/whip`, SOURCE_TOKEN, { direction: 'SendRecv' });
    pub.startRtp();
    sid = pub.location!.split('/').pop()!;
    whep = `${tg.url}/whep/${sid}`;
    await waitFor('the call to be connected', () => tg.gw.calls.get(sid)?.state === 'connected');
  });
  after(async () => {
    pub?.close();
    await tg?.stop();
  });

  test('201 with a sendonly answer, absolute Location, ETag, ice-server and server-sent-events Links; the caller track is forwarded', async () => {
    const l = await listenConnected(`${whep}?track=caller`, SUPERVISOR);
    assert.equal(l.headers.get('content-type'), 'application/sdp');
    assert.match(l.location!, new RegExp(`^${whep}/[A-Za-z0-9_-]{22}$`));
    assert.match(l.headers.get('etag')!, /^"[^"]+"$/);
    assert.match(l.answer, /\r\na=sendonly\r\n/);
    const link = l.headers.get('link')!;
    assert.match(link, /<stun:127\.0\.0\.1:3478>; rel="ice-server"/);
    assert.match(link, new RegExp(`<${l.location}/events>; rel="urn:ietf:params:whep:ext:core:server-sent-events"; events="active,inactive,viewercount,quality,turn"`));
    await waitFor('forwarded caller packets', () => l.received.length > 20);
    // One continuous stream: our SSRC, consecutive sequence numbers, 960-tick timestamps.
    const pkts = l.received.slice(-10).map((b) => ({ ssrc: b.readUInt32BE(8), seq: b.readUInt16BE(2), ts: b.readUInt32BE(4), pt: b[1]! & 0x7f }));
    assert.equal(new Set(pkts.map((p) => p.ssrc)).size, 1);
    assert.notEqual(pkts[0]!.ssrc, 0);
    for (let i = 1; i < pkts.length; i++) {
      assert.equal(pkts[i]!.seq, (pkts[i - 1]!.seq + 1) & 0xffff);
      assert.equal((pkts[i]!.ts - pkts[i - 1]!.ts) >>> 0, 960);
    }
    const s = (await adminSessions(tg.url)).find((x) => x.id === sid) as unknown as { listeners: { name: string; track: string; forwarded: boolean }[] };
    assert.deepEqual(s.listeners.map((x) => [x.name, x.track, x.forwarded]), [['supervisor', 'caller', true]]);
    assert.equal((await fetch(l.location!, { method: 'DELETE', headers: { Authorization: `Bearer ${SUPERVISOR}` } })).status, 200);
    assert.equal((await fetch(l.location!, { method: 'DELETE', headers: { Authorization: `Bearer ${SUPERVISOR}` } })).status, 404);
    l.close();
  });

  test('the agent and mix tracks are encoded once per codec: a PCMU listener gets PCMU', async () => {
    const a = await listenConnected(`${whep}?track=agent`, SUPERVISOR, { codecs: 'pcmu' });
    const m = await listenConnected(`${whep}?track=mix`, SUPERVISOR, { codecs: 'pcmu' });
    assert.match(a.answer, /m=audio \d+ UDP\/TLS\/RTP\/SAVPF 0\r\n/);
    await waitFor('PCMU frames', () => a.received.length > 10 && m.received.length > 10);
    assert.ok(a.received.every((b) => (b[1]! & 0x7f) === 0 && b.length === 12 + 160), '20 ms of PCMU per packet');
    a.close();
    m.close();
  });

  test('listener tokens: none 401, unknown 401, outside its sources or sessions 403', async () => {
    assert.equal((await listenWithNdc(whep, undefined)).status, 401);
    assert.equal((await listenWithNdc(whep, 'not-a-listener-token-000')).status, 401);
    assert.equal((await listenWithNdc(whep, NARROW)).status, 403);
    assert.equal((await listenWithNdc(whep, SOURCE_TOKEN)).status, 401, 'a source token is not a listener token');
    const other = await publishConnected(`${tg.url}/whip`, OTHER_TOKEN, { direction: 'SendRecv' });
    await waitFor('the other call', () => tg.gw.calls.get(other.location!.split('/').pop()!)?.state === 'connected');
    const qaOther = await listenWithNdc(`${tg.url}/whep/${other.location!.split('/').pop()}`, QA);
    assert.equal(qaOther.status, 403);
    assert.match(JSON.parse(qaOther.answer).detail, /source 'ward-7-mic'/);
    const qaOwn = await listenWithNdc(whep, QA);
    assert.equal(qaOwn.status, 201);
    const admin = await listenWithNdc(`${tg.url}/whep/${other.location!.split('/').pop()}`, ADMIN_TOKEN);
    assert.equal(admin.status, 201, 'the admin token hears everything');
    for (const x of [qaOwn, admin, qaOther]) x.close();
    other.close();
    const audit = readFileSync(tg.auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; source: string; outcome: string; status: number });
    assert.ok(audit.some((r) => r.action === 'whep.post' && r.source === 'qa' && r.status === 403));
    assert.ok(audit.some((r) => r.action === 'whep.post' && r.source === 'qa' && r.status === 201));
  });

  test('404 for a session id that never existed and once it has ended (409 is for one not live yet: the unit tests)', async () => {
    const unknown = await fetch(`${tg.url}/whep/BBBBBBBBBBBBBBBBBBBBBB`, { method: 'POST', headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${SUPERVISOR}` }, body: recvOffer() });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.headers.get('retry-after'), null);
    assert.equal((await fetch(`${tg.url}/whep/BBBBBBBBBBBBBBBBBBBBBB`, { method: 'HEAD' })).status, 404);
    const p = await publishWithNdc(`${tg.url}/whip`, SOURCE_TOKEN);
    const id = p.location!.split('/').pop()!;
    await fetch(p.location!, { method: 'DELETE', headers: { Authorization: `Bearer ${SOURCE_TOKEN}` } });
    p.close();
    const ended = await fetch(`${tg.url}/whep/${id}`, { method: 'POST', headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${SUPERVISOR}` }, body: recvOffer() });
    assert.equal(ended.status, 404);
    assert.equal((await fetch(`${tg.url}/whep/${id}`, { method: 'HEAD' })).status, 404);
    assert.equal((await fetch(whep, { method: 'HEAD' })).status, 200);
  });

  test('bad offers: sendonly, video-only, no common codec get 422; wrong content type 415', async () => {
    const post = (body: string, type = 'application/sdp') => fetch(whep, { method: 'POST', headers: { 'Content-Type': type, Authorization: `Bearer ${SUPERVISOR}` }, body });
    const cases: [Response, number, string][] = [
      [await post(recvOffer('sendonly')), 422, 'VG_SDP_BAD_DIRECTION'],
      [await post(VIDEO_ONLY_OFFER.replace('a=sendonly', 'a=recvonly')), 422, 'VG_SDP_NO_AUDIO'],
      [await post(recvOffer('recvonly', [[18, 'G729/8000']])), 422, 'VG_SDP_NO_COMMON_CODEC'],
      [await post(recvOffer(), 'text/plain'), 415, 'VG_HTTP_UNSUPPORTED_MEDIA_TYPE'],
    ];
    for (const [res, status, code] of cases) {
      assert.equal(res.status, status);
      assert.equal(((await res.json()) as { code: string }).code, code);
    }
    const bad = await fetch(`${whep}?track=both`, { method: 'POST', headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${SUPERVISOR}` }, body: recvOffer() });
    assert.equal(bad.status, 422);
  });

  test('OPTIONS, GET and trickle PATCH rules (204, 428, 412, 422 restart, 415)', async () => {
    const opt = await fetch(whep, { method: 'OPTIONS' });
    assert.equal(opt.status, 204);
    assert.equal(opt.headers.get('accept-post'), 'application/sdp');
    const pre = await fetch(whep, { method: 'OPTIONS', headers: { Origin: 'https://qa.example', 'Access-Control-Request-Method': 'POST' } });
    assert.equal(pre.headers.get('access-control-allow-origin'), '*');
    assert.equal((await fetch(whep)).status, 204);
    const l = await listenWithNdc(whep, SUPERVISOR);
    const h = { Authorization: `Bearer ${SUPERVISOR}`, 'Content-Type': 'application/trickle-ice-sdpfrag' };
    const patch = (headers: Record<string, string>, body = trickleFor(l.offer)) => fetch(l.location!, { method: 'PATCH', headers, body });
    assert.equal((await patch({ ...h, 'If-Match': l.headers.get('etag')! })).status, 204);
    assert.equal((await patch(h)).status, 428);
    assert.equal((await patch({ ...h, 'If-Match': '"stale"' })).status, 412);
    assert.equal((await patch({ ...h, 'If-Match': '*' })).status, 422);
    assert.equal((await patch({ ...h, 'Content-Type': 'text/plain', 'If-Match': l.headers.get('etag')! })).status, 415);
    assert.equal((await fetch(l.location!)).status, 204);
    l.close();
  });
});

describe('WHEP fan-out and teardown', () => {
  test('20 listeners on one session; when the publisher ends, all get inactive and are freed', async () => {
    const tg = await startGateway({ defaultAgent: 'echo', listeners: [{ name: 'wall', token: SUPERVISOR }] });
    try {
      const pub = await publishConnected(`${tg.url}/whip`, SOURCE_TOKEN, { direction: 'SendRecv' });
      pub.startRtp();
      const sid = pub.location!.split('/').pop()!;
      await waitFor('connected', () => tg.gw.calls.get(sid)?.state === 'connected');
      const tracks = ['caller', 'agent', 'mix'];
      const listeners: NdcListener[] = [];
      for (let i = 0; i < 20; i++) listeners.push(await listenConnected(`${tg.url}/whep/${sid}?track=${tracks[i % 3]}`, SUPERVISOR));
      const streams = listeners.map((l) => readSse(`${l.location}/events`, SUPERVISOR));
      await waitFor('every listener to receive audio', () => listeners.every((l) => l.received.length > 5));
      await waitFor('viewercount 20 on the streams', () => streams.every((s) => s.events.some((e) => e.event === 'viewercount' && (e.data as { viewercount: number }).viewercount === 20)));
      assert.ok(streams.every((s) => s.events[0]!.event === 'active'));

      assert.equal((await fetch(pub.location!, { method: 'DELETE', headers: { Authorization: `Bearer ${SOURCE_TOKEN}` } })).status, 200);
      await Promise.all(streams.map((s) => s.done));
      assert.ok(streams.every((s) => s.events.some((e) => e.event === 'inactive')), 'every listener got inactive');
      assert.equal(tg.gw.whep.resources.size, 0);
      assert.deepEqual(await adminSessions(tg.url), []);
      for (const l of listeners) assert.equal((await fetch(l.location!)).status, 404);
      for (const l of listeners) l.close();
      pub.close();
    } finally {
      await tg.stop();
    }
  });
});
