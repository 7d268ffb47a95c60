import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { header, headerList, type SipRequest, type SipResponse } from '../sip/message.js';
import { agentCall, browserAnswer, harness, settle, statuses, type SipCallsHarness } from '../testing/sip-calls.js';
import type { FarEnd } from '../testing/sip.js';

let h: SipCallsHarness;
afterEach(() => h?.close());

/** What every flow of the fake transport got: nothing, for a request that must reach nobody. */
function sentAnywhere(): string[] {
  return [...h.transport.flows.values()].flatMap((f) => f.take());
}

async function responsesTo(far: FarEnd): Promise<SipResponse[]> {
  await settle();
  return far.take().filter((m): m is SipResponse => m.kind === 'response');
}

test('an INVITE to a domain not served here gets 404, whoever it names, and reaches nobody', async () => {
  h = harness();
  const alice = await h.browser('alice');
  const bob = await h.browser('bob');
  for (const uri of ['sip:bob@elsewhere.example', 'sip:agent@elsewhere.example']) {
    alice.send('INVITE', uri, [
      { name: 'From', value: `<sip:alice@voxgate.test>;tag=${alice.tag}` },
      { name: 'To', value: `<${uri}>` },
      { name: 'Content-Type', value: 'application/sdp' },
    ], 'v=0\r\n');
    const [res] = await responsesTo(alice);
    assert.equal(res!.status, 404, uri);
    assert.equal(res!.reason, 'Not Found (domain elsewhere.example is not served here)');
  }
  assert.deepEqual(bob.take(), []);
  assert.equal(h.calls.size, 0);
});

test('an INVITE to a known user who is not registered gets 480, to an unknown user 404, to no user part 404', async () => {
  h = harness();
  const alice = await h.browser('alice');
  h.call(alice, 'carol');
  const [offline] = await responsesTo(alice);
  assert.equal(offline!.status, 480);
  assert.equal(offline!.reason, 'Temporarily Unavailable (not registered)');
  h.call(alice, 'nobody');
  assert.deepEqual(await statuses(alice), [404]);
  alice.send('INVITE', 'sip:voxgate.test', [
    { name: 'From', value: `<sip:alice@voxgate.test>;tag=${alice.tag}` },
    { name: 'To', value: '<sip:voxgate.test>' },
    { name: 'Content-Type', value: 'application/sdp' },
  ], 'v=0\r\n');
  const [noUser] = await responsesTo(alice);
  assert.equal(noUser!.status, 404);
  assert.equal(noUser!.reason, 'Not Found (no user part)');
  assert.equal(h.router.dialogs, 0);
});

test("an INVITE to a registered user is proxied to the flow they registered on: our Via on top, Record-Route, Max-Forwards one less; the answers, ACK and BYE pass through", async () => {
  h = harness();
  const alice = await h.browser('alice');
  const bob = await h.browser('bob');
  const invite = h.call(alice, 'bob');
  await settle();
  const forwarded = bob.nextRequest('INVITE');
  assert.equal(forwarded.uri, `sip:bob@${bob.host};transport=ws`, 'retargeted to the Contact bob registered');
  const vias = headerList(forwarded, 'Via');
  assert.equal(vias.length, 2);
  assert.match(vias[0]!, /^SIP\/2\.0\/WS gw\.invalid;branch=z9hG4bK/);
  // RFC 3261 §18.2.1: her sent-by is a .invalid name, so her Via carries where the request came from.
  assert.equal(vias[1], `${headerList(invite, 'Via')[0]};received=${alice.flow.remote.split(':')[0]}`, "alice's Via below ours, stamped with received");
  assert.deepEqual(headerList(forwarded, 'Record-Route'), ['<sip:gw.invalid;transport=ws;lr>']);
  assert.equal(header(forwarded, 'Max-Forwards'), '69');
  assert.equal(header(forwarded, 'Call-ID'), header(invite, 'Call-ID'));
  assert.equal(forwarded.body.toString(), invite.body.toString(), 'the media goes end to end');
  assert.equal(h.calls.size, 0, 'no call of ours');
  bob.respond(forwarded, 180);
  bob.respond(forwarded, 200, { headers: [{ name: 'Contact', value: bob.contact }, { name: 'Record-Route', value: headerList(forwarded, 'Record-Route')[0]! }], body: browserAnswer(invite) });
  const relayed = await responsesTo(alice);
  assert.deepEqual(relayed.map((r) => r.status), [180, 200]);
  const aliceOk = relayed[1]!;
  assert.deepEqual(headerList(aliceOk, 'Via'), [vias[1]], 'our Via is taken off');
  assert.equal(h.router.dialogs, 1);
  alice.callerRequest('ACK', invite, aliceOk);
  await settle();
  const ack = bob.nextRequest('ACK');
  assert.equal(header(ack, 'Max-Forwards'), '69');
  alice.callerRequest('BYE', invite, aliceOk);
  await settle();
  const bye: SipRequest = bob.nextRequest('BYE');
  bob.respond(bye, 200);
  assert.deepEqual((await responsesTo(alice)).map((r) => r.status), [200]);
  assert.equal(h.router.dialogs, 0);
});

test('a CANCEL of a proxied INVITE gets 200 from us and goes on to the callee, whose 487 reaches the caller', async () => {
  h = harness();
  const alice = await h.browser('alice');
  const bob = await h.browser('bob');
  const invite = h.call(alice, 'bob');
  await settle();
  const forwarded = bob.nextRequest('INVITE');
  bob.respond(forwarded, 180);
  await responsesTo(alice);
  alice.cancel(invite);
  await settle();
  assert.deepEqual((await responsesTo(alice)).map((r) => `${r.status} ${header(r, 'CSeq')}`), ['200 3 CANCEL']);
  const cancel = bob.nextRequest('CANCEL');
  assert.equal(header(cancel, 'Via'), headerList(forwarded, 'Via')[0], 'the branch of the INVITE we forwarded');
  bob.respond(cancel, 200);
  bob.respond(forwarded, 487);
  assert.deepEqual((await responsesTo(alice)).map((r) => r.status), [487]);
  assert.equal(h.router.dialogs, 0);
});

test('an ACK that belongs to no dialog is dropped: nothing is sent to anyone', async () => {
  h = harness();
  const alice = await h.browser('alice');
  await h.browser('bob');
  await agentCall(h, 'alice', { far: alice });
  alice.send('ACK', 'sip:agent@gw.invalid;transport=ws', [
    { name: 'From', value: `<sip:alice@voxgate.test>;tag=${alice.tag}` },
    { name: 'To', value: '<sip:agent@voxgate.test>;tag=nosuchdialog' },
    { name: 'Call-ID', value: 'no-such-call' },
  ], '', 1);
  await settle();
  assert.deepEqual(sentAnywhere(), []);
});

test("a CANCEL that matches no INVITE gets 481, and an in-dialog request for a dialog nobody knows 481", async () => {
  h = harness();
  const alice = await h.browser('alice');
  alice.send('CANCEL', 'sip:agent@voxgate.test', [
    { name: 'From', value: `<sip:alice@voxgate.test>;tag=${alice.tag}` },
    { name: 'To', value: '<sip:agent@voxgate.test>' },
    { name: 'Call-ID', value: 'never-invited' },
  ]);
  assert.deepEqual(await statuses(alice), [481]);
  alice.send('INFO', 'sip:agent@gw.invalid;transport=ws', [
    { name: 'From', value: `<sip:alice@voxgate.test>;tag=${alice.tag}` },
    { name: 'To', value: '<sip:agent@voxgate.test>;tag=gone' },
    { name: 'Call-ID', value: 'no-such-call' },
  ]);
  assert.deepEqual(await statuses(alice), [481]);
});

test("the caller's connection closing ends its agent call as flow-closed: no BYE, nothing left in the dialog table", async () => {
  h = harness();
  const { far, call } = await agentCall(h);
  assert.equal(h.router.dialogs, 1);
  far.flow.close();
  await settle();
  assert.equal(call.endReason, 'flow-closed');
  assert.equal(h.agent.last.ended, 'flow-closed');
  assert.deepEqual(far.flow.sent, [], 'nothing can be sent on a closed flow, and nothing was tried');
  assert.equal(h.router.dialogs, 0);
});

test('a CANCEL that arrives while the callee is being looked up: 200, the INVITE 487, and it is never forwarded (§16.10)', async () => {
  h = harness();
  const alice = await h.browser('alice');
  const bob = await h.browser('bob');
  const invite = h.call(alice, 'bob');
  alice.cancel(invite); // in the same turn: the location store has not answered yet
  assert.deepEqual((await responsesTo(alice)).map((r) => `${r.status} ${header(r, 'CSeq')!.split(' ')[1]}`), ['200 CANCEL', '487 INVITE']);
  await settle();
  assert.deepEqual(bob.take(), [], 'bob never got the INVITE');
  assert.equal(h.router.dialogs, 0);
});
