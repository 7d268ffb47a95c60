import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { verifyAuditFile } from '../audit/audit-log.js';
import { SourceAuthenticator } from '../auth/source-auth.js';
import type { EndReason } from '../call/call.js';
import type { AnswerPlan } from '../sdp/codec-policy.js';
import { HeldTransportFactory, settle } from '../testing/sip-calls.js';
import { FakeNegotiatedTransport, fakeSdp } from '../transport/fake.js';
import type { EndpointReply, EndpointRequest } from '../wish/resource.js';
import { WhipEndpoint } from './whip-endpoint.js';
import { callWorld, type AuditLine } from '../testing/calls.js';

const OBS_TOKEN = 'obs-token-0123456789abcdef';
const KIOSK_TOKEN = 'kiosk-token-0123456789abcdef';
const BASE = 'https://gw.example.net:8443';
const IDLE_MS = 30_000;
const FINGERPRINT = 'a=fingerprint:sha-256 8B:87:09:8A:5D:C2:F3:33:EF:C5:B1:F6:84:3A:3D:D6:A3:E2:9C:17:4C:E7:46:3B:1B:CE:84:98:DD:8E:AF:7B';

/** A WebRTC offer as a WHIP client sends it: BUNDLE, DTLS fingerprint, ICE credentials. */
function offer(o: { codecs?: [number, string][]; direction?: 'sendonly' | 'sendrecv'; audioTracks?: number; videoOnly?: boolean } = {}): string {
  const codecs = o.codecs ?? [[111, 'opus/48000/2'], [126, 'telephone-event/48000']];
  const sections = o.videoOnly ? [{ type: 'video', codecs: [[96, 'VP8/90000']] as [number, string][] }] : Array.from({ length: o.audioTracks ?? 1 }, () => ({ type: 'audio', codecs }));
  const lines = ['v=0', 'o=- 4611731400430051336 2 IN IP4 127.0.0.1', 's=-', 't=0 0', `a=group:BUNDLE ${sections.map((_, i) => i).join(' ')}`, FINGERPRINT, 'a=ice-ufrag:EsAw', 'a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1'];
  sections.forEach((s, mid) => {
    lines.push(
      `m=${s.type} 9 UDP/TLS/RTP/SAVPF ${s.codecs.map((c) => c[0]).join(' ')}`,
      'c=IN IP4 0.0.0.0',
      `a=mid:${mid}`,
      `a=${o.direction ?? 'sendonly'}`,
      'a=rtcp-mux',
      'a=setup:actpass',
      ...s.codecs.map(([pt, name]) => `a=rtpmap:${pt} ${name}`),
      'a=candidate:1 1 UDP 2122252543 192.0.2.10 50000 typ host',
    );
  });
  return lines.join('\r\n') + '\r\n';
}

function request(o: { token?: string | null; type?: string | null; body?: string; ifMatch?: string } = {}): EndpointRequest {
  const headers: EndpointRequest['headers'] = {};
  if (o.token !== null) headers.authorization = `Bearer ${o.token ?? OBS_TOKEN}`;
  if (o.type !== null) headers['content-type'] = o.type ?? 'application/sdp';
  if (o.ifMatch !== undefined) headers['if-match'] = o.ifMatch;
  return { headers, body: Buffer.from(o.body ?? offer()), remote: '198.51.100.7:50123', baseUrl: BASE };
}

/** A trickle PATCH body (RFC 8840) for the offer's audio section, with the offer's credentials unless told. */
function sdpfrag(candidates: string[], ufrag = 'EsAw'): string {
  return [`a=ice-ufrag:${ufrag}`, 'a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1', 'm=audio 9 UDP/TLS/RTP/SAVPF 0', 'a=mid:0', ...candidates.map((c) => `a=${c}`), 'a=end-of-candidates', ''].join('\r\n');
}

function problemCode(reply: EndpointReply): string {
  assert.equal(reply.headers['Content-Type'], 'application/problem+json');
  return (JSON.parse(reply.body!) as { code: string }).code;
}


/** A transport whose stack reports a failure without saying why. */
class UnexplainedFailure extends FakeNegotiatedTransport {
  failWithoutCause(): void {
    this.emit('state', 'failed', undefined);
  }
}

class UnexplainedFailures extends HeldTransportFactory {
  override async answer(id: string, _offerSdp: string, plan: AnswerPlan): Promise<FakeNegotiatedTransport> {
    const t = new UnexplainedFailure(id, fakeSdp(plan, 'passive', id));
    this.made.push(t);
    return t;
  }
}

function harness(opts: { maxSessions?: number; transports?: HeldTransportFactory } = {}) {
  const w = callWorld({ maxSessions: opts.maxSessions, idleTimeoutMs: IDLE_MS, name: 'whip' });
  const { clock, calls } = w;
  const transports = opts.transports ?? new HeldTransportFactory();
  // ICE cannot complete before the publisher has our answer: each test connects the transport itself.
  transports.connect = false;
  const auth = new SourceAuthenticator(
    [
      { name: 'obs-studio', kind: 'obs', token: OBS_TOKEN, maxSessions: 1 },
      { name: 'kiosk', kind: 'browser', token: KIOSK_TOKEN, codecs: ['opus', 'pcmu'] },
    ],
    undefined,
    clock,
  );
  const ended: { id: string; reason: EndReason }[] = [];
  calls.on('ended', (call, reason) => ended.push({ id: call.id, reason }));
  const whip = new WhipEndpoint({
    ...w.callDeps,
    auth,
    audit: w.audit,
    transports,
    iceServers: [
      { urls: 'stun:stun.example.net:3478', ttlSeconds: 86400 },
      { urls: 'turn:turn.example.net:3478?transport=udp', secret: 'turn-shared-secret', ttlSeconds: 600 },
    ],
  });
  cleanups.push(() => w.close());
  return {
    ...w,
    transports,
    ended,
    whip,
    /** POSTs an offer and returns the 201 with the session it made and its transport. */
    async publish(o: Parameters<typeof request>[0] = {}) {
      const reply = await whip.post(request(o));
      assert.equal(reply.status, 201, reply.body);
      const id = String(reply.headers.Location).split('/').at(-1)!;
      return { reply, id, etag: String(reply.headers.ETag), transport: transports.made.at(-1)!, call: calls.get(id)! };
    },
  };
}

/** Every harness a test made is closed after it, pass or fail: no call, codec or temp file is left. */
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const close of cleanups.splice(0)) close();
});

describe('WHIP POST refusals', () => {
  test('a missing token is 401 with a Bearer challenge, audited with no source', async () => {
    const h = harness();
    const reply = await h.whip.post(request({ token: null }));
    assert.equal(reply.status, 401);
    assert.equal(problemCode(reply), 'VG_AUTH_MISSING');
    assert.equal(reply.headers['WWW-Authenticate'], 'Bearer realm="voxgate"');
    assert.deepEqual(pick(h.lastAudit()), { action: 'whip.post', outcome: 'rejected', status: 401, reason: 'VG_AUTH_MISSING', source: null, session: null });
    assert.equal(h.lastAudit().remote, '198.51.100.7:50123');
  });

  test('an unknown token is 401 invalid_token and opens nothing', async () => {
    const h = harness();
    const reply = await h.whip.post(request({ token: 'not-a-known-token-at-all' }));
    assert.equal(reply.status, 401);
    assert.equal(problemCode(reply), 'VG_AUTH_INVALID');
    assert.match(String(reply.headers['WWW-Authenticate']), /error="invalid_token"/);
    assert.equal(h.transports.made.length, 0);
    assert.equal(h.lastAudit().reason, 'VG_AUTH_INVALID');
  });

  test('an offer that is not application/sdp is 415 with Accept-Post, audited with its source', async () => {
    const h = harness();
    const reply = await h.whip.post(request({ type: 'text/plain' }));
    assert.equal(reply.status, 415);
    assert.equal(problemCode(reply), 'VG_HTTP_UNSUPPORTED_MEDIA_TYPE');
    assert.equal(reply.headers['Accept-Post'], 'application/sdp');
    assert.equal((await h.whip.post(request({ type: null }))).status, 415);
    assert.deepEqual(pick(h.lastAudit()), { action: 'whip.post', outcome: 'rejected', status: 415, reason: 'VG_HTTP_UNSUPPORTED_MEDIA_TYPE', source: 'obs-studio', session: null });
    assert.equal(h.lastAudit().sourceKind, 'obs');
  });

  test('an empty body and a malformed SDP are 400; the malformed one names its line', async () => {
    const h = harness();
    const empty = await h.whip.post(request({ body: '  \r\n' }));
    assert.equal(empty.status, 400);
    assert.equal(problemCode(empty), 'VG_SDP_MALFORMED');
    const garbage = await h.whip.post(request({ body: 'v=0\r\nthis is not sdp\r\n' }));
    assert.equal(garbage.status, 400);
    assert.match(JSON.parse(garbage.body!).detail, /line 2/);
    assert.equal(h.calls.size, 0);
  });

  test('no audio, two audio tracks, or no codec the source accepts is 422 before any transport is made', async () => {
    const h = harness();
    const noAudio = await h.whip.post(request({ body: offer({ videoOnly: true }) }));
    assert.equal(noAudio.status, 422);
    assert.equal(problemCode(noAudio), 'VG_SDP_NO_AUDIO');
    const twoAudio = await h.whip.post(request({ body: offer({ audioTracks: 2 }) }));
    assert.equal(twoAudio.status, 422);
    assert.equal(problemCode(twoAudio), 'VG_SDP_TOO_MANY_AUDIO');
    // obs-studio accepts Opus only; the problem lists what is accepted.
    const pcmu = await h.whip.post(request({ body: offer({ codecs: [[0, 'PCMU/8000']] }) }));
    assert.equal(pcmu.status, 422);
    assert.equal(problemCode(pcmu), 'VG_SDP_NO_COMMON_CODEC');
    assert.deepEqual(JSON.parse(pcmu.body!).accepted, ['opus/48000']);
    assert.equal(h.transports.made.length, 0);
    assert.deepEqual(
      h.auditLines().map((l) => l.reason),
      ['VG_SDP_NO_AUDIO', 'VG_SDP_TOO_MANY_AUDIO', 'VG_SDP_NO_COMMON_CODEC'],
    );
  });

  test('at capacity a POST is 503 with Retry-After and makes no transport', async () => {
    const h = harness({ maxSessions: 1 });
    await h.publish();
    const reply = await h.whip.post(request({ token: KIOSK_TOKEN }));
    assert.equal(reply.status, 503);
    assert.equal(problemCode(reply), 'VG_CAPACITY');
    assert.equal(reply.headers['Retry-After'], '7');
    assert.equal(h.transports.made.length, 1);
    assert.equal(h.calls.size, 1);
  });

  test("a source over its own session limit is 429 while other sources still get in", async () => {
    const h = harness();
    await h.publish();
    const reply = await h.whip.post(request());
    assert.equal(reply.status, 429);
    assert.equal(problemCode(reply), 'VG_SOURCE_SESSION_LIMIT');
    assert.equal(reply.headers['Retry-After'], '7');
    assert.equal((await h.whip.post(request({ token: KIOSK_TOKEN }))).status, 201);
    assert.equal(h.calls.countFor('obs-studio'), 1);
  });

  test('a media stack that cannot answer is 500 VG_WEBRTC_FAILED; the call is closed and gone from the table', async () => {
    const h = harness();
    h.transports.failNext = true;
    const reply = await h.whip.post(request());
    assert.equal(reply.status, 500);
    assert.equal(problemCode(reply), 'VG_WEBRTC_FAILED');
    assert.equal(h.calls.size, 0);
    assert.equal(h.whip.resources.size, 0);
    assert.equal(h.ended.length, 1);
    assert.equal(h.ended[0]!.reason, 'setup-failed');
    // The refusal names the session that was admitted and closed.
    assert.deepEqual(pick(h.lastAudit()), { action: 'whip.post', outcome: 'error', status: 500, reason: 'VG_WEBRTC_FAILED', source: 'obs-studio', session: h.ended[0]!.id });
    await settle();
    assert.equal((await h.directory.lookup(h.ended[0]!.id))?.endReason, 'setup-failed');
  });

  test('an audit log that cannot be written fails the POST with 500 and closes the call it made', async () => {
    const h = harness();
    h.audit.close();
    const reply = await h.whip.post(request());
    assert.equal(reply.status, 500);
    assert.equal(problemCode(reply), 'VG_AUDIT_WRITE_FAILED');
    assert.equal(h.calls.size, 0);
    assert.equal(h.whip.resources.size, 0);
    assert.deepEqual(h.ended.map((e) => e.reason), ['setup-failed']);
    assert.equal(h.transports.made[0]!.state, 'closed');
    await settle();
    assert.equal(h.agent.sessions.length, 0, 'the agent never heard of the unaudited call');
  });

  test('a refusal that cannot be audited is answered 500 instead', async () => {
    const h = harness();
    h.audit.close();
    const reply = await h.whip.post(request({ token: null }));
    assert.equal(reply.status, 500);
    assert.equal(problemCode(reply), 'VG_AUDIT_WRITE_FAILED');
  });

  test('a session that ends while its answer is being made (idle timeout) is 503 VG_SETUP_ABORTED and its transport is closed', async () => {
    const h = harness();
    h.transports.holding = true;
    const pending = h.whip.post(request());
    await settle();
    assert.equal(h.transports.held, 1);
    assert.equal(h.calls.size, 1, 'the call is admitted while its transport is opened');
    h.clock.advance(IDLE_MS);
    assert.equal(h.calls.size, 0);
    h.transports.release();
    const reply = await pending;
    assert.equal(reply.status, 503);
    assert.equal(problemCode(reply), 'VG_SETUP_ABORTED');
    assert.equal(h.transports.made[0]!.state, 'closed');
    assert.equal(h.whip.resources.size, 0);
    assert.deepEqual(h.ended.map((e) => e.reason), ['idle-timeout']);
    assert.deepEqual(pick(h.lastAudit()), { action: 'whip.post', outcome: 'error', status: 503, reason: 'VG_SETUP_ABORTED', source: 'obs-studio', session: h.ended[0]!.id });
  });
});

describe('WHIP POST 201 and the session it makes', () => {
  test('201 carries the answer, an absolute Location, a strong ETag and ice-server Links with minted TURN credentials', async () => {
    const h = harness();
    const { reply, id, transport } = await h.publish();
    assert.equal(reply.headers['Content-Type'], 'application/sdp');
    assert.equal(reply.headers.Location, `${BASE}/whip/${id}`);
    assert.match(String(reply.headers.ETag), /^"[A-Za-z0-9_-]+"$/);
    assert.equal(reply.headers['Accept-Patch'], 'application/trickle-ice-sdpfrag');
    const links = reply.headers.Link as string[];
    assert.equal(links[0], '<stun:stun.example.net:3478>; rel="ice-server"');
    const expiry = Math.floor(h.clock.now() / 1000) + 600;
    assert.match(links[1]!, new RegExp(`^<turn:turn\\.example\\.net:3478\\?transport=udp>; rel="ice-server"; username="${expiry}:${id}"; credential="[^"]+"; credential-type="password"$`));
    assert.equal(reply.body, transport.localSdp);
    assert.match(reply.body!, /a=recvonly/, 'a sendonly publisher gets a recvonly answer');
    const audit = h.lastAudit();
    assert.deepEqual(pick(audit), { action: 'whip.post', outcome: 'ok', status: 201, reason: undefined, source: 'obs-studio', session: id });
    assert.equal(audit.codec, 'opus');
  });

  test('a sendrecv offer is answered sendrecv so the publisher hears the agent', async () => {
    const h = harness();
    const { reply } = await h.publish({ body: offer({ direction: 'sendrecv' }) });
    assert.match(reply.body!, /a=sendrecv/);
  });

  test("the source's codec policy picks the codec: a kiosk offering only PCMU gets PCMU", async () => {
    const h = harness();
    const { call } = await h.publish({ token: KIOSK_TOKEN, body: offer({ codecs: [[0, 'PCMU/8000']] }) });
    assert.equal(call.leg('caller')?.endpoint?.format.codec, 'pcmu');
    assert.equal(h.lastAudit().codec, 'pcmu');
  });

  test('the call is connecting until its transport connects, then connected, with the agent attached', async () => {
    const h = harness();
    const { call, transport, id } = await h.publish();
    assert.equal(call.state, 'connecting');
    assert.equal(h.whip.resources.get(id)?.transport, transport);
    transport.connect();
    assert.equal(call.state, 'connected');
    await settle();
    assert.equal(h.agent.sessions.length, 1);
    assert.equal(h.agent.last.session.callId, id);
  });

  test('a transport that fails ends the call with the failure and frees the session', async () => {
    const h = harness();
    const { call, transport, id } = await h.publish();
    transport.connect();
    transport.fail('dtls-failed');
    assert.equal(call.state, 'ended');
    assert.equal(call.endReason, 'dtls-failed');
    assert.equal(h.calls.size, 0);
    assert.equal(h.whip.resources.has(id), false);
    await settle();
    assert.equal(h.agent.last.ended, 'dtls-failed');
  });

  test('a transport that fails without saying why ends the call as ice-failed', async () => {
    const h = harness({ transports: new UnexplainedFailures() });
    const { call, transport } = await h.publish();
    (transport as UnexplainedFailure).failWithoutCause();
    assert.equal(call.endReason, 'ice-failed');
  });

  test('a session that times out idle is gone from the resources', async () => {
    const h = harness();
    const { call, id } = await h.publish();
    h.clock.advance(IDLE_MS);
    assert.equal(call.endReason, 'idle-timeout');
    assert.equal(h.whip.resources.has(id), false);
  });
});

describe('WHIP PATCH (trickle ICE, RFC 9725 §4.3)', () => {
  const HOST = 'candidate:2 1 UDP 2122252543 192.0.2.10 50002 typ host';
  const MDNS = 'candidate:3 1 UDP 2122252543 3f7c2a9e-1b2c-4d5e-8f90-123456789abc.local 50003 typ host';

  test('a trickle PATCH is 204 with no body; candidates are counted and mDNS ones dropped', async () => {
    const h = harness();
    const { id, etag, transport } = await h.publish();
    const reply = h.whip.patch(id, request({ type: 'application/trickle-ice-sdpfrag', ifMatch: etag, body: sdpfrag([HOST, MDNS]) }));
    assert.equal(reply.status, 204);
    assert.equal(reply.body, undefined);
    assert.deepEqual(transport.candidates, [{ candidate: HOST, mid: '0' }]);
    assert.deepEqual(pick(h.lastAudit()), { action: 'whip.patch', outcome: 'ok', status: 204, reason: undefined, source: 'obs-studio', session: id });
    assert.equal(h.lastAudit().candidates, 2, 'the record says what was offered; it is written before any is used');
  });

  test('a candidate for a closed transport is not used, and the PATCH is still 204', async () => {
    const h = harness();
    const { id, etag, transport } = await h.publish();
    transport.close();
    const reply = h.whip.patch(id, request({ type: 'application/trickle-ice-sdpfrag', ifMatch: etag, body: sdpfrag([HOST]) }));
    assert.equal(reply.status, 204);
    assert.deepEqual(transport.candidates, []);
  });

  test('PATCH without If-Match is 428 and with a stale ETag 412; nothing is trickled', async () => {
    const h = harness();
    const { id, transport } = await h.publish();
    const missing = h.whip.patch(id, request({ type: 'application/trickle-ice-sdpfrag', body: sdpfrag([HOST]) }));
    assert.equal(missing.status, 428);
    assert.equal(problemCode(missing), 'VG_PRECONDITION_REQUIRED');
    const stale = h.whip.patch(id, request({ type: 'application/trickle-ice-sdpfrag', ifMatch: '"stale"', body: sdpfrag([HOST]) }));
    assert.equal(stale.status, 412);
    assert.equal(problemCode(stale), 'VG_PRECONDITION_FAILED');
    assert.equal(transport.candidates.length, 0);
    assert.deepEqual(h.auditLines().slice(-2).map((l) => [l.action, l.status, l.session]), [['whip.patch', 428, id], ['whip.patch', 412, id]]);
  });

  test('an ICE restart (If-Match "*", or new credentials) is 422 and the session stays as it was', async () => {
    const h = harness();
    const { id, etag, call } = await h.publish();
    const star = h.whip.patch(id, request({ type: 'application/trickle-ice-sdpfrag', ifMatch: '*', body: sdpfrag([]) }));
    assert.equal(star.status, 422);
    assert.equal(problemCode(star), 'VG_ICE_RESTART_UNSUPPORTED');
    const newUfrag = h.whip.patch(id, request({ type: 'application/trickle-ice-sdpfrag', ifMatch: etag, body: sdpfrag([HOST], 'NewU') }));
    assert.equal(newUfrag.status, 422);
    assert.equal(call.state, 'connecting');
    assert.equal(h.whip.resources.get(id)?.etag, etag);
  });

  test('a PATCH that is not an sdpfrag is 415 with Accept-Patch; a malformed sdpfrag is 400', async () => {
    const h = harness();
    const { id, etag } = await h.publish();
    const wrong = h.whip.patch(id, request({ type: 'application/sdp', ifMatch: etag, body: sdpfrag([HOST]) }));
    assert.equal(wrong.status, 415);
    assert.equal(wrong.headers['Accept-Patch'], 'application/trickle-ice-sdpfrag');
    const malformed = h.whip.patch(id, request({ type: 'application/trickle-ice-sdpfrag', ifMatch: etag, body: 'not an sdpfrag' }));
    assert.equal(malformed.status, 400);
    assert.equal(problemCode(malformed), 'VG_TRICKLE_MALFORMED');
  });

  test('a PATCH that cannot be audited is 500, is not carried out, and the session goes on', async () => {
    const h = harness();
    const { id, etag, call, transport } = await h.publish();
    h.audit.close();
    const reply = h.whip.patch(id, request({ type: 'application/trickle-ice-sdpfrag', ifMatch: etag, body: sdpfrag([HOST]) }));
    assert.equal(reply.status, 500);
    assert.equal(problemCode(reply), 'VG_AUDIT_WRITE_FAILED');
    assert.deepEqual(transport.candidates, [], 'no candidate was used');
    assert.equal(call.state, 'connecting');
    assert.equal(h.whip.resources.has(id), true);
  });

  test("a PATCH with another source's token is 403; an unknown session is 404; no token is 401", async () => {
    const h = harness();
    const { id, etag, transport } = await h.publish();
    const other = h.whip.patch(id, request({ token: KIOSK_TOKEN, type: 'application/trickle-ice-sdpfrag', ifMatch: etag, body: sdpfrag([HOST]) }));
    assert.equal(other.status, 403);
    assert.equal(problemCode(other), 'VG_AUTH_FORBIDDEN');
    assert.deepEqual(pick(h.lastAudit()), { action: 'whip.patch', outcome: 'rejected', status: 403, reason: 'VG_AUTH_FORBIDDEN', source: 'kiosk', session: id });
    const unknown = h.whip.patch('no-such-session', request({ type: 'application/trickle-ice-sdpfrag', ifMatch: etag, body: sdpfrag([HOST]) }));
    assert.equal(unknown.status, 404);
    assert.equal(problemCode(unknown), 'VG_SESSION_NOT_FOUND');
    assert.equal(h.whip.patch(id, request({ token: null, type: 'application/trickle-ice-sdpfrag', ifMatch: etag, body: sdpfrag([HOST]) })).status, 401);
    assert.equal(transport.candidates.length, 0);
  });
});

describe('WHIP DELETE', () => {
  test('DELETE is 200, ends the call as deleted and frees everything; a second DELETE is 404', async () => {
    const h = harness();
    const { id, call, transport } = await h.publish();
    transport.connect();
    const reply = h.whip.delete(id, request({ type: null, body: '' }));
    assert.equal(reply.status, 200);
    assert.equal(call.state, 'ended');
    assert.equal(call.endReason, 'deleted');
    assert.equal(transport.state, 'closed');
    assert.equal(h.calls.size, 0);
    assert.equal(h.whip.resources.size, 0);
    assert.equal(call.legs.size, 0);
    const again = h.whip.delete(id, request({ type: null, body: '' }));
    assert.equal(again.status, 404);
    assert.deepEqual(h.auditLines().slice(-2).map((l) => [l.action, l.outcome, l.status, l.session]), [['whip.delete', 'ok', 200, id], ['whip.delete', 'rejected', 404, id]]);
  });

  test("DELETE with another source's token is 403 and the session goes on", async () => {
    const h = harness();
    const { id, call } = await h.publish();
    const reply = h.whip.delete(id, request({ token: KIOSK_TOKEN, type: null, body: '' }));
    assert.equal(reply.status, 403);
    assert.equal(call.state, 'connecting');
    assert.equal(h.whip.resources.has(id), true);
  });

  test('a DELETE that cannot be audited is 500 and is not carried out', async () => {
    const h = harness();
    const { id, call } = await h.publish();
    h.audit.close();
    const reply = h.whip.delete(id, request({ type: null, body: '' }));
    assert.equal(reply.status, 500);
    assert.equal(problemCode(reply), 'VG_AUDIT_WRITE_FAILED');
    assert.equal(call.state, 'connecting');
  });
});

test('every WHIP attempt, accepted or refused, is one audit line with who made it, in a verifiable chain', async () => {
  const h = harness();
  await h.whip.post(request({ token: null }));
  const { id, etag } = await h.publish();
  h.whip.patch(id, request({ type: 'application/trickle-ice-sdpfrag', ifMatch: etag, body: sdpfrag([]) }));
  h.whip.patch(id, request({ token: KIOSK_TOKEN, type: 'application/trickle-ice-sdpfrag', ifMatch: etag, body: sdpfrag([]) }));
  h.whip.delete(id, request({ type: null, body: '' }));
  h.whip.delete(id, request({ type: null, body: '' }));
  assert.deepEqual(
    h.auditLines().map((l) => [l.action, l.outcome, l.status, l.source]),
    [
      ['whip.post', 'rejected', 401, null],
      ['whip.post', 'ok', 201, 'obs-studio'],
      ['whip.patch', 'ok', 204, 'obs-studio'],
      ['whip.patch', 'rejected', 403, 'kiosk'],
      ['whip.delete', 'ok', 200, 'obs-studio'],
      ['whip.delete', 'rejected', 404, 'obs-studio'],
    ],
  );
  assert.deepEqual(verifyAuditFile(h.auditPath), { ok: true, lines: 6 });
});

/** The audit fields every test looks at. */
function pick(l: AuditLine): Pick<AuditLine, 'action' | 'outcome' | 'status' | 'reason' | 'source' | 'session'> {
  return { action: l.action, outcome: l.outcome, status: l.status, reason: l.reason, source: l.source, session: l.session };
}
