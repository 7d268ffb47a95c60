import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, afterEach, before, test } from 'node:test';
import { identityHeader, signPassport } from '../../sip/identity/passport.js';
import type { SipRequest, SipResponse } from '../../sip/message.js';
import { outboundHarness, type OutboundHarness } from '../../testing/outbound.js';
import { stiLab, type StiLab } from '../../testing/stir.js';
import { CALLER_NUMBER, header, HeldAgent, settle, TRUNK_NUMBER, trunkHarness, until, type TrunkHarness, type TrunkInput } from '../../testing/trunk.js';

/**
 * STIR/SHAKEN on trunk calls: inbound INVITEs verified before routing (the verdict to the
 * agent, the Twilio-style StirVerstat parameter, the audit; RFC 8224's answers in enforce mode),
 * outbound INVITEs signed (checked by Debian's secsipidx).
 */

let lab: StiLab;
before(async () => (lab = await stiLab()));
after(() => lab.close());
let h: TrunkHarness<HeldAgent> | OutboundHarness<HeldAgent> | undefined;
afterEach(() => {
  h?.close();
  h = undefined;
});

const SBC = '192.0.2.10:5060';
const VERIFYING: TrunkInput = { name: 'carrier-a', inbound: { numbers: [TRUNK_NUMBER], allowedAddresses: ['192.0.2.0/24'] }, codecs: ['pcmu'], stirShaken: { verify: true } };

function verifying(mode: 'observe' | 'enforce') {
  return { verify: { trustAnchors: [lab.stiRoot], fetchCa: [lab.webCa], mode, allowPrivateAddresses: true } };
}

async function identity(opts: { orig?: string; dest?: string; iat?: number; x5u?: string } = {}): Promise<string> {
  const x5u = opts.x5u ?? lab.x5u;
  const { jws } = await signPassport({ key: createPrivateKey(readFileSync(lab.signerKey)), x5u, attest: 'A', orig: opts.orig ?? CALLER_NUMBER, dest: opts.dest ?? TRUNK_NUMBER, iat: opts.iat ?? Math.floor(h!.clock.now() / 1000) });
  return identityHeader(jws, x5u);
}

/** An inbound call with these extra headers: the statuses the carrier got once it settled. */
async function inbound(mode: 'observe' | 'enforce', headers: (h: TrunkHarness<HeldAgent>) => Promise<{ name: string; value: string }[]>): Promise<{ h: TrunkHarness<HeldAgent>; statuses: number[]; got: SipResponse[] }> {
  const harness = trunkHarness({ trunks: [VERIFYING], stirShaken: verifying(mode) });
  h = harness;
  const c = await harness.carrier(SBC);
  c.invite({ headers: await headers(harness) });
  const got: SipResponse[] = [];
  await until(() => {
    got.push(...c.take().filter((m): m is SipResponse => m.kind === 'response'));
    return got.some((r) => r.status >= 200);
  }, 'a final answer', 8000);
  return { h: harness, statuses: got.map((r) => r.status), got };
}

test('observe: a valid Identity reaches the agent as TN-Validation-Passed, attest A, origTn, and StirVerstat in customParameters', async () => {
  const { h, statuses } = await inbound('observe', async () => [{ name: 'Identity', value: await identity() }]);
  assert.ok(statuses.includes(200), String(statuses));
  const s = h.agent.last.session;
  assert.deepEqual(s.caller, { number: CALLER_NUMBER, name: undefined, verstat: 'TN-Validation-Passed', attest: 'A', origTn: '15557654321' });
  assert.equal(s.details.customParameters.StirVerstat, 'TN-Validation-Passed');
  assert.match(readFileSync(h.auditPath, 'utf8'), /"verstat":"TN-Validation-Passed","attest":"A"/);
  assert.equal([...h.calls.values()][0]?.trunk?.verstat, 'TN-Validation-Passed', 'in /api/sessions (the call\'s trunk)');
  assert.match(await h.registry.metrics(), /^voxgate_stir_verifications_total\{trunk="carrier-a",verstat="TN-Validation-Passed"\} 1$/m);
});

test('observe: no Identity is No-TN-Validation, a bad one TN-Validation-Failed; both calls go on', async () => {
  const none = await inbound('observe', () => Promise.resolve([]));
  assert.ok(none.statuses.includes(200));
  assert.equal(none.h.agent.last.session.caller.verstat, 'No-TN-Validation');
  none.h.close();
  const wrongOrig = await inbound('observe', async () => [{ name: 'Identity', value: await identity({ orig: '+15550009999' }) }]);
  assert.ok(wrongOrig.statuses.includes(200));
  assert.equal(wrongOrig.h.agent.last.session.caller.verstat, 'TN-Validation-Failed');
});

test('enforce: no Identity is 428, a stale iat 403 Stale Date, a certificate URL that is not served 436, a claim for another number 438', async () => {
  const cases: [string, (h: TrunkHarness<HeldAgent>) => Promise<{ name: string; value: string }[]>, number, RegExp][] = [
    ['none', () => Promise.resolve([]), 428, /Use Identity Header/],
    ['stale', async (x) => [{ name: 'Identity', value: await identity({ iat: Math.floor(x.clock.now() / 1000) - 3600 }) }], 403, /Stale Date/],
    ['unserved', async () => [{ name: 'Identity', value: await identity({ x5u: lab.x5u.replace('/sp.pem', '/gone.pem') }) }], 436, /Bad Identity Info/],
    ['dest', async () => [{ name: 'Identity', value: await identity({ dest: '+15550000000' }) }], 438, /Invalid Identity Header/],
  ];
  for (const [what, headers, status, reason] of cases) {
    const r = await inbound('enforce', headers);
    const final = r.got.find((x) => x.status >= 200)!;
    assert.equal(final.status, status, what);
    assert.match(final.reason, reason, what);
    assert.equal(r.h.agent.sessions.length, 0, `${what}: no agent`);
    r.h.close();
    h = undefined;
  }
});

test('several Identity headers: a diversion PASSporT (ppt=div) first does not hide the SHAKEN one that passes; a failed PASSporT\'s claims do not reach the agent', async () => {
  const { h, statuses } = await inbound('enforce', async () => [
    { name: 'Identity', value: (await identity()).replace('ppt=shaken', 'ppt=div') },
    { name: 'Identity', value: await identity() },
  ]);
  assert.ok(statuses.includes(200), String(statuses));
  assert.equal(h.agent.last.session.caller.verstat, 'TN-Validation-Passed');
  h.close();
  const failed = await inbound('observe', async () => [{ name: 'Identity', value: await identity({ dest: '+15550000000' }) }]);
  assert.deepEqual(failed.h.agent.last.session.caller, { number: CALLER_NUMBER, name: undefined, verstat: 'TN-Validation-Failed', attest: undefined, origTn: undefined }, 'no attest or origTn from a PASSporT that failed');
});

test('a withheld caller (Privacy: id) whose PASSporT names them is verified against the number presented, and stays withheld from the agent', async () => {
  const { h, statuses } = await inbound('enforce', async () => [
    { name: 'Privacy', value: 'id' },
    { name: 'Identity', value: await identity() },
  ]);
  assert.ok(statuses.includes(200), String(statuses));
  assert.deepEqual([h.agent.last.session.caller.number, h.agent.last.session.caller.verstat], ['anonymous', 'TN-Validation-Passed']);
});

test('outbound: a signing trunk puts Identity and a Date equal to iat on its INVITE; secsipidx verifies it; attestation A for a number configured as ours', async () => {
  const harness = outboundHarness({
    trunks: [{ name: 'carrier-a', codecs: ['pcmu'], stirShaken: { sign: true }, outbound: { address: '203.0.113.10:5060', transport: 'udp', numbers: [TRUNK_NUMBER] } }],
    outboundRoutes: [{ prefix: '+1', trunk: 'carrier-a' }],
    stirShaken: { sign: { privateKey: lab.signerKey, certificateUrl: lab.x5u, attestation: { default: 'B', numbers: { [TRUNK_NUMBER]: 'A' } } } },
  });
  h = harness;
  const a = await harness.carrier('203.0.113.10:5060', CALLER_NUMBER);
  harness.router.outbound.dial({ to: CALLER_NUMBER }, {});
  await until(() => a.flow.sent.some((t) => t.startsWith('INVITE ')), 'the INVITE');
  const invite = a.nextRequest('INVITE') as SipRequest;
  const id = header(invite, 'Identity')!;
  assert.ok(id, 'an Identity header');
  const payload = JSON.parse(Buffer.from(id.split('.')[1]!, 'base64url').toString()) as { attest: string; iat: number; orig: { tn: string }; dest: { tn: string[] } };
  assert.deepEqual([payload.attest, payload.orig.tn, payload.dest.tn], ['A', '15551230000', ['15557654321']]);
  assert.equal(Date.parse(header(invite, 'Date')!) / 1000, payload.iat, 'Date is iat');
  const pub = `${lab.signerCert}.pub.pem`;
  const spki = spawnSync('openssl', ['x509', '-in', lab.signerCert, '-pubkey', '-noout'], { encoding: 'utf8' }).stdout;
  writeFileSync(pub, spki);
  const check = spawnSync('secsipidx', ['-check', '-identity', id, '-fpubkey', pub, '-expire', '999999999'], { encoding: 'utf8' });
  assert.equal(check.status, 0, `${check.stdout}${check.stderr}`);
  await settle();
});

/** A carrier's call in on a trunk that verifies and signs, answered by the agent; the carrier's outbound side at 203.0.113.10. */
async function transferable(): Promise<{ h: OutboundHarness<HeldAgent>; out: Awaited<ReturnType<OutboundHarness<HeldAgent>['carrier']>> }> {
  const harness = outboundHarness({
    trunks: [{ ...VERIFYING, stirShaken: { verify: true, sign: true }, outbound: { address: '203.0.113.10:5060', transport: 'udp', numbers: [TRUNK_NUMBER], callerIdHeader: 'pai', fromHost: 'carrier.example.net' } }],
    outboundRoutes: [{ prefix: '+1', trunk: 'carrier-a' }],
    stirShaken: { ...verifying('observe'), sign: { privateKey: lab.signerKey, certificateUrl: lab.x5u, attestation: { default: 'B', numbers: { [TRUNK_NUMBER]: 'A' } } } },
  });
  h = harness;
  const c = await harness.carrier(SBC);
  const out = await harness.carrier('203.0.113.10:5060', '+15550002222');
  const { jws } = await signPassport({ key: createPrivateKey(readFileSync(lab.signerKey)), x5u: lab.x5u, attest: 'A', orig: CALLER_NUMBER, dest: TRUNK_NUMBER, iat: Math.floor(harness.clock.now() / 1000) });
  const invite = c.invite({ headers: [{ name: 'Identity', value: identityHeader(jws, lab.x5u) }] });
  let ok: SipResponse | undefined;
  await until(() => (ok = c.take().find((m): m is SipResponse => m.kind === 'response' && m.status === 200)) !== undefined, 'the 200');
  c.ack(invite, ok!);
  await settle();
  assert.equal(harness.agent.last.session.caller.verstat, 'TN-Validation-Passed');
  return { h: harness, out };
}

function claimsOf(invite: SipRequest): { attest: string; orig: { tn: string } } {
  return JSON.parse(Buffer.from(header(invite, 'Identity')!.split('.')[1]!, 'base64url').toString()) as { attest: string; orig: { tn: string } };
}

test("a transfer to a number presents our number attested A; with callerId 'caller' it passes the phone caller's number on, attested C (gateway)", async () => {
  const first = await transferable();
  const ourTransfer = first.h.agent.last.session.transfer('+15550002222');
  await until(() => first.out.flow.sent.some((t) => t.startsWith('INVITE ')), 'the INVITE');
  const ours = first.out.nextRequest('INVITE');
  assert.equal(header(ours, 'P-Asserted-Identity'), `<sip:${TRUNK_NUMBER}@carrier.example.net;user=phone>`);
  assert.deepEqual([claimsOf(ours).attest, claimsOf(ours).orig.tn], ['A', TRUNK_NUMBER.slice(1)]);
  first.out.respond(ours, 486);
  await assert.rejects(ourTransfer, /486/);
  first.h.close();

  const second = await transferable();
  const passing = second.h.agent.last.session.transfer('+15550002222', { callerId: 'caller' });
  await until(() => second.out.flow.sent.some((t) => t.startsWith('INVITE ')), 'the INVITE');
  const passed = second.out.nextRequest('INVITE');
  assert.equal(header(passed, 'P-Asserted-Identity'), `<sip:${CALLER_NUMBER}@carrier.example.net;user=phone>`);
  assert.deepEqual([claimsOf(passed).attest, claimsOf(passed).orig.tn], ['C', CALLER_NUMBER.slice(1)]);
  second.out.respond(passed, 486);
  await assert.rejects(passing, /486/);
});

test('a verified phone call handed to a registered browser carries the caller and its verdict: P-Asserted-Identity <sip:+E164@domain;user=phone;verstat=TN-Validation-Passed>', async () => {
  const { h } = await transferable();
  const alice = await h.browser('alice', 'alice-secret');
  const handing = h.agent.last.session.transfer('sip:alice@voxgate.test');
  let invite: SipRequest | undefined;
  await until(() => (invite = alice.take().find((m): m is SipRequest => m.kind === 'request' && m.method === 'INVITE')) !== undefined, "the browser's INVITE");
  assert.equal(header(invite!, 'P-Asserted-Identity'), `<sip:${CALLER_NUMBER};verstat=TN-Validation-Passed@voxgate.test;user=phone>`);
  alice.respond(invite!, 486);
  await assert.rejects(handing, /486/);
});
