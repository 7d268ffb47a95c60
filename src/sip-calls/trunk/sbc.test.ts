import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import type { SipRequest, SipResponse } from '../../sip/message.js';
import type { FarEnd } from '../../testing/sip.js';
import { browserOffer } from '../../testing/sip-calls.js';
import { header, pcmuOffer, settle, until, type Carrier, type HeldAgent, type TrunkInput } from '../../testing/trunk.js';
import { outboundHarness, type OutboundHarness } from '../../testing/outbound.js';

let h: OutboundHarness<HeldAgent> | undefined;
afterEach(() => {
  h?.close();
  h = undefined;
});

const A = '203.0.113.10:5060';
const CALLED = '+15557654321';

const CARRIER_A: TrunkInput = {
  name: 'carrier-a',
  outbound: { address: [A, '203.0.113.11:5060'], transport: 'udp', auth: { user: 'acct-123', password: 'pw' }, fromUser: 'acct-123', fromHost: 'carrier.example.net', numbers: ['+15551230000'], callerIdHeader: 'pai' },
  codecs: ['pcmu', 'opus'],
};
/** A second trunk for UK numbers, which alice may not use. */
const CARRIER_UK: TrunkInput = { name: 'carrier-uk', outbound: { address: '198.51.100.50:5060', numbers: ['+442070000000'] }, codecs: ['pcma'] };

/** alice may call numbers through carrier-a; bob through nothing. */
async function start(): Promise<{ h: OutboundHarness<HeldAgent>; alice: FarEnd; a: Carrier }> {
  const harness = outboundHarness({
    trunks: [CARRIER_A, CARRIER_UK],
    outboundRoutes: [
      { prefix: '+1', trunk: 'carrier-a' },
      { prefix: '+44', trunk: 'carrier-uk' },
    ],
    users: [
      { user: 'alice', password: 'alice-secret', trunks: ['carrier-a'] },
      { user: 'bob', password: 'bob-secret' },
    ],
  });
  h = harness;
  const a = await harness.carrier(A, CALLED);
  const alice = await harness.browser('alice', 'alice-secret');
  return { h: harness, alice, a };
}

/** A browser's INVITE to a number in our domain, with a WebRTC-shaped Opus offer. */
function dial(far: FarEnd, number = CALLED): SipRequest {
  const uri = `sip:${number}@voxgate.test`;
  return far.send(
    'INVITE',
    uri,
    [
      { name: 'From', value: `<sip:${far.user}@voxgate.test>;tag=${far.tag}` },
      { name: 'To', value: `<${uri}>` },
      { name: 'Call-ID', value: `phone-${far.tag}-${Math.random().toString(36).slice(2, 8)}` },
      { name: 'Contact', value: far.contact },
      { name: 'Content-Type', value: 'application/sdp' },
    ],
    browserOffer(),
  );
}

async function nextInvite(c: Carrier): Promise<SipRequest> {
  await until(() => c.flow.sent.some((t) => t.startsWith('INVITE ')), `an INVITE at ${c.flow.remote}`);
  return c.nextRequest('INVITE');
}

async function responses(far: FarEnd): Promise<SipResponse[]> {
  await settle();
  return far.take().filter((m): m is SipResponse => m.kind === 'response');
}

async function requests(far: FarEnd): Promise<SipRequest[]> {
  await settle();
  return far.take().filter((m): m is SipRequest => m.kind === 'request');
}

/** The carrier's 200 with a PCMU answer. */
function answer(a: Carrier, invite: SipRequest): void {
  a.respond(invite, 200, { headers: [{ name: 'Contact', value: a.contact }], body: pcmuOffer(a.rtpPort) });
}

/** The browser's call answered by the carrier, ACKed by the browser. */
async function bridged(): Promise<{ h: OutboundHarness<HeldAgent>; alice: FarEnd; a: Carrier; invite: SipRequest; ok: SipResponse; out: SipRequest }> {
  const { h, alice, a } = await start();
  const invite = dial(alice);
  const out = await nextInvite(a);
  answer(a, out);
  await until(() => alice.flow.sent.some((t) => t.startsWith('SIP/2.0 200')), 'the browser’s 200');
  const ok = (await responses(alice)).find((r) => r.status === 200)!;
  alice.callerRequest('ACK', invite, ok);
  await settle();
  a.take();
  return { h, alice, a, invite, ok, out };
}

test("a registered user's INVITE to sip:+1555…@voxgate.test goes out on the route's trunk: sip:+E164@carrier;user=phone, the trunk's caller ID, an RTP/AVP offer with the browser's Opus first", async () => {
  const { h, alice, a } = await start();
  dial(alice);
  const out = await nextInvite(a);
  assert.equal(out.uri, 'sip:+15557654321@203.0.113.10:5060;user=phone');
  assert.match(header(out, 'From')!, /^<sip:acct-123@carrier\.example\.net>;tag=/);
  assert.equal(header(out, 'P-Asserted-Identity'), '<sip:+15551230000@carrier.example.net;user=phone>');
  assert.match(out.body.toString(), /^m=audio \d+ RTP\/AVP 111 0 /m, "the browser's codec first, so both legs can forward packets");
  assert.deepEqual(await responses(alice), [], 'nothing to the browser yet (no 100 within 200 ms)');
  assert.equal(h.trunks.byName('carrier-a')!.outbound.size, 1);
});

test('the carrier’s 180 reaches the browser as 180; its 486 as 486 (the ACK of ours aside), and the call is gone', async () => {
  const { h, alice, a } = await start();
  const invite = dial(alice);
  const out = await nextInvite(a);
  a.respond(out, 180);
  const ringing = await responses(alice);
  assert.deepEqual(ringing.map((r) => r.status), [180]);
  assert.match(header(ringing[0]!, 'Contact')!, /^<sip:\+15557654321@/);
  a.respond(out, 486, { reason: 'Busy Here', headers: [{ name: 'Reason', value: 'Q.850;cause=17' }] });
  await until(() => alice.flow.sent.length > 0, 'the final answer');
  const [busy] = await responses(alice);
  assert.equal(busy!.status, 486, '486 stays 486');
  assert.equal(header(busy!, 'Reason'), 'Q.850;cause=17');
  assert.equal(header(busy!, 'Call-ID'), header(invite, 'Call-ID'));
  assert.deepEqual((await requests(a)).map((r) => r.method), ['ACK']);
  assert.equal(h.calls.size, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
  assert.equal(h.trunks.byName('carrier-a')!.outbound.size, 0);
});

test('the carrier’s 200 answers the browser 200 with our WebRTC SDP; one call with caller and callee legs; the browser’s BYE reaches the carrier as BYE', async () => {
  const { h, alice, a, invite, ok, out } = await bridged();
  assert.equal(header(ok, 'Content-Type'), 'application/sdp');
  assert.match(ok.body.toString(), /a=setup:passive/, 'the browser leg’s answer');
  assert.equal(h.calls.size, 1);
  const call = [...h.calls.values()][0]!;
  assert.deepEqual([...call.legs.keys()].sort(), ['callee', 'caller']);
  assert.deepEqual(call.trunk, { name: 'carrier-a', direction: 'outbound', from: '+15551230000', to: CALLED });
  assert.equal(call.sipCallId, header(invite, 'Call-ID'));
  assert.equal(h.agent.sessions.length, 0, 'no agent: a bridge');
  alice.callerRequest('BYE', invite, ok);
  await settle();
  assert.deepEqual((await responses(alice)).map((r) => r.status), [200]);
  const [bye] = await requests(a);
  assert.equal(bye?.method, 'BYE');
  assert.equal(header(bye!, 'Call-ID'), header(out, 'Call-ID'));
  assert.equal(bye!.uri, `sip:${CALLED}@${A}`);
  a.respond(bye!, 200);
  await settle();
  assert.equal(h.calls.size, 0);
  assert.equal(h.router.dialogs, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
  assert.equal(h.trunks.byName('carrier-a')!.outbound.size, 0);
});

test('the carrier’s BYE reaches the browser as BYE', async () => {
  const { h, alice, a, out } = await bridged();
  a.inDialog('BYE', out);
  await settle();
  assert.deepEqual((await responses(a)).map((r) => r.status), [200]);
  const [bye] = await requests(alice);
  assert.equal(bye?.method, 'BYE');
  alice.respond(bye!, 200);
  await settle();
  assert.equal(h.calls.size, 0);
});

test('hold crosses: the browser’s re-INVITE with a=sendonly is answered recvonly, and the carrier gets our re-INVITE with a=sendonly', async () => {
  const { alice, a, invite, ok } = await bridged();
  alice.callerRequest('INVITE', invite, ok, { headers: [{ name: 'Content-Type', value: 'application/sdp' }], body: browserOffer().replace('a=sendrecv', 'a=sendonly') });
  await settle();
  const [answered] = await responses(alice);
  assert.equal(answered?.status, 200);
  assert.match(answered!.body.toString(), /a=recvonly/);
  const [reinvite] = await requests(a);
  assert.equal(reinvite?.method, 'INVITE');
  assert.match(reinvite!.body.toString(), /^a=sendonly\r?$/m);
  assert.doesNotMatch(reinvite!.body.toString(), /a=sendrecv/);
});

test('hold crosses the other way: the carrier’s re-INVITE with a=sendonly makes our re-INVITE to the browser with a=sendonly', async () => {
  const { alice, a, out } = await bridged();
  a.inDialog('INVITE', out, { headers: [{ name: 'Contact', value: a.contact }, { name: 'Content-Type', value: 'application/sdp' }], body: pcmuOffer(a.rtpPort).replace('a=sendrecv', 'a=sendonly') });
  await settle();
  const [answered] = await responses(a);
  assert.equal(answered?.status, 200);
  assert.match(answered!.body.toString(), /a=recvonly/);
  const [reinvite] = await requests(alice);
  assert.equal(reinvite?.method, 'INVITE');
  assert.match(reinvite!.body.toString(), /^a=sendonly\r?$/m);
});

test('a user without trunks gets 403 saying to give them trunks in sip.users; nothing goes to a carrier', async () => {
  const { h, a } = await start();
  const bob = await h.browser('bob', 'bob-secret');
  dial(bob);
  const [res] = await responses(bob);
  assert.equal(res?.status, 403);
  assert.match(res!.reason, /^Forbidden \(user bob may not call phone numbers: .*trunks.*sip\.users/);
  assert.deepEqual(await requests(a), []);
  assert.equal(h.calls.size, 0);
});

test('a number no route of the user’s trunks takes gets 404 (the +44 route is carrier-uk’s, which alice may not use)', async () => {
  const { h, alice, a } = await start();
  dial(alice, '+442071234567');
  const [res] = await responses(alice);
  assert.equal(res?.status, 404);
  assert.match(res!.reason, /no outbound route for \+442071234567/);
  assert.deepEqual(await requests(a), []);
  assert.deepEqual([...h.transport.flows.values()].map((f) => f.remote), [A], 'no flow opened to carrier-uk');
});

test('the browser’s CANCEL while the carrier rings: CANCEL to the carrier, 200 and 487 to the browser; the carrier’s 487 ends it', async () => {
  const { h, alice, a } = await start();
  const invite = dial(alice);
  const out = await nextInvite(a);
  a.respond(out, 180);
  await responses(alice);
  alice.cancel(invite);
  await settle();
  const got = await responses(alice);
  const seq = header(invite, 'CSeq')!.split(' ')[0];
  assert.deepEqual(got.map((r) => `${r.status} ${header(r, 'CSeq')}`).sort(), [`200 ${seq} CANCEL`, `487 ${seq} INVITE`]);
  const [cancel] = await requests(a);
  assert.equal(cancel?.method, 'CANCEL');
  assert.equal(header(cancel!, 'Call-ID'), header(out, 'Call-ID'));
  a.respond(cancel!, 200);
  a.respond(out, 487);
  await settle();
  assert.deepEqual((await requests(a)).map((r) => r.method), ['ACK']);
  assert.deepEqual(await responses(alice), [], 'no second final answer to the browser');
  assert.equal(h.calls.size, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
  assert.equal(h.trunks.byName('carrier-a')!.outbound.size, 0);
});

test('183 with SDP from the carrier: the browser gets 183 with our SDP (early media), then 200 with the same session', async () => {
  const { h, alice, a } = await start();
  const invite = dial(alice);
  const out = await nextInvite(a);
  a.respond(out, 183, { body: pcmuOffer(a.rtpPort) });
  await until(() => alice.flow.sent.length > 0, 'the 183');
  const [early] = await responses(alice);
  assert.equal(early?.status, 183);
  assert.equal(header(early!, 'Content-Type'), 'application/sdp');
  assert.equal(h.calls.size, 1, 'the call exists for its early media');
  answer(a, out);
  await until(() => alice.flow.sent.length > 0, 'the 200');
  const [ok] = await responses(alice);
  assert.equal(ok?.status, 200);
  assert.equal(ok!.body.toString(), early!.body.toString());
  alice.callerRequest('ACK', invite, ok!);
  await settle();
  assert.equal(h.calls.size, 1);
});

test('183 early media, then the carrier’s 486: the browser gets 486, the early call is closed', async () => {
  const { h, alice, a } = await start();
  dial(alice);
  const out = await nextInvite(a);
  a.respond(out, 183, { body: pcmuOffer(a.rtpPort) });
  await until(() => alice.flow.sent.length > 0, 'the 183');
  assert.deepEqual((await responses(alice)).map((r) => r.status), [183]);
  a.respond(out, 486);
  await until(() => alice.flow.sent.length > 0, 'the 486');
  assert.deepEqual((await responses(alice)).map((r) => r.status), [486]);
  assert.equal(h.calls.size, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
  assert.equal(h.trunks.byName('carrier-a')!.outbound.size, 0);
});

test('the carrier’s 200 crossing the browser’s CANCEL is ACKed and BYEd; the browser keeps its 487', async () => {
  const { h, alice, a } = await start();
  const invite = dial(alice);
  const out = await nextInvite(a);
  a.respond(out, 180);
  await responses(alice);
  alice.cancel(invite);
  await settle();
  assert.deepEqual((await responses(alice)).map((r) => r.status).sort(), [200, 487]);
  const [cancel] = await requests(a);
  a.respond(cancel!, 200);
  answer(a, out);
  await settle();
  assert.deepEqual((await requests(a)).map((r) => r.method), ['ACK', 'BYE']);
  assert.deepEqual(await responses(alice), []);
  assert.equal(h.calls.size, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
});

test('a 503 from the first carrier address fails over to the second; the browser only hears the second’s answers', async () => {
  const { h, alice, a } = await start();
  const b = await h.carrier('203.0.113.11:5060', CALLED);
  dial(alice);
  const out = await nextInvite(a);
  a.respond(out, 503);
  const second = await nextInvite(b);
  assert.deepEqual(await responses(alice), [], 'no 503 to the browser');
  b.respond(second, 180);
  assert.deepEqual((await responses(alice)).map((r) => r.status), [180]);
  answer(b, second);
  await until(() => alice.flow.sent.length > 0, 'the 200');
  assert.deepEqual((await responses(alice)).map((r) => r.status), [200]);
  assert.equal(h.calls.size, 1);
});

test('the early call ending before the answer (an operator, shutdown) CANCELs the carrier and answers the browser 487', async () => {
  const { h, alice, a } = await start();
  dial(alice);
  const out = await nextInvite(a);
  a.respond(out, 183, { body: pcmuOffer(a.rtpPort) });
  await until(() => alice.flow.sent.length > 0, 'the 183');
  await responses(alice);
  const [call] = [...h.calls.values()];
  call!.close('deleted');
  await until(() => a.flow.sent.some((t) => t.startsWith('CANCEL ')), 'the CANCEL');
  await until(() => alice.flow.sent.length > 0, 'the 487');
  assert.deepEqual((await responses(alice)).map((r) => r.status), [487]);
  a.respond(out, 487);
  await settle();
  assert.equal(h.trunks.byName('carrier-a')!.outbound.size, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
});

test("a carrier's 503 reaches the browser as 502, a 407 to our account as 403 (RFC 3261 §16.7 step 6)", async () => {
  const { browserStatus } = await import('./sbc.js');
  assert.equal(browserStatus(503, 'Service Unavailable').status, 502);
  assert.equal(browserStatus(407, 'Proxy Authentication Required').status, 403);
  assert.equal(browserStatus(302, 'Moved Temporarily').status, 480);
  assert.deepEqual(browserStatus(486, 'Busy Here'), { status: 486, reason: 'Busy Here' });
});
