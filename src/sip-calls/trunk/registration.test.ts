import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { parseConfig, type TrunkOutboundConfig } from '../../core/config.js';
import { createLogger } from '../../core/logger.js';
import { DigestAuthenticator, parseAuthParams } from '../../sip/auth/digest.js';
import { header, type SipHeader, type SipRequest } from '../../sip/message.js';
import { FarEnd, testStack, type TestStack } from '../../testing/sip.js';
import type { RegistrationAuditEntry, RegistrationState } from './registration.js';
import { backoffSeconds, refreshAfterSeconds, TrunkRegistration } from './registration.js';

let stack: TestStack | undefined;
afterEach(() => {
  stack?.close();
  stack = undefined;
});

const PRIMARY = '203.0.113.10:5060';
const SECONDARY = '203.0.113.20:5080';
const CONTACT = '<sip:vg-carrier@192.0.2.1:5060;transport=udp>';

/** A trunk's `outbound` block as the config loader gives it (defaults filled in). */
function outbound(extra: Record<string, unknown> = {}): TrunkOutboundConfig {
  const o = { address: PRIMARY, auth: { user: 'acct1', password: 'secret' }, register: {}, ...extra };
  const config = parseConfig({ sip: { listen: [{ transport: 'udp', host: '127.0.0.1', port: 0 }], trunks: [{ name: 'carrier', outbound: o }] } });
  return config.sip.trunks[0]!.outbound!;
}

function setup(extra: Record<string, unknown> = {}) {
  const s = (stack = testStack({ protocol: 'UDP' }));
  s.transport.dialable();
  const audits: RegistrationAuditEntry[] = [];
  const states: RegistrationState[] = [];
  const reg = new TrunkRegistration(
    { stack: s.sip, clock: s.clock, log: createLogger('silent'), audit: (e) => audits.push(e) },
    { trunk: 'carrier', config: outbound(extra) },
  );
  reg.on('state', (state) => states.push(state));
  /** The carrier at an address: the same fake flow the registration is handed by flowTo. */
  const carrier = (address = PRIMARY) => {
    const [host, port] = address.split(':');
    return new FarEnd(s.transport.flowTo!({ host: host!, port: Number(port) })!);
  };
  return { reg, audits, states, clock: s.clock, carrier };
}

/** The REGISTERs a carrier got since the last look, one per transaction (UDP retransmissions dropped). */
function registers(far: FarEnd): SipRequest[] {
  const branches = new Set<string>();
  return far.take().filter((m): m is SipRequest => {
    if (m.kind !== 'request' || m.method !== 'REGISTER') return false;
    const via = header(m, 'Via')!;
    if (branches.has(via)) return false;
    branches.add(via);
    return true;
  });
}

function onlyRegister(far: FarEnd, what = 'one REGISTER'): SipRequest {
  const list = registers(far);
  assert.equal(list.length, 1, `expected ${what}, got ${list.length}`);
  return list[0]!;
}

const ok = (extra: SipHeader[] = []): { headers: SipHeader[] } => ({ headers: [{ name: 'Contact', value: `${CONTACT};expires=600` }, ...extra] });

test('a 401 is answered with digest over the Request-URI; the 200 registers for the expiry granted to our Contact', () => {
  const { reg, audits, states, clock, carrier } = setup();
  const server = new DigestAuthenticator('carrier.example', [{ user: 'acct1', password: 'secret' }], () => clock.now());
  const far = carrier();
  reg.start();
  const first = onlyRegister(far);
  assert.equal(first.uri, 'sip:203.0.113.10:5060', '§10.2: the registrar, no user part');
  assert.equal(header(first, 'To'), '<sip:acct1@203.0.113.10>');
  assert.match(header(first, 'From')!, /^<sip:acct1@203\.0\.113\.10>;tag=\w+$/);
  assert.equal(header(first, 'Contact'), CONTACT);
  assert.equal(header(first, 'Expires'), '600');
  assert.equal(header(first, 'CSeq'), '1 REGISTER');
  assert.equal(header(first, 'Max-Forwards'), '70');
  assert.match(header(first, 'Via')!, /^SIP\/2\.0\/UDP 192\.0\.2\.1:5060;branch=z9hG4bK\S+;rport$/);
  assert.equal(header(first, 'Authorization'), undefined);
  assert.equal(reg.view().state, 'registering');

  far.respond(first, 401, { headers: server.challenges().map((value) => ({ name: 'WWW-Authenticate', value })) });
  const second = onlyRegister(far, 'the REGISTER with credentials');
  assert.equal(header(second, 'CSeq'), '2 REGISTER');
  assert.equal(header(second, 'Call-ID'), header(first, 'Call-ID'));
  assert.equal(header(second, 'From'), header(first, 'From'));
  const authorization = header(second, 'Authorization');
  assert.deepEqual(server.verify(authorization, 'REGISTER'), { ok: true, user: 'acct1', algorithm: 'SHA-256' }, 'the digest checks against the password');
  assert.equal(parseAuthParams(authorization!)!.get('uri'), second.uri, '§22.4: the digest-uri is the Request-URI');

  far.respond(second, 200, {
    headers: [
      { name: 'Contact', value: '<sip:someone-else@198.51.100.7:5060>;expires=3600' },
      { name: 'Contact', value: `${CONTACT};expires=300` },
      { name: 'Expires', value: '900' },
    ],
  });
  assert.deepEqual(states, ['registered']);
  assert.deepEqual(reg.view(), {
    state: 'registered',
    aor: 'sip:acct1@203.0.113.10',
    registrar: PRIMARY,
    expiresInSeconds: 300,
    lastStatus: 200,
    lastReason: 'OK',
    nextAttemptInSeconds: 270,
  });
  assert.equal(reg.registrarHost(), '203.0.113.10');
  assert.equal(reg.contactUser, 'vg-carrier');
  assert.deepEqual(
    audits.map((a) => [a.action, a.outcome, a.status, a.registrar, a.trunk]),
    [['sip.register.out', 'ok', 200, PRIMARY, 'carrier']],
    'the 401 is a step, not an outcome',
  );
});

test('wrong credentials: the second 401 is a failure, not a loop, and is retried after the backoff', () => {
  const { reg, clock, carrier } = setup();
  const server = new DigestAuthenticator('carrier.example', [{ user: 'acct1', password: 'another-password' }], () => clock.now());
  const far = carrier();
  reg.start();
  far.respond(onlyRegister(far), 401, { headers: server.challenges().map((value) => ({ name: 'WWW-Authenticate', value })) });
  const answered = onlyRegister(far);
  assert.equal(server.verify(header(answered, 'Authorization'), 'REGISTER').ok, false);
  far.respond(answered, 401, { headers: server.challenges().map((value) => ({ name: 'WWW-Authenticate', value })) });
  assert.deepEqual(registers(far), [], 'no third REGISTER');
  assert.equal(reg.view().state, 'failed');
  assert.equal(reg.view().lastStatus, 401);
  assert.equal(reg.view().nextAttemptInSeconds, 30);
  clock.advance(30_000);
  assert.equal(header(onlyRegister(far, 'the retry'), 'CSeq'), '3 REGISTER');
});

test('the refresh goes out before expiry (90 % of a short grant, 30 s early for a long one) with CSeq+1, the same Call-ID and From tag', () => {
  const { reg, states, clock, carrier } = setup({ auth: undefined, fromUser: 'acct1' });
  const far = carrier();
  reg.start();
  const first = onlyRegister(far);
  far.respond(first, 200, { headers: [{ name: 'Expires', value: '120' }] });
  assert.equal(reg.view().expiresInSeconds, 120, 'no Contact in the 200: the Expires header');
  clock.advance(107_999);
  assert.deepEqual(registers(far), [], 'not before 90 % of 120 s');
  clock.advance(1);
  const refresh = onlyRegister(far, 'the refresh at 108 s');
  assert.equal(header(refresh, 'CSeq'), '2 REGISTER', '§10.2.4: CSeq goes up');
  assert.equal(header(refresh, 'Call-ID'), header(first, 'Call-ID'));
  assert.equal(header(refresh, 'From'), header(first, 'From'));
  assert.equal(header(refresh, 'Expires'), '600', 'it asks for the configured expiry again');
  assert.equal(reg.view().state, 'registered', 'the binding holds while the refresh is out');
  assert.equal(reg.view().expiresInSeconds, 12);

  far.respond(refresh, 200, { headers: [{ name: 'Expires', value: '3600' }] });
  clock.advance(3_569_999);
  assert.deepEqual(registers(far), [], 'not before 3600 - 30 s');
  clock.advance(1);
  assert.equal(header(onlyRegister(far, 'the refresh at 3570 s'), 'CSeq'), '3 REGISTER');
  assert.deepEqual(states, ['registered'], 'refreshes do not change the state');
});

test('403: failed with the status shown, retried after 30 s then 60 s; one audit for the repeated refusal; a success resets the backoff', () => {
  const { reg, audits, clock, carrier } = setup();
  const far = carrier();
  reg.start();
  far.respond(onlyRegister(far), 403, { reason: 'Forbidden (account suspended)' });
  assert.deepEqual(reg.view(), {
    state: 'failed',
    aor: 'sip:acct1@203.0.113.10',
    registrar: PRIMARY,
    expiresInSeconds: null,
    lastStatus: 403,
    lastReason: 'Forbidden (account suspended)',
    nextAttemptInSeconds: 30,
  });
  assert.equal(reg.registrarHost(), undefined);
  clock.advance(29_999);
  assert.deepEqual(registers(far), []);
  clock.advance(1);
  const retry = onlyRegister(far, 'the first retry');
  assert.equal(reg.view().state, 'registering');
  far.respond(retry, 403);
  assert.equal(reg.view().nextAttemptInSeconds, 60, 'the backoff doubles');
  clock.advance(60_000);
  far.respond(onlyRegister(far, 'the second retry'), 200, ok());
  assert.equal(reg.view().state, 'registered');
  assert.deepEqual(
    audits.map((a) => [a.outcome, a.status]),
    [
      ['error', 403],
      ['ok', 200],
    ],
    'the same refusal twice is audited once',
  );

  clock.advance(570_000);
  far.respond(onlyRegister(far, 'the refresh'), 403);
  assert.equal(reg.view().state, 'failed');
  assert.equal(reg.view().nextAttemptInSeconds, 30, 'back to the first step after a success');
  assert.equal(reg.view().expiresInSeconds, 30, 'the old binding still has its last 30 s');
});

test('the backoff doubles from 30 s up to 5 min; the refresh is at max(90 %, granted - 30 s)', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 20].map(backoffSeconds), [30, 60, 120, 240, 300, 300, 300]);
  assert.deepEqual([60, 120, 300, 600, 3600].map(refreshAfterSeconds), [54, 108, 270, 570, 3570]);
  assert.equal(refreshAfterSeconds(1), 1, 'never sooner than 1 s');
});

test('423 Interval Too Brief: asked again at once with the Min-Expires, and the refreshes keep asking for it', () => {
  const { reg, clock, carrier } = setup({ auth: undefined, fromUser: 'acct1', register: { expires: 60 } });
  const far = carrier();
  reg.start();
  const first = onlyRegister(far);
  assert.equal(header(first, 'Expires'), '60');
  far.respond(first, 423, { headers: [{ name: 'Min-Expires', value: '180' }] });
  const second = onlyRegister(far, 'the REGISTER with the Min-Expires');
  assert.equal(header(second, 'Expires'), '180');
  assert.equal(header(second, 'CSeq'), '2 REGISTER');
  far.respond(second, 200, { headers: [{ name: 'Contact', value: `${CONTACT};expires=180` }] });
  assert.equal(reg.view().state, 'registered');
  clock.advance(162_000);
  assert.equal(header(onlyRegister(far, 'the refresh'), 'Expires'), '180');
});

test('a 423 whose Min-Expires is no higher than what we asked is a failure (no loop)', () => {
  const { reg, carrier } = setup({ auth: undefined, fromUser: 'acct1' });
  const far = carrier();
  reg.start();
  far.respond(onlyRegister(far), 423, { headers: [{ name: 'Min-Expires', value: '600' }] });
  assert.deepEqual(registers(far), []);
  assert.equal(reg.view().state, 'failed');
  assert.equal(reg.view().lastStatus, 423);
});

test('503 on the first address fails over to the second at once; a round where every address fails backs off and starts again at the first', () => {
  const { reg, audits, states, clock, carrier } = setup({ address: [PRIMARY, SECONDARY] });
  const a = carrier(PRIMARY);
  const b = carrier(SECONDARY);
  reg.start();
  const first = onlyRegister(a);
  assert.deepEqual(registers(b), []);
  a.respond(first, 503);
  const second = onlyRegister(b, 'the REGISTER to the second address');
  assert.equal(second.uri, 'sip:203.0.113.20:5080');
  assert.equal(header(second, 'To'), '<sip:acct1@203.0.113.20>', 'without fromHost the AOR host is the address in use');
  assert.equal(header(second, 'Call-ID'), header(first, 'Call-ID'));
  assert.equal(header(second, 'CSeq'), '2 REGISTER');
  assert.equal(reg.view().state, 'registering');
  b.respond(second, 200, ok());
  assert.equal(reg.view().registrar, SECONDARY);
  assert.equal(reg.registrarHost(), '203.0.113.20');
  assert.deepEqual(
    audits.map((e) => [e.outcome, e.status, e.registrar]),
    [
      ['error', 503, PRIMARY],
      ['ok', 200, SECONDARY],
    ],
  );

  // The refresh stays with the address that answered; when both fail, the round is over.
  clock.advance(570_000);
  assert.deepEqual(registers(a), []);
  b.respond(onlyRegister(b, 'the refresh'), 500);
  a.respond(onlyRegister(a, 'the failover back to the first'), 503);
  assert.deepEqual(registers(b), [], 'each address once per round');
  assert.equal(reg.view().state, 'failed');
  assert.equal(reg.view().nextAttemptInSeconds, 30);
  clock.advance(30_000);
  assert.equal(registers(a).length, 1, 'the next round starts at the first address');
  assert.deepEqual(registers(b), []);
  assert.deepEqual(states, ['registered', 'registering', 'failed', 'registering']);
});

test('a 503 with Retry-After longer than the backoff waits for the Retry-After', () => {
  const { reg, carrier } = setup();
  const far = carrier();
  reg.start();
  far.respond(onlyRegister(far), 503, { headers: [{ name: 'Retry-After', value: '120 (maintenance)' }] });
  assert.equal(reg.view().nextAttemptInSeconds, 120);
});

test('a 404 does not fail over: the round ends at the address that refused', () => {
  const { reg, carrier } = setup({ address: [PRIMARY, SECONDARY] });
  const a = carrier(PRIMARY);
  const b = carrier(SECONDARY);
  reg.start();
  a.respond(onlyRegister(a), 404);
  assert.deepEqual(registers(b), []);
  assert.equal(reg.view().state, 'failed');
});

test('no answer: the retransmissions stop at Timer F (32 s) and the 408 fails the registration', () => {
  const { reg, audits, clock, carrier } = setup();
  const far = carrier();
  reg.start();
  clock.advance(31_999);
  const sent = far.take();
  assert.ok(sent.length >= 5, `Timer E retransmits the REGISTER over UDP (${sent.length} sends)`);
  assert.equal(new Set(sent.map((m) => header(m, 'Via'))).size, 1, 'one transaction');
  assert.equal(reg.view().state, 'registering');
  clock.advance(1);
  assert.equal(reg.view().state, 'failed');
  assert.equal(reg.view().lastStatus, 408);
  assert.equal(reg.view().lastReason, 'Request Timeout');
  assert.equal(reg.view().nextAttemptInSeconds, 30);
  assert.deepEqual(
    audits.map((e) => [e.outcome, e.status]),
    [['error', 408]],
  );
});

test('no flow to the registrar (no transport of that protocol) counts as a 503', () => {
  const { reg, audits } = setup({ transport: 'tcp' });
  reg.start();
  assert.equal(reg.view().state, 'failed');
  assert.equal(reg.view().lastStatus, 503);
  assert.match(reg.view().lastReason!, /no TCP flow to 203\.0\.113\.10:5060/);
  assert.equal(audits.length, 1);
});

test('the AOR is register.user at fromHost, and the Request-URI that domain (with the transport)', () => {
  const s = (stack = testStack({ protocol: 'TCP' }));
  s.transport.dialable();
  const reg = new TrunkRegistration(
    { stack: s.sip, clock: s.clock, log: createLogger('silent'), audit: () => undefined },
    { trunk: 'carrier two', config: outbound({ transport: 'tcp', fromHost: 'sip.carrier.example', register: { user: '+15551230000' } }) },
  );
  const far = new FarEnd(s.transport.flowTo!({ host: '203.0.113.10', port: 5060 })!);
  reg.start();
  const req = onlyRegister(far);
  assert.equal(req.uri, 'sip:sip.carrier.example;transport=tcp');
  assert.equal(header(req, 'To'), '<sip:+15551230000@sip.carrier.example>');
  assert.equal(header(req, 'Contact'), '<sip:vg-carrier-two@192.0.2.1:5060;transport=tcp>', 'the trunk name made a user part');
  assert.equal(reg.view().aor, 'sip:+15551230000@sip.carrier.example');
});

test('stop() sends REGISTER with Expires: 0 and our Contact (answering its 401), waits for the 200, and sends nothing more', async () => {
  const { reg, audits, clock, carrier } = setup();
  const server = new DigestAuthenticator('carrier.example', [{ user: 'acct1', password: 'secret' }], () => clock.now());
  const far = carrier();
  reg.start();
  const first = onlyRegister(far);
  far.respond(first, 200, ok());
  let stopped = false;
  const stopping = reg.stop().then(() => (stopped = true));
  assert.equal(reg.view().state, 'stopped');
  const bye = onlyRegister(far, 'the un-REGISTER');
  assert.equal(header(bye, 'Expires'), '0');
  assert.equal(header(bye, 'Contact'), CONTACT, '§10.2.2: our Contact, not *');
  assert.equal(header(bye, 'Call-ID'), header(first, 'Call-ID'));
  assert.equal(header(bye, 'CSeq'), '2 REGISTER');
  far.respond(bye, 401, { headers: server.challenges().map((value) => ({ name: 'WWW-Authenticate', value })) });
  const answered = onlyRegister(far, 'the un-REGISTER with credentials');
  assert.equal(server.verify(header(answered, 'Authorization'), 'REGISTER').ok, true);
  assert.equal(header(answered, 'Expires'), '0');
  await Promise.resolve();
  assert.equal(stopped, false, 'it waits for the answer');
  far.respond(answered, 200);
  await stopping;
  assert.equal(reg.stop(), reg.stop(), 'stop runs once');
  assert.deepEqual(reg.view(), {
    state: 'stopped',
    aor: 'sip:acct1@203.0.113.10',
    registrar: PRIMARY,
    expiresInSeconds: null,
    lastStatus: 200,
    lastReason: 'OK',
    nextAttemptInSeconds: null,
  });
  assert.equal(reg.registrarHost(), undefined);
  const last = audits.at(-1)!;
  assert.deepEqual([last.action, last.outcome, last.status], ['sip.unregister.out', 'ok', 200]);
  clock.advance(3_600_000);
  assert.deepEqual(registers(far), [], 'no refresh after stop');
});

test('stop() gives up waiting for the answer after 2 s', async () => {
  const { reg, audits, clock, carrier } = setup();
  const far = carrier();
  reg.start();
  far.respond(onlyRegister(far), 200, ok());
  const stopping = reg.stop();
  assert.equal(registers(far).length, 1, 'the un-REGISTER');
  clock.advance(2_000);
  await stopping;
  const last = audits.at(-1)!;
  assert.deepEqual([last.action, last.outcome, last.status], ['sip.unregister.out', 'error', 408]);
});

test('stop() of a registration never made sends nothing and leaves no retry behind', async () => {
  const { reg, clock, carrier } = setup();
  const far = carrier();
  reg.start();
  far.respond(onlyRegister(far), 403);
  await reg.stop();
  assert.deepEqual(registers(far), [], 'nothing to remove');
  clock.advance(600_000);
  assert.deepEqual(registers(far), [], 'the retry timer is gone');
});

test('a 200 that arrives after stop() for a REGISTER still in flight registers nothing; the un-REGISTER went to that carrier', async () => {
  const { reg, states, clock, carrier } = setup();
  const far = carrier();
  reg.start();
  const first = onlyRegister(far);
  const stopping = reg.stop();
  const bye = onlyRegister(far, 'the un-REGISTER (the REGISTER in flight may yet make a binding)');
  assert.equal(header(bye, 'Expires'), '0');
  far.respond(first, 200, ok());
  assert.equal(reg.view().state, 'stopped');
  far.respond(bye, 200);
  await stopping;
  clock.advance(3_600_000);
  assert.deepEqual(registers(far), []);
  assert.deepEqual(states, ['stopped']);
});

test('over TCP, the connection that carried the binding closing makes a new REGISTER on a new connection', () => {
  const s = (stack = testStack({ protocol: 'TCP' }));
  s.transport.dialable();
  const reg = new TrunkRegistration(
    { stack: s.sip, clock: s.clock, log: createLogger('silent'), audit: () => undefined },
    { trunk: 'carrier', config: outbound({ transport: 'tcp' }) },
  );
  const address = { host: '203.0.113.10', port: 5060 };
  const old = s.transport.flowTo!(address)!;
  const far = new FarEnd(old);
  reg.start();
  const first = onlyRegister(far);
  assert.equal(first.uri, 'sip:203.0.113.10:5060;transport=tcp');
  far.respond(first, 200, ok());
  old.close();
  reg.flowClosed(old);
  const fresh = s.transport.flowTo!(address)!;
  assert.notEqual(fresh, old);
  const again = onlyRegister(new FarEnd(fresh), 'the REGISTER on the new connection');
  assert.equal(header(again, 'CSeq'), '2 REGISTER');
  assert.equal(reg.view().state, 'registered', 'the binding holds meanwhile');
  reg.flowClosed(fresh);
  assert.deepEqual(registers(new FarEnd(fresh)), [], 'a flow that carries no binding changes nothing');
});
