import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { serializeRtp } from '../rtp/packet.js';
import { header, type SipHeader, type SipMessage, type SipRequest, type SipResponse } from '../sip/message.js';
import { agentCall, browserAnswer, harness, recordStates, settle, type AgentCall, type SipCallsHarness } from '../testing/sip-calls.js';
import type { FarEnd } from '../testing/sip.js';

let h: SipCallsHarness;
afterEach(() => h?.close());

/** alice talks to the agent (ACKed, media up); bob is registered. */
async function setup() {
  h = harness();
  const bob = await h.browser('bob');
  const c = await agentCall(h);
  return { ...c, bob };
}

/**
 * What a far end got since the last look, in order: responses as `status METHOD`, NOTIFYs as
 * `NOTIFY <sipfrag status line> (<Subscription-State>)` (each answered 200, as a UA would),
 * other requests by method.
 */
async function seen(far: FarEnd): Promise<string[]> {
  await settle();
  return far.take().map((m) => {
    if (m.kind === 'response') return `${m.status} ${header(m, 'CSeq')!.split(' ')[1]}`;
    if (m.method !== 'NOTIFY') return m.method;
    far.respond(m, 200);
    return `NOTIFY ${m.body.toString().trim()} (${header(m, 'Subscription-State')})`;
  });
}

/** alice's REFER of the agent call; `referTo` undefined sends none, a list sends each. */
function refer(c: AgentCall, referTo: string | string[] | undefined, extra: SipHeader[] = []): SipRequest {
  const list = referTo === undefined ? [] : Array.isArray(referTo) ? referTo : [referTo];
  return c.far.callerRequest('REFER', c.invite, c.ok, { headers: [...list.map((value) => ({ name: 'Refer-To', value })), ...extra] });
}

/** The INVITE voxgate sends bob for the referral. */
async function inviteTo(bob: FarEnd): Promise<SipRequest> {
  await settle();
  return bob.nextRequest('INVITE');
}

function answer(bob: FarEnd, invite: SipRequest, status = 200, body = browserAnswer(invite)): SipResponse {
  return bob.respond(invite, status, status === 200 ? { headers: [{ name: 'Contact', value: bob.contact }], body } : {});
}

/** A few RTP packets from a party, so its leg has counters. */
function rtpFrom(c: AgentCall, n: number): void {
  for (let i = 0; i < n; i++) c.transport.receiveRtp(serializeRtp({ payloadType: 111, sequenceNumber: 100 + i, timestamp: 960 * i, ssrc: 0x1234, payload: Buffer.from([0xf8, 0xff, 0xfe]) }));
}

const BUSY = 'A transfer of this call is already in progress';

test('REFERs that cannot be followed: 400 without or with two Refer-To or an unparseable one, 501 with Replaces, 416 for non-sip URIs; the call goes on', async () => {
  const c = await setup();
  const cases: [string | string[] | undefined, number][] = [
    [undefined, 400],
    [['<sip:bob@voxgate.test>', '<sip:carol@voxgate.test>'], 400],
    ['<sip:bob@voxgate.test', 400],
    ['<sip:bob@voxgate.test?Replaces=abc%40host%3Bto-tag%3D1%3Bfrom-tag%3D2>', 501],
    ['<tel:+15551234567>', 416],
    ['<sips:bob@voxgate.test>', 416],
  ];
  for (const [referTo, status] of cases) {
    refer(c, referTo);
    assert.deepEqual(await seen(c.far), [`${status} REFER`], String(referTo));
  }
  assert.deepEqual(c.bob.take(), [], 'nobody was called');
  assert.equal(c.call.endReason, undefined);
  assert.equal(h.agent.last.transferredTo, undefined);
});

test('a referral to a user who is not registered: 202, NOTIFY 100 active, NOTIFY 480 terminated; the caller keeps the agent', async () => {
  const c = await setup();
  const req = refer(c, '<sip:carol@voxgate.test>');
  await settle();
  const got = c.far.take();
  assert.equal(got.length, 3);
  const [accepted, trying, failed] = got as [SipResponse, SipRequest, SipRequest];
  assert.equal(accepted.status, 202);
  assert.equal(header(accepted, 'Contact'), '<sip:agent@gw.invalid;transport=ws>');
  for (const n of [trying, failed]) {
    assert.equal(n.method, 'NOTIFY');
    assert.equal(header(n, 'Event'), `refer;id=${header(req, 'CSeq')!.split(' ')[0]}`, 'RFC 3515 §2.4.6: id is the REFER CSeq');
    assert.equal(header(n, 'Content-Type'), 'message/sipfrag;version=2.0');
    assert.equal(header(n, 'Call-ID'), header(c.invite, 'Call-ID'));
  }
  assert.equal(trying.body.toString(), 'SIP/2.0 100 Trying\r\n');
  assert.equal(header(trying, 'Subscription-State'), 'active;expires=60');
  assert.equal(failed.body.toString(), 'SIP/2.0 480 Temporarily Unavailable (not registered)\r\n');
  assert.equal(header(failed, 'Subscription-State'), 'terminated;reason=noresource');
  const leg = c.call.leg('caller');
  c.far.callerRequest('INFO', c.invite, c.ok, { headers: [{ name: 'Content-Type', value: 'application/dtmf-relay' }], body: 'Signal=7\r\n' });
  assert.deepEqual(await seen(c.far), ['200 INFO']);
  assert.deepEqual(h.agent.last.digits, ['7'], 'alice still talks to the agent');
  assert.equal(c.call.leg('caller'), leg);
  assert.equal(c.call.endReason, undefined);
  // The failed referral is over: another may be made.
  refer(c, '<sip:carol@voxgate.test>');
  assert.deepEqual((await seen(c.far))[0], '202 REFER');
});

test('referrals to an unknown user, another domain or an agent fail with 404, 404, 403 after the 202', async () => {
  const c = await setup();
  for (const [target, frag] of [
    ['<sip:nobody@voxgate.test>', 'SIP/2.0 404 Not Found'],
    ['<sip:bob@elsewhere.example>', 'SIP/2.0 404 Not Found (domain elsewhere.example is not served here)'],
    ['<sip:agent@voxgate.test>', 'SIP/2.0 403 Forbidden (the agent can be handed to a registered user or a phone number only)'],
  ] as const) {
    refer(c, target);
    assert.deepEqual(await seen(c.far), ['202 REFER', 'NOTIFY SIP/2.0 100 Trying (active;expires=60)', `NOTIFY ${frag} (terminated;reason=noresource)`], target);
  }
  assert.equal(c.call.endReason, undefined);
});

test('a referral to a registered user: INVITE from the agent with Referred-By; on 200 ACK, the caller leg is replaced, NOTIFY 200, the agent gets transferred; 5 s later voxgate BYEs the transferor', async () => {
  const c = await setup();
  const { far, bob, call } = c;
  const alice = recordStates(c.dialog);
  rtpFrom(c, 5);
  h.clock.advance(100);
  const oldLeg = call.leg('caller');
  const before = call.totals();
  assert.ok(before.packetsReceived >= 5);
  refer(c, '<sip:bob@voxgate.test>', [{ name: 'Referred-By', value: '<sip:alice@voxgate.test>' }]);
  assert.deepEqual(await seen(far), ['202 REFER', 'NOTIFY SIP/2.0 100 Trying (active;expires=60)']);
  const invite = await inviteTo(bob);
  assert.equal(invite.uri, `sip:bob@${bob.host};transport=ws`);
  assert.match(header(invite, 'From')!, /^<sip:agent@voxgate\.test>;tag=/);
  assert.equal(header(invite, 'To'), '<sip:bob@voxgate.test>');
  assert.equal(header(invite, 'Referred-By'), '<sip:alice@voxgate.test>');
  assert.equal(header(invite, 'Contact'), '<sip:agent@gw.invalid;transport=ws>');
  assert.match(invite.body.toString(), /a=rtpmap:111 opus\/48000/, "the caller's codec");
  bob.respond(invite, 180);
  assert.deepEqual(await seen(far), ['NOTIFY SIP/2.0 180 Ringing (active;expires=60)']);
  assert.equal(call.leg('caller'), oldLeg, 'alice talks to the agent while bob rings');
  answer(bob, invite);
  await settle();
  const ack = bob.nextRequest('ACK');
  assert.equal(header(ack, 'Call-ID'), header(invite, 'Call-ID'));
  assert.deepEqual(await seen(far), ['NOTIFY SIP/2.0 200 OK (terminated;reason=noresource)']);
  assert.notEqual(call.leg('caller'), oldLeg, "bob's leg replaced alice's");
  assert.deepEqual([...call.legs.keys()].sort(), ['agent', 'caller']);
  assert.ok(call.totals().packetsReceived >= before.packetsReceived, 'totals never go down');
  assert.equal(call.sipCallId, header(invite, 'Call-ID'));
  assert.equal(h.agent.sessions.length, 1, 'the same agent session carries on');
  assert.equal(h.agent.last.transferredTo, 'sip:bob@voxgate.test');
  assert.equal(h.agent.last.ended, undefined);
  assert.equal(h.router.ctx.dialogs.current(call)?.party, 'bob');
  // alice's dialog can only end now.
  far.callerRequest('INFO', c.invite, c.ok, { headers: [{ name: 'Content-Type', value: 'application/dtmf' }], body: '1' });
  assert.deepEqual(await seen(far), ['481 INFO']);
  h.clock.advance(4_999);
  assert.deepEqual(await seen(far), []);
  h.clock.advance(1);
  const bye = far.nextRequest('BYE');
  assert.equal(header(bye, 'Reason'), 'Q.850;cause=16;text="transferred"');
  assert.deepEqual(alice, ['confirmed', 'detached', 'ended']);
  assert.equal(h.router.ctx.dialogs.size, 1, "only bob's dialog is left");
  // bob is the agent's caller now: digits and the BYE come from him.
  bob.inDialog('INFO', invite, { headers: [{ name: 'Content-Type', value: 'application/dtmf-relay' }], body: 'Signal=9\r\n' });
  assert.deepEqual(await seen(bob), ['200 INFO']);
  assert.deepEqual(h.agent.last.digits, ['9']);
  bob.inDialog('BYE', invite);
  assert.deepEqual(await seen(bob), ['200 BYE']);
  assert.equal(call.endReason, 'bye');
  assert.deepEqual(await seen(far), [], 'nothing more for alice');
  assert.equal(h.router.ctx.dialogs.size, 0);
});

test('a transferor that hangs up within the 5 s after the transfer gets its 200 and no BYE of ours', async () => {
  const c = await setup();
  refer(c, '<sip:bob@voxgate.test>');
  await seen(c.far);
  const invite = await inviteTo(c.bob);
  answer(c.bob, invite);
  assert.deepEqual(await seen(c.far), ['NOTIFY SIP/2.0 200 OK (terminated;reason=noresource)']);
  h.clock.advance(2_000);
  c.far.callerRequest('BYE', c.invite, c.ok);
  assert.deepEqual(await seen(c.far), ['200 BYE']);
  h.clock.advance(10_000);
  assert.deepEqual(await seen(c.far), []);
  assert.equal(c.call.endReason, undefined, 'the call goes on with bob');
  assert.equal(h.router.ctx.dialogs.size, 1);
});

test('without Referred-By, the INVITE to the target names the transferor as the referrer', async () => {
  const c = await setup();
  refer(c, '<sip:bob@voxgate.test>');
  await seen(c.far);
  assert.equal(header(await inviteTo(c.bob), 'Referred-By'), '<sip:alice@voxgate.test>');
});

test('a second REFER while the target rings is refused with 491', async () => {
  const c = await setup();
  refer(c, '<sip:bob@voxgate.test>');
  await seen(c.far);
  c.bob.respond(await inviteTo(c.bob), 180);
  await seen(c.far);
  refer(c, '<sip:carol@voxgate.test>');
  await settle();
  const refused = c.far.take().find((m): m is SipResponse => m.kind === 'response')!;
  assert.equal(refused.status, 491);
  assert.equal(refused.reason, BUSY);
});

test('a target that rings past 30 s is CANCELled, and the transferor gets NOTIFY 408 and keeps the agent', async () => {
  const c = await setup();
  refer(c, '<sip:bob@voxgate.test>');
  await seen(c.far);
  const invite = await inviteTo(c.bob);
  c.bob.respond(invite, 180);
  await seen(c.far);
  h.clock.advance(29_999);
  assert.deepEqual(c.bob.take(), []);
  h.clock.advance(1);
  const cancel = c.bob.nextRequest('CANCEL');
  assert.equal(header(cancel, 'Call-ID'), header(invite, 'Call-ID'));
  c.bob.respond(cancel, 200);
  c.bob.respond(invite, 487);
  assert.deepEqual(await seen(c.far), ['NOTIFY SIP/2.0 408 Request Timeout (no answer) (terminated;reason=noresource)']);
  assert.equal(c.call.endReason, undefined);
  assert.equal(h.agent.last.transferredTo, undefined);
  assert.equal(c.dialog.state, 'confirmed');
});

test('the transferor hangs up right after the 202 and the target answers: the agent carries on with the target, and no NOTIFY goes to the gone transferor', async () => {
  const c = await setup();
  refer(c, '<sip:bob@voxgate.test>');
  await seen(c.far);
  const alice = recordStates(c.dialog);
  c.far.callerRequest('BYE', c.invite, c.ok);
  assert.deepEqual(await seen(c.far), ['200 BYE']);
  assert.equal(c.call.endReason, undefined, 'the call waits for the target');
  assert.equal(c.transport.state, 'closed', "the transferor's media stops");
  const invite = await inviteTo(c.bob);
  c.bob.respond(invite, 180);
  answer(c.bob, invite);
  await settle();
  c.bob.nextRequest('ACK');
  assert.deepEqual(await seen(c.far), [], 'no NOTIFY and no BYE for alice');
  h.clock.advance(10_000);
  assert.deepEqual(await seen(c.far), []);
  assert.equal(h.agent.last.transferredTo, 'sip:bob@voxgate.test');
  assert.equal(h.agent.last.ended, undefined);
  assert.equal(h.router.ctx.dialogs.current(c.call)?.party, 'bob');
  assert.deepEqual(alice, ['confirmed', 'ended']);
  assert.equal(h.router.ctx.dialogs.size, 1);
});

test('the transferor hangs up and then the target refuses: nobody is left for the agent, the call ends', async () => {
  const c = await setup();
  refer(c, '<sip:bob@voxgate.test>');
  await seen(c.far);
  c.far.callerRequest('BYE', c.invite, c.ok);
  await seen(c.far);
  const invite = await inviteTo(c.bob);
  c.bob.respond(invite, 486);
  await settle();
  assert.equal(c.call.endReason, 'bye');
  assert.equal(h.agent.last.ended, 'bye');
  assert.deepEqual(await seen(c.far), []);
  assert.deepEqual((await seen(c.bob)).filter((m) => m !== 'ACK'), [], 'bob gets the ACK of his 486 only');
  assert.equal(h.router.ctx.dialogs.size, 0);
});

test('the transferor hangs up and then the agent hangs up while the target rings: the target is CANCELled and nothing is left behind', async () => {
  const c = await setup();
  refer(c, '<sip:bob@voxgate.test>');
  await seen(c.far);
  c.far.callerRequest('BYE', c.invite, c.ok);
  await seen(c.far);
  const invite = await inviteTo(c.bob);
  c.bob.respond(invite, 180);
  await settle();
  h.agent.last.session.hangup();
  await settle();
  assert.equal(c.call.endReason, 'agent-hangup');
  const cancel = c.bob.nextRequest('CANCEL');
  c.bob.respond(cancel, 200);
  // bob's 200 crosses our CANCEL: it is ACKed and hung up, and joins nothing.
  answer(c.bob, invite);
  await settle();
  c.bob.nextRequest('ACK');
  assert.match(header(c.bob.nextRequest('BYE'), 'Reason')!, /cause=487/);
  assert.deepEqual(await seen(c.far), [], 'nothing for the gone transferor');
  assert.equal(h.router.ctx.dialogs.size, 0);
  assert.equal(h.agent.last.transferredTo, undefined);
});

test("the call ending while the target rings CANCELs the target and ends the transferor's subscription with 487", async () => {
  const c = await setup();
  refer(c, '<sip:bob@voxgate.test>');
  await seen(c.far);
  const invite = await inviteTo(c.bob);
  c.bob.respond(invite, 180);
  await seen(c.far);
  h.agent.last.session.hangup();
  await settle();
  assert.deepEqual(await seen(c.far), ['NOTIFY SIP/2.0 487 Request Terminated (terminated;reason=noresource)', 'BYE']);
  c.bob.nextRequest('CANCEL');
  c.bob.respond(invite, 487);
  await settle();
  assert.equal(h.router.ctx.dialogs.size, 0);
});

test("the target's connection dropping while it rings fails the referral with NOTIFY 480 at once", async () => {
  const c = await setup();
  refer(c, '<sip:bob@voxgate.test>');
  await seen(c.far);
  c.bob.respond(await inviteTo(c.bob), 180);
  await seen(c.far);
  c.bob.flow.close();
  assert.deepEqual(await seen(c.far), ['NOTIFY SIP/2.0 480 Temporarily Unavailable (the target disconnected) (terminated;reason=noresource)']);
  assert.equal(c.call.endReason, undefined);
  h.clock.advance(64 * 500);
  await settle();
  assert.deepEqual(await seen(c.far), [], 'nothing more when the INVITE transaction times out');
  assert.equal(c.call.endReason, undefined);
});

test('a target answering with SDP we cannot use is hung up (BYE cause 488) and the transferor gets NOTIFY 488', async () => {
  const c = await setup();
  refer(c, '<sip:bob@voxgate.test>');
  await seen(c.far);
  const invite = await inviteTo(c.bob);
  answer(c.bob, invite, 200, 'v=0\r\nnot sdp');
  await settle();
  c.bob.nextRequest('ACK');
  assert.match(header(c.bob.nextRequest('BYE'), 'Reason')!, /cause=488/);
  assert.deepEqual(await seen(c.far), ['NOTIFY SIP/2.0 488 Not Acceptable Here (unusable answer) (terminated;reason=noresource)']);
  assert.equal(c.call.endReason, undefined);
  assert.equal(h.router.ctx.dialogs.current(c.call), c.dialog);
});

test('a target we cannot make an offer for fails the referral with NOTIFY 500', async () => {
  const c = await setup();
  h.transports.failNext = true;
  refer(c, '<sip:bob@voxgate.test>');
  assert.deepEqual(await seen(c.far), ['202 REFER', 'NOTIFY SIP/2.0 100 Trying (active;expires=60)', 'NOTIFY SIP/2.0 500 Server Internal Error (no offer could be made) (terminated;reason=noresource)']);
  assert.deepEqual(c.bob.take(), []);
  assert.equal(c.call.endReason, undefined);
});

test('the call ending while the target is being looked up: no INVITE is sent', async () => {
  const c = await setup();
  refer(c, '<sip:bob@voxgate.test>');
  h.agent.last.session.hangup();
  await settle();
  assert.deepEqual(c.bob.take().map((m: SipMessage) => (m.kind === 'request' ? m.method : m.status)), []);
  assert.equal(c.call.endReason, 'agent-hangup');
});

test('the call ending while the offer for the target is being made: its transport is closed and no INVITE is sent', async () => {
  const c = await setup();
  h.transports.holding = true;
  refer(c, '<sip:bob@voxgate.test>');
  await settle();
  assert.equal(h.transports.held, 1);
  h.agent.last.session.hangup();
  h.transports.release();
  await settle();
  assert.equal(h.transports.made.at(-1)!.state, 'closed');
  assert.deepEqual(c.bob.take(), []);
  assert.deepEqual(await seen(c.far), ['202 REFER', 'NOTIFY SIP/2.0 100 Trying (active;expires=60)', 'NOTIFY SIP/2.0 487 Request Terminated (terminated;reason=noresource)', 'BYE']);
});
