import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { TransferError } from '../agent/agent.js';
import { header, type SipMessage, type SipRequest, type SipResponse } from '../sip/message.js';
import { agentCall, harness, recordStates, settle, type AgentCall, type SipCallsHarness } from '../testing/sip-calls.js';

let h: SipCallsHarness;
afterEach(() => {
  h?.close();
  after.length = 0;
});

/** The agent's transfer() of its SIP caller, as the promise ends: 'done' or the TransferError's status and reason. */
function outcomeOf(p: Promise<void>): { value?: 'done' | { status: number; reason: string } } {
  const out: { value?: 'done' | { status: number; reason: string } } = {};
  p.then(
    () => (out.value = 'done'),
    (err: unknown) => {
      assert.ok(err instanceof TransferError, `a TransferError, not ${String(err)}`);
      out.value = { status: err.status, reason: err.reason };
    },
  );
  return out;
}

/**
 * The caller's NOTIFY `Event: refer` in the dialog it started, with a sipfrag; returns our answer
 * to it, and keeps anything else sent meanwhile in `after`.
 */
const after: SipMessage[] = [];
async function notify(c: AgentCall, frag: string, state: string, event = 'refer'): Promise<SipResponse> {
  c.far.callerRequest('NOTIFY', c.invite, c.ok, {
    headers: [
      { name: 'Event', value: event },
      { name: 'Subscription-State', value: state },
      { name: 'Content-Type', value: 'message/sipfrag;version=2.0' },
    ],
    body: `${frag}\r\n`,
  });
  await settle();
  const sent = c.far.take();
  const res = sent.find((m): m is SipResponse => m.kind === 'response' && header(m, 'CSeq')!.endsWith('NOTIFY'));
  assert.ok(res, 'the NOTIFY was answered');
  after.push(...sent.filter((m) => m !== res));
  return res;
}

/** A SIP caller talking to the agent, which transfers it to bob; the REFER it got, and the promise's outcome. */
async function referred(target = 'sip:bob@voxgate.test') {
  h = harness();
  const c = await agentCall(h);
  const states = recordStates(c.dialog);
  const outcome = outcomeOf(h.agent.last.session.transfer(target));
  await settle();
  const refer: SipRequest = c.far.nextRequest('REFER');
  return { ...c, refer, outcome, states };
}

test("the agent's transfer of a SIP caller sends REFER in the dialog; 202, NOTIFY 100 active and NOTIFY 200 terminated resolve it and the call ends transferred", async () => {
  const c = await referred();
  const { far, refer, outcome, call, states } = c;
  assert.equal(refer.uri, `sip:alice@${far.host};transport=ws`, "to the caller's Contact");
  assert.equal(header(refer, 'Refer-To'), '<sip:bob@voxgate.test>');
  assert.equal(header(refer, 'Referred-By'), '<sip:agent@voxgate.test>');
  assert.equal(header(refer, 'Contact'), '<sip:agent@gw.invalid;transport=ws>');
  assert.equal(header(refer, 'Call-ID'), header(c.invite, 'Call-ID'), 'in the call dialog');
  assert.match(header(refer, 'From')!, new RegExp(`tag=${/tag=([^;>]+)/.exec(header(c.ok, 'To')!)![1]}`));
  assert.equal(header(refer, 'To'), header(c.invite, 'From'));
  far.respond(refer, 202);
  await settle();
  assert.equal(outcome.value, undefined, 'accepted is not done');
  assert.equal((await notify(c, 'SIP/2.0 100 Trying', 'active;expires=60')).status, 200);
  assert.equal(outcome.value, undefined);
  assert.equal(call.endReason, undefined, 'the caller still talks to the agent while bob rings');
  assert.equal((await notify(c, 'SIP/2.0 180 Ringing', 'active;expires=60')).status, 200);
  assert.equal((await notify(c, 'SIP/2.0 200 OK', 'terminated;reason=noresource')).status, 200);
  assert.equal(outcome.value, 'done');
  assert.equal(call.endReason, 'transferred');
  assert.equal(h.agent.last.ended, 'transferred');
  // The transferor (voxgate) leaves the call with the transferee.
  assert.deepEqual(after.map((m) => (m.kind === 'request' ? m.method : m.status)), ['BYE'], 'one BYE, after the answer to the NOTIFY');
  assert.equal(header(after[0]!, 'Reason'), 'Q.850;cause=16;text="transferred"');
  assert.equal((after[0] as SipRequest).uri, `sip:alice@${far.host};transport=ws`);
  assert.deepEqual(states, ['confirmed', 'ended']);
  assert.equal(h.router.ctx.dialogs.size, 0);
});

test('a target written as a bare user is referred as sip:user@domain', async () => {
  const { refer } = await referred('bob');
  assert.equal(header(refer, 'Refer-To'), '<sip:bob@voxgate.test>');
});

test('a NOTIFY with a 486 sipfrag rejects the transfer with TransferError 486; the call goes on with the agent', async () => {
  const c = await referred();
  c.far.respond(c.refer, 202);
  await notify(c, 'SIP/2.0 100 Trying', 'active;expires=60');
  assert.equal((await notify(c, 'SIP/2.0 486 Busy Here', 'terminated;reason=noresource')).status, 200);
  assert.deepEqual(c.outcome.value, { status: 486, reason: 'Busy Here' });
  assert.equal(c.call.endReason, undefined);
  assert.equal(h.agent.last.ended, undefined);
  assert.deepEqual([...after, ...c.far.take()], [], 'no BYE');
  // A NOTIFY after the subscription is done is answered and changes nothing.
  assert.equal((await notify(c, 'SIP/2.0 200 OK', 'terminated')).status, 200);
  assert.equal(c.call.endReason, undefined);
  assert.deepEqual(c.states, ['confirmed']);
});

test('a subscription that ends without a final sipfrag rejects the transfer with 487, not with the provisional status', async () => {
  const c = await referred();
  c.far.respond(c.refer, 202);
  await notify(c, 'SIP/2.0 100 Trying', 'terminated;reason=timeout');
  assert.ok(typeof c.outcome.value === 'object');
  assert.equal(c.outcome.value.status, 487);
  assert.equal(c.call.endReason, undefined);
});

test('a caller whose phone accepts the REFER and never sends a final NOTIFY: at the ring time plus 5 s the transfer fails with 408 and the caller stays with the agent', async () => {
  const c = await referred();
  c.far.respond(c.refer, 202);
  await notify(c, 'SIP/2.0 100 Trying', 'active;expires=60');
  h.clock.advance(34_000);
  await settle();
  assert.equal(c.outcome.value, undefined, 'still waiting within 30 s + 5 s');
  h.clock.advance(1_000);
  await settle();
  assert.deepEqual(c.outcome.value, { status: 408, reason: "Request Timeout (the caller's phone sent no final NOTIFY within 35 s)" });
  assert.equal(c.call.endReason, undefined);
  assert.equal(h.agent.last.ended, undefined);
  // A final NOTIFY that comes after all is answered and changes nothing.
  assert.equal((await notify(c, 'SIP/2.0 200 OK', 'terminated')).status, 200);
  assert.equal(c.call.endReason, undefined);
});

test('the caller refusing the REFER (603) rejects the transfer with 603 and the call goes on', async () => {
  const c = await referred();
  c.far.respond(c.refer, 603, { reason: 'Declined' });
  await settle();
  assert.deepEqual(c.outcome.value, { status: 603, reason: 'the caller refused the transfer (Declined)' });
  assert.equal(c.call.endReason, undefined);
  assert.equal(h.agent.last.ended, undefined);
});

test('a NOTIFY for another event package gets 489 Bad Event and does not settle the transfer', async () => {
  const c = await referred();
  c.far.respond(c.refer, 202);
  const res = await notify(c, 'SIP/2.0 200 OK', 'terminated', 'presence');
  assert.equal(res.status, 489);
  assert.equal(res.reason, 'Bad Event');
  assert.equal(c.outcome.value, undefined);
  assert.equal(c.call.endReason, undefined);
});

test('a second transfer while one is pending is refused with 491 and sends nothing', async () => {
  const c = await referred();
  c.far.respond(c.refer, 202);
  const second = outcomeOf(h.agent.last.session.transfer('carol'));
  await settle();
  assert.deepEqual(second.value, { status: 491, reason: 'a transfer is already in progress' });
  assert.deepEqual(c.far.take(), [], 'no second REFER');
});

test('the caller hanging up while the REFER is pending rejects the transfer with 487; a transfer after the call ended gets 481', async () => {
  const c = await referred();
  c.far.respond(c.refer, 202);
  c.far.callerRequest('BYE', c.invite, c.ok);
  await settle();
  assert.equal(c.call.endReason, 'bye');
  assert.ok(typeof c.outcome.value === 'object');
  assert.equal(c.outcome.value.status, 487);
  const late = outcomeOf(h.agent.last.session.transfer('bob'));
  await settle();
  assert.ok(typeof late.value === 'object');
  assert.equal(late.value.status, 481);
});

test('a REFER that gets no answer at all fails with 408 after Timer F', async () => {
  const c = await referred();
  h.clock.advance(64 * 500);
  await settle();
  assert.ok(typeof c.outcome.value === 'object');
  assert.equal(c.outcome.value.status, 408);
  assert.equal(c.call.endReason, undefined);
});
