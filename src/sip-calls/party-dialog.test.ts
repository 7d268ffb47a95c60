import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { header, type SipMessage, type SipRequest, type SipResponse } from '../sip/message.js';
import { agentCall, browserOffer, harness, recordStates, settle, type SipCallsHarness } from '../testing/sip-calls.js';
import type { FarEnd } from '../testing/sip.js';

let h: SipCallsHarness;
afterEach(() => h?.close());

/** What a far end got since the last look: responses as `status METHOD`, requests by method. */
async function got(far: FarEnd): Promise<string[]> {
  await settle();
  return far.take().map(describe);
}

function describe(m: SipMessage): string {
  return m.kind === 'response' ? `${m.status} ${header(m, 'CSeq')!.split(' ')[1]}` : m.method;
}

/** The one response a far end got (fails when it got anything else). */
async function onlyResponse(far: FarEnd): Promise<SipResponse> {
  await settle();
  const all = far.take();
  assert.equal(all.length, 1, `one response, not ${all.map(describe).join(', ')}`);
  assert.equal(all[0]!.kind, 'response');
  return all[0] as SipResponse;
}

const dtmf = (type: string, body: string) => ({ headers: [{ name: 'Content-Type', value: type }], body });

test('without an ACK the call ends no-ack after 32 s (64*T1) and voxgate sends BYE', async () => {
  h = harness();
  const { far, call, dialog } = await agentCall(h, 'alice', { ack: false });
  const states = recordStates(dialog);
  assert.equal(dialog.state, 'answered');
  h.clock.advance(31_999);
  assert.deepEqual(await got(far), [], 'nothing before 32 s');
  assert.equal(call.endReason, undefined);
  h.clock.advance(1);
  const bye = far.nextRequest('BYE');
  assert.equal(header(bye, 'Reason'), 'Q.850;cause=102;text="no-ack"');
  assert.equal(call.endReason, 'no-ack');
  assert.equal(h.agent.last.ended, 'no-ack');
  assert.deepEqual(states, ['answered', 'ended']);
  assert.equal(h.router.ctx.dialogs.size, 0);
});

test('an ACK in time confirms the dialog, and 32 s later the call goes on', async () => {
  h = harness();
  const { far, invite, ok, call, dialog } = await agentCall(h, 'alice', { ack: false });
  const states = recordStates(dialog);
  h.clock.advance(10_000);
  far.callerRequest('ACK', invite, ok);
  await settle();
  h.clock.advance(40_000);
  assert.deepEqual(await got(far), []);
  assert.equal(call.state, 'connected');
  assert.equal(call.endReason, undefined);
  assert.deepEqual(states, ['answered', 'confirmed']);
});

test("the caller's media closing without a BYE: 1 s later the call ends peer-closed and voxgate sends BYE", async () => {
  h = harness();
  const { far, call, dialog, transport } = await agentCall(h);
  const states = recordStates(dialog);
  transport.fail('peer-closed');
  h.clock.advance(999);
  assert.deepEqual(await got(far), [], 'the BYE gets its moment');
  assert.equal(call.endReason, undefined);
  h.clock.advance(1);
  const bye = far.nextRequest('BYE');
  assert.equal(header(bye, 'Reason'), 'Q.850;cause=16;text="peer-closed"');
  assert.equal(call.endReason, 'peer-closed');
  assert.deepEqual(states, ['confirmed', 'ended']);
});

test('a BYE within the second after the media closed ends the call as bye, and voxgate sends no BYE', async () => {
  h = harness();
  const { far, invite, ok, call, dialog, transport } = await agentCall(h);
  const states = recordStates(dialog);
  transport.fail('peer-closed');
  h.clock.advance(500);
  far.callerRequest('BYE', invite, ok);
  assert.deepEqual(await got(far), ['200 BYE']);
  assert.equal(call.endReason, 'bye');
  h.clock.advance(5_000);
  assert.deepEqual(await got(far), [], 'no BYE of ours after theirs');
  assert.deepEqual(states, ['confirmed', 'ended']);
  assert.equal(h.router.ctx.dialogs.size, 0);
});

test('media that fails (ICE) ends the call at once with that reason and a BYE', async () => {
  h = harness();
  const { far, call, transport } = await agentCall(h);
  transport.fail('ice-failed');
  assert.equal(call.endReason, 'ice-failed');
  assert.equal(header(far.nextRequest('BYE'), 'Reason'), 'Q.850;cause=41;text="ice-failed"');
});

test('UPDATE without SDP is a session refresh: 200 with Session-Expires, 422 below Min-SE, refresher=uas for a caller without timers; UPDATE with SDP gets 488 and the call goes on', async () => {
  h = harness();
  const { far, invite, ok, call } = await agentCall(h);
  far.callerRequest('UPDATE', invite, ok, { headers: [{ name: 'Session-Expires', value: '120;refresher=uac' }, { name: 'Supported', value: 'timer' }] });
  const refreshed = await onlyResponse(far);
  assert.equal(refreshed.status, 200);
  assert.equal(header(refreshed, 'Session-Expires'), '120;refresher=uac');
  assert.equal(header(refreshed, 'Require'), 'timer');
  far.callerRequest('UPDATE', invite, ok, { headers: [{ name: 'Session-Expires', value: '30' }, { name: 'Supported', value: 'timer' }] });
  const tooSmall = await onlyResponse(far);
  assert.equal(tooSmall.status, 422, 'RFC 4028 §9: below our Min-SE');
  assert.equal(header(tooSmall, 'Min-SE'), '90');
  far.callerRequest('UPDATE', invite, ok, { headers: [{ name: 'Session-Expires', value: '90' }] });
  const noTimer = await onlyResponse(far);
  assert.equal(header(noTimer, 'Session-Expires'), '90;refresher=uas', 'RFC 4028 §9: a caller without timer support leaves the refreshing to us');
  assert.equal(header(noTimer, 'Require'), undefined, 'and is not sent a Require it would not understand');
  far.callerRequest('UPDATE', invite, ok, { headers: [{ name: 'Content-Type', value: 'application/sdp' }], body: browserOffer() });
  const renegotiate = await onlyResponse(far);
  assert.equal(renegotiate.status, 488);
  assert.match(renegotiate.reason, /not supported/);
  assert.equal(call.endReason, undefined);
});

test('OPTIONS inside the dialog gets 200 with Allow; SUBSCRIBE and MESSAGE inside it get 405 with Allow', async () => {
  h = harness();
  const { far, invite, ok, call } = await agentCall(h);
  far.callerRequest('OPTIONS', invite, ok);
  const options = await onlyResponse(far);
  assert.equal(options.status, 200);
  assert.equal(header(options, 'Allow'), 'INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY');
  for (const method of ['SUBSCRIBE', 'MESSAGE']) {
    far.callerRequest(method, invite, ok, { headers: [{ name: 'Event', value: 'dialog' }] });
    const refused = await onlyResponse(far);
    assert.equal(refused.status, 405, method);
    assert.equal(header(refused, 'Allow'), 'INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY');
  }
  assert.equal(call.endReason, undefined);
});

test('a request with a CSeq below the last one gets 500 and is not acted on; the next in order is', async () => {
  h = harness();
  const { far, invite, ok } = await agentCall(h);
  far.callerRequest('INFO', invite, ok, { ...dtmf('application/dtmf-relay', 'Signal=1\r\n'), cseq: 10 });
  assert.deepEqual(await got(far), ['200 INFO']);
  far.callerRequest('INFO', invite, ok, { ...dtmf('application/dtmf-relay', 'Signal=2\r\n'), cseq: 9 });
  const late = await onlyResponse(far);
  assert.equal(late.status, 500);
  assert.equal(late.reason, 'CSeq out of order');
  far.callerRequest('INFO', invite, ok, { ...dtmf('application/dtmf-relay', 'Signal=3\r\n'), cseq: 11 });
  assert.deepEqual(await got(far), ['200 INFO']);
  assert.deepEqual(h.agent.last.digits, ['1', '3']);
});

test('INFO DTMF: dtmf-relay Signal=5 and application/dtmf reach the agent; a body without a digit gets 400, another type 415 with Accept', async () => {
  h = harness();
  const { far, invite, ok } = await agentCall(h);
  far.callerRequest('INFO', invite, ok, dtmf('application/dtmf-relay', 'Signal=5\r\nDuration=160\r\n'));
  assert.deepEqual(await got(far), ['200 INFO']);
  assert.deepEqual(h.agent.last.digits, ['5']);
  far.callerRequest('INFO', invite, ok, dtmf('application/dtmf-relay', 'Duration=160\r\n'));
  const bad = await onlyResponse(far);
  assert.equal(bad.status, 400);
  far.callerRequest('INFO', invite, ok, dtmf('application/dtmf-relay', 'Signal=X\r\n'));
  assert.equal((await onlyResponse(far)).status, 400, 'X is no DTMF digit');
  far.callerRequest('INFO', invite, ok, dtmf('text/plain', '5'));
  const other = await onlyResponse(far);
  assert.equal(other.status, 415);
  assert.equal(header(other, 'Accept'), 'application/dtmf-relay, application/dtmf');
  far.callerRequest('INFO', invite, ok, dtmf('application/dtmf', '#'));
  far.callerRequest('INFO', invite, ok, dtmf('application/dtmf-relay; charset=utf-8', 'Signal = a\r\n'));
  assert.deepEqual(await got(far), ['200 INFO', '200 INFO']);
  assert.deepEqual(h.agent.last.digits, ['5', '#', 'A'], 'digits as the agent sees them, in order, upper-cased');
});

test('re-INVITE: a=sendonly is answered a=recvonly (hold), sendrecv again resumes; each answer has a new o= version, Contact and the session timer', async () => {
  h = harness();
  const { far, invite, ok, call } = await agentCall(h);
  const reinvite = (direction: string): SipRequest =>
    far.callerRequest('INVITE', invite, ok, {
      headers: [{ name: 'Content-Type', value: 'application/sdp' }, { name: 'Supported', value: 'timer' }, { name: 'Session-Expires', value: '90' }],
      body: browserOffer().replace('a=sendrecv', `a=${direction}`),
    });
  const answers: { direction: string; version: string }[] = [];
  for (const direction of ['sendonly', 'sendrecv', 'inactive', 'recvonly']) {
    const req = reinvite(direction);
    const res = await onlyResponse(far);
    assert.equal(res.status, 200);
    assert.equal(header(res, 'Contact'), '<sip:agent@gw.invalid;transport=ws>');
    assert.equal(header(res, 'Session-Expires'), '90;refresher=uac');
    const sdp = res.body.toString();
    answers.push({ direction: /a=(sendrecv|sendonly|recvonly|inactive)/.exec(sdp)![1]!, version: /^o=\S+ \S+ (\d+)/m.exec(sdp)![1]! });
    far.callerRequest('ACK', req, res);
  }
  assert.deepEqual(answers, [
    { direction: 'recvonly', version: '2' },
    { direction: 'sendrecv', version: '3' },
    { direction: 'inactive', version: '4' },
    { direction: 'sendonly', version: '5' },
  ]);
  // A refresh without SDP is answered with ours, sendrecv.
  far.callerRequest('INVITE', invite, ok);
  const refresh = await onlyResponse(far);
  assert.match(refresh.body.toString(), /a=sendrecv/);
  assert.equal(call.endReason, undefined);
  assert.equal(call.state, 'connected');
});

test('a re-INVITE with a new ICE ufrag (an ICE restart) gets 488 and the call goes on as it was', async () => {
  h = harness();
  const { far, invite, ok, call, dialog } = await agentCall(h);
  const req = far.callerRequest('INVITE', invite, ok, {
    headers: [{ name: 'Content-Type', value: 'application/sdp' }],
    body: browserOffer().replace('a=ice-ufrag:fake', 'a=ice-ufrag:rest'),
  });
  const res = await onlyResponse(far);
  assert.equal(res.status, 488);
  assert.equal(res.reason, 'ICE restart is not supported');
  far.ackFailure(req, res);
  await settle();
  assert.equal(dialog.sdpVersion, 1, 'no new answer was made');
  assert.equal(dialog.state, 'confirmed');
  assert.equal(call.endReason, undefined);
  // The same credentials are a plain re-INVITE.
  far.callerRequest('INVITE', invite, ok, { headers: [{ name: 'Content-Type', value: 'application/sdp' }], body: browserOffer() });
  assert.equal((await onlyResponse(far)).status, 200);
});
