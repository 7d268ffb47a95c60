/**
 * One test per row of ../shared/specs/whip-whep.md that applies to WHIP, checked on the wire
 * against a real WebRTC publisher (libdatachannel) or with raw HTTP where no peer is needed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { publishConnected, publishWithNdc, type NdcPublisher } from './helpers/ndc-publisher.js';
import { adminSessions, OTHER_TOKEN, SOURCE_TOKEN, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { offerSdp, trickleFor, VIDEO_ONLY_OFFER } from './helpers/offers.js';

const auth = { Authorization: `Bearer ${SOURCE_TOKEN}` };

describe('WHIP checklist (RFC 9725) on the wire', () => {
  let tg: TestGateway;
  let pub: NdcPublisher;
  let whip: string;

  before(async () => {
    tg = await startGateway({
      iceServers: [
        { urls: 'stun:127.0.0.1:3478' },
        { urls: ['turn:127.0.0.1:3478?transport=udp'], secret: 'turn-shared-secret', ttlSeconds: 600 },
      ],
    });
    whip = `${tg.url}/whip`;
    pub = await publishConnected(whip, SOURCE_TOKEN);
    pub.startRtp();
  });
  after(async () => {
    pub?.close();
    await tg?.stop();
  });

  test('row 1: POST with another Content-Type gets 415, a malformed SDP gets 400, both as problem+json', async () => {
    const r1 = await fetch(whip, { method: 'POST', headers: { ...auth, 'Content-Type': 'text/plain' }, body: offerSdp() });
    assert.equal(r1.status, 415);
    assert.equal(r1.headers.get('content-type'), 'application/problem+json');
    assert.equal(r1.headers.get('accept-post'), 'application/sdp');
    assert.match(((await r1.json()) as { detail: string }).detail, /Content-Type: application\/sdp/);
    const r2 = await fetch(whip, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/sdp' }, body: 'v=0\r\nthis is not sdp\r\n' });
    assert.equal(r2.status, 400);
    const p = (await r2.json()) as { code: string; detail: string };
    assert.equal(p.code, 'VG_SDP_MALFORMED');
    assert.match(p.detail, /line 2/);
  });

  test('row 2: success is 201 with an application/sdp answer and an absolute Location', () => {
    assert.equal(pub.status, 201);
    assert.equal(pub.headers.get('content-type'), 'application/sdp');
    assert.match(pub.location!, new RegExp(`^${tg.url}/whip/[A-Za-z0-9_-]{22}$`));
    assert.match(pub.answer, /^v=0\r\n/);
  });

  test('row 3: the answer to a sendonly offer is recvonly, with only the chosen codec', () => {
    assert.match(pub.answer, /\r\na=recvonly\r\n/);
    assert.match(pub.answer, /\r\nm=audio \d+ UDP\/TLS\/RTP\/SAVPF 111\r\n/);
    assert.doesNotMatch(pub.answer, /a=rtpmap:(?!111 )/);
  });

  test('row 5: GET on the endpoint and on a session answers 2xx with no content', async () => {
    const r1 = await fetch(whip);
    assert.equal(r1.status, 204);
    assert.equal(await r1.text(), '');
    const r2 = await fetch(pub.location!);
    assert.equal(r2.status, 204);
  });

  test('row 6: a CORS preflight works and carries no Link; plain OPTIONS advertises Accept-Post', async () => {
    const pre = await fetch(whip, {
      method: 'OPTIONS',
      headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type' },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), '*');
    assert.match(pre.headers.get('access-control-allow-methods')!, /POST/);
    assert.match(pre.headers.get('access-control-allow-headers')!, /Authorization/);
    assert.equal(pre.headers.get('link'), null);
    const plain = await fetch(whip, { method: 'OPTIONS' });
    assert.equal(plain.status, 204);
    assert.equal(plain.headers.get('accept-post'), 'application/sdp');
    assert.match(plain.headers.get('allow')!, /POST/);
  });

  test('row 7: the 201 carries ice-server Links in RFC 8288 syntax with TURN credentials minted for the session', () => {
    const links = pub.headers.get('link')!.split(/,\s*(?=<)/);
    assert.equal(links.length, 2);
    assert.equal(links[0], '<stun:127.0.0.1:3478>; rel="ice-server"');
    const m = /^<turn:127\.0\.0\.1:3478\?transport=udp>; rel="ice-server"; username="(\d+):([A-Za-z0-9_-]{22})"; credential="([A-Za-z0-9+/=]+)"; credential-type="password"$/.exec(links[1]!);
    assert.ok(m, links[1]);
    assert.equal(m[2], pub.location!.split('/').pop());
    assert.ok(Number(m[1]) > Date.now() / 1000 + 500, 'credentials expire after the configured ttl');
  });

  test('row 8: PATCH with another content type gets 415', async () => {
    const r = await fetch(pub.location!, { method: 'PATCH', headers: { ...auth, 'Content-Type': 'application/sdp', 'If-Match': pub.headers.get('etag')! }, body: trickleFor(pub.offer) });
    assert.equal(r.status, 415);
    assert.equal(r.headers.get('accept-patch'), 'application/trickle-ice-sdpfrag');
  });

  test('rows 9 and 13: an ICE restart gets 422 and the session lives on, still receiving media', async () => {
    const before = (await adminSessions(tg.url)).find((s) => pub.location!.endsWith(s.id))!.packets;
    const r = await fetch(pub.location!, {
      method: 'PATCH',
      headers: { ...auth, 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': '*' },
      body: 'a=ice-ufrag:newU\r\na=ice-pwd:newpasswordnewpassword12\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n',
    });
    assert.equal(r.status, 422);
    assert.equal(((await r.json()) as { code: string }).code, 'VG_ICE_RESTART_UNSUPPORTED');
    await waitFor('more packets after the refused restart', async () => (await adminSessions(tg.url)).find((s) => pub.location!.endsWith(s.id) && s.packets > before + 10));
  });

  test('row 10: a strong ETag on the 201; trickle PATCH without If-Match gets 428, a stale one 412', async () => {
    assert.match(pub.headers.get('etag')!, /^"[A-Za-z0-9_-]+"$/);
    const headers = { ...auth, 'Content-Type': 'application/trickle-ice-sdpfrag' };
    const r1 = await fetch(pub.location!, { method: 'PATCH', headers, body: trickleFor(pub.offer) });
    assert.equal(r1.status, 428);
    const r2 = await fetch(pub.location!, { method: 'PATCH', headers: { ...headers, 'If-Match': '"stale"' }, body: trickleFor(pub.offer) });
    assert.equal(r2.status, 412);
  });

  test('row 11: a trickle PATCH gets 204 with no body; candidates it cannot use are dropped silently', async () => {
    const body = [
      ...trickleFor(pub.offer, false).trim().split('\r\n'),
      'a=candidate:1 1 udp 2122260223 4b1d7a36-0000-4000-8000-000000000000.local 51000 typ host',
      'a=candidate:garbage',
      'a=candidate:2 1 udp 2122260223 127.0.0.1 51001 typ host',
      'a=end-of-candidates',
    ].join('\r\n');
    const r = await fetch(pub.location!, {
      method: 'PATCH',
      headers: { ...auth, 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': pub.headers.get('etag')! },
      body,
    });
    assert.equal(r.status, 204);
    assert.equal(await r.text(), '');
  });

  test('rows 12 and 16: the answer is complete (host candidate, end-of-candidates), bundled and rtcp-muxed', () => {
    assert.match(pub.answer, /a=candidate:\S+ 1 UDP \d+ 127\.0\.0\.1 \d+ typ host/);
    assert.match(pub.answer, /a=end-of-candidates/);
    assert.match(pub.answer, /a=group:BUNDLE 0/);
    assert.match(pub.answer, /a=rtcp-mux/);
    assert.match(pub.answer, /a=fingerprint:sha-256 /);
  });

  test('row 14: DELETE answers 200 and frees the session; the UDP port keeps serving', async () => {
    const p2 = await publishConnected(whip, SOURCE_TOKEN);
    const id = p2.location!.split('/').pop()!;
    const del = await fetch(p2.location!, { method: 'DELETE', headers: auth });
    assert.equal(del.status, 200);
    assert.ok(!(await adminSessions(tg.url)).some((s) => s.id === id));
    assert.equal((await fetch(p2.location!)).status, 404);
    p2.close();
    const p3 = await publishConnected(whip, SOURCE_TOKEN);
    p3.startRtp();
    await waitFor('RTP from a new session', async () => (await adminSessions(tg.url)).find((s) => p3.location!.endsWith(s.id) && s.packets > 5));
    p3.close();
  });

  test('row 15: a publisher that goes away without DELETE is noticed and its session ended', async () => {
    const p = await publishConnected(whip, SOURCE_TOKEN);
    const id = p.location!.split('/').pop()!;
    p.close();
    await waitFor('the session to end', async () => !(await adminSessions(tg.url)).some((s) => s.id === id), 40_000);
  });

  test('row 17: two audio tracks, a video-only offer or unsupported codecs get 422 with what we accept, and allocate nothing', async () => {
    const count = (await adminSessions(tg.url)).length;
    for (const [body, code] of [
      [offerSdp({ audioTracks: 2 }), 'VG_SDP_TOO_MANY_AUDIO'],
      [VIDEO_ONLY_OFFER, 'VG_SDP_NO_AUDIO'],
      [offerSdp({ codecs: [[9, 'G722/8000'], [18, 'G729/8000']] }), 'VG_SDP_NO_COMMON_CODEC'],
    ] as const) {
      const r = await fetch(whip, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/sdp' }, body });
      assert.equal(r.status, 422, code);
      const p = (await r.json()) as { code: string; accepted: string[] };
      assert.equal(p.code, code);
      assert.deepEqual(p.accepted, ['opus/48000', 'pcmu/8000']);
    }
    assert.equal((await adminSessions(tg.url)).length, count);
  });

  test('a source whose policy allows PCMU gets PCMU when that is all it offers', async () => {
    const p = await publishWithNdc(whip, SOURCE_TOKEN, { codecs: 'pcmu' });
    assert.equal(p.status, 201);
    assert.match(p.answer, /m=audio \d+ UDP\/TLS\/RTP\/SAVPF 0\r\n/);
    await p.connected;
    p.close();
  });

  test('row 20: a missing token gets 401 with WWW-Authenticate: Bearer; a wrong one says invalid_token', async () => {
    const r1 = await fetch(whip, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: offerSdp() });
    assert.equal(r1.status, 401);
    assert.equal(r1.headers.get('www-authenticate'), 'Bearer realm="voxgate"');
    const r2 = await fetch(whip, { method: 'POST', headers: { Authorization: 'Bearer not-a-real-token-000000', 'Content-Type': 'application/sdp' }, body: offerSdp() });
    assert.equal(r2.status, 401);
    assert.match(r2.headers.get('www-authenticate')!, /^Bearer realm="voxgate", error="invalid_token"/);
  });

  test('PATCH and DELETE by another source are refused with 403', async () => {
    const r = await fetch(pub.location!, { method: 'DELETE', headers: { Authorization: `Bearer ${OTHER_TOKEN}` } });
    assert.equal(r.status, 403);
    assert.ok((await adminSessions(tg.url)).some((s) => pub.location!.endsWith(s.id)));
  });

  test('row 23: session URLs carry 128 random bits', () => {
    const id = pub.location!.split('/').pop()!;
    assert.equal(Buffer.from(id, 'base64url').length, 16);
  });

  test('HEAD on the endpoint is a capabilities probe: 200 with Accept-Post', async () => {
    const r = await fetch(whip, { method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('accept-post'), 'application/sdp');
  });
});

describe('WHIP limits and load-balancer mode', () => {
  test('row 19: at capacity a POST gets 503 with Retry-After; over a source limit 429', async () => {
    const tg = await startGateway({ limits: { maxSessions: 1, requestsPerSecond: 1000, requestBurst: 1000, retryAfterSeconds: 7 } });
    try {
      const p = await publishWithNdc(`${tg.url}/whip`, OTHER_TOKEN);
      assert.equal(p.status, 201);
      const r = await fetch(`${tg.url}/whip`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/sdp' }, body: offerSdp() });
      assert.equal(r.status, 503);
      assert.equal(r.headers.get('retry-after'), '7');
      assert.equal((await fetch(`${tg.url}/whip`, { method: 'HEAD' })).status, 503);
      p.close();
    } finally {
      await tg.stop();
    }
    const tg2 = await startGateway();
    try {
      // ward-7-mic may hold 2 sessions.
      const a = await publishWithNdc(`${tg2.url}/whip`, OTHER_TOKEN);
      const b = await publishWithNdc(`${tg2.url}/whip`, OTHER_TOKEN);
      const c = await fetch(`${tg2.url}/whip`, { method: 'POST', headers: { Authorization: `Bearer ${OTHER_TOKEN}`, 'Content-Type': 'application/sdp' }, body: offerSdp() });
      assert.deepEqual([a.status, b.status, c.status], [201, 201, 429]);
      assert.equal(((await c.json()) as { code: string }).code, 'VG_SOURCE_SESSION_LIMIT');
      a.close();
      b.close();
    } finally {
      await tg2.stop();
    }
  });

  test('row 18: load-balancer mode redirects POSTs with 307 only, round robin', async () => {
    const tg = await startGateway({ redirect: { targets: ['http://127.0.0.1:1/whip', 'http://127.0.0.2:1/whip'] } });
    try {
      const statuses: [number, string | null][] = [];
      for (let i = 0; i < 3; i++) {
        const r = await fetch(`${tg.url}/whip`, { method: 'POST', redirect: 'manual', headers: { ...auth, 'Content-Type': 'application/sdp' }, body: offerSdp() });
        statuses.push([r.status, r.headers.get('location')]);
      }
      assert.deepEqual(statuses, [
        [307, 'http://127.0.0.1:1/whip'],
        [307, 'http://127.0.0.2:1/whip'],
        [307, 'http://127.0.0.1:1/whip'],
      ]);
    } finally {
      await tg.stop();
    }
  });

  test('row 23: POSTs beyond the rate limit get 429 with Retry-After', async () => {
    const tg = await startGateway({ limits: { requestsPerSecond: 1, requestBurst: 3 } });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) {
        const r = await fetch(`${tg.url}/whip`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: offerSdp() });
        statuses.push(r.status);
        if (r.status === 429) assert.ok(Number(r.headers.get('retry-after')) >= 1);
      }
      assert.deepEqual(statuses, [401, 401, 401, 429, 429]);
    } finally {
      await tg.stop();
    }
  });
});
