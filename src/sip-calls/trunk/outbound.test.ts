import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { parseConfig, type TrunkOutboundConfig } from '../../core/config.js';
import { createLogger } from '../../core/logger.js';
import { DigestAuthenticator, parseAuthParams } from '../../sip/auth/digest.js';
import { tagOf } from '../../sip/build.js';
import { header, headerList, type SipRequest, type SipResponse } from '../../sip/message.js';
import { FarEnd, settle, testStack, type TestStack } from '../../testing/sip.js';
import { carrierAddresses, q850Of, TrunkInvite, type TrunkInviteOutcome, type TrunkInviteRequest } from './outbound.js';

let s: TestStack | undefined;
afterEach(() => {
  s?.close();
  s = undefined;
});

const A = '203.0.113.10:5060';
const B = '203.0.113.11:5060';
const CALLED = '+15557654321';
const OURS = '+15551230000';

/** The outbound section as the config file would write it, with its defaults. */
function outbound(o: Record<string, unknown> = {}): TrunkOutboundConfig {
  const trunk = {
    name: 'carrier-a',
    outbound: { address: [A, B], transport: 'udp', auth: { user: 'acct-123', password: 'pw' }, fromUser: 'acct-123', fromHost: 'carrier.example.net', numbers: [OURS], callerIdHeader: 'pai', ...o },
  };
  const sip = parseConfig({ sip: { domain: 'voxgate.test', listen: [{ transport: 'udp', host: '127.0.0.1', port: 0 }], trunks: [trunk as never] } }).sip;
  return sip.trunks[0]!.outbound!;
}

const OFFER = ['v=0', 'o=voxgate 1 1 IN IP4 127.0.0.1', 's=voxgate', 'c=IN IP4 127.0.0.1', 't=0 0', 'm=audio 40000 RTP/AVP 0 101', 'a=rtpmap:0 PCMU/8000', 'a=rtpmap:101 telephone-event/8000', 'a=sendrecv', ''].join('\r\n');
const ANSWER = ['v=0', 'o=carrier 9 9 IN IP4 198.51.100.20', 's=-', 'c=IN IP4 198.51.100.20', 't=0 0', 'm=audio 30000 RTP/AVP 0', 'a=rtpmap:0 PCMU/8000', 'a=sendrecv', ''].join('\r\n');

/** A stack on a dialable UDP fake transport, and the carrier's far ends at A and B. */
function carriers(): { s: TestStack; a: FarEnd; b: FarEnd } {
  s = testStack({ protocol: 'UDP', sip: { domain: 'voxgate.test', listen: [{ transport: 'udp', host: '127.0.0.1', port: 0 }] } });
  s.transport.dialable();
  const at = (text: string) => {
    const [host, port] = text.split(':');
    return new FarEnd(s!.transport.flowTo!({ host: host!, port: Number(port) })!, CALLED, text);
  };
  return { s, a: at(A), b: at(B) };
}

/** A TrunkInvite started (after `before`, which may listen to it). */
function invite(stack: TestStack, o: TrunkOutboundConfig, req: Partial<TrunkInviteRequest> = {}, before: (t: TrunkInvite) => void = () => undefined): TrunkInvite {
  const t = new TrunkInvite(
    { stack: stack.sip, clock: stack.clock, log: createLogger('silent') },
    { name: 'carrier-a', outbound: o },
    { to: CALLED, from: OURS, sdp: OFFER, ringTimeoutMs: 30_000, ...req },
  );
  before(t);
  return t.start();
}

/** Requests a far end got (the ACKs of failures included), in order. */
function requests(far: FarEnd): SipRequest[] {
  return far.take().filter((m): m is SipRequest => m.kind === 'request');
}

/** Whether the promise has settled (without waiting for it). */
async function settled<T>(p: Promise<T>): Promise<T | undefined> {
  let out: T | undefined;
  void p.then((v) => (out = v));
  await settle();
  return out;
}

test('the INVITE: Request-URI sip:+E164@address;user=phone, From the account user (no user=phone: it is no number), the caller ID in P-Asserted-Identity, our SDP', async () => {
  const { s, a, b } = carriers();
  const t = invite(s, outbound(), { callerName: 'Front "Desk"' });
  await settle();
  const [inv, ...more] = requests(a);
  assert.equal(more.length, 0);
  assert.equal(inv!.method, 'INVITE');
  assert.equal(inv!.uri, 'sip:+15557654321@203.0.113.10:5060;user=phone');
  // RFC 3261 §19.1.1: user=phone marks a telephone-subscriber user part; acct-123 is none.
  assert.match(header(inv!, 'From')!, /^"Front Desk" <sip:acct-123@carrier\.example\.net>;tag=[^;]+$/);
  assert.equal(header(inv!, 'To'), '<sip:+15557654321@203.0.113.10;user=phone>');
  assert.equal(header(inv!, 'P-Asserted-Identity'), '"Front Desk" <sip:+15551230000@carrier.example.net;user=phone>');
  assert.equal(header(inv!, 'P-Preferred-Identity'), undefined);
  assert.equal(header(inv!, 'Privacy'), undefined);
  assert.match(header(inv!, 'Contact')!, /^<sip:acct-123@192\.0\.2\.1:5060(;transport=udp)?>$/);
  assert.match(header(inv!, 'Via')!, /^SIP\/2\.0\/UDP 192\.0\.2\.1:5060;branch=z9hG4bK/);
  assert.equal(header(inv!, 'CSeq'), '1 INVITE');
  assert.equal(header(inv!, 'Content-Type'), 'application/sdp');
  assert.equal(inv!.body.toString(), OFFER);
  assert.equal(header(inv!, 'Call-ID'), t.uac!.callId);
  assert.equal(b.flow.sent.length, 0, 'nothing to the second address');
  t.cancel();
});

test("callerIdHeader 'from': the caller ID is the From user (with user=phone), no PAI; 'ppi': P-Preferred-Identity", async () => {
  const { s, a } = carriers();
  invite(s, outbound({ callerIdHeader: 'from' })).cancel();
  await settle();
  const [fromInv] = requests(a);
  assert.match(header(fromInv!, 'From')!, /^<sip:\+15551230000@carrier\.example\.net;user=phone>;tag=/);
  assert.equal(header(fromInv!, 'P-Asserted-Identity'), undefined);
  assert.match(header(fromInv!, 'Contact')!, /^<sip:\+15551230000@/);

  invite(s, outbound({ callerIdHeader: 'ppi' })).cancel();
  await settle();
  const [ppiInv] = requests(a);
  assert.match(header(ppiInv!, 'From')!, /^<sip:acct-123@carrier\.example\.net>;tag=/);
  assert.equal(header(ppiInv!, 'P-Preferred-Identity'), '<sip:+15551230000@carrier.example.net;user=phone>');
  assert.equal(header(ppiInv!, 'P-Asserted-Identity'), undefined);

  invite(s, outbound({ userPhone: false, fromHost: undefined })).cancel();
  await settle();
  const [plain] = requests(a);
  assert.equal(plain!.uri, 'sip:+15557654321@203.0.113.10:5060', 'userPhone: false leaves user=phone off');
  assert.equal(header(plain!, 'P-Asserted-Identity'), '<sip:+15551230000@203.0.113.10>', 'without fromHost the identity is at the carrier host');
});

test('a 407 is answered with Proxy-Authorization for the account (uri= the Request-URI) on the same Call-ID, From tag and CSeq+1; the 407 is ACKed', async () => {
  const { s, a } = carriers();
  const server = new DigestAuthenticator('carrier.example.net', [{ user: 'acct-123', password: 'pw' }], () => s.clock.now());
  const t = invite(s, outbound());
  await settle();
  const [first] = requests(a);
  a.respond(first!, 100);
  a.respond(first!, 407, { headers: server.challenges().map((value) => ({ name: 'Proxy-Authenticate', value })) });
  await settle();
  const [ack, second, ...more] = requests(a);
  assert.equal(more.length, 0);
  assert.equal(ack!.method, 'ACK', '§17.1.1.3: the 407 is ACKed first');
  assert.equal(header(ack!, 'CSeq'), '1 ACK');
  assert.equal(second!.method, 'INVITE');
  assert.equal(second!.uri, first!.uri);
  assert.equal(header(second!, 'Call-ID'), header(first!, 'Call-ID'));
  assert.equal(tagOf(header(second!, 'From')), tagOf(header(first!, 'From')));
  assert.equal(header(second!, 'CSeq'), '2 INVITE');
  assert.notEqual(headerList(second!, 'Via')[0], headerList(first!, 'Via')[0], 'a new branch');
  assert.equal(header(second!, 'Authorization'), undefined);
  const auth = header(second!, 'Proxy-Authorization')!;
  const p = parseAuthParams(auth)!;
  assert.equal(p.get('username'), 'acct-123', 'the account user, not the From user');
  assert.equal(p.get('uri'), 'sip:+15557654321@203.0.113.10:5060;user=phone', 'the digest uri is the Request-URI');
  assert.equal(p.get('realm'), 'carrier.example.net');
  assert.deepEqual(server.verify(auth, 'INVITE'), { ok: true, user: 'acct-123', algorithm: 'SHA-256' });
  // A second 407 to the answered nonce is wrong credentials: no third INVITE, the 407 is the outcome.
  a.respond(second!, 407, { headers: server.challenges().map((value) => ({ name: 'Proxy-Authenticate', value })) });
  const outcome = await settled(t.result);
  assert.deepEqual(requests(a).map((r) => r.method), ['ACK']);
  assert.equal(outcome?.ok, false);
  assert.equal(outcome?.ok === false && outcome.status, 407);
});

test('a 401 gets Authorization (not Proxy-Authorization) with the MD5 answer when MD5 is all the carrier offers', async () => {
  const { s, a } = carriers();
  invite(s, outbound());
  await settle();
  const [first] = requests(a);
  a.respond(first!, 401, { headers: [{ name: 'WWW-Authenticate', value: 'Digest realm="carrier.example.net", nonce="n0nce", algorithm=MD5' }] });
  await settle();
  const second = requests(a).find((r) => r.method === 'INVITE')!;
  const p = parseAuthParams(header(second, 'Authorization')!)!;
  assert.equal(header(second, 'Proxy-Authorization'), undefined);
  assert.equal(p.get('username'), 'acct-123');
  assert.equal(p.get('uri'), first!.uri);
  assert.equal(p.get('algorithm'), 'MD5');
  assert.equal(p.get('qop'), undefined, 'no qop offered: the RFC 2069 form');
});

test('a 503 from the first address: an INVITE to the second (a new request: new Call-ID, From tag and CSeq 1), whose 200 is the outcome', async () => {
  const { s, a, b } = carriers();
  const attempts: string[] = [];
  const t = invite(s, outbound(), {}, (t) => t.on('attempt', (address, callId) => attempts.push(`${address.text} ${callId}`)));
  await settle();
  const [first] = requests(a);
  a.respond(first!, 503, { headers: [{ name: 'Retry-After', value: '30' }] });
  await settle();
  assert.deepEqual(requests(a).map((r) => r.method), ['ACK']);
  const [second] = requests(b);
  assert.equal(second!.method, 'INVITE');
  assert.equal(second!.uri, 'sip:+15557654321@203.0.113.11:5060;user=phone');
  assert.equal(header(second!, 'To'), '<sip:+15557654321@203.0.113.11;user=phone>');
  assert.notEqual(header(second!, 'Call-ID'), header(first!, 'Call-ID'));
  assert.notEqual(tagOf(header(second!, 'From')), tagOf(header(first!, 'From')));
  assert.equal(header(second!, 'CSeq'), '1 INVITE');
  assert.deepEqual(attempts, [`${A} ${header(first!, 'Call-ID')}`, `${B} ${header(second!, 'Call-ID')}`]);
  b.respond(second!, 180);
  b.respond(second!, 200, { headers: [{ name: 'Contact', value: `<sip:${CALLED}@${B}>` }], body: ANSWER });
  const outcome = (await settled(t.result)) as Extract<TrunkInviteOutcome, { ok: true }>;
  assert.equal(outcome.ok, true);
  assert.equal(outcome.address.text, B);
  assert.equal(outcome.dialog.callId, header(second!, 'Call-ID'));
  const [ack] = requests(b);
  assert.equal(ack!.method, 'ACK');
  assert.equal(ack!.uri, `sip:${CALLED}@${B}`, 'the 2xx ACK goes to the Contact');
});

test('408 and 500 fail over too; the last address failing ends it with that address status', async () => {
  const { s, a, b } = carriers();
  const t = invite(s, outbound());
  await settle();
  a.respond(requests(a)[0]!, 408);
  await settle();
  const [second] = requests(b);
  assert.equal(second!.method, 'INVITE');
  b.respond(second!, 500, { reason: 'Server Internal Error' });
  const outcome = await settled(t.result);
  assert.deepEqual(outcome && !outcome.ok ? [outcome.status, outcome.reason] : outcome, [500, 'Server Internal Error']);
});

for (const [status, reason] of [
  [486, 'Busy Here'],
  [404, 'Not Found'],
  [600, 'Busy Everywhere'],
  [603, 'Decline'],
] as const) {
  test(`a ${status} is final: no INVITE to the second address, the ${status} is the outcome`, async () => {
    const { s, a, b } = carriers();
    const t = invite(s, outbound());
    await settle();
    a.respond(requests(a)[0]!, status, { reason });
    const outcome = await settled(t.result);
    assert.equal(outcome?.ok, false);
    assert.deepEqual(outcome && !outcome.ok ? [outcome.status, outcome.reason] : undefined, [status, reason]);
    s.clock.advance(10_000);
    await settle();
    assert.deepEqual(requests(b), [], 'the second address is never tried');
  });
}

test('an address that answers nothing at all (not even 100) for failoverAfterSeconds is given up for the next', async () => {
  const { s, a, b } = carriers();
  const t = invite(s, outbound({ failoverAfterSeconds: 4 }));
  await settle();
  assert.equal(requests(a).length, 1);
  s.clock.advance(3_999);
  await settle();
  assert.ok(requests(a).every((r) => r.method === 'INVITE'), 'Timer A retransmissions only');
  assert.deepEqual(requests(b), [], 'not yet');
  s.clock.advance(1);
  await settle();
  const [second] = requests(b);
  assert.equal(second?.method, 'INVITE');
  assert.equal(second!.uri, 'sip:+15557654321@203.0.113.11:5060;user=phone');
  assert.equal(t.uac!.callId, header(second!, 'Call-ID'));
  t.cancel();
});

test('an address that sent a 100 is alive: no failover however long it rings (the ring time decides)', async () => {
  const { s, a, b } = carriers();
  const t = invite(s, outbound({ failoverAfterSeconds: 4 }), { ringTimeoutMs: 20_000 });
  await settle();
  a.respond(requests(a)[0]!, 100);
  s.clock.advance(10_000);
  await settle();
  // A 100 is an answer (RFC 3261 §17.1.1.2 stops Timer A on it): the address is alive, and
  // trying the next one too would ring the callee twice, the first never CANCELled.
  assert.deepEqual(requests(b).map((r) => `${r.method} ${r.uri}`), [], 'no INVITE to the second address after the first sent 100 Trying');
  t.cancel();
});

test('an address given up on silence whose 180 comes late gets a CANCEL (the callee must not ring at both addresses)', async () => {
  const { s, a, b } = carriers();
  const t = invite(s, outbound({ failoverAfterSeconds: 4 }));
  await settle();
  const [first] = requests(a);
  s.clock.advance(4_000);
  await settle();
  const [second] = requests(b);
  assert.equal(second?.method, 'INVITE');
  requests(a);
  // The first address was only slow: it rings the callee now. It must not ring on beside the second.
  a.respond(first!, 180);
  await settle();
  assert.deepEqual(requests(a).map((r) => r.method), ['CANCEL'], "the late 180 is CANCELled (§9.1), or the callee's phone rings on the first address too");
  void t;
});

test('an address given up on silence that answers 200 late gets ACK and BYE; the call goes on at the second address', async () => {
  const { s, a, b } = carriers();
  const t = invite(s, outbound({ failoverAfterSeconds: 4 }));
  await settle();
  const [first] = requests(a);
  s.clock.advance(4_000);
  await settle();
  const [second] = requests(b);
  requests(a);
  a.respond(first!, 200, { headers: [{ name: 'Contact', value: `<sip:${CALLED}@${A}>` }], body: ANSWER });
  await settle();
  assert.deepEqual(requests(a).map((r) => r.method), ['ACK', 'BYE']);
  b.respond(second!, 200, { headers: [{ name: 'Contact', value: `<sip:${CALLED}@${B}>` }], body: ANSWER });
  const outcome = await settled(t.result);
  assert.equal(outcome?.ok && outcome.address.text, B);
});

test('the last address is not given up on silence: its own transaction timeout (Timer B, 408) is the outcome', async () => {
  const { s, a, b } = carriers();
  const t = invite(s, outbound({ address: A }), { ringTimeoutMs: 120_000 });
  await settle();
  s.clock.advance(4_000);
  await settle();
  assert.equal((await settled(t.result)) ?? 'pending', 'pending');
  s.clock.advance(32_000);
  const outcome = await settled(t.result);
  assert.deepEqual(outcome && !outcome.ok ? outcome.status : outcome, 408);
  assert.deepEqual(requests(b), []);
  void a;
});

test("a 302's Contact at one of the trunk's addresses is followed (new Request-URI, same Call-ID, CSeq+1)", async () => {
  const { s, a, b } = carriers();
  const t = invite(s, outbound());
  await settle();
  const [first] = requests(a);
  a.respond(first!, 302, { headers: [{ name: 'Contact', value: `<sip:+15557654399@${B};user=phone>` }] });
  await settle();
  assert.deepEqual(requests(a).map((r) => r.method), ['ACK']);
  const [next] = requests(b);
  assert.equal(next?.method, 'INVITE');
  assert.equal(next!.uri, `sip:+15557654399@${B};user=phone`);
  assert.equal(header(next!, 'Call-ID'), header(first!, 'Call-ID'));
  assert.equal(header(next!, 'CSeq'), '2 INVITE');
  t.cancel();
});

test("a 302 to a host outside the trunk's addresses is not followed: the call ends 302 and nothing (no INVITE, no digest) goes there", async () => {
  const { s, a } = carriers();
  const c = new FarEnd(s.transport.flowTo!({ host: '10.0.0.5', port: 5060 })!, CALLED, '10.0.0.5:5060');
  const t = invite(s, outbound());
  await settle();
  const [first] = requests(a);
  a.respond(first!, 302, { headers: [{ name: 'Contact', value: '<sip:+19005550000@10.0.0.5:5060>' }] });
  await settle();
  assert.deepEqual(requests(c), [], 'nothing to the redirect target');
  const outcome = await settled(t.result);
  assert.equal(outcome && !outcome.ok ? outcome.status : outcome, 302);
});

test('cancel() before any provisional sends no CANCEL until one comes (§9.1); then CANCEL, and the 487 ends it with our status', async () => {
  const { s, a } = carriers();
  const t = invite(s, outbound());
  await settle();
  const [inv] = requests(a);
  t.cancel(408, 'Request Timeout (no answer)');
  await settle();
  assert.deepEqual(requests(a), []);
  a.respond(inv!, 180);
  await settle();
  const [cancel] = requests(a);
  assert.equal(cancel?.method, 'CANCEL');
  assert.equal(cancel!.uri, inv!.uri);
  assert.equal(headerList(cancel!, 'Via')[0], headerList(inv!, 'Via')[0], 'the INVITE branch');
  assert.equal(header(cancel!, 'CSeq'), '1 CANCEL');
  a.respond(cancel!, 200);
  a.respond(inv!, 487);
  const outcome = await settled(t.result);
  assert.deepEqual(outcome && !outcome.ok ? [outcome.status, outcome.reason] : outcome, [408, 'Request Timeout (no answer)']);
});

test('q850Of reads the Q.850 cause of a Reason header (RFC 3326), among other protocols; none without one', () => {
  const res = (reason?: string): SipResponse => ({ kind: 'response', version: 'SIP/2.0', status: 486, reason: 'Busy Here', headers: reason ? [{ name: 'Reason', value: reason }] : [], body: Buffer.alloc(0) });
  assert.equal(q850Of(res('Q.850;cause=17;text="User busy"')), 17);
  assert.equal(q850Of(res('SIP;cause=486;text="Busy", Q.850 ; cause = 17')), 17);
  assert.equal(q850Of(res('q.850;text="x";cause=34')), 34);
  assert.equal(q850Of(res('SIP;cause=600')), undefined);
  assert.equal(q850Of(res()), undefined);
  assert.equal(q850Of(undefined), undefined);
});

test('carrierAddresses: host:port, a bare host with the default port (5061 for TLS), [v6]:port', () => {
  assert.deepEqual(carrierAddresses(outbound({ address: ['203.0.113.10:5080', 'sbc.example.net', '[2001:db8::1]:5062', '[2001:db8::2]'] })), [
    { host: '203.0.113.10', port: 5080, text: '203.0.113.10:5080' },
    { host: 'sbc.example.net', port: 5060, text: 'sbc.example.net' },
    { host: '2001:db8::1', port: 5062, text: '[2001:db8::1]:5062' },
    { host: '2001:db8::2', port: 5060, text: '[2001:db8::2]' },
  ]);
  assert.deepEqual(carrierAddresses(outbound({ address: 'sbc.example.net', transport: 'tls' })), [{ host: 'sbc.example.net', port: 5061, text: 'sbc.example.net' }]);
});

test('an address with no transport of the trunk protocol (tcp, no TCP listener) is skipped; none left: 503 naming sip.listen', async () => {
  const { s } = carriers();
  const t = invite(s, outbound({ transport: 'tcp' }));
  const outcome = await settled(t.result);
  assert.equal(outcome?.ok, false);
  assert.equal(outcome && !outcome.ok && outcome.status, 503);
  assert.match(outcome && !outcome.ok ? outcome.reason : '', /no TCP transport to 203\.0\.113\.11:5060: add a sip\.listen entry/);
});

test('a 503 after the callee rang through the first address is final: the second address would ring them again', async () => {
  const { s, a, b } = carriers();
  const t = invite(s, outbound());
  await settle();
  const [inv] = requests(a);
  a.respond(inv!, 180);
  await settle();
  a.respond(inv!, 503);
  await settle();
  assert.deepEqual(requests(b), [], 'no INVITE to the second address');
  const outcome = await settled(t.result);
  assert.equal(outcome && !outcome.ok ? outcome.status : outcome, 503);
});
