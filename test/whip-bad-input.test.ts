/**
 * Bad input gets a clear 4xx (problem+json saying what to fix), is audited, and never
 * disturbs a live session running beside it.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { signJwt } from '../src/auth/source-auth.js';
import { publishConnected, type NdcPublisher } from './helpers/ndc-publisher.js';
import { adminSessions, captureLog, SOURCE_TOKEN, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { offerSdp, trickleFor, VIDEO_ONLY_OFFER } from './helpers/offers.js';

const JWT_SECRET = 'a-jwt-secret-of-at-least-32-characters!';
const auth = { Authorization: `Bearer ${SOURCE_TOKEN}` };

interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
}

async function problem(res: Response): Promise<Problem> {
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  const p = (await res.json()) as Problem;
  assert.equal(p.status, res.status);
  assert.ok(p.detail.length > 10, 'the detail says what to fix');
  return p;
}

describe('bad input never disturbs a live session', () => {
  let tg: TestGateway;
  let live: NdcPublisher;
  let liveId: string;
  let whip: string;
  const captured = captureLog();

  before(async () => {
    tg = await startGateway({ auth: { jwtSecret: JWT_SECRET } }, { log: captured.log });
    whip = `${tg.url}/whip`;
    live = await publishConnected(whip, SOURCE_TOKEN);
    live.startRtp();
    liveId = live.location!.split('/').pop()!;
  });

  after(async () => {
    // The live session kept receiving media through everything above, and is still connected.
    const before = (await adminSessions(tg.url)).find((s) => s.id === liveId)!;
    assert.equal(before.state, 'connected');
    await waitFor('the live session to keep receiving', async () => (await adminSessions(tg.url)).find((s) => s.id === liveId && s.packets > before.packets + 10));
    live.close();
    await tg.stop();
  });

  const post = (body: string, headers: Record<string, string> = {}) =>
    fetch(whip, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/sdp', ...headers }, body });

  test('a missing Content-Type gets 415', async () => {
    const res = await fetch(whip, { method: 'POST', headers: auth, body: offerSdp() });
    assert.equal(res.status, 415);
    assert.equal((await problem(res)).code, 'VG_HTTP_UNSUPPORTED_MEDIA_TYPE');
  });

  test('a wrong Content-Type gets 415', async () => {
    const res = await post(offerSdp(), { 'Content-Type': 'application/json' });
    assert.equal(res.status, 415);
    assert.match((await problem(res)).detail, /got application\/json/);
  });

  test('an empty body gets 400', async () => {
    const res = await post('');
    assert.equal(res.status, 400);
    assert.match((await problem(res)).detail, /empty/);
  });

  test('garbage instead of SDP gets 400 naming the line', async () => {
    for (const body of ['hello world', '\u0000\u0001binary', 'v=0\r\no=- 1 1 IN IP4 x\r\ns=-\r\nm=audio notaport RTP/AVP 0\r\n', 'v=1\r\n']) {
      const res = await post(body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal((await problem(res)).code, 'VG_SDP_MALFORMED');
    }
  });

  test('an SDP of 1 MB gets 413 before it is read', async () => {
    const huge = offerSdp() + 'a=x-padding:' + 'x'.repeat(1024 * 1024) + '\r\n';
    const res = await post(huge);
    assert.equal(res.status, 413);
    assert.match((await problem(res)).detail, /limit is 65536 bytes/);
  });

  test('a chunked SDP over the limit (no Content-Length) gets 413 too, answered and audited', async () => {
    const url = new URL(tg.url);
    const answer = await new Promise<string>((resolve, reject) => {
      const sock = connect(Number(url.port), url.hostname, () => {
        sock.write(`POST /whip HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${SOURCE_TOKEN}\r\nContent-Type: application/sdp\r\nTransfer-Encoding: chunked\r\n\r\n`);
        const chunk = 'x'.repeat(16 * 1024);
        for (let i = 0; i < 8; i++) sock.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
        sock.write('0\r\n\r\n');
      });
      let got = '';
      sock.on('data', (d) => (got += d.toString()));
      sock.on('close', () => resolve(got));
      sock.on('error', reject);
    });
    assert.match(answer, /^HTTP\/1\.1 413 /);
    assert.match(answer, /exceeds the limit of 65536 bytes/);
    const records = readFileSync(tg.auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; status?: number; remote?: string; reason?: string });
    const last = records.filter((r) => r.action === 'whip.post' && r.status === 413).at(-1);
    assert.match(last?.remote ?? '', /^127\.0\.0\.1:\d+$/, 'audited with the address it came from');
  });

  test('a client that leaves mid-body is an info line, not an error, and leaves nothing behind', async () => {
    const before = tg.gw.calls.size;
    const url = new URL(tg.url);
    await new Promise<void>((resolve) => {
      const sock = connect(Number(url.port), url.hostname, () => {
        sock.write(`POST /whip HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${SOURCE_TOKEN}\r\nContent-Type: application/sdp\r\nContent-Length: 5000\r\n\r\nv=0\r\n`);
        setTimeout(() => sock.destroy(), 50);
      });
      sock.on('close', () => resolve());
    });
    await waitFor('the info line', async () => captured.lines.some((l) => l.msg?.startsWith('the client closed the connection before its request body')));
    const line = captured.lines.find((l) => l.msg?.startsWith('the client closed the connection'))!;
    assert.equal(line.level, 30, 'info');
    assert.equal(captured.lines.filter((l) => l.msg === 'request handler failed').length, 0);
    assert.equal(tg.gw.calls.size, before);
  });

  test('a POST pipelined with a malformed request after it: the session whose answer could not be delivered ends at once', async () => {
    const before = tg.gw.calls.size;
    const url = new URL(tg.url);
    const sdp = offerSdp();
    await new Promise<void>((resolve) => {
      const sock = connect(Number(url.port), url.hostname, () => {
        sock.write(`POST /whip HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${SOURCE_TOKEN}\r\nContent-Type: application/sdp\r\nContent-Length: ${Buffer.byteLength(sdp)}\r\n\r\n${sdp}GARBAGE / HTTP/9\r\n\r\n`);
      });
      sock.on('data', () => undefined);
      sock.on('close', () => resolve());
      sock.on('error', () => undefined);
    });
    const created = readFileSync(tg.auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; outcome: string; session?: string }).filter((r) => r.action === 'whip.post' && r.outcome === 'ok').at(-1);
    await waitFor('the undelivered session gone', async () => tg.gw.calls.size === before, 3000);
    if (created?.session) assert.equal(tg.gw.calls.get(created.session), undefined);
  });

  test('ICE and DTLS attributes the stack would refuse get 400 naming the line, never 500', async () => {
    const base = offerSdp();
    const cases: [string, string, RegExp][] = [
      ['an empty ice-ufrag', base.replace('a=ice-ufrag:EsAw', 'a=ice-ufrag: '), /a=ice-ufrag must be 4 to 256/],
      ['a short ice-pwd', base.replace('a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1', 'a=ice-pwd:short'), /a=ice-pwd must be 22 to 256.*got 5 characters/],
      ['a payload type that is not a number', base.replace('a=rtpmap:111 opus/48000/2', 'a=rtpmap:111 opus/48000/2\r\na=fmtp:í 111'), /a=fmtp:í 111 does not start with a payload type/],
      ['a fingerprint that is not hex', base.replace(/a=fingerprint:sha-256 \S+/, 'a=fingerprint:sha-256 zz:yy'), /a=fingerprint:sha-256 zz:yy is not a hash function and its digest/],
      ['a sha-256 digest of 4 bytes', base.replace(/a=fingerprint:sha-256 \S+/, 'a=fingerprint:sha-256 8B:87:09:8A'), /RFC 8122/],
    ];
    for (const [what, sdp, detail] of cases) {
      const res = await post(sdp);
      assert.equal(res.status, 400, what);
      const p = await problem(res);
      assert.equal(p.type, 'urn:voxgate:error:VG_SDP_MALFORMED', what);
      assert.match(p.detail, detail, what);
    }
    // What our parser does not check and the stack refuses: 400 with the stack's reason.
    const refused = await post(`${base}a=ssrc:abc cname:x\r\n`);
    assert.equal(refused.status, 400);
    const p = await problem(refused);
    assert.equal(p.type, 'urn:voxgate:error:VG_SDP_REFUSED');
    assert.match(p.detail, /^The WebRTC stack refused the offer: .*Invalid integer "abc cname:x"/);
    assert.equal(captured.lines.filter((l) => l.level >= 50).length, 0, 'nothing at error level: these are the client\'s to fix');
  });

  test('a video-only offer gets 422', async () => {
    const res = await post(VIDEO_ONLY_OFFER);
    assert.equal(res.status, 422);
    assert.equal((await problem(res)).code, 'VG_SDP_NO_AUDIO');
  });

  test('an offer with only unsupported codecs gets 422 listing what is accepted', async () => {
    const res = await post(offerSdp({ codecs: [[18, 'G729/8000'], [97, 'iLBC/8000']] }));
    assert.equal(res.status, 422);
    const p = await problem(res);
    assert.match(p.detail, /g729\/8000, ilbc\/8000/);
    assert.match(p.detail, /opus\/48000, pcmu\/8000/);
  });

  test('a missing, wrong or expired token gets 401; a valid signed token is accepted', async () => {
    const none = await fetch(whip, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: offerSdp() });
    assert.equal(none.status, 401);
    assert.equal((await problem(none)).code, 'VG_AUTH_MISSING');
    const wrong = await post(offerSdp(), { Authorization: 'Bearer wrong-token-wrong-token' });
    assert.equal(wrong.status, 401);
    assert.equal((await problem(wrong)).code, 'VG_AUTH_INVALID');
    const expired = signJwt({ sub: 'browser-widget', exp: Math.floor(Date.now() / 1000) - 5 }, JWT_SECRET);
    const exp = await post(offerSdp(), { Authorization: `Bearer ${expired}` });
    assert.equal(exp.status, 401);
    assert.equal((await problem(exp)).code, 'VG_AUTH_EXPIRED');
    assert.match(exp.headers.get('www-authenticate')!, /error="invalid_token", error_description="The token has expired."/);
    const forged = signJwt({ sub: 'browser-widget', exp: Math.floor(Date.now() / 1000) + 60 }, 'another-secret-another-secret-another');
    assert.equal((await post(offerSdp(), { Authorization: `Bearer ${forged}` })).status, 401);
    const good = signJwt({ sub: 'browser-widget', exp: Math.floor(Date.now() / 1000) + 60 }, JWT_SECRET);
    // Connected first: a libdatachannel client that fails while connecting ends its session at once,
    // and the listing below would race that (a reversed-order run of the suite lost it once).
    const p = await publishConnected(whip, good);
    assert.equal(p.status, 201);
    assert.equal((await adminSessions(tg.url)).find((s) => p.location!.endsWith(s.id))?.source, 'browser-widget');
    p.close();
  });

  test('PATCH with a wrong content type gets 415', async () => {
    const res = await fetch(live.location!, { method: 'PATCH', headers: { ...auth, 'Content-Type': 'text/plain', 'If-Match': live.headers.get('etag')! }, body: trickleFor(live.offer) });
    assert.equal(res.status, 415);
    await problem(res);
  });

  test('PATCH and DELETE on unknown or already-deleted sessions get 404', async () => {
    const unknown = `${whip}/AAAAAAAAAAAAAAAAAAAAAA`;
    const p1 = await fetch(unknown, { method: 'PATCH', headers: { ...auth, 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': '"x"' }, body: trickleFor(live.offer) });
    assert.equal(p1.status, 404);
    assert.equal((await problem(p1)).code, 'VG_SESSION_NOT_FOUND');
    assert.equal((await fetch(unknown, { method: 'DELETE', headers: auth })).status, 404);
    // A hand-written offer: its session waits for ICE until DELETE, so nothing but the DELETE
    // can end it (a real client may close on its own and take the session with it).
    const offer = offerSdp();
    const created = await post(offer);
    assert.equal(created.status, 201);
    const location = new URL(created.headers.get('location')!, whip).href;
    assert.equal((await fetch(location, { method: 'DELETE', headers: auth })).status, 200);
    assert.equal((await fetch(location, { method: 'DELETE', headers: auth })).status, 404);
    const again = await fetch(location, { method: 'PATCH', headers: { ...auth, 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': created.headers.get('etag')! }, body: trickleFor(offer) });
    assert.equal(again.status, 404);
  });

  test('a malformed sdpfrag gets 400', async () => {
    const res = await fetch(live.location!, {
      method: 'PATCH',
      headers: { ...auth, 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': live.headers.get('etag')! },
      body: 'this is not an sdpfrag',
    });
    assert.equal(res.status, 400);
    assert.equal((await problem(res)).code, 'VG_TRICKLE_MALFORMED');
  });

  test('unknown paths get 404 and wrong methods 405 with Allow', async () => {
    assert.equal((await fetch(`${tg.url}/nope`)).status, 404);
    const res = await fetch(whip, { method: 'PUT', headers: auth, body: 'x' });
    assert.equal(res.status, 405);
    assert.match(res.headers.get('allow')!, /POST/);
  });

  test('every refusal above is in the audit log with its reason', () => {
    const records = readFileSync(tg.auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; outcome: string; reason?: string; status?: number });
    const reasons = new Set(records.filter((r) => r.outcome === 'rejected').map((r) => r.reason));
    for (const code of ['VG_HTTP_UNSUPPORTED_MEDIA_TYPE', 'VG_SDP_MALFORMED', 'VG_HTTP_BODY_TOO_LARGE', 'VG_SDP_NO_AUDIO', 'VG_SDP_NO_COMMON_CODEC', 'VG_AUTH_MISSING', 'VG_AUTH_INVALID', 'VG_AUTH_EXPIRED', 'VG_SESSION_NOT_FOUND', 'VG_TRICKLE_MALFORMED']) {
      assert.ok(reasons.has(code), `audit has a rejection for ${code}`);
    }
  });
});

describe('a storm of POSTs that never complete ICE', () => {
  test('200 sessions are all reclaimed by the idle timeout, audited, while a live one continues', async () => {
    const tg = await startGateway({ sources: [{ name: 'browser-widget', kind: 'browser', token: SOURCE_TOKEN }], idleTimeoutSeconds: 1.5, limits: { maxSessions: 300, requestsPerSecond: 1000, requestBurst: 1000 } });
    try {
      const live = await publishConnected(`${tg.url}/whip`, SOURCE_TOKEN);
      live.startRtp();
      const offer = offerSdp();
      const statuses = await Promise.all(
        Array.from({ length: 200 }, () => fetch(`${tg.url}/whip`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/sdp' }, body: offer }).then(async (r) => (await r.arrayBuffer(), r.status))),
      );
      // (Not counted here: on a busy machine the first idle ones may already be gone, 1.5 s on.)
      assert.deepEqual(new Set(statuses), new Set([201]));
      await waitFor('all 200 idle sessions to be reclaimed', async () => (await adminSessions(tg.url)).length === 1, 15_000);
      const remaining = await adminSessions(tg.url);
      assert.equal(remaining[0]!.id, live.location!.split('/').pop());
      const ended = readFileSync(tg.auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; reason?: string }).filter((r) => r.action === 'session.ended');
      assert.equal(ended.filter((r) => r.reason === 'idle-timeout').length, 200);
      const metrics = await (await fetch(`${tg.url}/metrics`)).text();
      assert.match(metrics, /voxgate_sessions_ended_total\{reason="idle-timeout"\} 200/);
      live.close();
    } finally {
      await tg.stop();
    }
  });
});
