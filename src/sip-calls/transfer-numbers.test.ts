import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { TransferError } from '../agent/agent.js';
import type { Call } from '../call/call.js';
import type { SipRequest, SipResponse } from '../sip/message.js';
import { header, pcmuOffer, settle, TRUNK_NUMBER, until, type Carrier, type HeldAgent, type TrunkInput } from '../testing/trunk.js';
import { outboundHarness, type OutboundHarness } from '../testing/outbound.js';

let h: OutboundHarness<HeldAgent> | undefined;
afterEach(() => {
  h?.close();
  h = undefined;
});

const SBC = '192.0.2.10:5060';
const A = '203.0.113.10:5060';
const FIRST = '+15557654321';
const SECOND = '+15557654322';

/** Calls come in from its SBCs on 192.0.2.0/24; calls go out to 203.0.113.10 and .11. */
const CARRIER_A: TrunkInput = {
  name: 'carrier-a',
  inbound: { numbers: [TRUNK_NUMBER], allowedAddresses: ['192.0.2.0/24'] },
  outbound: { address: [A, '203.0.113.11:5060'], transport: 'udp', auth: { user: 'acct-123', password: 'pw' }, fromUser: 'acct-123', fromHost: 'carrier.example.net', numbers: [TRUNK_NUMBER], callerIdHeader: 'pai' },
  codecs: ['pcmu'],
};

/** An inbound trunk call answered by the agent; the carrier's outbound side at A. */
async function inboundCall(trunk: TrunkInput = CARRIER_A): Promise<{ h: OutboundHarness<HeldAgent>; c: Carrier; a: Carrier; invite: SipRequest; ok: SipResponse; call: Call }> {
  const harness = outboundHarness({ trunks: [trunk], outboundRoutes: [{ prefix: '+1', trunk: 'carrier-a' }] });
  h = harness;
  const c = await harness.carrier(SBC, '+15550001111');
  const a = await harness.carrier(A, FIRST);
  const invite = c.invite();
  const ok = (await c.responses()).find((r) => r.status === 200);
  assert.ok(ok, 'the inbound call is answered');
  c.ack(invite, ok);
  await settle();
  const call = harness.calls.get(harness.agent.last.session.callId)!;
  assert.ok(call);
  return { h: harness, c, a, invite, ok, call };
}

async function invites(a: Carrier, n: number): Promise<SipRequest[]> {
  await until(() => a.flow.sent.filter((t) => t.startsWith('INVITE ')).length >= n, `${n} INVITEs at ${a.flow.remote}`);
  return a.take().filter((m): m is SipRequest => m.kind === 'request' && m.method === 'INVITE');
}

async function requests(far: Carrier): Promise<SipRequest[]> {
  await settle();
  return far.take().filter((m): m is SipRequest => m.kind === 'request');
}

function answer(a: Carrier, invite: SipRequest, toTag?: string): void {
  a.respond(invite, 200, { ...(toTag ? { toTag } : {}), headers: [{ name: 'Contact', value: `<sip:${invite.uri.replace(/^sip:([^@]+)@.*$/, '$1')}@${A}>` }], body: pcmuOffer(a.rtpPort) });
}

test("an inbound trunk call's transfer to a number dials it on the call's trunk (its outbound side) and bridges the caller to it; the agent leaves transferred", async () => {
  const { h, c, a, invite, ok, call } = await inboundCall();
  const session = h.agent.last;
  const done = session.session.transfer('+1 555 765 4321');
  const [out] = await invites(a, 1);
  assert.equal(out!.uri, 'sip:+15557654321@203.0.113.10:5060;user=phone');
  assert.equal(header(out!, 'P-Asserted-Identity'), '<sip:+15551230000@carrier.example.net;user=phone>', "the trunk's number as caller ID");
  assert.match(out!.body.toString(), /^m=audio \d+ RTP\/AVP 0 101\r?$/m, "the caller's PCMU offered");
  a.respond(out!, 180);
  await settle();
  assert.equal(call.mode, 'agent', 'the caller hears the agent while it rings');
  answer(a, out!);
  await done;
  assert.equal(a.nextRequest('ACK').method, 'ACK');
  assert.deepEqual([...call.legs.keys()].sort(), ['callee', 'caller']);
  assert.equal(call.mode, 'forward', 'PCMU on both legs: packets forwarded');
  assert.equal(session.transferredTo, FIRST);
  assert.equal(session.ended, 'transferred');
  assert.equal(call.state !== 'ended', true);
  assert.equal(h.trunks.byName('carrier-a')!.outbound.size, 1);

  // The far party hangs up: its BYE is answered, and the caller gets ours.
  a.inDialog('BYE', out!);
  await settle();
  assert.deepEqual(a.take().flatMap((m) => (m.kind === 'response' ? [m.status] : [])), [200]);
  assert.equal(call.state, 'ended');
  assert.equal(h.trunks.byName('carrier-a')!.outbound.size, 0);
  assert.equal(h.router.dialogs, 0);
  const bye = c.take().find((m): m is SipRequest => m.kind === 'request' && m.method === 'BYE');
  assert.ok(bye, 'the inbound caller gets a BYE when the party it was bridged to hangs up (else its phone stays in the call)');
  assert.equal(header(bye, 'Call-ID'), header(invite, 'Call-ID'));
  assert.equal(header(bye, 'To'), header(invite, 'From'));
  void ok;
});

test('a transfer to two numbers rings both at once; the second answers: the first gets CANCEL (Reason: call completed elsewhere), the caller is bridged to the second', async () => {
  const { h, a, call } = await inboundCall();
  const session = h.agent.last;
  const done = session.session.transfer([FIRST, SECOND]);
  const out = await invites(a, 2);
  const first = out.find((r) => r.uri.startsWith(`sip:${FIRST}@`))!;
  const second = out.find((r) => r.uri.startsWith(`sip:${SECOND}@`))!;
  assert.ok(first && second, `INVITEs to both numbers: ${out.map((r) => r.uri).join(', ')}`);
  assert.notEqual(header(first, 'Call-ID'), header(second, 'Call-ID'));
  a.respond(first, 180);
  a.respond(second, 180);
  await settle();
  answer(a, second);
  await done;
  const sent = await requests(a);
  assert.deepEqual(sent.map((r) => `${r.method} ${header(r, 'Call-ID') === header(first, 'Call-ID') ? 'first' : 'second'}`).sort(), ['ACK second', 'CANCEL first']);
  const cancel = sent.find((r) => r.method === 'CANCEL')!;
  assert.equal(cancel.uri, first.uri);
  a.respond(cancel, 200);
  a.respond(first, 487);
  await settle();
  assert.deepEqual((await requests(a)).map((r) => r.method), ['ACK']);
  assert.equal(session.transferredTo, SECOND);
  assert.deepEqual([...call.legs.keys()].sort(), ['callee', 'caller']);
  assert.equal(h.trunks.byName('carrier-a')!.outbound.size, 1, 'only the answered leg counts');
  // RFC 3326 (as transfer.ts promises): the phone that lost shows no missed call.
  assert.match(header(cancel, 'Reason') ?? '', /^SIP\s*;\s*cause=200\s*;\s*text="Call completed elsewhere"$/i, 'the CANCEL says the call was completed elsewhere');
});

test('the bridged caller hangs up: the party it was bridged to gets BYE', async () => {
  const { h, c, a, invite, ok, call } = await inboundCall();
  const done = h.agent.last.session.transfer(FIRST);
  const [out] = await invites(a, 1);
  answer(a, out!);
  await done;
  a.take();
  c.callerRequest('BYE', invite, ok);
  await settle();
  assert.equal(call.state, 'ended');
  assert.equal(call.endReason, 'bye');
  const bye = (await requests(a)).find((r) => r.method === 'BYE');
  assert.ok(bye, 'the transfer target gets BYE');
  assert.equal(header(bye, 'Call-ID'), header(out!, 'Call-ID'));
  assert.equal(h.trunks.byName('carrier-a')!.outbound.size, 0);
  assert.equal(h.rtp.pool.portsInUse, 0);
});

test('a transfer to two numbers, both failing: the busy one is the reason (486 before 480); the caller stays with the agent', async () => {
  const { h, a, call } = await inboundCall();
  const done = h.agent.last.session.transfer([FIRST, SECOND]);
  const out = await invites(a, 2);
  const first = out.find((r) => r.uri.startsWith(`sip:${FIRST}@`))!;
  const second = out.find((r) => r.uri.startsWith(`sip:${SECOND}@`))!;
  a.respond(first, 480);
  a.respond(second, 486);
  await assert.rejects(done, (err: unknown) => err instanceof TransferError && err.status === 486);
  assert.deepEqual([...call.legs.keys()].sort(), ['agent', 'caller']);
  assert.equal(call.mode, 'agent');
  assert.equal(h.agent.last.ended, undefined);
  assert.equal(h.trunks.byName('carrier-a')!.outbound.size, 0);
  assert.equal(h.rtp.pool.portsInUse, 2, "only the caller's RTP ports");
});

test('transfer timeoutSeconds: nobody answers in time, each gets CANCEL after its 180, the transfer fails 408 and the caller stays with the agent', async () => {
  const { h, a, call } = await inboundCall();
  const done = h.agent.last.session.transfer([FIRST, SECOND], { timeoutSeconds: 10 });
  const out = await invites(a, 2);
  for (const r of out) a.respond(r, 180);
  await settle();
  h.clock.advance(10_000);
  await settle();
  const cancels = (await requests(a)).filter((r) => r.method === 'CANCEL');
  assert.equal(cancels.length, 2);
  for (const r of out) a.respond(r, 487);
  await assert.rejects(done, (err: unknown) => err instanceof TransferError && err.status === 408);
  assert.equal(call.mode, 'agent');
});

test('the caller hangs up while the transfer targets ring: each gets CANCEL; the transfer fails', async () => {
  const { h, c, a, invite, ok, call } = await inboundCall();
  const done = h.agent.last.session.transfer([FIRST, SECOND]);
  done.catch(() => undefined);
  const out = await invites(a, 2);
  for (const r of out) a.respond(r, 180);
  await settle();
  c.callerRequest('BYE', invite, ok);
  await settle();
  assert.equal(call.state, 'ended');
  const cancels = (await requests(a)).filter((r) => r.method === 'CANCEL');
  assert.deepEqual(cancels.map((r) => header(r, 'Call-ID')).sort(), out.map((r) => header(r, 'Call-ID')).sort());
  for (const r of out) a.respond(r, 487);
  await assert.rejects(done, (err: unknown) => err instanceof TransferError);
  assert.equal(h.trunks.byName('carrier-a')!.outbound.size, 0);
});

test('a call voxgate placed: its agent\'s transfer to a number dials it on the trunk and bridges the answered party to it', async () => {
  const harness = outboundHarness({ trunks: [CARRIER_A], outboundRoutes: [{ prefix: '+1', trunk: 'carrier-a' }] });
  h = harness;
  const a = await harness.carrier(A, FIRST);
  const v = harness.router.outbound.dial({ to: FIRST }, {});
  const [placed] = await invites(a, 1);
  answer(a, placed!);
  await until(() => harness.router.outbound.get(v.id)?.state === 'answered', 'the answer');
  a.take();
  const done = harness.agent.last.session.transfer(SECOND);
  const [out] = await invites(a, 1);
  assert.equal(out!.uri, 'sip:+15557654322@203.0.113.10:5060;user=phone');
  answer(a, out!);
  await done;
  const call = harness.calls.get(v.id)!;
  assert.deepEqual([...call.legs.keys()].sort(), ['callee', 'caller']);
  assert.equal(harness.agent.last.transferredTo, SECOND);
  assert.equal(harness.router.outbound.get(v.id)?.state, 'answered');
  harness.router.outbound.hangup(v.id);
  await settle();
  const byes = (await requests(a)).filter((r) => r.method === 'BYE');
  assert.deepEqual(byes.map((r) => header(r, 'Call-ID')).sort(), [header(placed!, 'Call-ID'), header(out!, 'Call-ID')].sort(), 'both parties get BYE');
  assert.equal(harness.router.outbound.get(v.id)?.state, 'ended');
});

test('a call voxgate placed, bridged by a transfer: when the transfer target hangs up, the party we placed the call to gets BYE', async () => {
  const harness = outboundHarness({ trunks: [CARRIER_A], outboundRoutes: [{ prefix: '+1', trunk: 'carrier-a' }] });
  h = harness;
  const a = await harness.carrier(A, FIRST);
  const v = harness.router.outbound.dial({ to: FIRST }, {});
  const [placed] = await invites(a, 1);
  answer(a, placed!);
  await until(() => harness.router.outbound.get(v.id)?.state === 'answered', 'the answer');
  const done = harness.agent.last.session.transfer(SECOND);
  const [out] = await invites(a, 1);
  answer(a, out!);
  await done;
  a.take();
  a.inDialog('BYE', out!, { headers: [] });
  await settle();
  assert.equal(harness.router.outbound.get(v.id)?.state, 'ended');
  const byes = (await requests(a)).filter((r) => r.method === 'BYE');
  assert.deepEqual(byes.map((r) => header(r, 'Call-ID')), [header(placed!, 'Call-ID')], 'the placed party gets BYE');
});

test("a rota is admitted as a whole: with outbound.maxCalls 1 a two-number rota is refused (503) and rings nobody; with callsPerSecond it is one dial", async () => {
  {
    const { h, a } = await inboundCall({ ...CARRIER_A, outbound: { ...CARRIER_A.outbound!, maxCalls: 1 } });
    await assert.rejects(h.agent.last.session.transfer([FIRST, SECOND]), (err: Error & { status?: number }) => err.status === 503);
    assert.deepEqual((await requests(a)).filter((r) => r.method === 'INVITE'), []);
    h.close();
  }
  const { h, a } = await inboundCall({ ...CARRIER_A, outbound: { ...CARRIER_A.outbound!, callsPerSecond: 5 } });
  const done = h.agent.last.session.transfer([FIRST, SECOND]);
  done.catch(() => undefined);
  assert.equal((await invites(a, 2)).length, 2, 'both numbers ring');
});
