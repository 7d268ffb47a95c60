import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { header, type SipResponse } from '../sip/message.js';
import { browserOffer, harness, settle, statuses, type SipCallsHarness } from '../testing/sip-calls.js';

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
  a.send('INVITE', 'sip:agent@voxgate.test', [
    { name: 'From', value: `<sip:alice@voxgate.test>;tag=${a.tag}` },
    { name: 'To', value: '<sip:agent@voxgate.test>' },
    { name: 'Content-Type', value: 'text/plain' },
  ], 'hello');
  assert.deepEqual(await statuses(a), [415]);
});
