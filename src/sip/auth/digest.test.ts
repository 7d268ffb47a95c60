import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DigestAuthenticator, digestHash, parseAuthParams, type DigestAlgorithm } from './digest.js';

/** What a client computes (RFC 3261 §22.4 / RFC 8760), from a challenge. */
function answer(challenge: string, user: string, password: string, method = 'REGISTER', uri = 'sip:example.test', nc = '00000001'): string {
  const p = parseAuthParams(challenge)!;
  const alg = p.get('algorithm') as DigestAlgorithm;
  const ha1 = digestHash(alg, `${user}:${p.get('realm')}:${password}`);
  const ha2 = digestHash(alg, `${method}:${uri}`);
  const cnonce = 'abc123';
  const response = digestHash(alg, `${ha1}:${p.get('nonce')}:${nc}:${cnonce}:auth:${ha2}`);
  return `Digest algorithm=${alg}, username="${user}", realm="${p.get('realm')}", nonce="${p.get('nonce')}", uri="${uri}", response="${response}", qop=auth, cnonce="${cnonce}", nc=${nc}`;
}

test('challenges offer SHA-256 first and MD5 last (clients keep only the last header)', () => {
  const auth = new DigestAuthenticator('example.test', [], () => 1000);
  const c = auth.challenges();
  assert.equal(c.length, 2);
  assert.match(c[0]!, /algorithm=SHA-256/);
  assert.match(c[1]!, /algorithm=MD5/);
  assert.match(c[1]!, /qop="auth"/);
  assert.doesNotMatch(c[1]!, /stale/);
  assert.match(auth.challenges(true)[1]!, /stale=true/);
});

test('MD5 and SHA-256 answers verify with a password; a wrong password does not', () => {
  const auth = new DigestAuthenticator('example.test', [{ user: 'alice', password: 's3cret' }], () => 1000);
  const [sha, md5] = auth.challenges();
  assert.deepEqual(auth.verify(answer(md5!, 'alice', 's3cret'), 'REGISTER'), { ok: true, user: 'alice', algorithm: 'MD5' });
  // Both headers share one nonce, so the next use of it counts up.
  assert.deepEqual(auth.verify(answer(sha!, 'alice', 's3cret', 'REGISTER', 'sip:example.test', '00000002'), 'REGISTER'), { ok: true, user: 'alice', algorithm: 'SHA-256' });
  const wrong = auth.verify(answer(md5!, 'alice', 'guess'), 'REGISTER');
  assert.deepEqual(wrong, { ok: false, stale: false, user: 'alice', reason: 'wrong password' });
  // The method is part of HA2: an answer computed for INVITE does not pass as REGISTER.
  assert.equal(auth.verify(answer(md5!, 'alice', 's3cret', 'INVITE'), 'REGISTER').ok, false);
});

test('the response compares as hex in either case; any other difference fails, whatever the URI was before', () => {
  const auth = new DigestAuthenticator('example.test', [{ user: 'alice', password: 's3cret' }], () => 1000);
  const md5 = auth.challenges()[1]!;
  const responseOf = (a: string) => /response="([0-9a-f]+)"/.exec(a)![1]!;
  const upper = answer(md5, 'alice', 's3cret', 'REGISTER', 'sip:example.test', '00000001');
  assert.equal(auth.verify(upper.replace(responseOf(upper), responseOf(upper).toUpperCase()), 'REGISTER').ok, true);
  // One character off, one short:
  const good = answer(md5, 'alice', 's3cret', 'REGISTER', 'sip:example.test', '00000002');
  const response = responseOf(good);
  const flip = response.slice(0, -1) + (response.endsWith('0') ? '1' : '0');
  // A digit d as the control character d - 0x20 (which differs from d only in the bit that case does).
  const digit = response.search(/[0-9]/);
  const control = response.slice(0, digit) + String.fromCharCode(response.charCodeAt(digit) - 0x20) + response.slice(digit + 1);
  for (const bad of [flip, control, response.slice(0, -1)]) {
    assert.deepEqual(auth.verify(good.replace(response, bad), 'REGISTER'), { ok: false, stale: false, user: 'alice', reason: 'wrong password' });
  }
  assert.equal(auth.verify(good, 'REGISTER').ok, true);
  // H(method:uri) is remembered per URI: an answer for another URI is computed afresh.
  const other = answer(md5, 'alice', 's3cret', 'REGISTER', 'sip:other.test', '00000003');
  assert.equal(auth.verify(other.replace('uri="sip:other.test"', 'uri="sip:example.test"'), 'REGISTER').ok, false);
  assert.equal(auth.verify(other, 'REGISTER').ok, true);
  // A URI too long to be remembered is checked all the same.
  const long = `sip:example.test;x=${'a'.repeat(300)}`;
  assert.equal(auth.verify(answer(md5, 'alice', 's3cret', 'REGISTER', long, '00000004'), 'REGISTER').ok, true);
  assert.equal(auth.verify(answer(md5, 'alice', 's3cret', 'REGISTER', long, '00000005').replace(`uri="${long}"`, `uri="${long}b"`), 'REGISTER').ok, false);
});

test('a stored HA1 verifies without the password', () => {
  const ha1 = digestHash('MD5', 'bob:example.test:pw');
  const auth = new DigestAuthenticator('example.test', [{ user: 'bob', ha1 }], () => 1000);
  const [sha, md5] = auth.challenges();
  assert.equal(auth.verify(answer(md5!, 'bob', 'pw'), 'REGISTER').ok, true);
  assert.deepEqual(auth.verify(answer(sha!, 'bob', 'pw'), 'REGISTER'), { ok: false, stale: false, user: 'bob', reason: 'no SHA-256 credentials for this user' });
});

test('an expired nonce with the right password is stale; a forged nonce is refused; nc replays are stale', () => {
  let now = 1000;
  const auth = new DigestAuthenticator('example.test', [{ user: 'alice', password: 'pw' }], () => now, 300_000);
  const md5 = auth.challenges()[1]!;
  assert.equal(auth.verify(answer(md5, 'alice', 'pw', 'REGISTER', 'sip:example.test', '00000001'), 'REGISTER').ok, true);
  assert.deepEqual(auth.verify(answer(md5, 'alice', 'pw', 'REGISTER', 'sip:example.test', '00000001'), 'REGISTER'), {
    ok: false,
    stale: true,
    user: 'alice',
    reason: 'replayed nonce count',
  });
  assert.equal(auth.verify(answer(md5, 'alice', 'pw', 'REGISTER', 'sip:example.test', '00000002'), 'REGISTER').ok, true);
  now += 300_001;
  assert.deepEqual(auth.verify(answer(md5, 'alice', 'pw', 'REGISTER', 'sip:example.test', '00000003'), 'REGISTER'), { ok: false, stale: true, user: 'alice', reason: 'stale nonce' });
  const forged = md5.replace(/nonce="[^"]+"/, `nonce="${Buffer.alloc(32, 7).toString('base64url')}"`);
  assert.equal((auth.verify(answer(forged, 'alice', 'pw'), 'REGISTER') as { reason: string }).reason, 'nonce was not issued here');
  assert.equal((auth.verify('Basic YWxpY2U6cHc=', 'REGISTER') as { reason: string }).reason, 'malformed Authorization header');
});

test('a nonce is forgotten after two lifetimes (a plain 401 then), and only when a new one is issued', () => {
  let now = 1000;
  const auth = new DigestAuthenticator('example.test', [{ user: 'alice', password: 'pw' }], () => now, 60_000);
  const old = auth.challenges()[1]!;
  now += 120_001;
  // Still remembered: nothing was issued since, so nothing was swept.
  assert.equal((auth.verify(answer(old, 'alice', 'pw'), 'REGISTER') as { reason: string }).reason, 'stale nonce');
  const fresh = auth.challenges()[1]!;
  assert.equal((auth.verify(answer(old, 'alice', 'pw', 'REGISTER', 'sip:example.test', '00000002'), 'REGISTER') as { reason: string }).reason, 'nonce was not issued here');
  assert.equal(auth.verify(answer(fresh, 'alice', 'pw'), 'REGISTER').ok, true);
});

test('auth-params: quoted and token values, escapes, any spacing; malformed ones are refused', () => {
  const p = parseAuthParams('digest  Username="a\\"b\\\\c" ,realm="x, y",nc=00000001 , qop=auth,  cnonce = "z"');
  assert.deepEqual(Object.fromEntries(p!), { username: 'a"b\\c', realm: 'x, y', nc: '00000001', qop: 'auth', cnonce: 'z' });
  assert.deepEqual(Object.fromEntries(parseAuthParams('Digest a="",b=')!), { a: '', b: '' });
  for (const bad of ['Basic YWxpY2U6cHc=', 'Digest a="unterminated', 'Digest a="x"y', 'Digest novalue, b=1', 'Digest a b=1', 'Digest =x', 'Digest a="x\\']) {
    assert.equal(parseAuthParams(bad), undefined, bad);
  }
});

test('at most 100,000 nonces are remembered: past that the oldest is forgotten first', () => {
  const auth = new DigestAuthenticator('example.test', [{ user: 'alice', password: 'pw' }], () => 1000);
  const first = auth.challenges()[1]!;
  const second = auth.challenges()[1]!;
  for (let i = 0; i < 99_999; i++) auth.challenges();
  assert.equal((auth.verify(answer(first, 'alice', 'pw'), 'REGISTER') as { reason: string }).reason, 'nonce was not issued here');
  assert.equal(auth.verify(answer(second, 'alice', 'pw'), 'REGISTER').ok, true);
});

test('in a fleet any node checks a nonce another issued (a shared secret, the nonce carries its time and MAC); another secret, or two lifetimes, and it is not ours', () => {
  let now = 1_000_000;
  const secret = Buffer.alloc(32, 9);
  const users = [{ user: 'alice', password: 'pw' }];
  const a = new DigestAuthenticator('example.test', users, () => now, 300_000, secret);
  const b = new DigestAuthenticator('example.test', users, () => now, 300_000, secret);
  const stranger = new DigestAuthenticator('example.test', users, () => now, 300_000);
  const md5 = a.challenges().at(-1)!;
  assert.deepEqual(b.verify(answer(md5, 'alice', 'pw'), 'REGISTER'), { ok: true, user: 'alice', algorithm: 'MD5' }, 'issued by A, answered to B');
  assert.equal((b.verify(answer(md5, 'alice', 'pw'), 'REGISTER') as { reason: string }).reason, 'replayed nonce count', 'B counts from there');
  assert.equal((stranger.verify(answer(md5, 'alice', 'pw'), 'REGISTER') as { reason: string }).reason, 'nonce was not issued here');
  now += 301_000;
  assert.equal((b.verify(answer(md5, 'alice', 'pw', 'REGISTER', 'sip:example.test', '00000002'), 'REGISTER') as { reason: string }).reason, 'stale nonce', 'past its lifetime: stale, as on the node that issued it');
  const fresh = a.challenges().at(-1)!;
  now += 600_001;
  assert.equal((b.verify(answer(fresh, 'alice', 'pw'), 'REGISTER') as { reason: string }).reason, 'nonce was not issued here', 'past two lifetimes: forgotten fleet-wide');
});
