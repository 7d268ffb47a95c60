import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { DigestAuthenticator, digestHash, parseAuthParams } from './digest.js';
import { DigestClient } from './digest-client.js';

const REGISTER = { method: 'REGISTER', uri: 'sip:example.test' };
const fixed = (cnonce: string) => () => cnonce;

/** A server on a clock the test moves. */
function server(users = [{ user: 'alice', password: 's3cret' }], ttlMs = 300_000) {
  const clock = { now: 1_000 };
  const auth = new DigestAuthenticator('example.test', users, () => clock.now, ttlMs);
  return { auth, clock };
}

test('RFC 2617 §3.5: the worked MD5 example gives its response, with opaque echoed', () => {
  const client = new DigestClient({ username: 'Mufasa', password: 'Circle Of Life' }, fixed('0a4f113b'));
  const challenge =
    'Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"';
  const a = client.answer([challenge], { method: 'GET', uri: '/dir/index.html' });
  assert.deepEqual(a, {
    value:
      'Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", ' +
      'response="6629fae49393a05397450978507c4ef1", algorithm=MD5, cnonce="0a4f113b", nc=00000001, qop=auth, opaque="5ccc069c403ebaf9f0171e9517f40e41"',
    algorithm: 'MD5',
    realm: 'testrealm@host.com',
    stale: false,
  });
});

test('RFC 7616 §3.9.1: SHA-256 is chosen over MD5 and both give the RFC responses', () => {
  const cnonce = 'f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ';
  const tail =
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"';
  const sha = `Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, ${tail}`;
  const md5 = `Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, ${tail}`;
  const request = { method: 'GET', uri: '/dir/index.html' };
  const responseOf = (value: string) => parseAuthParams(value)!.get('response');
  // MD5 listed first does not win: strength decides.
  const chosen = new DigestClient({ username: 'Mufasa', password: 'Circle of Life' }, fixed(cnonce)).answer([md5, sha], request)!;
  assert.equal(chosen.algorithm, 'SHA-256');
  assert.equal(responseOf(chosen.value), '753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1');
  assert.match(chosen.value, /, qop=auth, opaque="FQhe\/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"$/);
  const onlyMd5 = new DigestClient({ username: 'Mufasa', password: 'Circle of Life' }, fixed(cnonce)).answer([md5], request)!;
  assert.equal(onlyMd5.algorithm, 'MD5');
  assert.equal(responseOf(onlyMd5.value), '8ca523f5e9506fed4657c9700eebdbec');
});

test('a client holding only an MD5 HA1 answers our server with MD5 and is accepted', () => {
  const { auth } = server();
  const ha1 = digestHash('MD5', 'alice:example.test:s3cret');
  const a = new DigestClient({ username: 'alice', ha1 }).answer(auth.challenges(false), REGISTER)!;
  assert.equal(a.algorithm, 'MD5');
  assert.deepEqual(auth.verify(a.value, 'REGISTER'), { ok: true, user: 'alice', algorithm: 'MD5' });
});

test('a client with a password answers our server with SHA-256, and a reused nonce counts up and is still accepted', () => {
  const { auth } = server();
  const client = new DigestClient({ username: 'alice', password: 's3cret' });
  const challenges = auth.challenges(false);
  for (const nc of ['00000001', '00000002', '00000003']) {
    const a = client.answer(challenges, REGISTER)!;
    assert.equal(a.algorithm, 'SHA-256');
    assert.equal(parseAuthParams(a.value)!.get('nc'), nc);
    assert.deepEqual(auth.verify(a.value, 'REGISTER'), { ok: true, user: 'alice', algorithm: 'SHA-256' });
  }
  // A new nonce starts again at 1.
  assert.equal(parseAuthParams(client.answer(auth.challenges(false), REGISTER)!.value)!.get('nc'), '00000001');
});

test('a wrong password is refused, and the re-challenge is not worth answering', () => {
  const { auth } = server();
  const client = new DigestClient({ username: 'alice', password: 'guess' });
  const first = auth.challenges(false);
  assert.equal(client.shouldRetry(first, undefined), true);
  const sent = client.answer(first, REGISTER)!.value;
  assert.deepEqual(auth.verify(sent, 'REGISTER'), { ok: false, stale: false, user: 'alice', reason: 'wrong password' });
  assert.equal(client.shouldRetry(auth.challenges(false), sent), false);
});

test('a stale nonce is answered again with the new nonce and accepted; a second stale in a row is not', () => {
  const ttlMs = 60_000;
  const { auth, clock } = server(undefined, ttlMs);
  const client = new DigestClient({ username: 'alice', password: 's3cret' });
  const challenges = auth.challenges(false);
  const first = client.answer(challenges, REGISTER)!.value;
  assert.equal(auth.verify(first, 'REGISTER').ok, true);
  clock.now += ttlMs + 1;
  // A pre-emptive answer with the old nonce (nc=2) is refused as stale.
  const reused = client.answer(challenges, REGISTER)!.value;
  assert.equal(parseAuthParams(reused)!.get('nc'), '00000002');
  assert.deepEqual(auth.verify(reused, 'REGISTER'), { ok: false, stale: true, user: 'alice', reason: 'stale nonce' });
  const stale = auth.challenges(true);
  assert.equal(client.shouldRetry(stale, reused), true);
  const retry = client.answer(stale, REGISTER)!;
  assert.equal(retry.stale, true);
  assert.notEqual(parseAuthParams(retry.value)!.get('nonce'), parseAuthParams(first)!.get('nonce'));
  assert.equal(parseAuthParams(retry.value)!.get('nc'), '00000001');
  assert.deepEqual(auth.verify(retry.value, 'REGISTER'), { ok: true, user: 'alice', algorithm: 'SHA-256' });
  // Our fresh answer to a stale challenge drawing stale=true again would loop: stop.
  assert.equal(client.shouldRetry(auth.challenges(true), retry.value), false);
});

test('shouldRetry: a first answer re-challenged with stale=true is retried, without stale it is not', () => {
  const client = new DigestClient({ username: 'alice', password: 's3cret' });
  const challenge = (nonce: string, stale = false) => `Digest realm="r", nonce="${nonce}", qop="auth"${stale ? ', stale=true' : ''}`;
  const sent = client.answer([challenge('n1')], REGISTER)!.value;
  assert.equal(client.shouldRetry([challenge('n2', true)], sent), true);
  assert.equal(client.shouldRetry([challenge('n2')], sent), false);
  // Credentials for another realm, none at all, or a forgotten nonce: this realm is new to the request.
  assert.equal(client.shouldRetry(['Digest realm="other", nonce="n3"'], sent), true);
  assert.equal(client.shouldRetry([challenge('n2')], undefined), true);
  assert.equal(client.shouldRetry([challenge('n2')], sent.replace('nonce="n1"', 'nonce="unknown"')), true);
  // A reused nonce let go by the server (a plain 401) is worth one fresh answer.
  const reused = client.answer([challenge('n1')], REGISTER)!.value;
  assert.equal(client.shouldRetry([challenge('n4')], reused), true);
  // Nothing we can answer: do not retry.
  assert.equal(client.shouldRetry(['Basic realm="r"'], undefined), false);
});

test('a user name with a quote and a backslash is escaped on the wire and verifies at our server', () => {
  const user = 'al"ice\\';
  const { auth } = server([{ user, password: 'pw' }]);
  const a = new DigestClient({ username: user, password: 'pw' }).answer(auth.challenges(false), REGISTER)!;
  assert.ok(a.value.startsWith('Digest username="al\\"ice\\\\", '));
  assert.equal(parseAuthParams(a.value)!.get('username'), user);
  assert.equal(auth.verify(a.value, 'REGISTER').ok, true);
});

test('unknown algorithms, -sess variants and other schemes are skipped; nothing usable gives undefined', () => {
  const client = new DigestClient({ username: 'alice', password: 's3cret' });
  const skipped = [
    'Basic realm="r"',
    'Digest realm="r", nonce="a", algorithm=SHA-512-256, qop="auth"',
    'Digest realm="r", nonce="b", algorithm=SHA-256-sess, qop="auth"',
    'Digest realm="r", nonce="c", algorithm=SHA-256, qop="auth-conf"',
    'Digest realm="r", nonce="d\r\nX-Injected: 1", algorithm=SHA-256',
  ];
  const a = client.answer([...skipped, 'Digest realm="r", nonce="e", algorithm=md5, qop="auth"'], REGISTER)!;
  assert.equal(a.algorithm, 'MD5');
  assert.equal(parseAuthParams(a.value)!.get('nonce'), 'e');
  assert.equal(client.answer(skipped, REGISTER), undefined);
  assert.equal(client.answer([], REGISTER), undefined);
});

test('a SHA-256 challenge without a SHA-256 secret falls back to MD5, and with none of either is unusable', () => {
  const ha1 = digestHash('MD5', 'alice:r:s3cret');
  const both = ['Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth"', 'Digest realm="r", nonce="n", algorithm=MD5, qop="auth"'];
  assert.equal(new DigestClient({ username: 'alice', ha1 }).answer(both, REGISTER)!.algorithm, 'MD5');
  assert.equal(new DigestClient({ username: 'alice', ha1 }).answer([both[0]!], REGISTER), undefined);
  const ha1Sha256 = digestHash('SHA-256', 'alice:r:s3cret');
  assert.equal(new DigestClient({ username: 'alice', ha1Sha256 }).answer([both[1]!], REGISTER), undefined);
});

test('without qop the RFC 2069 form is sent, with no cnonce, nc or qop, and our server accepts it', () => {
  const { auth } = server();
  const noQop = auth.challenges(false).map((c) => c.replace(', qop="auth"', ''));
  const a = new DigestClient({ username: 'alice', password: 's3cret' }, () => assert.fail('no cnonce is needed')).answer(noQop, REGISTER)!;
  const p = parseAuthParams(a.value)!;
  assert.deepEqual([p.has('cnonce'), p.has('nc'), p.has('qop')], [false, false, false]);
  const ha1 = digestHash('SHA-256', 'alice:example.test:s3cret');
  assert.equal(p.get('response'), digestHash('SHA-256', `${ha1}:${p.get('nonce')}:${digestHash('SHA-256', 'REGISTER:sip:example.test')}`));
  assert.equal(auth.verify(a.value, 'REGISTER').ok, true);
});

test('auth-int, when it is all that is offered, hashes the body bytes into HA2', () => {
  const body = Buffer.from('v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n\xe9', 'latin1');
  const h = (alg: string, data: Buffer | string) => createHash(alg).update(data).digest('hex');
  const client = new DigestClient({ username: 'alice', password: 's3cret' }, fixed('c0'));
  const a = client.answer(['Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth-int"'], { method: 'INVITE', uri: 'sip:bob@r', body })!;
  const ha1 = h('sha256', 'alice:r:s3cret');
  const ha2 = h('sha256', `INVITE:sip:bob@r:${h('sha256', body)}`);
  assert.equal(parseAuthParams(a.value)!.get('response'), h('sha256', `${ha1}:n:00000001:c0:auth-int:${ha2}`));
  assert.match(a.value, /qop=auth-int$/);
  // No body is the empty body; a string body is its UTF-8.
  const empty = client.answer(['Digest realm="r", nonce="m", qop="auth-int"'], REGISTER)!;
  const emptyHa2 = h('md5', `REGISTER:sip:example.test:${h('md5', '')}`);
  assert.equal(parseAuthParams(empty.value)!.get('response'), h('md5', `${h('md5', 'alice:r:s3cret')}:m:00000001:c0:auth-int:${emptyHa2}`));
  const text = { method: 'MESSAGE', uri: 'sip:bob@r' };
  const fresh = () => new DigestClient({ username: 'alice', password: 's3cret' }, fixed('c0'));
  const auth = ['Digest realm="r", nonce="k", qop="auth-int"'];
  assert.equal(fresh().answer(auth, { ...text, body: 'é' })!.value, fresh().answer(auth, { ...text, body: Buffer.from('é', 'utf8') })!.value);
});

test('the nonce-count memory keeps 64 nonces and forgets the least recently answered', () => {
  const client = new DigestClient({ username: 'alice', password: 's3cret' });
  const nc = (nonce: string) => parseAuthParams(client.answer([`Digest realm="r", nonce="${nonce}", qop="auth"`], REGISTER)!.value)!.get('nc');
  for (let i = 0; i < 64; i++) nc(`n${i}`);
  assert.equal(nc('n0'), '00000002'); // n0 is now the most recent; n1 the oldest.
  nc('n64');
  assert.equal(nc('n1'), '00000001');
  assert.equal(nc('n0'), '00000003');
});

test('credentials without any secret, or with a malformed HA1, are refused at construction', () => {
  assert.throws(() => new DigestClient({ username: 'alice' }), /needs a password/);
  assert.throws(() => new DigestClient({ username: 'alice', ha1: 'xyz' }), /32 hex/);
  assert.throws(() => new DigestClient({ username: 'al\r\nice', password: 'pw' }), /control character/);
});
