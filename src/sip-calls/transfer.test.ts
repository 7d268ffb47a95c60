import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { TransferError } from '../agent/agent.js';
import type { SourceIdentity } from '../auth/source-auth.js';
import { startCall } from '../call/start-call.js';
import { createLogger } from '../core/logger.js';
import { planAnswer } from '../sdp/codec-policy.js';
import { parseSdp } from '../sdp/sdp.js';
import { header, type SipRequest } from '../sip/message.js';
import { fakeSdp } from '../transport/fake.js';
import { browserOffer, harness, settle, type SipCallsHarness } from '../testing/sip-calls.js';
import type { FarEnd } from '../testing/sip.js';

let h: SipCallsHarness;
afterEach(() => h?.close());

const widget: SourceIdentity = { name: 'web-widget', kind: 'browser', agent: undefined, codecs: ['opus', 'pcmu'], maxSessions: undefined, via: 'token' };

/** A WHIP-like caller (no SIP on its side) talking to the agent, whose transfer() voxgate carries out as a UAC. */
async function whipCall(codec: 'opus' | 'pcmu' = 'opus') {
  const plan = planAnswer(parseSdp(browserOffer(codec)), { codecs: ['opus', 'pcmu'], allowSendRecv: true, role: 'ingest' });
  const started = await startCall(
    { calls: h.calls, runtime: h.runtime, clock: h.clock, log: createLogger('silent'), idleTimeoutMs: 600_000, resolveAgent: () => h.agent },
    { source: widget, kind: 'whip', plan, signalingRemote: '127.0.0.1:1', open: (id, out) => h.transports.answer(id, browserOffer(codec), plan, out), transfer: (call, target) => h.router.transfers.bridge(call, target) },
  );
  started.begin();
  await settle();
  started.call.markConnected();
  return { ...started, session: h.agent.last.session };
}

/** What a browser answers to our offer: the same codec, a WebRTC-shaped answer. */
function answerTo(invite: SipRequest): string {
  const plan = planAnswer(parseSdp(invite.body.toString()), { codecs: ['opus', 'pcmu', 'pcma', 'g722'], allowSendRecv: true, role: 'ingest' });
  return fakeSdp(plan, 'active', 'bob-answer');
}

async function rejection(p: Promise<void>): Promise<{ status: number; reason: string }> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof TransferError, `a TransferError, not ${String(err)}`);
    return { status: err.status, reason: err.reason };
  }
  throw new Error('the transfer did not fail');
}

test("a WHIP caller's transfer: voxgate calls the registered user; when they answer, the caller is bridged to them, the agent leaves with transferred", async () => {
  h = harness();
  const bob: FarEnd = await h.browser('bob');
  const { call, session } = await whipCall();
  const transferred = session.transfer('bob');
  await settle();
  const invite = bob.nextRequest('INVITE');
  assert.equal(invite.uri, `sip:bob@${bob.host};transport=ws`, 'to the Contact bob registered');
  assert.match(header(invite, 'From')!, /^<sip:agent@voxgate\.test>;tag=/);
  assert.equal(header(invite, 'To'), '<sip:bob@voxgate.test>');
  assert.match(invite.body.toString(), /a=rtpmap:111 opus\/48000/, "we offer the caller's codec, so both legs can be forwarded");
  bob.respond(invite, 180);
  assert.equal(call.mode, 'agent', 'the caller hears the agent while bob rings');
  bob.respond(invite, 200, { headers: [{ name: 'Contact', value: bob.contact }], body: answerTo(invite) });
  await transferred;
  assert.equal(bob.nextRequest('ACK').method, 'ACK');
  assert.deepEqual([...call.legs.keys()], ['caller', 'callee']);
  assert.equal(call.mode, 'forward');
  assert.equal(h.agent.last.transferredTo, 'sip:bob@voxgate.test');
  assert.equal(h.agent.last.ended, 'transferred');
  assert.equal(call.state, 'connected');
  assert.ok(call.route('caller', 'callee') && call.route('callee', 'caller'));

  // bob hangs up: the call ends.
  const ok = { ...invite, headers: invite.headers } as SipRequest;
  bob.inDialog('BYE', ok);
  await settle();
  assert.equal(call.endReason, 'bye');
  assert.equal(h.router.ctx.dialogs.size, 0);
});

test('the call ends on the caller side (a WHIP DELETE): voxgate sends bob the BYE', async () => {
  h = harness();
  const bob = await h.browser('bob');
  const { call, session } = await whipCall('pcmu');
  const transferred = session.transfer('sip:bob@voxgate.test');
  await settle();
  const invite = bob.nextRequest('INVITE');
  assert.match(invite.body.toString(), /a=rtpmap:0 PCMU\/8000/);
  bob.respond(invite, 200, { headers: [{ name: 'Contact', value: bob.contact }], body: answerTo(invite) });
  await transferred;
  bob.take();
  call.close('deleted');
  const bye = bob.nextRequest('BYE');
  assert.match(header(bye, 'Reason')!, /deleted/);
});

test('a refused transfer (486) leaves the caller with the agent, which gets the SIP status', async () => {
  h = harness();
  const bob = await h.browser('bob');
  const { call, session } = await whipCall();
  const p = session.transfer('bob');
  await settle();
  bob.respond(bob.nextRequest('INVITE'), 486, { reason: 'Busy Here' });
  assert.deepEqual(await rejection(p), { status: 486, reason: 'Busy Here' });
  assert.equal(call.mode, 'agent');
  assert.equal(h.agent.last.ended, undefined);
  assert.equal(call.leg('callee'), undefined);
});

test('a transfer that rings out is CANCELled and fails with 408; a 2xx after that is ACKed and hung up', async () => {
  h = harness();
  const bob = await h.browser('bob');
  const { call, session } = await whipCall();
  const p = session.transfer('bob');
  await settle();
  const invite = bob.nextRequest('INVITE');
  bob.respond(invite, 180);
  h.clock.advance(30_000);
  bob.nextRequest('CANCEL');
  bob.respond(invite, 200, { headers: [{ name: 'Contact', value: bob.contact }], body: answerTo(invite) });
  assert.deepEqual(await rejection(p), { status: 408, reason: 'Request Timeout (no answer)' });
  bob.nextRequest('ACK');
  bob.nextRequest('BYE');
  assert.equal(call.mode, 'agent');
});

test('an answer we cannot use is hung up with 488; offline, unknown and agent targets fail at once with 480, 404, 403', async () => {
  h = harness();
  const bob = await h.browser('bob');
  const { session, call } = await whipCall();
  const p = session.transfer('bob');
  await settle();
  const invite = bob.nextRequest('INVITE');
  bob.respond(invite, 200, { headers: [{ name: 'Contact', value: bob.contact }], body: 'v=0\r\nthis is not sdp' });
  assert.equal((await rejection(p)).status, 488);
  bob.nextRequest('ACK');
  assert.match(header(bob.nextRequest('BYE'), 'Reason')!, /cause=488/);
  assert.equal((await rejection(session.transfer('carol'))).status, 480, 'carol is a user but not registered');
  assert.equal((await rejection(session.transfer('nobody'))).status, 404);
  assert.equal((await rejection(session.transfer('sip:alice@elsewhere.example'))).status, 404);
  assert.equal((await rejection(session.transfer('agent'))).status, 403);
  assert.equal(call.mode, 'agent');
});

test('a second transfer while one rings is refused with 491; the caller leaving cancels the one ringing', async () => {
  h = harness();
  const bob = await h.browser('bob');
  const { session, call } = await whipCall();
  const p = session.transfer('bob');
  await settle();
  const invite = bob.nextRequest('INVITE');
  bob.respond(invite, 180);
  assert.equal((await rejection(session.transfer('bob'))).status, 491);
  call.close('deleted');
  bob.nextRequest('CANCEL');
  bob.respond(invite, 487);
  assert.equal((await rejection(p)).status, 487);
});

test('the caller leaving in the same moment the person answers: they are ACKed and hung up (cause 487) and the transfer fails with 487', async () => {
  h = harness();
  const bob = await h.browser('bob');
  const { call, session } = await whipCall();
  const p = session.transfer('bob');
  await settle();
  const invite = bob.nextRequest('INVITE');
  bob.respond(invite, 200, { headers: [{ name: 'Contact', value: bob.contact }], body: answerTo(invite) });
  call.close('deleted');
  assert.deepEqual(await rejection(p), { status: 487, reason: 'Request Terminated (the caller left)' });
  bob.nextRequest('ACK');
  assert.match(header(bob.nextRequest('BYE'), 'Reason')!, /cause=487/);
  assert.equal(h.router.ctx.dialogs.size, 0);
});

test('the bridged person cannot REFER (403) or NOTIFY (481) in their dialog, and the call goes on', async () => {
  h = harness();
  const bob = await h.browser('bob');
  const { call, session } = await whipCall();
  const transferred = session.transfer('bob');
  await settle();
  const invite = bob.nextRequest('INVITE');
  bob.respond(invite, 200, { headers: [{ name: 'Contact', value: bob.contact }], body: answerTo(invite) });
  await transferred;
  bob.take();
  bob.inDialog('REFER', invite, { headers: [{ name: 'Refer-To', value: '<sip:carol@voxgate.test>' }] });
  bob.inDialog('NOTIFY', invite, { headers: [{ name: 'Event', value: 'refer' }] });
  await settle();
  assert.deepEqual(
    bob.take().map((m) => (m.kind === 'response' ? `${m.status} ${header(m, 'CSeq')!.split(' ')[1]}` : m.method)),
    ['403 REFER', '481 NOTIFY'],
  );
  assert.equal(call.state, 'connected');
  assert.equal(call.endReason, undefined);
});

test('the caller leaving while voxgate looks the person up or makes its offer: nothing is sent to them, the transfer fails with 487', async () => {
  h = harness();
  const bob = await h.browser('bob');
  const first = await whipCall();
  const p1 = first.session.transfer('bob');
  first.call.close('deleted'); // before the location lookup has answered
  assert.equal((await rejection(p1)).status, 487);
  const second = await whipCall();
  h.transports.holding = true;
  const p2 = second.session.transfer('bob');
  await settle();
  assert.equal(h.transports.held, 1, 'the offer is being made');
  second.call.close('deleted');
  h.transports.release();
  assert.equal((await rejection(p2)).status, 487);
  await settle();
  assert.deepEqual(bob.take(), [], 'bob never rang');
  assert.equal(h.transports.made.at(-1)!.state, 'closed', 'the offer made for nobody is closed');
});

test("the person's connection closing while it rings fails the transfer at once with 480; the caller keeps the agent", async () => {
  h = harness();
  const bob = await h.browser('bob');
  const { call, session } = await whipCall();
  const p = session.transfer('bob');
  await settle();
  bob.respond(bob.nextRequest('INVITE'), 180);
  bob.flow.close();
  assert.deepEqual(await rejection(p), { status: 480, reason: 'Temporarily Unavailable (the target disconnected)' });
  assert.equal(call.mode, 'agent');
});

test('a media stack that cannot make the offer fails the transfer with 500, audited', async () => {
  h = harness();
  await h.browser('bob');
  const { session } = await whipCall();
  h.transports.failNext = true;
  assert.equal((await rejection(session.transfer('bob'))).status, 500);
});

test('we offer the caller\'s codec first and the others after; a person who answers with another one is bridged by transcoding', async () => {
  h = harness();
  const bob = await h.browser('bob');
  const { call, session } = await whipCall('opus');
  const transferred = session.transfer('bob');
  await settle();
  const invite = bob.nextRequest('INVITE');
  const m = /^m=audio \d+ \S+ ([\d ]+)$/m.exec(invite.body.toString())![1]!.split(' ');
  assert.deepEqual(m.slice(0, 2), ['111', '101'], 'Opus (the caller\'s) and its telephone-event first');
  assert.match(invite.body.toString(), /a=rtpmap:0 PCMU\/8000/);
  assert.match(invite.body.toString(), /a=rtpmap:126 telephone-event\/8000/, 'telephone-event for the 8 kHz codecs too');
  // A phone-like answer: PCMU only.
  const plan = planAnswer(parseSdp(invite.body.toString()), { codecs: ['pcmu'], allowSendRecv: true, role: 'ingest' });
  bob.respond(invite, 200, { headers: [{ name: 'Contact', value: bob.contact }], body: fakeSdp(plan, 'active', 'bob-pcmu') });
  await transferred;
  assert.equal(call.mode, 'transcode');
  assert.equal(call.leg('callee')!.endpoint!.format.codec, 'pcmu');
  assert.equal(call.leg('callee')!.endpoint!.format.telephoneEvent?.payloadType, 126);
  assert.deepEqual([call.leg('caller')!.endpoint!.pcmRate, call.leg('callee')!.endpoint!.pcmRate], [8000, 8000], "both at PCMU's rate");
});
