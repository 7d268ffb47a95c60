import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { stirCommand } from '../../cli/stir.js';
import { CertificateCache } from './certificates.js';
import { verifyIdentity } from './passport.js';

/**
 * A published vector we did not make: the Identity header in libstirshaken's README, signed by
 * its test STI-SP certificate, which its test STI-CA issued (testdata/README.md). It must verify
 * on a clock set to just after its `iat`, chain included, and fail every way it should.
 */

const data = (name: string) => readFileSync(new URL(`./testdata/${name}`, import.meta.url), 'utf8');
const IDENTITY = data('libstirshaken-readme.identity').trim();
const SP = data('libstirshaken-sp.crt');
const CA = data('libstirshaken-ca.crt');
const IAT = 1_616_442_523;
const ORIG = '01256500600';
const DEST = '01256700800';

function chainKey(nowMs: number) {
  const cache = new CertificateCache({ trustAnchors: [CA], ttlMs: 0, maxBytes: 65_536, timeoutMs: 1000, now: () => nowMs });
  return cache.checkChain(SP, 'https://shaken.signalwire.cloud/sp.pem');
}

test('the libstirshaken README Identity header verifies on a clock 5 s after its iat: chain to its STI-CA, signature, info, iat, orig, dest', async () => {
  const cert = chainKey((IAT + 5) * 1000);
  assert.ok(cert.ok, cert.ok ? '' : cert.reason);
  const v = await verifyIdentity({ identity: IDENTITY, key: cert.key, now: IAT + 5, maxAgeSeconds: 60, origTn: ORIG, destTn: DEST });
  assert.deepEqual(
    v.checks.map((c) => [c.name, c.ok]),
    [['format', true], ['header', true], ['info', true], ['claims', true], ['iat', true], ['orig', true], ['dest', true], ['signature', true]],
  );
  assert.equal(v.verstat, 'TN-Validation-Passed');
  assert.deepEqual(v.claims, { attest: 'B', dest: { tn: [DEST] }, iat: IAT, orig: { tn: ORIG }, origid: 'e32f4189-cb86-460f-bb92-bd3acb89f29c' });
  assert.equal(v.x5u, 'https://shaken.signalwire.cloud/sp.pem');
});

test('the same vector fails as it should: today (stale, 403), one digit of dest changed in the payload (438), a chain to an anchor that did not issue it (437), expired certificates (437)', async () => {
  const cert = chainKey((IAT + 5) * 1000);
  assert.ok(cert.ok);
  const today = await verifyIdentity({ identity: IDENTITY, key: cert.key, now: Math.floor(Date.now() / 1000), maxAgeSeconds: 60, origTn: ORIG, destTn: DEST });
  assert.equal(today.sipStatus, 403);
  assert.match(today.reason!, /Stale Date \(iat: \d+ s old/);

  const [h, p, sig] = IDENTITY.split(';')[0]!.split('.');
  const payload = Buffer.from(p!, 'base64url').toString().replace(DEST, '01256700801');
  const tampered = `${h}.${Buffer.from(payload).toString('base64url')}.${sig};info=<https://shaken.signalwire.cloud/sp.pem>;alg=ES256;ppt=shaken`;
  const t = await verifyIdentity({ identity: tampered, key: cert.key, now: IAT + 5, maxAgeSeconds: 60, origTn: ORIG, destTn: '01256700801' });
  assert.deepEqual(t.checks.filter((c) => !c.ok).map((c) => c.name), ['signature']);
  assert.equal(t.sipStatus, 438);

  // Trusting only the SP certificate itself: the STI-CA, served as a chain, is not anchored by it.
  const otherAnchor = new CertificateCache({ trustAnchors: [SP], ttlMs: 0, maxBytes: 65_536, timeoutMs: 1000, now: () => (IAT + 5) * 1000 });
  const unanchored = otherAnchor.checkChain(CA, 'x5u');
  assert.equal(unanchored.ok ? 0 : unanchored.status, 437, 'a chain that does not end at a trust anchor');
  const expired = chainKey(Date.parse('2048-01-01T00:00:00Z'));
  assert.equal(expired.ok ? 0 : expired.status, 437, 'after the certificates expire (2047-09-15)');
});

test('voxgate stir verify --cert --anchor --at checks the published vector as of its moment, and says why it fails today', async () => {
  const dir = new URL('./testdata/', import.meta.url).pathname;
  const run = async (...extra: string[]) => {
    let out = '';
    const code = await stirCommand(['verify', '--identity', IDENTITY, '--orig', ORIG, '--dest', DEST, '--cert', `${dir}libstirshaken-sp.crt`, '--anchor', `${dir}libstirshaken-ca.crt`, ...extra], { out: (t) => (out += t), err: (t) => (out += t) });
    return { code, out };
  };
  const then = await run('--at', String(IAT + 5));
  assert.equal(then.code, 0, then.out);
  assert.match(then.out, /^certificate ok /m);
  assert.match(then.out, /^TN-Validation-Passed$/m);
  const iso = await run('--at', '2021-03-22T19:48:50Z');
  assert.equal(iso.code, 0, iso.out);
  const now = await run();
  assert.equal(now.code, 1);
  assert.match(now.out, /^FAILED iat {7}\d+ s old \(window ±60 s\)$/m);
});
