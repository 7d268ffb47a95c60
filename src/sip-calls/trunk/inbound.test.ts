import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import type { Agent } from '../../agent/agent.js';
import type { SipRequest, SipResponse } from '../../sip/message.js';
import {
  CALLER_NUMBER,
  g729Offer,
  header,
  headerList,
  HeldAgent,
  pcmuOffer,
  routingServer,
  settle,
  trunkHarness,
  TRUNK_NUMBER,
  until,
  type Carrier,
  type RoutingServer,
  type TrunkHarness,
  type TrunkInput,
} from '../../testing/trunk.js';

let h: TrunkHarness<Agent> | undefined;
let server: RoutingServer | undefined;
afterEach(async () => {
  h?.close();
  h = undefined;
  await server?.close();
  server = undefined;
});

/** Its SBCs send from 192.0.2.0/24. */
const CARRIER_A: TrunkInput = { name: 'carrier-a', inbound: { numbers: [TRUNK_NUMBER], allowedAddresses: ['192.0.2.0/24'] }, codecs: ['pcmu'] };
/** A PBX that calls from anywhere, with a password. */
const PBX: TrunkInput = { name: 'pbx', inbound: { numbers: [TRUNK_NUMBER], auth: { user: 'pbx', password: 'pbx-secret' } }, codecs: ['pcmu'] };
const SBC = '192.0.2.10:5060';

/** A harness whose agent is a HeldAgent the test keeps. */
function start(trunks: TrunkInput[], more: { agents?: Record<string, Agent>; sipAgents?: Record<string, string> } = {}): { h: TrunkHarness<HeldAgent>; agent: HeldAgent } {
  const agent = new HeldAgent();
  const harness = trunkHarness({ trunks, agent, ...more });
  h = harness;
  return { h: harness, agent };
}

function find(list: SipResponse[], status: number): SipResponse {
  const r = list.find((m) => m.status === status);
  if (!r) throw new Error(`no ${status} among ${list.map((m) => m.status).join(', ') || 'nothing'}`);
  return r;
}

/** The carrier's call answered 200 and ACKed. */
async function answered(c: Carrier, invite = c.invite()): Promise<{ invite: SipRequest; ok: SipResponse }> {
  const ok = find(await c.responses(), 200);
  c.ack(invite, ok);
  await settle();
  return { invite, ok };
}

function sessionIdOf(agent: HeldAgent): string {
  return agent.last.session.callId;
}

test('a call from an address in the trunk ACL hears 180, then 200 with a PCMU RTP/AVP answer on a port of sip.rtp; no 100 once the 180 is out', async () => {
  const { h, agent } = start([CARRIER_A]);
  const c = await h.carrier(SBC);
  const invite = c.invite();
  const got = await c.responses();
  assert.deepEqual(got.map((r) => r.status), [180, 200]);
  const ok = got[1]!;
  const m = /^m=audio (\d+) RTP\/AVP 0( |\r?$)/m.exec(ok.body.toString());
  assert.ok(m, `a PCMU RTP/AVP answer:\n${ok.body.toString()}`);
  const port = Number(m[1]);
  assert.ok(port >= h.rtpRange.min && port < h.rtpRange.max && port % 2 === 0, `an even port of ${h.rtpRange.min}-${h.rtpRange.max}: ${port}`);
  assert.match(ok.body.toString(), /^c=IN IP4 127\.0\.0\.1\r?$/m);
  assert.equal(header(ok, 'Content-Type'), 'application/sdp');
  assert.match(header(ok, 'Contact') ?? '', /^<sip:\+15551230000@192\.0\.2\.1:5060;transport=udp>$/);
  assert.equal(header(ok, 'To'), `${header(invite, 'To')};tag=${/tag=([^;]+)/.exec(header(ok, 'To')!)![1]}`);
  c.ack(invite, ok);
  // §17.2.1: the 100 is only for an INVITE nothing else answered within 200 ms.
  h.clock.advance(1_000);
  assert.deepEqual(await c.statuses(), []);
  assert.equal(h.calls.size, 1);
  assert.equal(h.rtp.pool.portsInUse, 2);
  assert.deepEqual(h.router.trunks!.active(), [{ trunk: 'carrier-a', calls: 1 }]);
  assert.equal(agent.sessions.length, 1);
  assert.equal(agent.last.session.source.kind, 'sip-trunk');
  const audit = h.audits('sip.invite');
  assert.equal(audit.length, 1);
  assert.deepEqual(
    { outcome: audit[0]!.outcome, status: audit[0]!.status, trunk: audit[0]!.trunk, remote: audit[0]!.remote, sourceKind: audit[0]!.sourceKind, codec: audit[0]!.codec },
    { outcome: 'ok', status: 200, trunk: 'carrier-a', remote: SBC, sourceKind: 'sip-trunk', codec: 'pcmu' },
  );

  c.callerRequest('BYE', invite, ok);
  assert.deepEqual(await c.statuses(), [200]);
  assert.equal(h.ends.get(sessionIdOf(agent)), 'bye');
  assert.equal(h.calls.size, 0);
  assert.equal(h.rtp.pool.portsInUse, 0, 'the RTP ports are back in the pool');
  assert.deepEqual(h.router.trunks!.active(), [{ trunk: 'carrier-a', calls: 0 }]);
  assert.equal(h.router.dialogs, 0);
});

test('a 100 Trying goes out once 200 ms pass with no other answer (a slow routing webhook), then 180 and 200', async () => {
  server = await routingServer(() => 'hang');
  const { h, agent } = start([{ ...CARRIER_A, inbound: { ...CARRIER_A.inbound!, webhook: { url: server.url, secret: server.secret, timeoutMs: 5_000 } } }]);
  const c = await h.carrier(SBC);
  const invite = c.invite();
  await until(() => server!.hanging.length === 1, 'the webhook request');
  h.clock.advance(199);
  assert.deepEqual(await c.statuses(), [], 'nothing within 200 ms');
  h.clock.advance(1);
  assert.deepEqual(await c.statuses(), [100]);
  const res = server.hanging.shift()!;
  res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ customParameters: { account: '42' } }));
  await until(() => c.flow.sent.length >= 2, 'the 180 and 200');
  const got = await c.responses();
  assert.deepEqual(got.map((r) => r.status), [180, 200]);
  c.ack(invite, got[1]!);
  assert.deepEqual(agent.last.session.details.customParameters, { account: '42' });
});

test('a source outside every ACL gets 403, audited with its address and the status; no call, no port', async () => {
  const { h, agent } = start([CARRIER_A]);
  const c = await h.carrier('198.51.100.7:5060');
  const invite = c.invite();
  const [res] = await c.responses();
  assert.equal(res!.status, 403);
  assert.equal(res!.reason, 'Forbidden (source address 198.51.100.7 is not allowed)');
  c.ackFailure(invite, res!);
  assert.equal(agent.sessions.length, 0);
  assert.equal(h.calls.size, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
  const [audit] = h.audits('sip.invite');
  assert.deepEqual(
    { outcome: audit!.outcome, status: audit!.status, remote: audit!.remote, sourceKind: audit!.sourceKind, trunk: audit!.trunk, target: audit!.target },
    { outcome: 'error', status: 403, remote: '198.51.100.7:5060', sourceKind: 'sip-trunk', trunk: null, target: invite.uri },
  );
});

test('a trunk with credentials and no ACL challenges a caller without them (407), and takes the call once they answer', async () => {
  const { h, agent } = start([PBX]);
  const c = await h.carrier('203.0.113.50:5060');
  const first = c.invite();
  const [challenge] = await c.responses();
  assert.equal(challenge!.status, 407);
  const offered = headerList(challenge!, 'Proxy-Authenticate');
  assert.equal(offered.length, 2);
  assert.match(offered[0]!, /^Digest realm="voxgate\.test", nonce="[^"]+", algorithm=SHA-256, qop="auth"$/);
  assert.match(offered[1]!, /algorithm=MD5/);
  assert.equal(agent.sessions.length, 0);
  const second = c.authorize(first, challenge!, 'pbx', 'pbx-secret');
  assert.deepEqual((await c.responses()).map((r) => r.status), [180, 200]);
  assert.equal(header(second, 'Call-ID'), header(first, 'Call-ID'));
  assert.equal(agent.sessions.length, 1);
  assert.equal(agent.last.session.details.trunk, 'pbx');
});

test('a trunk with credentials refuses a wrong password with 403, not another challenge', async () => {
  const { h, agent } = start([PBX]);
  const c = await h.carrier('203.0.113.50:5060');
  const first = c.invite();
  const [challenge] = await c.responses();
  assert.equal(challenge!.status, 407);
  c.authorize(first, challenge!, 'pbx', 'not-the-secret');
  const [res] = await c.responses();
  assert.equal(res!.status, 403);
  assert.match(res!.reason, /^Forbidden/);
  assert.equal(agent.sessions.length, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
});

test('a number no trunk owns, from an address in an ACL, gets 404', async () => {
  const { h, agent } = start([CARRIER_A]);
  const c = await h.carrier(SBC);
  c.invite({ to: '+15550009999' });
  const [res] = await c.responses();
  assert.equal(res!.status, 404);
  assert.equal(res!.reason, 'Not Found (+15550009999 is not served here)');
  assert.equal(agent.sessions.length, 0);
  assert.equal(h.audits('sip.invite')[0]!.trunk, 'carrier-a');
});

test('a trunk with an ACL and credentials challenges a caller from its address that sent none (407), and refuses one from elsewhere (403)', async () => {
  const both: TrunkInput = { name: 'both', inbound: { numbers: [TRUNK_NUMBER], allowedAddresses: ['192.0.2.10'], auth: { user: 'both', password: 'both-secret' } }, codecs: ['pcmu'] };
  const { h, agent } = start([both]);
  const c = await h.carrier(SBC);
  const first = c.invite();
  const [challenge] = await c.responses();
  assert.equal(challenge!.status, 407);
  c.authorize(first, challenge!, 'both', 'both-secret');
  assert.deepEqual(await c.statuses(), [180, 200]);
  assert.equal(agent.sessions.length, 1);
  const stranger = await h.carrier('192.0.2.11:5060');
  stranger.invite();
  assert.deepEqual(await stranger.statuses(), [403]);
});

test('an offer of G.729 only gets 488 and leaves no call and no port behind', async () => {
  const { h, agent } = start([CARRIER_A]);
  const c = await h.carrier(SBC);
  c.invite({ sdp: g729Offer(c.rtpPort) });
  const [res] = await c.responses();
  assert.equal(res!.status, 488);
  assert.equal(agent.sessions.length, 0);
  assert.equal(h.calls.size, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
  assert.equal(h.audits('sip.invite')[0]!.status, 488);
});

test('Session-Expires below 90 gets 422 with Min-SE: 90, audited', async () => {
  const { h } = start([CARRIER_A]);
  const c = await h.carrier(SBC);
  c.invite({ headers: [{ name: 'Session-Expires', value: '60' }] });
  const [res] = await c.responses();
  assert.equal(res!.status, 422);
  assert.equal(header(res!, 'Min-SE'), '90');
  assert.deepEqual(await h.inboundCounts(), { 'carrier-a/422': 1 });
  assert.equal(h.audits('sip.invite')[0]?.status, 422, 'the refusal is in the audit log, as the 415 and 488 are');
});

test('a trunk at maxCalls answers one more call 503 with Retry-After; once a call hangs up the next is taken', async () => {
  const { h } = start([{ ...CARRIER_A, maxCalls: 1 }]);
  const c = await h.carrier(SBC);
  const { invite, ok } = await answered(c);
  const second = c.invite();
  const [busy] = await c.responses();
  assert.equal(busy!.status, 503);
  assert.equal(header(busy!, 'Retry-After'), '5');
  assert.match(busy!.reason, /trunk carrier-a is at its 1 calls/);
  c.ackFailure(second, busy!);
  assert.equal(h.calls.size, 1);
  assert.equal(h.rtp.pool.portsInUse, 2, 'the refused call took no port');
  c.callerRequest('BYE', invite, ok);
  assert.deepEqual(await c.statuses(), [200]);
  c.invite();
  assert.deepEqual(await c.statuses(), [180, 200]);
});

test('while the agent starts, the caller hears 180 again every 5 s, and the 200 once the agent is attached', async () => {
  const { h, agent } = start([CARRIER_A]);
  agent.holding = true;
  const c = await h.carrier(SBC);
  const invite = c.invite();
  assert.deepEqual(await c.statuses(), [180]);
  assert.equal(agent.held, 1);
  h.clock.advance(4_999);
  assert.deepEqual(await c.statuses(), []);
  h.clock.advance(1);
  assert.deepEqual(await c.statuses(), [180]);
  h.clock.advance(5_000);
  assert.deepEqual(await c.statuses(), [180]);
  agent.release();
  const [ok] = await c.responses();
  assert.equal(ok!.status, 200);
  c.ack(invite, ok!);
  h.clock.advance(10_000);
  assert.deepEqual(await c.statuses(), [], 'no ringing after the answer');
});

test('a CANCEL while the agent starts gets 200 and the INVITE 487; the call ends cancelled and its RTP ports are free', async () => {
  const { h, agent } = start([CARRIER_A]);
  agent.holding = true;
  const c = await h.carrier(SBC);
  const invite = c.invite();
  assert.deepEqual(await c.statuses(), [180]);
  assert.equal(h.rtp.pool.portsInUse, 2, 'the call holds its ports while it rings');
  const id = sessionIdOf(agent);
  c.cancel(invite);
  const got = await c.responses();
  assert.deepEqual(got.map((r) => `${r.status} ${header(r, 'CSeq')}`), [`200 ${header(invite, 'CSeq')!.split(' ')[0]} CANCEL`, `487 ${header(invite, 'CSeq')}`]);
  c.ackFailure(invite, got[1]!);
  assert.equal(h.ends.get(id), 'cancelled');
  assert.equal(agent.last.ended, 'cancelled');
  assert.equal(h.calls.size, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
  assert.deepEqual(h.router.trunks!.active(), [{ trunk: 'carrier-a', calls: 0 }]);
  h.clock.advance(10_000);
  assert.deepEqual(await c.statuses(), [], 'no more ringing');
  agent.release();
  assert.deepEqual(await c.statuses(), [], 'an agent attached after the CANCEL changes nothing');
  assert.deepEqual(await h.inboundCounts(), { 'carrier-a/cancelled': 1 });
});

test('digits the agent sends to a carrier that offered no telephone-event go as SIP INFO dtmf-relay, one transaction at a time, in order', async () => {
  const { h, agent } = start([CARRIER_A]);
  const c = await h.carrier(SBC);
  const noEvents = pcmuOffer(c.rtpPort).replace(' RTP/AVP 0 101', ' RTP/AVP 0').replace(/a=rtpmap:101[^\r]*\r\na=fmtp:101[^\r]*\r\n/, '');
  await answered(c, c.invite({ sdp: noEvents }));
  assert.equal(agent.last.session.sendDtmf('12'), true);
  await settle();
  const first = c.nextRequest('INFO');
  assert.equal(header(first, 'Content-Type'), 'application/dtmf-relay');
  assert.match(first.body.toString(), /^Signal=1\r\nDuration=160\r\n$/);
  assert.throws(() => c.nextRequest('INFO'), 'the second waits for the first to be answered');
  c.respond(first, 200);
  await settle();
  const second = c.nextRequest('INFO');
  assert.match(second.body.toString(), /^Signal=2\r\n/);
  assert.ok(Number(header(second, 'CSeq')!.split(' ')[0]) > Number(header(first, 'CSeq')!.split(' ')[0]));
});

test('RFC 3311: an UPDATE with SDP holds a trunk call (a=sendonly -> a=recvonly) and another resumes it; the call goes on', async () => {
  const { h, agent } = start([CARRIER_A]);
  const c = await h.carrier(SBC);
  const { invite, ok } = await answered(c);
  const withDirection = (dir: string) => pcmuOffer(c.rtpPort).replace('a=sendrecv', `a=${dir}`).replace('o=carrier 1001 1', 'o=carrier 1001 2');
  c.callerRequest('UPDATE', invite, ok, { headers: [{ name: 'Content-Type', value: 'application/sdp' }], body: withDirection('sendonly') });
  const [held] = await c.responses();
  assert.equal(held?.status, 200);
  assert.match(held!.body.toString(), /^a=recvonly\r?$/m);
  assert.equal(header(held!, 'Record-Route'), undefined, 'an UPDATE answer makes no route set');
  c.callerRequest('UPDATE', invite, ok, { headers: [{ name: 'Content-Type', value: 'application/sdp' }], body: withDirection('sendrecv') });
  const [resumed] = await c.responses();
  assert.match(resumed!.body.toString(), /^a=sendrecv\r?$/m);
  assert.equal(h.calls.get(sessionIdOf(agent))?.state !== 'ended', true);
});

test('RFC 3515: on a trunk with inbound.refer the agent\'s transfer to a number is a blind REFER to the carrier (sip:+E164@carrier;user=phone), resolved by its NOTIFY 200', async () => {
  const { h, agent } = start([{ ...CARRIER_A, inbound: { ...CARRIER_A.inbound!, refer: true } }]);
  const c = await h.carrier(SBC);
  const { invite, ok } = await answered(c);
  const done = agent.last.session.transfer('+1 555 765 4321');
  await settle();
  const refer = c.nextRequest('REFER');
  assert.equal(header(refer, 'Refer-To'), '<sip:+15557654321@192.0.2.10;user=phone>');
  c.respond(refer, 202);
  c.callerRequest('NOTIFY', invite, ok, {
    headers: [
      { name: 'Event', value: 'refer' },
      { name: 'Subscription-State', value: 'terminated;reason=noresource' },
      { name: 'Content-Type', value: 'message/sipfrag;version=2.0' },
    ],
    body: 'SIP/2.0 200 OK\r\n',
  });
  await done;
  await settle();
  assert.equal(h.ends.get(sessionIdOf(agent)), 'transferred');
});

test('without inbound.refer and without an outbound trunk a transfer to a number is refused (404, naming sip.outboundRoutes) and the call stays with the agent', async () => {
  const { h, agent } = start([CARRIER_A]);
  const c = await h.carrier(SBC);
  await answered(c);
  await assert.rejects(agent.last.session.transfer('+15557654321'), (err: Error & { status?: number }) => err.status === 404 && /outboundRoutes/.test(err.message));
  assert.equal(h.ends.get(sessionIdOf(agent)), undefined);
});

test('RFC 3261 §13.2.1: an INVITE without SDP gets our offer in the 200; the answer in its ACK starts the call on the codec it chose', async () => {
  const { h, agent } = start([{ ...CARRIER_A, codecs: ['pcma', 'pcmu'] }]);
  const c = await h.carrier(SBC);
  const invite = c.invite({ sdp: '' });
  const got = await c.responses();
  const ok = find(got, 200);
  const offer = ok.body.toString();
  assert.match(offer, /^m=audio \d+ RTP\/AVP 8 0 101\r?$/m, `our offer, in the trunk's order:\n${offer}`);
  assert.match(offer, /^a=rtpmap:101 telephone-event\/8000\r?$/m);
  assert.equal(agent.sessions.length, 0, 'no call before the answer');
  const answer = pcmuOffer(c.rtpPort);
  c.callerRequest('ACK', invite, ok, { headers: [{ name: 'Content-Type', value: 'application/sdp' }], body: answer });
  await settle();
  assert.equal(agent.sessions.length, 1, 'the agent is attached once the answer came');
  const call = h.calls.get(sessionIdOf(agent))!;
  assert.equal(call.trunk?.to, TRUNK_NUMBER);
  assert.match(call.describe(), /PCMU|pcmu/i, call.describe());
  assert.equal(h.rtp.pool.portsInUse, 2);
});

test('an ACK without the answer to our offer ends the dialog with a BYE and frees the ports', async () => {
  const { h, agent } = start([CARRIER_A]);
  const c = await h.carrier(SBC);
  const invite = c.invite({ sdp: '' });
  const ok = find(await c.responses(), 200);
  c.callerRequest('ACK', invite, ok);
  await settle();
  const bye = c.nextRequest('BYE');
  assert.match(header(bye, 'Reason') ?? '', /^Q\.850;cause=41/);
  assert.equal(agent.sessions.length, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
  assert.deepEqual(h.router.trunks!.active(), [{ trunk: 'carrier-a', calls: 0 }]);
});

test('an INVITE without SDP on a trunk that requires SRTP is refused 488', async () => {
  const { h } = start([{ ...CARRIER_A, mediaEncryption: 'require' }]);
  const c = await h.carrier(SBC);
  c.invite({ sdp: '' });
  assert.deepEqual(await c.statuses(), [488]);
  assert.equal(h.rtp.pool.portsInUse, 0);
});

test('RFC 3261 §15: a BYE on the early dialog while it rings gets 200, the INVITE 487, and the call ends bye with its ports free', async () => {
  const { h, agent } = start([CARRIER_A]);
  agent.holding = true;
  const c = await h.carrier(SBC);
  const invite = c.invite();
  const [ringing] = await c.responses();
  assert.equal(ringing?.status, 180);
  const id = sessionIdOf(agent);
  c.callerRequest('BYE', invite, ringing!);
  const got = await c.responses();
  assert.deepEqual(got.map((r) => `${r.status} ${header(r, 'CSeq')!.split(' ')[1]}`).sort(), ['200 BYE', '487 INVITE']);
  c.ackFailure(invite, got.find((r) => r.status === 487)!);
  assert.equal(h.ends.get(id), 'bye');
  assert.equal(h.calls.size, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
  agent.release();
  assert.deepEqual(await c.statuses(), [], 'no 200 after the BYE');
  assert.deepEqual(await h.inboundCounts(), { 'carrier-a/cancelled': 1 });
});

test('a CANCEL while the routing webhook is asked gets the INVITE 487; the late reply starts no call', async () => {
  server = await routingServer(() => 'hang');
  const { h, agent } = start([{ ...CARRIER_A, inbound: { ...CARRIER_A.inbound!, webhook: { url: server.url, secret: server.secret, timeoutMs: 5_000 } } }]);
  const c = await h.carrier(SBC);
  const invite = c.invite();
  await until(() => server!.hanging.length === 1, 'the webhook request');
  c.cancel(invite);
  const got = await c.responses();
  assert.deepEqual(got.map((r) => r.status), [200, 487]);
  c.ackFailure(invite, got[1]!);
  server.hanging.shift()!.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ agent: 'test' }));
  await until(() => h.audits('sip.route').length === 1, 'the routing decision');
  await settle();
  assert.deepEqual(await c.statuses(), [], 'no 180, no 200');
  assert.equal(agent.sessions.length, 0);
  assert.equal(h.calls.size, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
  assert.deepEqual(await h.inboundCounts(), { 'carrier-a/cancelled': 1 });
});

test('an agent not attached within ringTimeoutSeconds gets the caller 480; the call and its ports are gone', async () => {
  const { h, agent } = start([{ ...CARRIER_A, inbound: { ...CARRIER_A.inbound!, ringTimeoutSeconds: 12 } }]);
  agent.holding = true;
  const c = await h.carrier(SBC);
  const invite = c.invite();
  assert.deepEqual(await c.statuses(), [180]);
  h.clock.advance(11_999);
  assert.deepEqual(await c.statuses(), [180, 180]);
  h.clock.advance(1);
  const [res] = await c.responses();
  assert.equal(res!.status, 480);
  assert.equal(res!.reason, 'Temporarily Unavailable (the agent did not start within 12 s)');
  c.ackFailure(invite, res!);
  assert.equal(h.ends.get(sessionIdOf(agent)), 'setup-failed');
  assert.equal(h.calls.size, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
  assert.deepEqual(await h.inboundCounts(), { 'carrier-a/480': 1 });
});

test("the agent is told the caller (P-Asserted-Identity over From), the called number, the trunk and the carrier's X- headers", async () => {
  const { h, agent } = start([CARRIER_A]);
  const c = await h.carrier(SBC);
  c.invite({
    from: '"Front Desk" <sip:0123@carrier.example>',
    pai: `"Jane Doe" <sip:${CALLER_NUMBER}@carrier.example;user=phone>`,
    headers: [
      { name: 'X-Account', value: 'acme' },
      { name: 'X-Campaign', value: 'spring' },
      { name: 'Diversion', value: '<sip:+15550001111@carrier.example>;reason=unconditional' },
    ],
  });
  assert.deepEqual(await c.statuses(), [180, 200]);
  const { details } = agent.last.session;
  assert.equal(details.from, CALLER_NUMBER);
  assert.equal(details.callerIdSource, 'P-Asserted-Identity');
  assert.equal(details.callerName, 'Jane Doe');
  assert.equal(details.to, '+15551230000');
  assert.equal(details.trunk, 'carrier-a');
  assert.deepEqual(details.headers, { 'X-Account': 'acme', 'X-Campaign': 'spring' });
  assert.deepEqual(details.diversion, ['<sip:+15550001111@carrier.example>;reason=unconditional']);
});

test('Privacy: id withholds the caller from the agent: from is anonymous, no name', async () => {
  const { h, agent } = start([CARRIER_A]);
  const c = await h.carrier(SBC);
  c.invite({ pai: `"Jane Doe" <sip:${CALLER_NUMBER}@carrier.example;user=phone>`, headers: [{ name: 'Privacy', value: 'id' }] });
  assert.deepEqual(await c.statuses(), [180, 200]);
  assert.equal(agent.last.session.details.from, 'anonymous');
  assert.equal(agent.last.session.details.callerName, undefined);
});

test('sip.agents by the called number picks the agent over the trunk default', async () => {
  const support = new HeldAgent('support');
  const { h, agent } = start([{ ...CARRIER_A, inbound: { ...CARRIER_A.inbound!, agent: 'nobody' } }], { agents: { support }, sipAgents: { [TRUNK_NUMBER]: 'support' } });
  const c = await h.carrier(SBC);
  c.invite();
  assert.deepEqual(await c.statuses(), [180, 200]);
  assert.equal(support.sessions.length, 1);
  assert.equal(agent.sessions.length, 0);
});

test("the routing webhook picks the agent by the caller's number", async () => {
  server = await routingServer((req) => ({ body: { agent: req.from === CALLER_NUMBER ? 'sales' : 'support', customParameters: { from: req.from } } }));
  const sales = new HeldAgent('sales');
  const support = new HeldAgent('support');
  const { h } = start([{ ...CARRIER_A, inbound: { ...CARRIER_A.inbound!, webhook: { url: server.url, secret: server.secret } } }], { agents: { sales, support } });
  const known = await h.carrier(SBC);
  known.invite();
  await until(() => sales.sessions.length === 1, 'the sales agent');
  const other = await h.carrier('192.0.2.20:5060', '+15559998888');
  other.invite();
  await until(() => support.sessions.length === 1, 'the support agent');
  assert.equal(sales.sessions.length, 1);
  assert.deepEqual(support.last.session.details.customParameters, { from: '+15559998888' });
  const [asked] = server.requests;
  assert.deepEqual(
    { event: asked!.event, trunk: asked!.trunk, from: asked!.from, to: asked!.to, remote: asked!.remote, transport: asked!.transport },
    { event: 'call.incoming', trunk: 'carrier-a', from: CALLER_NUMBER, to: TRUNK_NUMBER, remote: SBC, transport: 'UDP' },
  );
  await until(() => known.flow.sent.length >= 2 && other.flow.sent.length >= 2, 'both answers');
  assert.deepEqual(await known.statuses(), [180, 200]);
  assert.deepEqual(await other.statuses(), [180, 200]);
});

test("a routing webhook's reject answers the caller with its status and reason, audited as rejected", async () => {
  server = await routingServer(() => ({ body: { reject: { status: 486, reason: 'Busy Here (closed today)' } } }));
  const { h, agent } = start([{ ...CARRIER_A, inbound: { ...CARRIER_A.inbound!, webhook: { url: server.url, secret: server.secret } } }]);
  const c = await h.carrier(SBC);
  c.invite();
  await until(() => c.flow.sent.length >= 1, 'the answer');
  const [res] = await c.responses();
  assert.equal(res!.status, 486);
  assert.equal(res!.reason, 'Busy Here (closed today)');
  assert.equal(agent.sessions.length, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
  const audit = h.audits('sip.invite').at(-1)!;
  assert.deepEqual({ outcome: audit.outcome, status: audit.status, by: audit.by }, { outcome: 'rejected', status: 486, by: 'webhook' });
  assert.deepEqual(await h.inboundCounts(), { 'carrier-a/486': 1 });
});

test("a routing webhook that does not answer within timeoutMs falls back to the trunk's inbound.agent", async () => {
  server = await routingServer(() => 'hang');
  const fallback = new HeldAgent('fallback');
  const { h, agent } = start([{ ...CARRIER_A, inbound: { ...CARRIER_A.inbound!, agent: 'fallback', webhook: { url: server.url, secret: server.secret, timeoutMs: 200 } } }], { agents: { fallback } });
  const c = await h.carrier(SBC);
  c.invite();
  await until(() => c.flow.sent.length >= 2, 'the 180 and 200 after the timeout');
  assert.deepEqual(await c.statuses(), [180, 200]);
  assert.equal(fallback.sessions.length, 1);
  assert.equal(agent.sessions.length, 0);
  const route = h.audits('sip.route')[0]!;
  assert.deepEqual({ outcome: route.outcome, decision: route.decision, why: route.why }, { outcome: 'error', decision: 'fallback', why: 'timeout' });
});

test("with onFailure 'reject', a routing webhook that does not answer gets the caller 503", async () => {
  server = await routingServer(() => 'hang');
  const { h, agent } = start([{ ...CARRIER_A, inbound: { ...CARRIER_A.inbound!, webhook: { url: server.url, secret: server.secret, timeoutMs: 200, onFailure: 'reject' } } }]);
  const c = await h.carrier(SBC);
  c.invite();
  await until(() => c.flow.sent.length >= 1, 'the refusal');
  const [res] = await c.responses();
  assert.equal(res!.status, 503);
  assert.equal(res!.reason, 'Service Unavailable (routing webhook: timeout)');
  assert.equal(agent.sessions.length, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
});

test('voxgate_sip_trunk_calls_total counts inbound calls by trunk and outcome', async () => {
  const { h } = start([{ ...CARRIER_A, maxCalls: 1 }]);
  const c = await h.carrier(SBC);
  await answered(c);
  c.invite();
  assert.deepEqual(await c.statuses(), [503]);
  c.invite({ to: '+15550009999' });
  assert.deepEqual(await c.statuses(), [404]);
  const stranger = await h.carrier('198.51.100.7:5060');
  stranger.invite();
  assert.deepEqual(await stranger.statuses(), [403]);
  assert.deepEqual(await h.inboundCounts(), { 'carrier-a/answered': 1, 'carrier-a/503': 1, 'carrier-a/404': 1, 'unknown/403': 1 });
  const text = await h.registry.getSingleMetricAsString('voxgate_sip_trunk_calls_total');
  assert.match(text, /^voxgate_sip_trunk_calls_total\{trunk="carrier-a",direction="inbound",outcome="answered"\} 1$/m);
  assert.match(text, /^voxgate_sip_trunk_calls_total\{trunk="unknown",direction="inbound",outcome="403"\} 1$/m);
  assert.match(await h.registry.getSingleMetricAsString('voxgate_sip_trunk_active_calls'), /^voxgate_sip_trunk_active_calls\{trunk="carrier-a"\} 1$/m);
  assert.match(await h.registry.getSingleMetricAsString('voxgate_rtp_ports_in_use'), /^voxgate_rtp_ports_in_use 2$/m);
});

test('RFC 4028: Session-Expires 90 from a carrier without Supported: timer makes voxgate the refresher; its UPDATE at 45 s, answered 200, keeps the call', async () => {
  const { h, agent } = start([CARRIER_A]);
  const c = await h.carrier(SBC);
  const { ok } = await answered(c, c.invite({ headers: [{ name: 'Session-Expires', value: '90' }] }));
  assert.equal(header(ok, 'Session-Expires'), '90;refresher=uas');
  assert.equal(header(ok, 'Require'), undefined, '§9: no Require: timer to a UAC that does not support it');
  h.clock.advance(44_999);
  assert.deepEqual(c.take(), []);
  h.clock.advance(1);
  const update = c.nextRequest('UPDATE');
  assert.equal(header(update, 'Session-Expires'), '90;refresher=uac');
  assert.equal(update.body.length, 0, 'a refresh without a body');
  assert.equal(header(update, 'Call-ID'), header(ok, 'Call-ID'));
  c.respond(update, 200, { headers: [{ name: 'Session-Expires', value: '90;refresher=uac' }] });
  await settle();
  h.clock.advance(44_999);
  assert.deepEqual(c.take().filter((m) => m.kind === 'request'), [], 'no BYE, no early refresh');
  h.clock.advance(1);
  const again = c.nextRequest('UPDATE');
  c.respond(again, 200);
  await settle();
  h.clock.advance(40_000);
  assert.equal(h.ends.get(sessionIdOf(agent)), undefined, 'the call goes on');
  assert.equal(h.calls.size, 1);
});

test('RFC 4028: an UPDATE refresh nobody answers ends the call with a BYE, Reason Q.850 cause 102', async () => {
  const { h, agent } = start([CARRIER_A]);
  const c = await h.carrier(SBC);
  await answered(c, c.invite({ headers: [{ name: 'Session-Expires', value: '90' }] }));
  h.clock.advance(45_000);
  c.nextRequest('UPDATE');
  // Unanswered: the UPDATE is retransmitted (Timer E) until the session ends.
  h.clock.advance(32_000);
  const bye = c.nextRequest('BYE');
  assert.equal(header(bye, 'Reason'), 'Q.850;cause=102;text="session-expired"');
  assert.equal(h.ends.get(sessionIdOf(agent)), 'session-expired');
  assert.equal(h.rtp.pool.portsInUse, 0);
  c.respond(bye, 200);
  await settle();
  assert.equal(h.router.dialogs, 0);
});

test('RFC 4028: a refresh UPDATE that times out (408) ends the call even long before the session would expire', async () => {
  const { h, agent } = start([CARRIER_A]);
  const c = await h.carrier(SBC);
  await answered(c, c.invite({ headers: [{ name: 'Session-Expires', value: '1800' }] }));
  h.clock.advance(900_000);
  c.nextRequest('UPDATE');
  h.clock.advance(31_999);
  assert.equal(h.ends.get(sessionIdOf(agent)), undefined);
  // §17.1.2.2 Timer F (64*T1): the transaction times out.
  h.clock.advance(1);
  const bye = c.nextRequest('BYE');
  assert.equal(header(bye, 'Reason'), 'Q.850;cause=102;text="session-expired"');
  assert.equal(h.ends.get(sessionIdOf(agent)), 'session-expired');
});

test('RFC 4028: a carrier that does not allow UPDATE is refreshed with a re-INVITE of our SDP, and its 2xx is ACKed', async () => {
  const { h } = start([CARRIER_A]);
  const c = await h.carrier(SBC);
  const { ok } = await answered(c, c.invite({ allow: 'INVITE, ACK, CANCEL, BYE', headers: [{ name: 'Session-Expires', value: '90' }] }));
  h.clock.advance(45_000);
  const reinvite = c.nextRequest('INVITE');
  assert.equal(header(reinvite, 'Session-Expires'), '90;refresher=uac');
  const port = /^m=audio (\d+) /m.exec(ok.body.toString())![1];
  assert.match(reinvite.body.toString(), new RegExp(`^m=audio ${port} RTP/AVP 0`, 'm'), 'the same media, offered again');
  assert.match(reinvite.body.toString(), /^o=voxgate \d+ 2 /m, 'the SDP version moves on');
  c.respond(reinvite, 200, { body: pcmuOffer(c.rtpPort) });
  await settle();
  const ack = c.nextRequest('ACK');
  assert.equal(header(ack, 'CSeq'), `${header(reinvite, 'CSeq')!.split(' ')[0]} ACK`);
  h.clock.advance(40_000);
  assert.equal(h.calls.size, 1);
});
