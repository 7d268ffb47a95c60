import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { DigestAuthenticator } from '../auth/digest.js';
import { header, headerList, type SipRequest } from '../message.js';
import { FarEnd, testStack, type TestStack } from '../../testing/sip.js';
import type { SipProtocol } from '../transport/transport.js';
import { InviteUac, type InviteUacRequest } from './invite-uac.js';

let stack: TestStack;
afterEach(() => stack?.close());

function setup(opts: Partial<InviteUacRequest> & { protocol?: SipProtocol } = {}) {
  stack = testStack({ protocol: opts.protocol });
  const flow = stack.transport.connect();
  const far = new FarEnd(flow);
  const states: string[] = [];
  const uac = new InviteUac(stack.sip, stack.clock, {
    flow,
    uri: `sip:bob@${far.host};transport=ws`,
    from: '<sip:agent@voxgate.test>',
    to: '<sip:bob@voxgate.test>',
    contactUser: 'agent',
    sdp: 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n',
    ...opts,
  });
  uac.on('state', (s) => states.push(s));
  uac.start();
  return { uac, far, flow, states, clock: stack.clock };
}

test('180 with a tag makes an early dialog, 200 the confirmed one: the 2xx is ACKed with the route set reversed and BYE goes to the Contact', async () => {
  const { uac, far, states } = setup();
  const invite = far.nextRequest('INVITE');
  assert.equal(header(invite, 'CSeq'), '1 INVITE');
  assert.match(header(invite, 'Via')!, /^SIP\/2\.0\/WS gw\.invalid;branch=z9hG4bK/);
  assert.equal(header(invite, 'Contact'), '<sip:agent@gw.invalid;transport=ws>');
  assert.equal(header(invite, 'Content-Type'), 'application/sdp');
  far.respond(invite, 100, { toTag: null });
  far.respond(invite, 180);
  assert.equal(uac.state, 'early');
  assert.equal(uac.early?.remoteTag, far.tag);
  far.respond(invite, 200, {
    headers: [
      { name: 'Contact', value: far.contact },
      { name: 'Record-Route', value: '<sip:p1.example;lr>' },
      { name: 'Record-Route', value: '<sip:p2.example;lr>' },
    ],
    body: 'v=0\r\n',
  });
  const outcome = await uac.result;
  assert.equal(outcome.ok, true);
  assert.deepEqual(states, ['early', 'confirmed']);
  const ack = far.nextRequest('ACK');
  assert.equal(header(ack, 'CSeq'), '1 ACK');
  assert.equal(ack.uri, `sip:bob@${far.host};transport=ws`, 'the ACK goes to the remote target');
  assert.deepEqual(headerList(ack, 'Route'), ['<sip:p2.example;lr>', '<sip:p1.example;lr>'], '§12.1.2: the route set is the Record-Route list reversed');
  if (!outcome.ok) return;
  const bye = outcome.dialog.request('BYE');
  assert.match(bye.text, new RegExp(`^BYE sip:bob@${far.host};transport=ws SIP/2\\.0`));
  assert.match(bye.text, /CSeq: 2 BYE/);
});

test('a 401 is answered once with digest credentials (new CSeq, same Call-ID and From tag); a second 401 for the same realm fails the call', async () => {
  const server = new DigestAuthenticator('voxgate.test', [{ user: 'agent-trunk', password: 'pw' }], () => 1000);
  const { uac, far } = setup({ credentials: { username: 'agent-trunk', password: 'pw' } });
  const first = far.nextRequest('INVITE');
  far.respond(first, 401, { headers: server.challenges().map((value) => ({ name: 'WWW-Authenticate', value })) });
  assert.equal(far.nextRequest('ACK').uri, first.uri, 'the transaction ACKs the 401');
  const second = far.nextRequest('INVITE');
  assert.equal(header(second, 'CSeq'), '2 INVITE');
  assert.equal(header(second, 'Call-ID'), header(first, 'Call-ID'));
  assert.equal(header(second, 'From'), header(first, 'From'));
  assert.notEqual(header(second, 'Via'), header(first, 'Via'), 'a new transaction, a new branch');
  assert.deepEqual(server.verify(header(second, 'Authorization'), 'INVITE'), { ok: true, user: 'agent-trunk', algorithm: 'SHA-256' });
  far.respond(second, 401, { headers: server.challenges().map((value) => ({ name: 'WWW-Authenticate', value })) });
  const outcome = await uac.result;
  assert.deepEqual(outcome.ok ? 'ok' : [outcome.status, uac.state], [401, 'failed'], 'wrong credentials are not retried in a loop');
});

test('a 407 is answered with Proxy-Authorization', async () => {
  const server = new DigestAuthenticator('proxy.example', [{ user: 'u', password: 'p' }], () => 1000);
  const { uac, far } = setup({ credentials: { username: 'u', password: 'p' } });
  far.respond(far.nextRequest('INVITE'), 407, { headers: server.challenges().map((value) => ({ name: 'Proxy-Authenticate', value })) });
  const retry = far.nextRequest('INVITE');
  assert.equal(server.verify(header(retry, 'Proxy-Authorization'), 'INVITE').ok, true);
  assert.equal(header(retry, 'Authorization'), undefined);
  far.respond(retry, 200, { headers: [{ name: 'Contact', value: far.contact }] });
  assert.equal((await uac.result).ok, true);
});

test('a 302 is followed to its Contact (same Call-ID and From, a new CSeq); without a redirect rule it is the outcome', async () => {
  const targets: string[] = [];
  const { uac, far, flow } = setup({
    redirect: async (contact) => {
      targets.push(contact);
      return { flow, uri: 'sip:carol@elsewhere.invalid;transport=ws' };
    },
  });
  const first = far.nextRequest('INVITE');
  far.respond(first, 302, { headers: [{ name: 'Contact', value: '<sip:carol@elsewhere.invalid;transport=ws>' }] });
  await new Promise((r) => setImmediate(r));
  const second = far.nextRequest('INVITE');
  assert.deepEqual(targets, ['<sip:carol@elsewhere.invalid;transport=ws>']);
  assert.equal(second.uri, 'sip:carol@elsewhere.invalid;transport=ws');
  assert.equal(header(second, 'CSeq'), '2 INVITE');
  assert.equal(header(second, 'Call-ID'), header(first, 'Call-ID'));
  far.respond(second, 486);
  const outcome = await uac.result;
  assert.equal(!outcome.ok && outcome.status, 486);

  const plain = setup();
  plain.far.respond(plain.far.nextRequest('INVITE'), 302, { headers: [{ name: 'Contact', value: '<sip:x@y.invalid>' }] });
  const o = await plain.uac.result;
  assert.equal(!o.ok && o.status, 302);
});

test('ringing past the ring time: CANCEL with the INVITE branch, then the 487 makes it a 408', async () => {
  const { uac, far, clock } = setup({ ringTimeoutMs: 30_000 });
  const invite = far.nextRequest('INVITE');
  far.respond(invite, 180);
  clock.advance(29_999);
  assert.deepEqual(far.take(), []);
  clock.advance(1);
  const cancel = far.nextRequest('CANCEL');
  assert.equal(headerList(cancel, 'Via')[0], headerList(invite, 'Via')[0], '§9.1: the CANCEL has the INVITE top Via');
  assert.equal(header(cancel, 'CSeq'), '1 CANCEL');
  assert.equal(uac.state, 'cancelling');
  far.respond(cancel, 200);
  far.respond(invite, 487);
  const outcome = await uac.result;
  assert.deepEqual(outcome.ok ? null : [outcome.status, outcome.reason], [408, 'Request Timeout (no answer)']);
});

test('cancel() before any provisional waits for one (§9.1); a CANCEL that brings no final answer ends the attempt after 64*T1', async () => {
  const { uac, far, clock } = setup();
  const invite = far.nextRequest('INVITE');
  uac.cancel(487, 'Request Terminated');
  assert.deepEqual(far.take(), [], 'no CANCEL before a provisional response');
  far.respond(invite, 180);
  far.nextRequest('CANCEL');
  clock.advance(32_000);
  const outcome = await uac.result;
  assert.equal(!outcome.ok && outcome.status, 487);
});

test('a 2xx after we gave up is ACKed and hung up; the outcome stays the failure', async () => {
  const { uac, far } = setup({ ringTimeoutMs: 1000 });
  const invite = far.nextRequest('INVITE');
  far.respond(invite, 180);
  stack.clock.advance(1000);
  far.nextRequest('CANCEL');
  far.respond(invite, 200, { headers: [{ name: 'Contact', value: far.contact }] });
  const outcome = await uac.result;
  assert.equal(!outcome.ok && outcome.status, 408);
  far.nextRequest('ACK');
  const bye = far.nextRequest('BYE');
  assert.match(header(bye, 'Reason')!, /cause=408/);
});

test('a second 2xx from a fork (another To tag) is ACKed and hung up; a retransmitted 2xx is ACKed again', async () => {
  const { uac, far } = setup();
  const invite = far.nextRequest('INVITE');
  const ok = () => far.respond(invite, 200, { headers: [{ name: 'Contact', value: far.contact }] });
  ok();
  const outcome = await uac.result;
  assert.equal(outcome.ok && outcome.dialog.remoteTag, far.tag);
  far.nextRequest('ACK');
  ok();
  assert.equal(header(far.nextRequest('ACK'), 'CSeq'), '1 ACK', '§13.2.2.4: every 2xx retransmission is ACKed');
  far.respond(invite, 200, { toTag: 'fork2', headers: [{ name: 'Contact', value: '<sip:bob@fork.invalid;transport=ws>' }] });
  far.nextRequest('ACK');
  const bye = far.nextRequest('BYE');
  assert.match(header(bye, 'To')!, /tag=fork2/);
  assert.equal(uac.state, 'confirmed');
});

test('a busy callee is the outcome (the transaction ACKs the 486); no answer at all is 408 on Timer B', async () => {
  const busy = setup();
  const invite = busy.far.nextRequest('INVITE');
  busy.far.respond(invite, 486, { reason: 'Busy Here' });
  const o = await busy.uac.result;
  assert.deepEqual(o.ok ? null : [o.status, o.reason], [486, 'Busy Here']);
  assert.equal(busy.far.nextRequest('ACK').method, 'ACK');
  busy.clock.advance(60_000);
  stack.close();
  const silent = setup();
  silent.far.nextRequest('INVITE');
  silent.clock.advance(31_999);
  assert.equal(silent.uac.state, 'calling');
  silent.clock.advance(1);
  const s = await silent.uac.result;
  assert.equal(!s.ok && s.status, 408);
});

test('Timer C: without a ring time, a call that rings past three minutes is cancelled; each provisional restarts it', async () => {
  const { uac, far, clock } = setup();
  const invite = far.nextRequest('INVITE');
  far.respond(invite, 180);
  clock.advance(170_000);
  far.respond(invite, 183);
  clock.advance(170_000);
  assert.equal(uac.state, 'early', 'the 183 restarted Timer C');
  clock.advance(11_000);
  far.nextRequest('CANCEL');
  far.respond(invite, 487);
  const outcome = await uac.result;
  assert.equal(!outcome.ok && outcome.status, 408);
});

test('over UDP the INVITE is retransmitted on Timer A until a provisional answer', async () => {
  const { far, clock } = setup({ protocol: 'UDP' });
  const invite = far.nextRequest('INVITE');
  assert.match(header(invite, 'Via')!, /;rport$/, 'RFC 3581: rport asked for on UDP');
  clock.advance(1500);
  assert.equal(far.take().length, 2, 'retransmitted at 500 and 1500 ms');
  far.respond(invite, 180);
  clock.advance(10_000);
  assert.deepEqual(far.take(), []);
});

test('cancel() after the answer sends nothing and leaves the call confirmed', async () => {
  const { uac, far } = setup();
  far.respond(far.nextRequest('INVITE') as SipRequest, 200, { headers: [{ name: 'Contact', value: far.contact }] });
  await uac.result;
  far.take();
  uac.cancel();
  uac.abandon(480, 'gone');
  assert.equal(uac.state, 'confirmed');
  assert.deepEqual(far.take(), []);
});

test('while cancelling, repeated provisional answers bring one CANCEL, not one each (§9.1)', async () => {
  const { uac, far } = setup();
  const invite = far.nextRequest('INVITE');
  far.respond(invite, 180);
  uac.cancel();
  far.respond(invite, 180);
  far.respond(invite, 180);
  assert.deepEqual(far.take().map((m) => (m.kind === 'request' ? m.method : m.status)), ['CANCEL']);
});

test('abandon(): the target gone, the call fails at once with the given status and no CANCEL', async () => {
  const { uac, far } = setup();
  far.respond(far.nextRequest('INVITE'), 180);
  uac.abandon(480, 'Temporarily Unavailable (the target disconnected)');
  const outcome = await uac.result;
  assert.deepEqual(outcome.ok ? null : [outcome.status, uac.state], [480, 'failed']);
  assert.deepEqual(far.take(), []);
});

test('the states as they are emitted: a 401 retry is calling again, 180 without a To tag proceeding, 183 with one early, 200 confirmed; callId and invite name the last INVITE', async () => {
  const server = new DigestAuthenticator('voxgate.test', [{ user: 'u', password: 'p' }], () => 1000);
  const { uac, far, states } = setup({ credentials: { username: 'u', password: 'p' } });
  const first = far.nextRequest('INVITE');
  assert.equal(uac.callId, header(first, 'Call-ID'));
  far.respond(first, 401, { headers: server.challenges().map((value) => ({ name: 'WWW-Authenticate', value })) });
  far.nextRequest('ACK');
  const second = far.nextRequest('INVITE');
  assert.equal(header(uac.invite!, 'CSeq'), '2 INVITE', 'the INVITE as last sent');
  far.respond(second, 180, { toTag: null });
  assert.equal(uac.early, undefined, 'no To tag, no early dialog');
  far.respond(second, 183);
  far.respond(second, 200, { headers: [{ name: 'Contact', value: far.contact }] });
  await uac.result;
  assert.deepEqual(states, ['calling', 'proceeding', 'early', 'confirmed']);
});

test('a redirect rule that declines the Contact makes the 3xx the outcome; a cancel() while the rule is deciding makes the cancel the outcome and nothing more is sent', async () => {
  const declined = setup({ redirect: async () => undefined });
  declined.far.respond(declined.far.nextRequest('INVITE'), 302, { headers: [{ name: 'Contact', value: '<sip:x@y.invalid>' }] });
  const o = await declined.uac.result;
  assert.deepEqual(o.ok ? null : [o.status, declined.states], [302, ['failed']]);
  stack.close();

  let decide!: (to: { flow: typeof declined.flow; uri: string } | undefined) => void;
  const pending = setup({ redirect: () => new Promise((resolve) => (decide = resolve)) });
  const invite = pending.far.nextRequest('INVITE');
  pending.far.respond(invite, 301, { headers: [{ name: 'Contact', value: '<sip:carol@elsewhere.invalid;transport=ws>' }] });
  pending.far.nextRequest('ACK');
  await new Promise((r) => setImmediate(r));
  pending.uac.cancel(487, 'Request Terminated (the caller left)');
  decide({ flow: pending.flow, uri: 'sip:carol@elsewhere.invalid;transport=ws' });
  const outcome = await pending.uac.result;
  assert.deepEqual(outcome.ok ? null : [outcome.status, outcome.reason], [487, 'Request Terminated (the caller left)']);
  assert.deepEqual(pending.far.take(), [], 'no INVITE to the new target, no CANCEL');
  assert.deepEqual(pending.states, ['cancelling', 'failed']);
});
