import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { ListenerAuthenticator } from '../auth/listener-auth.js';
import type { SourceIdentity } from '../auth/source-auth.js';
import { Call } from '../call/call.js';
import { startCall } from '../call/start-call.js';
import { isVoxgateError } from '../core/errors.js';
import { newSessionId } from '../core/ids.js';
import { parseRtp, serializeRtp } from '../rtp/packet.js';
import { planAnswer } from '../sdp/codec-policy.js';
import { parseSdp } from '../sdp/sdp.js';
import { callWorld } from '../testing/calls.js';
import { HeldTransportFactory, settle } from '../testing/sip-calls.js';
import { FakeTransportFactory } from '../transport/fake.js';
import type { EndpointReply, EndpointRequest } from '../wish/resource.js';
import { SSE_EXTENSION, WhepEndpoint } from './whep-endpoint.js';

const NURSE = 'nurse-token-0123456789abcdef';
const SUPERVISOR = 'supervisor-token-0123456789ab';
const OTHER_WARD = 'other-ward-token-0123456789ab';
const ONE_SESSION = 'one-session-token-0123456789';
const ADMIN = 'admin-token-0123456789abcdef';
const BASE = 'https://gw.example.net:8443';
const IDLE_MS = 30_000;
const FINGERPRINT = 'a=fingerprint:sha-256 8B:87:09:8A:5D:C2:F3:33:EF:C5:B1:F6:84:3A:3D:D6:A3:E2:9C:17:4C:E7:46:3B:1B:CE:84:98:DD:8E:AF:7B';
const OPUS: [number, string] = [111, 'opus/48000/2'];
const PCMU: [number, string] = [0, 'PCMU/8000'];

/** A WebRTC offer with one audio section: a WHEP player's (recvonly) unless told otherwise. */
function offer(o: { codecs?: [number, string][]; direction?: 'recvonly' | 'sendonly' | 'sendrecv' } = {}): string {
  const codecs = o.codecs ?? [OPUS];
  return [
    'v=0',
    'o=- 7 2 IN IP4 127.0.0.1',
    's=-',
    't=0 0',
    'a=group:BUNDLE 0',
    FINGERPRINT,
    'a=ice-ufrag:PlAy',
    'a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1',
    `m=audio 9 UDP/TLS/RTP/SAVPF ${codecs.map((c) => c[0]).join(' ')}`,
    'c=IN IP4 0.0.0.0',
    'a=mid:0',
    `a=${o.direction ?? 'recvonly'}`,
    'a=rtcp-mux',
    'a=setup:actpass',
    ...codecs.map(([pt, name]) => `a=rtpmap:${pt} ${name}`),
    '',
  ].join('\r\n');
}

function request(o: { token?: string | null; type?: string | null; body?: string; ifMatch?: string } = {}): EndpointRequest {
  const headers: EndpointRequest['headers'] = {};
  if (o.token !== null) headers.authorization = `Bearer ${o.token ?? NURSE}`;
  if (o.type !== null) headers['content-type'] = o.type ?? 'application/sdp';
  if (o.ifMatch !== undefined) headers['if-match'] = o.ifMatch;
  return { headers, body: Buffer.from(o.body ?? offer()), remote: '203.0.113.9:41000', baseUrl: BASE };
}

function sdpfrag(candidates: string[], ufrag = 'PlAy'): string {
  return [`a=ice-ufrag:${ufrag}`, 'a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1', 'm=audio 9 UDP/TLS/RTP/SAVPF 0', 'a=mid:0', ...candidates.map((c) => `a=${c}`), ''].join('\r\n');
}

function problemCode(reply: EndpointReply): string {
  assert.equal(reply.headers['Content-Type'], 'application/problem+json');
  return (JSON.parse(reply.body!) as { code: string }).code;
}

/** The VoxgateError code a call throws. */
function thrownCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isVoxgateError(err)) return err.code;
    throw err;
  }
  assert.fail('nothing was thrown');
}


const WARD_7: SourceIdentity = { name: 'ward-7', kind: 'iot', agent: undefined, codecs: ['opus', 'pcmu'], maxSessions: undefined, via: 'token' };

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const close of cleanups.splice(0)) close();
});

function harness() {
  const w = callWorld({ idleTimeoutMs: IDLE_MS, name: 'whep' });
  const { clock, calls, directory, audit, callDeps } = w;
  /** The publishers' media; `transports` is the listeners'. */
  const publishers = new FakeTransportFactory();
  publishers.connect = false;
  const transports = new HeldTransportFactory();
  transports.connect = false;
  const auth = new ListenerAuthenticator(
    [
      { name: 'nurse', token: NURSE, sources: ['ward-7'] },
      { name: 'supervisor', token: SUPERVISOR },
      { name: 'other-ward', token: OTHER_WARD, sources: ['ward-9'] },
      { name: 'one-session', token: ONE_SESSION, sessions: ['a-session-it-may-hear'] },
    ],
    ADMIN,
  );
  const whep = new WhepEndpoint({
    directory,
    calls,
    auth,
    audit,
    clock,
    log: w.log,
    transports,
    iceServers: [{ urls: 'stun:stun.example.net:3478', ttlSeconds: 86400 }],
    retryAfterSeconds: 3,
  });
  cleanups.push(() => w.close());
  return {
    ...w,
    transports,
    whep,
    /** A publisher of ward-7 calls the agent (as WHIP would); connected unless told otherwise. */
    async publish(o: { codec?: 'opus' | 'pcmu'; connected?: boolean } = {}) {
      const codec = o.codec ?? 'opus';
      const sdp = offer({ codecs: [codec === 'opus' ? OPUS : PCMU], direction: 'sendonly' });
      const plan = planAnswer(parseSdp(sdp), { codecs: [codec], allowSendRecv: true, role: 'ingest' });
      const started = await startCall(callDeps, { source: WARD_7, kind: 'whip', plan, signalingRemote: '198.51.100.7:50123', open: (id, out) => publishers.answer(id, sdp, plan, out) });
      const transport = publishers.made.at(-1)!;
      if (o.connected !== false) {
        transport.connect();
        started.call.markConnected();
      }
      await settle(); // the directory has the claim (and the connect)
      return { call: started.call, id: started.call.id, transport };
    },
    /** A listener's POST that must be answered 201: its resource, reply and transport. */
    async listen(sessionId: string, track: string | null = 'mix', o: Parameters<typeof request>[0] = {}) {
      const reply = await whep.post(sessionId, track, request(o));
      assert.equal(reply.status, 201, reply.body);
      const id = String(reply.headers.Location).split('/').at(-1)!;
      const transport = transports.made.at(-1)!;
      transport.connect();
      return { reply, id, etag: String(reply.headers.ETag), transport, resource: whep.resources.get(id)! };
    },
  };
}

describe('WHEP POST: which sessions can be heard', () => {
  test('a missing, unknown or scheme-less listener token is 401 with a Bearer challenge saying which', async () => {
    const h = harness();
    const { id } = await h.publish();
    const missing = await h.whep.post(id, 'mix', request({ token: null }));
    assert.equal(missing.status, 401);
    assert.equal(problemCode(missing), 'VG_AUTH_MISSING');
    assert.equal(missing.headers['WWW-Authenticate'], 'Bearer realm="voxgate"');
    const unknown = await h.whep.post(id, 'mix', request({ token: 'not-a-listener-token-at-all' }));
    assert.equal(unknown.status, 401);
    assert.equal(problemCode(unknown), 'VG_AUTH_INVALID');
    const raw = request();
    raw.headers.authorization = NURSE; // the key without its scheme, as some players send it
    const noScheme = await h.whep.post(id, 'mix', raw);
    assert.equal(noScheme.status, 401);
    assert.match((JSON.parse(noScheme.body!) as { detail: string }).detail, /^The Authorization header must be "Bearer <listener token>" \(RFC 6750\); it has no scheme: put "Bearer " before the token\.$/);
    assert.deepEqual(
      h.auditLines().map((l) => [l.action, l.outcome, l.status, l.source, l.sourceKind, l.session]),
      [
        ['whep.post', 'rejected', 401, null, null, id],
        ['whep.post', 'rejected', 401, null, null, id],
        ['whep.post', 'rejected', 401, null, null, id],
      ],
    );
  });

  test('a track other than caller, agent or mix is 422 naming the tracks', async () => {
    const h = harness();
    const { id } = await h.publish();
    const reply = await h.whep.post(id, 'video', request());
    assert.equal(reply.status, 422);
    assert.equal(problemCode(reply), 'VG_SDP_BAD_DIRECTION');
    assert.match(JSON.parse(reply.body!).detail, /caller, agent, mix.*got 'video'/);
    assert.equal(h.transports.made.length, 0);
  });

  test('a session id that never existed is 404 without Retry-After (a 409 had clients retry for ever)', async () => {
    const h = harness();
    const reply = await h.whep.post(newSessionId(), 'mix', request());
    assert.equal(reply.status, 404);
    assert.equal(problemCode(reply), 'VG_SESSION_NOT_FOUND');
    assert.equal(reply.headers['Retry-After'], undefined);
    assert.match(JSON.parse(reply.body!).detail, /^There is no session \S+: check the id/);
  });

  test('a session still connecting is 409 with Retry-After, and the same listener gets in once it is live', async () => {
    const h = harness();
    const { id, call, transport } = await h.publish({ connected: false });
    const early = await h.whep.post(id, 'mix', request());
    assert.equal(early.status, 409);
    assert.equal(early.headers['Retry-After'], '3');
    transport.connect();
    call.markConnected();
    assert.equal((await h.whep.post(id, 'mix', request())).status, 201);
  });

  test('a live call with no caller leg is 409 with Retry-After', async () => {
    const h = harness();
    const call = new Call(newSessionId(), WARD_7, h.clock, IDLE_MS);
    h.calls.add(call);
    call.markConnected();
    const reply = await h.whep.post(call.id, 'mix', request());
    assert.equal(reply.status, 409);
    assert.match(JSON.parse(reply.body!).detail, /no caller yet/);
    assert.equal(reply.headers['Retry-After'], '3');
  });

  test("an ended session is 404 while the directory keeps its tombstone, and still 404 once it has forgotten it", async () => {
    const h = harness();
    const { id, call } = await h.publish();
    call.close('deleted');
    await settle(); // the release reaches the directory
    assert.equal((await h.directory.lookup(id))?.state, 'ended');
    const reply = await h.whep.post(id, 'mix', request());
    assert.equal(reply.status, 404);
    assert.equal(problemCode(reply), 'VG_SESSION_NOT_FOUND');
    // The tombstone's source still decides who may be told: another ward's listener is 403, not 404.
    assert.equal((await h.whep.post(id, 'mix', request({ token: OTHER_WARD }))).status, 403);
    h.clock.advance(10 * 60_000);
    assert.equal((await h.whep.post(id, 'mix', request())).status, 404);
  });

  test('a listener outside its sources or its sessions is 403; an unrestricted one and the admin get in', async () => {
    const h = harness();
    const { id, call } = await h.publish();
    const otherWard = await h.whep.post(id, 'mix', request({ token: OTHER_WARD }));
    assert.equal(otherWard.status, 403);
    assert.equal(problemCode(otherWard), 'VG_AUTH_FORBIDDEN');
    assert.match(JSON.parse(otherWard.body!).detail, /source 'ward-7'/);
    const oneSession = await h.whep.post(id, 'mix', request({ token: ONE_SESSION }));
    assert.equal(oneSession.status, 403);
    assert.match(JSON.parse(oneSession.body!).detail, new RegExp(`session ${id}`));
    assert.equal(h.transports.made.length, 0);
    await h.listen(id, 'mix', { token: SUPERVISOR });
    await h.listen(id, 'mix', { token: ADMIN });
    assert.equal(call.listeners().length, 2);
    assert.deepEqual(h.auditLines().slice(0, 2).map((l) => [l.status, l.source, l.sourceKind, l.reason]), [
      [403, 'other-ward', 'listener', 'VG_AUTH_FORBIDDEN'],
      [403, 'one-session', 'listener', 'VG_AUTH_FORBIDDEN'],
    ]);
  });

  test('liveCall gives the connected call, and the same refusals as POST', async () => {
    const h = harness();
    const { id, call } = await h.publish();
    assert.equal(await h.whep.liveCall(id), call);
    await assert.rejects(h.whep.liveCall(newSessionId()), (err) => isVoxgateError(err) && err.code === 'VG_SESSION_NOT_FOUND');
    call.close('deleted');
    await settle();
    await assert.rejects(h.whep.liveCall(id), (err) => isVoxgateError(err) && err.code === 'VG_SESSION_NOT_FOUND');
  });
});

describe('WHEP POST: the offer and the answer', () => {
  test('a listener offer that is not application/sdp is 415; an empty or malformed one 400; a sendonly one 422', async () => {
    const h = harness();
    const { id } = await h.publish();
    const wrongType = await h.whep.post(id, 'mix', request({ type: 'text/plain' }));
    assert.equal(wrongType.status, 415);
    assert.equal(wrongType.headers['Accept-Post'], 'application/sdp');
    assert.equal((await h.whep.post(id, 'mix', request({ body: '' }))).status, 400);
    assert.equal((await h.whep.post(id, 'mix', request({ body: 'v=0\r\nnonsense\r\n' }))).status, 400);
    const sendonly = await h.whep.post(id, 'mix', request({ body: offer({ direction: 'sendonly' }) }));
    assert.equal(sendonly.status, 422);
    assert.equal(problemCode(sendonly), 'VG_SDP_BAD_DIRECTION');
    const noCodec = await h.whep.post(id, 'mix', request({ body: offer({ codecs: [[9, 'VP9/90000']] }) }));
    assert.equal(noCodec.status, 422);
    assert.equal(problemCode(noCodec), 'VG_SDP_NO_COMMON_CODEC');
    assert.equal(h.transports.made.length, 0);
  });

  test('201 carries a sendonly answer, absolute Location under the session, ETag, ice-server and server-sent-events Links; no track means mix', async () => {
    const h = harness();
    const { id: sessionId } = await h.publish();
    const { reply, id, transport, resource } = await h.listen(sessionId, null);
    assert.equal(resource.leg.track, 'mix');
    const location = `${BASE}/whep/${sessionId}/${id}`;
    assert.equal(reply.headers.Location, location);
    assert.equal(reply.headers['Content-Type'], 'application/sdp');
    assert.match(String(reply.headers.ETag), /^"[A-Za-z0-9_-]+"$/);
    assert.deepEqual(reply.headers.Link, [
      '<stun:stun.example.net:3478>; rel="ice-server"',
      `<${location}/events>; rel="${SSE_EXTENSION}"; events="active,inactive,viewercount,quality,turn"`,
    ]);
    assert.equal(reply.body, transport.localSdp);
    assert.match(reply.body!, /a=sendonly/);
    const audit = h.lastAudit();
    assert.deepEqual(
      [audit.action, audit.outcome, audit.status, audit.source, audit.sourceKind, audit.session, audit.listenerSession, audit.track, audit.codec],
      ['whep.post', 'ok', 201, 'nurse', 'listener', sessionId, id, 'mix', 'opus'],
    );
  });

  test("the caller track is forwarded untouched (passthrough) to a listener that takes the caller's codec, and only then", async () => {
    const h = harness();
    const { id: sessionId, transport: publisher } = await h.publish();
    const caller = await h.listen(sessionId, 'caller');
    const mix = await h.listen(sessionId, 'mix', { token: SUPERVISOR });
    const pcmuCaller = await h.listen(sessionId, 'caller', { token: ADMIN, body: offer({ codecs: [PCMU] }) });
    assert.deepEqual([caller.resource.leg.passthrough, mix.resource.leg.passthrough, pcmuCaller.resource.leg.passthrough], [true, false, false]);
    assert.equal(pcmuCaller.resource.leg.codec, 'pcmu');
    publisher.receiveRtp(serializeRtp({ marker: true, payloadType: 111, sequenceNumber: 1000, timestamp: 48_000, ssrc: 0x1234, payload: Buffer.from([0xf8, 0xff, 0xfe]) }));
    assert.equal(caller.transport.rtp.length, 1);
    const forwarded = parseRtp(caller.transport.rtp[0]!);
    assert.equal(forwarded.ssrc, caller.resource.leg.ssrc, 'the listener has a stream of its own');
    assert.deepEqual(forwarded.payload, Buffer.from([0xf8, 0xff, 0xfe]));
    assert.deepEqual([mix.transport.rtp.length, pcmuCaller.transport.rtp.length], [0, 0], 'encoded listeners wait for the 20 ms tick');
  });

  test("a listener offering several codecs gets the caller's first: a PCMU call heard as PCMU is forwarded", async () => {
    const h = harness();
    const { id: sessionId } = await h.publish({ codec: 'pcmu' });
    const { resource } = await h.listen(sessionId, 'caller', { body: offer({ codecs: [OPUS, PCMU] }) });
    assert.equal(resource.leg.codec, 'pcmu');
    assert.equal(resource.leg.passthrough, true);
  });

  test('a media stack that cannot answer is 500 VG_WEBRTC_FAILED and the call goes on without a listener', async () => {
    const h = harness();
    const { id, call } = await h.publish();
    h.transports.failNext = true;
    const reply = await h.whep.post(id, 'mix', request());
    assert.equal(reply.status, 500);
    assert.equal(problemCode(reply), 'VG_WEBRTC_FAILED');
    assert.equal(call.state, 'connected');
    assert.equal(call.listeners().length, 0);
    assert.equal(h.whep.resources.size, 0);
    assert.deepEqual([h.lastAudit().outcome, h.lastAudit().reason], ['error', 'VG_WEBRTC_FAILED']);
  });

  test('a call that ends while the answer is being made is 404 and the new transport is closed', async () => {
    const h = harness();
    const { id, call } = await h.publish();
    h.transports.holding = true;
    const pending = h.whep.post(id, 'mix', request());
    await settle();
    assert.equal(h.transports.held, 1);
    call.close('deleted');
    h.transports.release();
    const reply = await pending;
    assert.equal(reply.status, 404);
    assert.equal(problemCode(reply), 'VG_SESSION_NOT_FOUND');
    assert.equal(h.transports.made[0]!.state, 'closed');
    assert.equal(h.whep.resources.size, 0);
  });

  test('an audit log that cannot be written fails the POST with 500: no listener joins and its transport is closed', async () => {
    const h = harness();
    const { id, call } = await h.publish();
    h.audit.close();
    const reply = await h.whep.post(id, 'mix', request());
    assert.equal(reply.status, 500);
    assert.equal(problemCode(reply), 'VG_AUDIT_WRITE_FAILED');
    assert.equal(h.transports.made[0]!.state, 'closed');
    assert.equal(call.listeners().length, 0);
    assert.equal(call.fanout.size, 0);
    assert.equal(h.whep.resources.size, 0);
    assert.equal(call.state, 'connected');
  });
});

describe('WHEP listener legs', () => {
  test('a listener joins the call and its fan-out; DELETE is 200 and takes it out again; a second DELETE is 404', async () => {
    const h = harness();
    const { id: sessionId, call } = await h.publish();
    const { id, transport } = await h.listen(sessionId, 'mix');
    assert.equal(call.listeners().length, 1);
    assert.equal(call.fanout.size, 1);
    const reply = h.whep.delete(sessionId, id, request({ type: null, body: '' }));
    assert.equal(reply.status, 200);
    assert.deepEqual(call.listeners(), []);
    assert.equal(call.fanout.size, 0);
    assert.equal(transport.state, 'closed');
    assert.equal(h.whep.resources.size, 0);
    assert.equal(call.state, 'connected', 'the call goes on');
    assert.equal(h.whep.delete(sessionId, id, request({ type: null, body: '' })).status, 404);
    assert.deepEqual(h.auditLines().slice(-2).map((l) => [l.action, l.outcome, l.status, l.listenerSession]), [
      ['whep.delete', 'ok', 200, id],
      ['whep.delete', 'rejected', 404, id],
    ]);
  });

  test("a listener's transport that fails takes its leg out of the call, which goes on", async () => {
    const h = harness();
    const { id: sessionId, call } = await h.publish();
    const { transport } = await h.listen(sessionId, 'mix');
    transport.fail('ice-failed');
    assert.deepEqual(call.listeners(), []);
    assert.equal(call.fanout.size, 0);
    assert.equal(h.whep.resources.size, 0);
    assert.equal(call.state, 'connected');
  });

  test('when the call ends its listeners are closed and forgotten', async () => {
    const h = harness();
    const { id: sessionId, call } = await h.publish();
    const a = await h.listen(sessionId, 'mix');
    const b = await h.listen(sessionId, 'caller', { token: SUPERVISOR });
    call.close('deleted');
    assert.deepEqual([a.transport.state, b.transport.state], ['closed', 'closed']);
    assert.equal(h.whep.resources.size, 0);
  });

  test("PATCH and DELETE by another listener are 403, and by the listener on another session's path 404", async () => {
    const h = harness();
    const { id: sessionId, call } = await h.publish();
    const { id, etag, transport } = await h.listen(sessionId, 'mix');
    const patch = h.whep.patch(sessionId, id, request({ token: SUPERVISOR, type: 'application/trickle-ice-sdpfrag', ifMatch: etag, body: sdpfrag([]) }));
    assert.equal(patch.status, 403);
    assert.equal(problemCode(patch), 'VG_AUTH_FORBIDDEN');
    const del = h.whep.delete(sessionId, id, request({ token: SUPERVISOR, type: null, body: '' }));
    assert.equal(del.status, 403);
    assert.equal(transport.state, 'connected');
    assert.equal(call.listeners().length, 1);
    const other = await h.publish();
    assert.equal(h.whep.delete(other.id, id, request({ type: null, body: '' })).status, 404);
    assert.equal(h.whep.delete(sessionId, id, request({ token: null, type: null, body: '' })).status, 401);
    assert.deepEqual(h.auditLines().slice(-4).map((l) => [l.action, l.status, l.source, l.session, l.listenerSession]), [
      ['whep.patch', 403, 'supervisor', sessionId, id],
      ['whep.delete', 403, 'supervisor', sessionId, id],
      ['whep.delete', 404, 'nurse', other.id, id],
      ['whep.delete', 401, null, sessionId, id],
    ]);
  });
});

describe('WHEP PATCH (trickle ICE, WHEP §4.5)', () => {
  const HOST = 'candidate:2 1 UDP 2122252543 192.0.2.20 50002 typ host';
  const MDNS = 'candidate:3 1 UDP 2122252543 6a2b7c1d-0e3f-4a5b-9c8d-abcdef012345.local 50003 typ host';

  test('204 with candidates counted and mDNS ones dropped', async () => {
    const h = harness();
    const { id: sessionId } = await h.publish();
    const { id, etag, transport } = await h.listen(sessionId, 'mix');
    const reply = h.whep.patch(sessionId, id, request({ type: 'application/trickle-ice-sdpfrag', ifMatch: etag, body: sdpfrag([MDNS, HOST]) }));
    assert.equal(reply.status, 204);
    assert.deepEqual(transport.candidates, [{ candidate: HOST, mid: '0' }]);
    const audit = h.lastAudit();
    assert.deepEqual([audit.action, audit.outcome, audit.candidates, audit.listenerSession], ['whep.patch', 'ok', 2, id]);
  });

  test('428 without If-Match, 412 when stale, 422 for an ICE restart, 415 for another type', async () => {
    const h = harness();
    const { id: sessionId } = await h.publish();
    const { id, etag, transport } = await h.listen(sessionId, 'mix');
    const patch = (o: Parameters<typeof request>[0]) => h.whep.patch(sessionId, id, request({ type: 'application/trickle-ice-sdpfrag', body: sdpfrag([HOST]), ...o })).status;
    assert.equal(patch({}), 428);
    assert.equal(patch({ ifMatch: '"stale"' }), 412);
    assert.equal(patch({ ifMatch: '*' }), 422);
    assert.equal(patch({ ifMatch: etag, body: sdpfrag([HOST], 'NewU') }), 422);
    assert.equal(patch({ ifMatch: etag, type: 'application/sdp' }), 415);
    assert.equal(transport.candidates.length, 0);
    assert.equal(transport.state, 'connected', 'a refused restart leaves the listener as it was');
    assert.equal(patch({ ifMatch: etag }), 204);
  });

  test('PATCH of an unknown listener is 404', async () => {
    const h = harness();
    const { id: sessionId } = await h.publish();
    const reply = h.whep.patch(sessionId, 'no-such-listener', request({ type: 'application/trickle-ice-sdpfrag', ifMatch: '"x"', body: sdpfrag([]) }));
    assert.equal(reply.status, 404);
    assert.equal(problemCode(reply), 'VG_SESSION_NOT_FOUND');
  });
});

describe('WHEP server-sent events', () => {
  test('forEvents gives the listener its own resource, after the same checks as PATCH and DELETE', async () => {
    const h = harness();
    const { id: sessionId, call } = await h.publish();
    const { id } = await h.listen(sessionId, 'mix');
    const r = h.whep.forEvents(sessionId, id, `Bearer ${NURSE}`);
    assert.equal(r.call, call);
    assert.equal(r.listener.name, 'nurse');
    assert.equal(thrownCode(() => h.whep.forEvents(sessionId, id, `Bearer ${SUPERVISOR}`)), 'VG_AUTH_FORBIDDEN');
    assert.equal(thrownCode(() => h.whep.forEvents(sessionId, 'no-such-listener', `Bearer ${NURSE}`)), 'VG_SESSION_NOT_FOUND');
    assert.equal(thrownCode(() => h.whep.forEvents(sessionId, id, undefined)), 'VG_AUTH_MISSING');
  });
});
