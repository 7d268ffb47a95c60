import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import type { OutboundCallView } from '../call/outbound-types.js';
import { VoxgateError } from '../core/errors.js';
import { DigestAuthenticator, parseAuthParams } from '../sip/auth/digest.js';
import { tagOf } from '../sip/build.js';
import type { SipRequest } from '../sip/message.js';
import { header, headerList, pcmuOffer, settle, until, type Carrier, type TrunkInput, type HeldAgent } from '../testing/trunk.js';
import { outboundHarness, type OutboundHarness } from '../testing/outbound.js';

let h: OutboundHarness<HeldAgent> | undefined;
afterEach(() => {
  h?.close();
  h = undefined;
});

const A = '203.0.113.10:5060';
const B = '203.0.113.11:5060';
const CALLED = '+15557654321';

const CARRIER_A: TrunkInput = {
  name: 'carrier-a',
  outbound: {
    address: [A, B],
    transport: 'udp',
    auth: { user: 'acct-123', password: 'pw' },
    fromUser: 'acct-123',
    fromHost: 'carrier.example.net',
    numbers: ['+15551230000', '+15551230001'],
    callerIdHeader: 'pai',
  },
  codecs: ['pcmu', 'pcma'],
};

/** The trunk with its outbound section changed. */
function carrierA(o: Partial<NonNullable<TrunkInput['outbound']>>): TrunkInput {
  return { ...CARRIER_A, outbound: { ...CARRIER_A.outbound!, ...o } };
}

/** The harness, and the carrier's SBCs at both addresses (the flows the stack dials). */
async function start(trunk: TrunkInput = CARRIER_A): Promise<{ h: OutboundHarness<HeldAgent>; a: Carrier; b: Carrier }> {
  const harness = outboundHarness({ trunks: [trunk], outboundRoutes: [{ prefix: '+1', trunk: 'carrier-a' }] });
  h = harness;
  return { h: harness, a: await harness.carrier(A, CALLED), b: await harness.carrier(B, CALLED) };
}

/** The next INVITE a carrier address got (waiting for the RTP offer's socket). */
async function nextInvite(c: Carrier): Promise<SipRequest> {
  await until(() => c.flow.sent.some((t) => t.startsWith('INVITE ')), `an INVITE at ${c.flow.remote}`);
  return c.nextRequest('INVITE');
}

/** The methods a carrier address got since the last look. */
async function methods(c: Carrier): Promise<string[]> {
  await settle();
  return c.take().flatMap((m) => (m.kind === 'request' ? [m.method] : []));
}

/** The carrier answers 200 with a PCMU answer on its RTP socket. */
function answer(c: Carrier, invite: SipRequest, toTag?: string): void {
  c.respond(invite, 200, { ...(toTag ? { toTag } : {}), headers: [{ name: 'Contact', value: c.contact }], body: pcmuOffer(c.rtpPort) });
}

function view(id: string): OutboundCallView {
  const v = h!.router.outbound.get(id);
  assert.ok(v, `call ${id} is known`);
  return v;
}

/** The states a call moved through from now on. */
function states(id: string): string[] {
  const seen: string[] = [];
  h!.router.outbound.on('state', (v) => {
    if (v.id === id && seen.at(-1) !== v.state) seen.push(v.state);
  });
  return seen;
}

function voxgateError(fn: () => unknown): VoxgateError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof VoxgateError, `a VoxgateError, not ${String(err)}`);
    return err;
  }
  throw new Error('it did not throw');
}

test('dial: the INVITE goes to the first address (sip:+E164@host:port;user=phone, From the account, PAI the caller ID, an RTP/AVP offer); the call is dialing', async () => {
  const { h, a, b } = await start();
  const v = h.router.outbound.dial({ to: '+1 (555) 765-4321' }, {});
  assert.equal(v.state, 'dialing');
  assert.equal(v.to, '+1 (555) 765-4321');
  assert.equal(v.from, '+15551230000', "the trunk's first number");
  assert.equal(v.trunk, 'carrier-a');
  assert.equal(v.status, null);
  const invite = await nextInvite(a);
  assert.equal(invite.uri, 'sip:+15557654321@203.0.113.10:5060;user=phone');
  // RFC 3261 §19.1.1: user=phone is for a telephone-subscriber user part; acct-123 is not one.
  assert.match(header(invite, 'From')!, /^<sip:acct-123@carrier\.example\.net>;tag=[^;]+$/);
  assert.equal(header(invite, 'P-Asserted-Identity'), '<sip:+15551230000@carrier.example.net;user=phone>');
  assert.equal(header(invite, 'To'), '<sip:+15557654321@203.0.113.10;user=phone>');
  assert.match(header(invite, 'Allow')!, /\bBYE\b/);
  const sdp = invite.body.toString();
  assert.match(sdp, /^m=audio (\d+) RTP\/AVP 0 8 101\r$/m, `the trunk's codecs and telephone-event:\n${sdp}`);
  const port = Number(/^m=audio (\d+)/m.exec(sdp)![1]);
  assert.ok(port >= h.rtpRange.min && port <= h.rtpRange.max, `a port of sip.rtp: ${port}`);
  assert.match(sdp, /^c=IN IP4 127\.0\.0\.1\r$/m);
  assert.equal(header(invite, 'Content-Type'), 'application/sdp');
  assert.equal(view(v.id).state, 'dialing');
  assert.equal(view(v.id).sipCallId, header(invite, 'Call-ID'));
  assert.deepEqual(await methods(b), []);
  assert.deepEqual(h.router.outbound.list().map((c) => c.id), [v.id]);
  h.router.outbound.hangup(v.id);
});

test('a 407 is answered with the account credentials (uri= the Request-URI), same Call-ID, CSeq+1, the digest verifies', async () => {
  const { h, a } = await start();
  const server = new DigestAuthenticator('carrier.example.net', [{ user: 'acct-123', password: 'pw' }], () => h.clock.now());
  const v = h.router.outbound.dial({ to: CALLED }, {});
  const first = await nextInvite(a);
  a.respond(first, 407, { headers: server.challenges().map((value) => ({ name: 'Proxy-Authenticate', value })) });
  await settle();
  assert.equal(a.nextRequest('ACK').method, 'ACK');
  const second = a.nextRequest('INVITE');
  assert.equal(header(second, 'Call-ID'), header(first, 'Call-ID'));
  assert.equal(header(second, 'CSeq'), '2 INVITE');
  assert.equal(tagOf(header(second, 'From')), tagOf(header(first, 'From')));
  const auth = header(second, 'Proxy-Authorization')!;
  assert.equal(parseAuthParams(auth)!.get('username'), 'acct-123');
  assert.equal(parseAuthParams(auth)!.get('uri'), second.uri);
  assert.equal(server.verify(auth, 'INVITE').ok, true);
  assert.equal(second.body.toString(), first.body.toString(), 'the same offer');
  assert.equal(view(v.id).state, 'dialing');
  h.router.outbound.hangup(v.id);
});

test('180 rings; the 200 is ACKed, the call is answered and the agent gets it with to/from/trunk; hangup sends BYE, the call ends deleted', async () => {
  const { h, a } = await start();
  const v = h.router.outbound.dial({ to: CALLED, customParameters: { ticket: '7' } }, {});
  const seen = states(v.id);
  const invite = await nextInvite(a);
  a.respond(invite, 100);
  a.respond(invite, 180);
  await settle();
  assert.equal(view(v.id).state, 'ringing');
  assert.equal(h.agent.sessions.length, 0, 'no agent while it rings');
  answer(a, invite);
  await until(() => view(v.id).state === 'answered', 'the answer');
  const ack = a.nextRequest('ACK');
  assert.equal(ack.uri, `sip:${CALLED}@${A}`, 'the ACK goes to the Contact of the 200');
  assert.equal(header(ack, 'CSeq'), '1 ACK');
  const answered = view(v.id);
  assert.equal(answered.status, 200);
  assert.equal(answered.answeredAt, new Date(h.clock.now()).toISOString());
  assert.equal(h.agent.sessions.length, 1);
  const details = h.agent.last.session.details;
  assert.deepEqual({ to: details.to, from: details.from, trunk: details.trunk, customParameters: details.customParameters }, { to: CALLED, from: '+15551230000', trunk: 'carrier-a', customParameters: { ticket: '7' } });
  assert.equal(h.agent.last.session.callId, v.id);
  const call = h.calls.get(v.id)!;
  assert.ok(call, 'the call is a session under the same id');
  assert.equal(call.sipCallId, header(invite, 'Call-ID'));
  assert.deepEqual(call.trunk, { name: 'carrier-a', direction: 'outbound', from: '+15551230000', to: CALLED });
  assert.equal(h.trunks.byName('carrier-a')!.outbound.size, 1);

  h.router.outbound.hangup(v.id);
  await settle();
  const bye = a.nextRequest('BYE');
  assert.equal(bye.uri, `sip:${CALLED}@${A}`);
  assert.equal(header(bye, 'Call-ID'), header(invite, 'Call-ID'));
  assert.equal(header(bye, 'CSeq'), '2 BYE');
  a.respond(bye, 200);
  await settle();
  const ended = view(v.id);
  assert.equal(ended.state, 'ended');
  assert.equal(ended.endReason, 'deleted');
  assert.equal(ended.status, 200);
  assert.deepEqual(seen, ['dialing', 'ringing', 'answered', 'ended']);
  assert.equal(h.calls.size, 0);
  assert.equal(h.router.dialogs, 0);
  assert.equal(h.trunks.byName('carrier-a')!.outbound.size, 0);
  assert.equal(h.rtp.pool.portsInUse, 0, 'the RTP ports are back');
  assert.equal(h.agent.last.ended !== undefined, true);
});

test('the carrier hangs up (BYE): the call ends with endReason bye', async () => {
  const { h, a } = await start();
  const v = h.router.outbound.dial({ to: CALLED }, {});
  const invite = await nextInvite(a);
  answer(a, invite);
  await until(() => view(v.id).state === 'answered', 'the answer');
  a.inDialog('BYE', invite);
  await settle();
  assert.deepEqual(a.take().flatMap((m) => (m.kind === 'response' ? [m.status] : [])), [200]);
  assert.equal(view(v.id).state, 'ended');
  assert.equal(view(v.id).endReason, 'bye');
  assert.equal(h.calls.size, 0);
});

test('486 ends the call with status 486 Busy Here; the second address is never tried', async () => {
  const { h, a, b } = await start();
  const v = h.router.outbound.dial({ to: CALLED }, {});
  const invite = await nextInvite(a);
  a.respond(invite, 486, { reason: 'Busy Here' });
  await until(() => view(v.id).state === 'ended', 'the end');
  const ended = view(v.id);
  assert.deepEqual({ status: ended.status, reason: ended.reason, cause: ended.cause, endReason: ended.endReason }, { status: 486, reason: 'Busy Here', cause: null, endReason: 'failed' });
  assert.deepEqual(await methods(a), ['ACK']);
  h.clock.advance(10_000);
  assert.deepEqual(await methods(b), []);
  assert.equal(h.agent.sessions.length, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
  assert.equal(h.trunks.byName('carrier-a')!.outbound.size, 0);
});

test('a Reason: Q.850;cause=17 on the 486 is the call cause', async () => {
  const { h, a } = await start();
  const v = h.router.outbound.dial({ to: CALLED }, {});
  a.respond(await nextInvite(a), 486, { headers: [{ name: 'Reason', value: 'Q.850;cause=17;text="User busy"' }] });
  await until(() => view(v.id).state === 'ended', 'the end');
  assert.equal(view(v.id).cause, 17);
  assert.equal(view(v.id).status, 486);
});

test('503 from the first address: the INVITE goes to the second (a new Call-ID), whose 200 answers the call', async () => {
  const { h, a, b } = await start();
  const v = h.router.outbound.dial({ to: CALLED }, {});
  const first = await nextInvite(a);
  a.respond(first, 503);
  const second = await nextInvite(b);
  assert.equal(second.uri, 'sip:+15557654321@203.0.113.11:5060;user=phone');
  assert.notEqual(header(second, 'Call-ID'), header(first, 'Call-ID'), 'a new InviteUac: a new Call-ID');
  assert.equal(second.body.toString(), first.body.toString(), 'the same RTP offer');
  await settle();
  assert.equal(view(v.id).sipCallId, header(second, 'Call-ID'), "the view follows the Call-ID now ringing");
  answer(b, second);
  await until(() => view(v.id).state === 'answered', 'the answer');
  assert.equal(b.nextRequest('ACK').method, 'ACK');
  assert.equal(h.calls.get(v.id)!.sipCallId, header(second, 'Call-ID'));
  h.router.outbound.hangup(v.id);
  await settle();
  assert.equal(b.nextRequest('BYE').method, 'BYE');
  assert.deepEqual(await methods(a), ['ACK'], 'only the ACK of its 503');
});

test('the first address answers nothing for failoverAfterSeconds (4 s): the INVITE goes to the second', async () => {
  const { h, a, b } = await start();
  const v = h.router.outbound.dial({ to: CALLED }, {});
  await nextInvite(a);
  h.clock.advance(3_900);
  assert.deepEqual(await methods(b), []);
  h.clock.advance(100);
  const second = await nextInvite(b);
  assert.equal(second.uri, 'sip:+15557654321@203.0.113.11:5060;user=phone');
  b.respond(second, 180);
  await settle();
  assert.equal(view(v.id).state, 'ringing');
  h.router.outbound.hangup(v.id);
});

test('183 with SDP is early media; with earlyMedia: true the agent starts on it, before the 200', async () => {
  const { h, a } = await start();
  const v = h.router.outbound.dial({ to: CALLED, earlyMedia: true }, {});
  const seen = states(v.id);
  const invite = await nextInvite(a);
  a.respond(invite, 183, { body: pcmuOffer(a.rtpPort) });
  await until(() => h.agent.sessions.length === 1, 'the agent on early media');
  assert.equal(view(v.id).state, 'early-media');
  assert.equal(view(v.id).answeredAt, null);
  assert.equal(h.calls.size, 1);
  answer(a, invite);
  await until(() => view(v.id).state === 'answered', 'the answer');
  assert.equal(h.agent.sessions.length, 1, 'the same session goes on');
  assert.deepEqual([...seen], ['dialing', 'early-media', 'answered']);
  h.router.outbound.hangup(v.id);
  await settle();
  assert.equal(a.nextRequest('BYE').method, 'BYE');
});

test('183 with SDP without earlyMedia: early-media state, no agent until the 200', async () => {
  const { h, a } = await start();
  const v = h.router.outbound.dial({ to: CALLED }, {});
  const invite = await nextInvite(a);
  a.respond(invite, 183, { body: pcmuOffer(a.rtpPort) });
  await settle();
  assert.equal(view(v.id).state, 'early-media');
  assert.equal(h.agent.sessions.length, 0);
  answer(a, invite);
  await until(() => view(v.id).state === 'answered', 'the answer');
  assert.equal(h.agent.sessions.length, 1);
  h.router.outbound.hangup(v.id);
});

test('timeoutSeconds: no answer in time sends CANCEL after the 180; the 487 ends the call with 408, endReason timeout', async () => {
  const { h, a } = await start();
  const v = h.router.outbound.dial({ to: CALLED, timeoutSeconds: 5 }, {});
  const invite = await nextInvite(a);
  a.respond(invite, 180);
  await settle();
  h.clock.advance(4_999);
  assert.deepEqual(await methods(a), []);
  h.clock.advance(1);
  await settle();
  const cancel = a.nextRequest('CANCEL');
  assert.equal(cancel.uri, invite.uri);
  assert.equal(headerList(cancel, 'Via')[0], headerList(invite, 'Via')[0]);
  a.respond(cancel, 200);
  a.respond(invite, 487);
  await until(() => view(v.id).state === 'ended', 'the end');
  const ended = view(v.id);
  assert.deepEqual({ status: ended.status, endReason: ended.endReason }, { status: 408, endReason: 'timeout' });
  assert.deepEqual(await methods(a), ['ACK'], 'the 487 ACKed; no other address tried');
});

test('hangup while ringing sends CANCEL; the 487 ends the call deleted', async () => {
  const { h, a } = await start();
  const v = h.router.outbound.dial({ to: CALLED }, {});
  const invite = await nextInvite(a);
  a.respond(invite, 180);
  await settle();
  h.router.outbound.hangup(v.id);
  await settle();
  const cancel = a.nextRequest('CANCEL');
  assert.equal(header(cancel, 'Call-ID'), header(invite, 'Call-ID'));
  a.respond(cancel, 200);
  a.respond(invite, 487);
  await until(() => view(v.id).state === 'ended', 'the end');
  assert.deepEqual({ status: view(v.id).status, endReason: view(v.id).endReason }, { status: 487, endReason: 'deleted' });
  assert.equal(h.agent.sessions.length, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
});

test('hangup before the INVITE is out (the RTP offer still being made): no INVITE goes, the call ends deleted, its port is freed', async () => {
  const { h, a } = await start();
  const v = h.router.outbound.dial({ to: CALLED }, {});
  h.router.outbound.hangup(v.id);
  await until(() => view(v.id).state === 'ended', 'the end');
  h.clock.advance(5_000);
  assert.deepEqual(await methods(a), []);
  assert.deepEqual({ status: view(v.id).status, endReason: view(v.id).endReason }, { status: 487, endReason: 'deleted' });
  assert.equal(h.rtp.pool.portsInUse, 0);
  assert.equal(h.trunks.byName('carrier-a')!.outbound.size, 0);
});

test('refusals: a from the trunk does not own (VG_CALLER_ID_FORBIDDEN), an unknown trunk (VG_REQUEST_INVALID naming trunk), no route, a bad timeout', async () => {
  const { h, a } = await start();
  const own = voxgateError(() => h.router.outbound.dial({ to: CALLED, from: '+15559999999' }, {}));
  assert.equal(own.code, 'VG_CALLER_ID_FORBIDDEN');
  assert.equal(own.status, 403);
  assert.match(own.message, /\+15559999999 is not one of trunk carrier-a's numbers/);
  const trunk = voxgateError(() => h.router.outbound.dial({ to: CALLED, trunk: 'nope' }, {}));
  assert.equal(trunk.code, 'VG_REQUEST_INVALID');
  assert.equal(trunk.status, 400);
  assert.deepEqual((trunk.extra.errors as { field: string }[]).map((e) => e.field), ['trunk']);
  assert.match(trunk.message, /^trunk: there is no trunk 'nope'/);
  const route = voxgateError(() => h.router.outbound.dial({ to: '+445550001111' }, {}));
  assert.equal(route.code, 'VG_REQUEST_INVALID');
  assert.deepEqual((route.extra.errors as { field: string }[]).map((e) => e.field), ['trunk']);
  const timeout = voxgateError(() => h.router.outbound.dial({ to: CALLED, timeoutSeconds: 0 }, {}));
  assert.deepEqual((timeout.extra.errors as { field: string }[]).map((e) => e.field), ['timeoutSeconds']);
  const to = voxgateError(() => h.router.outbound.dial({ to: 'sip:alice@elsewhere.example' }, {}));
  assert.deepEqual((to.extra.errors as { field: string }[]).map((e) => e.field), ['to']);
  // The owned second number is fine.
  const v = h.router.outbound.dial({ to: CALLED, from: '+15551230001' }, {});
  assert.equal(v.from, '+15551230001');
  const invite = await nextInvite(a);
  assert.equal(header(invite, 'P-Asserted-Identity'), '<sip:+15551230001@carrier.example.net;user=phone>');
  assert.equal(h.router.outbound.list().length, 1, 'no call made by a refusal');
  h.router.outbound.hangup(v.id);
});

test('outbound.maxCalls: 1 — a second dial while the first rings is 429 VG_TRUNK_LIMIT with Retry-After; once it ended, one may go', async () => {
  const { h, a } = await start(carrierA({ maxCalls: 1 }));
  const first = h.router.outbound.dial({ to: CALLED }, {});
  const invite = await nextInvite(a);
  const busy = voxgateError(() => h.router.outbound.dial({ to: CALLED }, {}));
  assert.equal(busy.code, 'VG_TRUNK_LIMIT');
  assert.equal(busy.status, 429);
  assert.match(busy.headers['Retry-After'] ?? '', /^\d+$/);
  a.respond(invite, 486);
  await until(() => view(first.id).state === 'ended', 'the end');
  const again = h.router.outbound.dial({ to: CALLED }, {});
  assert.equal(again.state, 'dialing');
  h.router.outbound.hangup(again.id);
});

test('outbound.callsPerSecond: 1 — a second dial within the second is 429 with Retry-After: 1; a second later it goes', async () => {
  const { h } = await start(carrierA({ callsPerSecond: 1 }));
  const first = h.router.outbound.dial({ to: CALLED }, {});
  h.clock.advance(500);
  const fast = voxgateError(() => h.router.outbound.dial({ to: CALLED }, {}));
  assert.equal(fast.code, 'VG_TRUNK_LIMIT');
  assert.equal(fast.status, 429);
  assert.equal(fast.headers['Retry-After'], '1');
  h.clock.advance(500);
  const second = h.router.outbound.dial({ to: CALLED }, {});
  assert.equal(second.state, 'dialing');
  h.router.outbound.hangup(first.id);
  h.router.outbound.hangup(second.id);
});

test('a 200 from a second fork (another To tag) after the first 200: ACK and BYE to it; the call stays with the first', async () => {
  const { h, a } = await start();
  const v = h.router.outbound.dial({ to: CALLED }, {});
  const invite = await nextInvite(a);
  answer(a, invite, 'fork-one');
  await until(() => view(v.id).state === 'answered', 'the answer');
  assert.equal(tagOf(header(a.nextRequest('ACK'), 'To')), 'fork-one');
  answer(a, invite, 'fork-two');
  await settle();
  const ack = a.nextRequest('ACK');
  assert.equal(tagOf(header(ack, 'To')), 'fork-two');
  const bye = a.nextRequest('BYE');
  assert.equal(tagOf(header(bye, 'To')), 'fork-two');
  assert.equal(header(bye, 'Call-ID'), header(invite, 'Call-ID'));
  assert.equal(view(v.id).state, 'answered', 'the first fork keeps the call');
  assert.equal(h.calls.size, 1);
  // A retransmission of the first 200 is ACKed again, nothing else (§13.2.2.4).
  answer(a, invite, 'fork-one');
  await settle();
  assert.deepEqual(await methods(a), ['ACK']);
  h.router.outbound.hangup(v.id);
  await settle();
  assert.equal(tagOf(header(a.nextRequest('BYE'), 'To')), 'fork-one');
});

test('with earlyMedia: true, a 486 after the 183 ends the call with 486 (not the early call’s own end), the agent session ended', async () => {
  const { h, a } = await start();
  const v = h.router.outbound.dial({ to: CALLED, earlyMedia: true }, {});
  const invite = await nextInvite(a);
  a.respond(invite, 183, { body: pcmuOffer(a.rtpPort) });
  await until(() => h.agent.sessions.length === 1, 'the agent on early media');
  a.respond(invite, 486, { reason: 'Busy Here', headers: [{ name: 'Reason', value: 'Q.850;cause=17' }] });
  await until(() => view(v.id).state === 'ended', 'the end');
  const ended = view(v.id);
  assert.deepEqual(
    { status: ended.status, reason: ended.reason, cause: ended.cause, endReason: ended.endReason },
    { status: 486, reason: 'Busy Here', cause: 17, endReason: 'failed' },
    'the carrier’s final answer is the call’s status',
  );
  assert.equal(h.calls.size, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
});

test('with earlyMedia: true, the ring timeout after the 183 ends the call with 408, endReason timeout', async () => {
  const { h, a } = await start();
  const v = h.router.outbound.dial({ to: CALLED, earlyMedia: true, timeoutSeconds: 5 }, {});
  const invite = await nextInvite(a);
  a.respond(invite, 183, { body: pcmuOffer(a.rtpPort) });
  await until(() => h.agent.sessions.length === 1, 'the agent on early media');
  h.clock.advance(5_000);
  await settle();
  const cancel = a.nextRequest('CANCEL');
  a.respond(cancel, 200);
  a.respond(invite, 487);
  await until(() => view(v.id).state === 'ended', 'the end');
  assert.deepEqual({ status: view(v.id).status, endReason: view(v.id).endReason }, { status: 408, endReason: 'timeout' });
});

test('hangup while ringing, and the 200 crosses the CANCEL: the 200 is ACKed and BYEd at once; no agent, the call ends deleted', async () => {
  const { h, a } = await start();
  const v = h.router.outbound.dial({ to: CALLED }, {});
  const invite = await nextInvite(a);
  a.respond(invite, 180);
  await settle();
  h.router.outbound.hangup(v.id);
  await settle();
  const cancel = a.nextRequest('CANCEL');
  a.respond(cancel, 481);
  answer(a, invite);
  await until(() => view(v.id).state === 'ended', 'the end');
  assert.deepEqual(await methods(a), ['ACK', 'BYE']);
  assert.deepEqual({ status: view(v.id).status, endReason: view(v.id).endReason }, { status: 487, endReason: 'deleted' });
  assert.equal(h.agent.sessions.length, 0);
  assert.equal(h.calls.size, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
});

test('list: live calls first, then the ended ones newest first', async () => {
  const { h, a } = await start();
  const one = h.router.outbound.dial({ to: CALLED }, {});
  const first = await nextInvite(a);
  const two = h.router.outbound.dial({ to: CALLED }, {});
  await nextInvite(a);
  const three = h.router.outbound.dial({ to: CALLED }, {});
  await nextInvite(a);
  a.respond(first, 486);
  await until(() => view(one.id).state === 'ended', 'the end');
  assert.deepEqual(h.router.outbound.list().map((c) => c.id), [two.id, three.id, one.id]);
  h.router.outbound.hangup(two.id);
  h.router.outbound.hangup(three.id);
});

test("an agent's session.dial places another call on the trunk: its own session for the agent when answered, with parentSession", async () => {
  const { h, a } = await start();
  const first = h.router.outbound.dial({ to: CALLED }, {});
  const invite = await nextInvite(a);
  answer(a, invite);
  await until(() => view(first.id).state === 'answered', 'the first answer');
  const second = h.agent.last.session.dial({ to: '+15557654322', customParameters: { why: 'supervisor' } });
  assert.equal(second.state, 'dialing');
  assert.notEqual(second.id, first.id);
  const again = await nextInvite(a);
  assert.match(again.uri, /^sip:\+15557654322@203\.0\.113\.10:5060;user=phone$/);
  answer(a, again, 'second-tag');
  await until(() => view(second.id).state === 'answered', 'the second answer');
  assert.equal(h.agent.sessions.length, 2, 'the agent gets the new call as a session of its own');
  assert.deepEqual(h.agent.last.session.details.customParameters, { why: 'supervisor', parentSession: first.id });
  h.router.outbound.hangup(second.id);
  h.router.outbound.hangup(first.id);
  await settle();
  assert.equal(h.calls.size, 0);
});

test('RFC 4028: our INVITE offers timers; a 200 naming us refresher (Session-Expires: 90;refresher=uac) gets our UPDATE at half the interval', async () => {
  const { h, a } = await start();
  const v = h.router.outbound.dial({ to: CALLED }, {});
  const invite = await nextInvite(a);
  assert.ok(headerList(invite, 'Supported').includes('timer'), 'Supported: timer');
  assert.equal(header(invite, 'Session-Expires'), '1800');
  a.respond(invite, 200, {
    headers: [
      { name: 'Contact', value: a.contact },
      { name: 'Session-Expires', value: '90;refresher=uac' },
      { name: 'Allow', value: 'INVITE, ACK, BYE, CANCEL, UPDATE' },
    ],
    body: pcmuOffer(a.rtpPort),
  });
  await until(() => view(v.id).state === 'answered', 'the answer');
  a.take();
  h.clock.advance(44_000);
  await settle();
  assert.deepEqual(await methods(a), [], 'nothing before half the interval');
  h.clock.advance(2_000);
  await settle();
  const update = a.nextRequest('UPDATE');
  assert.equal(header(update, 'Session-Expires'), '90;refresher=uac');
  a.respond(update, 200, { headers: [{ name: 'Session-Expires', value: '90;refresher=uac' }] });
  h.router.outbound.hangup(v.id);
  await settle();
});

test('with earlyMedia: true, the agent hanging up during the 183 CANCELs the INVITE: the phone stops ringing, the slot is free', async () => {
  const { h, a } = await start(carrierA({ maxCalls: 1 }));
  const v = h.router.outbound.dial({ to: CALLED, earlyMedia: true }, {});
  const invite = await nextInvite(a);
  a.respond(invite, 183, { body: pcmuOffer(a.rtpPort) });
  await until(() => h.agent.sessions.length === 1, 'the agent on early media');
  h.agent.last.session.hangup();
  await until(() => a.flow.sent.some((t) => t.startsWith('CANCEL ')), 'the CANCEL');
  a.respond(invite, 487);
  await settle();
  assert.equal(view(v.id).state, 'ended');
  assert.equal(h.trunks.byName('carrier-a')!.outbound.size, 0);
});

test('a source token may name a configured agent, not an agent spec of its own (a twilio-stream URL would stream the callee anywhere)', async () => {
  const { h } = await start();
  const source = { name: 'crm', kind: 'browser', agent: undefined, codecs: ['opus' as const], maxSessions: undefined, via: 'token' as const, outbound: true };
  const err = voxgateError(() => h.router.outbound.dial({ to: CALLED, agent: { type: 'twilio-stream', url: 'wss://elsewhere.example/' } }, { source }));
  assert.equal(err.code, 'VG_AUTH_FORBIDDEN');
  assert.match(err.message, /^agent:/);
  const other = voxgateError(() => h.router.outbound.dial({ to: CALLED }, { source: { ...source, outbound: false } }));
  assert.equal(other.code, 'VG_AUTH_FORBIDDEN');
});

test('outbound.allowedPrefixes: a number outside them is refused (403 naming the field), before anything rings', async () => {
  const { h, a } = await start(carrierA({ allowedPrefixes: ['+1555'] }));
  const err = voxgateError(() => h.router.outbound.dial({ to: '+19005550000' }, {}));
  assert.equal(err.code, 'VG_AUTH_FORBIDDEN');
  assert.match(err.message, /allowedPrefixes/);
  assert.deepEqual(await methods(a), []);
});

test('shutdown: calls still ringing are CANCELled and end with endReason shutdown', async () => {
  const { h, a } = await start();
  const v = h.router.outbound.dial({ to: CALLED }, {});
  const invite = await nextInvite(a);
  a.respond(invite, 180);
  await settle();
  h.router.cancelOutbound();
  await until(() => a.flow.sent.some((t) => t.startsWith('CANCEL ')), 'the CANCEL');
  a.respond(invite, 487);
  await settle();
  assert.equal(view(v.id).endReason, 'shutdown');
});
