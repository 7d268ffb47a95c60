import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { header, type SipResponse } from '../sip/message.js';
import type { FarEnd } from '../testing/sip.js';
import { agentCall, browserOffer, harness, recordStates, settle, statuses, type SipCallsHarness } from '../testing/sip-calls.js';

let h: SipCallsHarness;
afterEach(() => h?.close());

/** A browser that called the agent and got the 200; its INVITE and the 200. */
async function answered(user: 'alice' | 'bob' = 'alice', opts: Parameters<SipCallsHarness['call']>[2] = {}) {
  const far = await h.browser(user);
  const invite = h.call(far, 'agent', opts);
  await settle();
  const ok = far.take().find((m): m is SipResponse => m.kind === 'response' && m.status === 200);
  assert.ok(ok, 'the INVITE was answered 200');
  const call = h.calls.get(h.agent.last.session.callId)!;
  return { far, invite, ok, call };
}

test('an INVITE to the agent is answered 200 with our SDP, Contact, Record-Route, the session timer; the ACK confirms it and BYE ends it', async () => {
  h = harness();
  const { far, invite, ok, call } = await answered();
  assert.equal(header(ok, 'Contact'), '<sip:agent@gw.invalid;transport=ws>');
  assert.equal(header(ok, 'Session-Expires'), '90;refresher=uac');
  assert.equal(header(ok, 'Content-Type'), 'application/sdp');
  assert.match(ok.body.toString(), /a=rtpmap:111 opus\/48000/);
  assert.equal(call.source.name, 'sip:alice');
  assert.deepEqual([...call.legs.keys()], ['caller', 'agent']);
  assert.equal(call.mode, 'agent');
  far.callerRequest('ACK', invite, ok);
  await settle();
  assert.equal(h.router.ctx.dialogs.current(call)?.state, 'confirmed');
  far.callerRequest('BYE', invite, ok);
  assert.deepEqual(await statuses(far), [200]);
  assert.equal(call.endReason, 'bye');
  assert.equal(h.agent.last.ended, 'bye');
  assert.equal(h.router.ctx.dialogs.size, 0, 'nothing left in the dialog table');
  // A BYE for the ended dialog: 481.
  far.callerRequest('BYE', invite, ok);
  assert.deepEqual(await statuses(far), [481]);
});

test('refusals come from the error table: 488 no common codec, 503 with Retry-After at capacity, 486 over a user limit, 415, 400', async () => {
  h = harness({ maxSessions: 1, maxCalls: { bob: 1 } });
  const alice = await h.browser('alice');
  h.call(alice, 'agent', { sdp: browserOffer().replace(/opus\/48000\/2/, 'G729/8000') });
  assert.deepEqual(await statuses(alice), [488]);
  await answered('bob');
  h.call(alice);
  await settle();
  const full = alice.take()[0] as SipResponse;
  assert.equal(full.status, 503);
  assert.equal(header(full, 'Retry-After'), '5');
  h.close();

  h = harness({ maxCalls: { bob: 1 } });
  const bob = await answered('bob');
  h.call(bob.far);
  const busy = (await settle(), bob.far.take().find((m): m is SipResponse => m.kind === 'response'))!;
  assert.equal(busy.status, 486);
  assert.match(busy.reason, /maximum of 1/);
  const a = await h.browser('alice');
  h.call(a, 'agent', { headers: [], sdp: 'not sdp' });
  assert.deepEqual(await statuses(a), [400]);
  // An ICE attribute the WebRTC stack would refuse with "Invalid ICE settings": 400 naming the line, not 500.
  h.call(a, 'agent', { sdp: browserOffer().replace(/a=ice-ufrag:\S+/, 'a=ice-ufrag: ') });
  await settle();
  const bad = a.take().find((m): m is SipResponse => m.kind === 'response' && m.status >= 300)!;
  assert.equal(bad.status, 400);
  assert.match(bad.reason, /ice-ufrag/);
  a.send('INVITE', 'sip:agent@voxgate.test', [
    { name: 'From', value: `<sip:alice@voxgate.test>;tag=${a.tag}` },
    { name: 'To', value: '<sip:agent@voxgate.test>' },
    { name: 'Content-Type', value: 'text/plain' },
  ], 'hello');
  assert.deepEqual(await statuses(a), [415]);
});

/** The responses a far end got, as `status METHOD` (the CSeq method says what they answer). */
async function answers(far: FarEnd): Promise<string[]> {
  await settle();
  return far.take().flatMap((m) => (m.kind === 'response' ? [`${m.status} ${header(m, 'CSeq')!.split(' ')[1]}`] : [`${m.method}`]));
}

test('a CANCEL while the media answer is being made: 200 to the CANCEL, 487 to the INVITE, the half-made call ends cancelled with its transport closed, and nothing else is sent', async () => {
  h = harness();
  const far = await h.browser('alice');
  h.transports.holding = true;
  const invite = h.call(far);
  await settle();
  assert.equal(h.transports.held, 1, 'the answer is being made');
  const [call] = [...h.calls.values()];
  assert.ok(call, 'the call exists while it is set up');
  const states: string[] = [];
  call.on('state', (s) => states.push(s));
  far.cancel(invite);
  await settle();
  const got = far.take();
  assert.deepEqual(got.map((m) => (m.kind === 'response' ? `${m.status} ${header(m, 'CSeq')}` : m.method)), ['200 3 CANCEL', '487 3 INVITE']);
  assert.equal(call.endReason, 'cancelled');
  assert.deepEqual(states, ['ended']);
  h.transports.release();
  await settle();
  assert.equal(h.transports.made.length, 1);
  assert.equal(h.transports.made[0]!.state, 'closed', 'the transport made after the CANCEL is closed at once');
  far.ackFailure(invite, got[1] as SipResponse);
  h.clock.advance(64 * 500);
  assert.deepEqual(await answers(far), [], 'no 100 Trying, no 200, no BYE');
  assert.equal(h.agent.sessions.length, 0, 'no agent was attached');
  assert.equal(h.calls.size, 0);
  assert.equal(h.router.ctx.dialogs.size, 0);
});

test('a CANCEL that crosses our 200 gets 200 and changes nothing: the call goes on and the ACK confirms it', async () => {
  h = harness();
  const far = await h.browser('alice');
  h.transports.connect = false;
  const invite = h.call(far);
  await settle();
  const ok = far.take().find((m): m is SipResponse => m.kind === 'response' && m.status === 200)!;
  const call = h.calls.get(h.agent.last.session.callId)!;
  const states = recordStates(h.router.ctx.dialogs.current(call)!);
  h.transports.made[0]!.connect();
  far.cancel(invite);
  assert.deepEqual(await answers(far), ['200 CANCEL'], 'no 487 after a 2xx (§9.2)');
  far.callerRequest('ACK', invite, ok);
  await settle();
  assert.equal(call.state, 'connected');
  assert.equal(call.endReason, undefined);
  assert.equal(h.agent.last.ended, undefined);
  assert.deepEqual(states, ['answered', 'confirmed']);
});

test('the agent hanging up sends BYE with a Reason header; the call ends agent-hangup and the dialog is gone', async () => {
  h = harness();
  const { far, call, dialog } = await agentCall(h);
  const states = recordStates(dialog);
  h.agent.last.session.hangup();
  const bye = far.nextRequest('BYE');
  assert.equal(header(bye, 'Reason'), 'Q.850;cause=16;text="agent-hangup"');
  assert.match(header(bye, 'From')!, /^<sip:agent@voxgate\.test>;tag=/);
  assert.equal(bye.uri, `sip:alice@${far.host};transport=ws`, "to the caller's Contact");
  far.respond(bye, 200);
  await settle();
  assert.equal(call.endReason, 'agent-hangup');
  assert.equal(h.agent.last.ended, 'agent-hangup');
  assert.deepEqual(states, ['confirmed', 'ended']);
  assert.equal(h.router.ctx.dialogs.size, 0);
  assert.deepEqual(far.take(), [], 'one BYE');
});

test('an INVITE without a body gets 400, and one whose media cannot be answered 500; neither leaves a call', async () => {
  h = harness();
  const far = await h.browser('alice');
  h.call(far, 'agent', { sdp: '' });
  assert.deepEqual(await statuses(far), [400]);
  h.transports.failNext = true;
  h.call(far);
  assert.deepEqual(await statuses(far), [500]);
  assert.equal(h.calls.size, 0);
  assert.equal(h.router.ctx.dialogs.size, 0);
});
