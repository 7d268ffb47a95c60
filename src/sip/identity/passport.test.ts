import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CompactSign } from 'jose';
import { canonicalJson, canonicalTn, identityHeader, parseIdentity, signPassport, verifyIdentity } from './passport.js';

/**
 * PASSporT signing and verification against Debian's secsipidx (Kamailio's secsipid library's
 * CLI, a STIR/SHAKEN implementation we did not write): it verifies what we sign, we verify what
 * it signs, and each broken header gets its own failed check and RFC 8224 status.
 */

const X5U = 'https://127.0.0.1:8443/sp.pem';
const ORIG = '+15551230000';
const DEST = '+15557654321';
const dir = mkdtempSync(join(tmpdir(), 'voxgate-stir-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function keyPair(name: string) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const prv = join(dir, `${name}.key.pem`);
  const pub = join(dir, `${name}.pub.pem`);
  writeFileSync(prv, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(pub, publicKey.export({ type: 'spki', format: 'pem' }));
  return { privateKey, publicKey, prv, pub };
}
const ours = keyPair('ours');
const other = keyPair('other');

/** secsipidx's check of an Identity header with a public key: its exit code and output. */
function secsipidxCheck(identity: string, pub: string): { code: number; out: string } {
  // -expire: secsipidx's own default freshness is under a second, which a second boundary breaks.
  const r = spawnSync('secsipidx', ['-check', '-identity', identity, '-fpubkey', pub, '-expire', '60'], { encoding: 'utf8' });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/**
 * An Identity header secsipidx signs. With `iat` it is made by `-sign` (secsipidx 1.2's
 * `-sign-full` ignores `-iat`), which prints the bare JWS: the parameters are added here.
 */
function secsipidxSign(opts: { iat?: number; orig?: string; dest?: string; attest?: string } = {}): string {
  const claims = ['-orig-tn', opts.orig ?? canonicalTn(ORIG), '-dest-tn', opts.dest ?? canonicalTn(DEST), '-attest', opts.attest ?? 'A', '-x5u', X5U, '-fprvkey', ours.prv];
  if (opts.iat === undefined) return execFileSync('secsipidx', ['-sign-full', ...claims], { encoding: 'utf8' }).trim();
  const jws = execFileSync('secsipidx', ['-sign', ...claims, '-orig-id', randomUUID(), '-iat', String(opts.iat)], { encoding: 'utf8' }).trim();
  assert.match(jws, /^[\w-]+\.[\w-]+\.[\w-]+$/, `secsipidx -sign printed a JWS: ${jws}`);
  return identityHeader(jws, X5U);
}

const now = () => Math.floor(Date.now() / 1000);
const verify = (identity: string, o: { key?: typeof ours.publicKey; origTn?: string; destTn?: string; now?: number } = {}) =>
  verifyIdentity({ identity, key: o.key ?? ours.publicKey, now: o.now ?? now(), maxAgeSeconds: 60, origTn: o.origTn ?? ORIG, destTn: o.destTn ?? DEST });

describe('PASSporT (RFC 8225/8588) and Identity (RFC 8224)', () => {
  test('canonical form: keys sorted at every level, no whitespace, numbers as bare digits', async () => {
    assert.equal(canonicalJson({ orig: { tn: '1' }, attest: 'A', dest: { tn: ['2'] }, iat: 3 }), '{"attest":"A","dest":{"tn":["2"]},"iat":3,"orig":{"tn":"1"}}');
    assert.equal(canonicalTn('+1 (555) 123-0000'), '15551230000');
    const { jws } = await signPassport({ key: ours.privateKey, x5u: X5U, attest: 'A', orig: ORIG, dest: DEST, iat: 1_700_000_000, origid: '123e4567-e89b-12d3-a456-426614174000' });
    const [h, p, s] = jws.split('.');
    assert.equal(Buffer.from(h!, 'base64url').toString(), `{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"${X5U}"}`);
    assert.equal(Buffer.from(p!, 'base64url').toString(), '{"attest":"A","dest":{"tn":["15557654321"]},"iat":1700000000,"orig":{"tn":"15551230000"},"origid":"123e4567-e89b-12d3-a456-426614174000"}');
    assert.equal(Buffer.from(s!, 'base64url').length, 64, 'ES256 as raw r‖s');
  });

  test('secsipidx verifies the Identity header we sign; with another key it refuses it', async () => {
    const { jws } = await signPassport({ key: ours.privateKey, x5u: X5U, attest: 'B', orig: ORIG, dest: DEST });
    const identity = identityHeader(jws, X5U);
    assert.match(identity, /;info=<https:\/\/127\.0\.0\.1:8443\/sp\.pem>;alg=ES256;ppt=shaken$/);
    const good = secsipidxCheck(identity, ours.pub);
    assert.equal(good.code, 0, good.out);
    const bad = secsipidxCheck(identity, other.pub);
    assert.notEqual(bad.code, 0, `secsipidx accepted a header checked with the wrong key: ${bad.out}`);
  });

  test('we verify what secsipidx signs: every check passes, TN-Validation-Passed', async () => {
    const v = await verify(secsipidxSign());
    assert.equal(v.verstat, 'TN-Validation-Passed', JSON.stringify(v.checks));
    assert.deepEqual(v.checks.map((c) => [c.name, c.ok]), [['format', true], ['header', true], ['info', true], ['claims', true], ['iat', true], ['orig', true], ['dest', true], ['signature', true]]);
    assert.equal(v.claims?.attest, 'A');
    assert.equal(v.x5u, X5U);
    assert.equal(v.sipStatus, undefined);
  });

  test('each broken header fails its own check with its RFC 8224 answer', async () => {
    const failed = async (identity: string, o: Parameters<typeof verify>[1] = {}) => {
      const v = await verify(identity, o);
      assert.equal(v.verstat, 'TN-Validation-Failed');
      return { names: v.checks.filter((c) => !c.ok && !c.skipped).map((c) => c.name), status: v.sipStatus, reason: v.reason };
    };
    const good = secsipidxSign();
    assert.deepEqual(await failed(good, { key: other.publicKey }), { names: ['signature'], status: 438, reason: (await verify(good, { key: other.publicKey })).reason });
    // A tampered claim: the payload re-encoded with another calling number, the signature kept.
    const [h, p, s] = parseIdentity(good)!.jws.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString()) as { orig: { tn: string } };
    claims.orig.tn = '15550009999';
    const tampered = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s};info=<${X5U}>;alg=ES256;ppt=shaken`;
    assert.deepEqual((await failed(tampered, { origTn: '+15550009999' })).names, ['signature']);
    assert.equal((await failed(good.replace(`info=<${X5U}>`, 'info=<https://elsewhere.example/x.pem>'))).status, 436);
    const stale = await failed(secsipidxSign({ iat: now() - 3600 }));
    assert.deepEqual([stale.names, stale.status], [['iat'], 403]);
    const future = await failed(secsipidxSign({ iat: now() + 600 }));
    assert.deepEqual([future.names, future.status], [['iat'], 403]);
    assert.deepEqual((await failed(good, { origTn: '+15550000001' })).names, ['orig']);
    assert.deepEqual((await failed(good, { destTn: '+15550000002' })).names, ['dest']);
    assert.deepEqual((await failed('not-a-jws;info=<x>')).status, 438);
    const unfetched = await verifyIdentity({ identity: good, key: undefined, now: now(), maxAgeSeconds: 60, origTn: ORIG, destTn: DEST });
    assert.deepEqual([unfetched.verstat, unfetched.checks.filter((c) => !c.ok).map((c) => c.name)], ['TN-Validation-Failed', ['signature']], 'no certificate, no pass');
  });

  test('a header we sign verifies with our own verifier (round trip), and alg/ppt parameters other than ES256/shaken are 437', async () => {
    const { jws } = await signPassport({ key: createPrivateKey(ours.privateKey.export({ type: 'pkcs8', format: 'pem' })), x5u: X5U, attest: 'C', orig: ORIG, dest: [DEST, '+15557650000'] });
    const v = await verifyIdentity({ identity: identityHeader(jws, X5U), key: createPublicKey(ours.publicKey.export({ type: 'spki', format: 'pem' })), now: now(), maxAgeSeconds: 60, origTn: ORIG, destTn: '+15557650000' });
    assert.equal(v.verstat, 'TN-Validation-Passed', JSON.stringify(v.checks));
    const wrongPpt = await verify(identityHeader(jws, X5U).replace('ppt=shaken', 'ppt=div'));
    assert.equal(wrongPpt.sipStatus, 437);
  });

  /** A PASSporT with these claims, signed by us (canonical or not: the verifier must not care). */
  const signed = async (claims: Record<string, unknown>, x5u = X5U): Promise<string> => {
    const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(claims))).setProtectedHeader({ alg: 'ES256', ppt: 'shaken', typ: 'passport', x5u }).sign(ours.privateKey);
    return identityHeader(jws, x5u);
  };
  const base = () => ({ attest: 'A', dest: { tn: [canonicalTn(DEST)] }, iat: now(), orig: { tn: canonicalTn(ORIG) }, origid: randomUUID() });

  test('claims RFC 8588 requires: attest other than A/B/C, no origid, a null payload are 438; a + in a claimed number still matches (compared as numbers)', async () => {
    const zed = await verify(await signed({ ...base(), attest: 'Z' }));
    assert.deepEqual([zed.sipStatus, zed.checks.find((c) => !c.ok)?.name], [438, 'claims']);
    const noOrigid: Record<string, unknown> = base();
    delete noOrigid.origid;
    assert.equal((await verify(await signed(noOrigid))).sipStatus, 438);
    const nullJws = await new CompactSign(new TextEncoder().encode('null')).setProtectedHeader({ alg: 'ES256', ppt: 'shaken', typ: 'passport', x5u: X5U }).sign(ours.privateKey);
    const nul = await verify(identityHeader(nullJws, X5U));
    assert.deepEqual([nul.sipStatus, nul.checks[0]], [438, { name: 'format', ok: false, detail: 'the PASSporT payload is not a JSON object' }]);
    assert.equal((await verify(await signed({ ...base(), orig: { tn: ORIG } }))).verstat, 'TN-Validation-Passed');
  });

  test('the certificate is looked up last, only for a header that passed every other check, and only at the x5u the signature covers; two info parameters are 436', async () => {
    const asked: string[] = [];
    const keyFor = (x5u: string) => (asked.push(x5u), Promise.resolve({ ok: true as const, key: ours.publicKey }));
    const good = await signed(base());
    const passed = await verifyIdentity({ identity: good, keyFor, now: now(), maxAgeSeconds: 60, origTn: ORIG, destTn: DEST });
    assert.equal(passed.verstat, 'TN-Validation-Passed');
    assert.deepEqual(asked, [X5U]);
    const stale = await verifyIdentity({ identity: await signed({ ...base(), iat: now() - 3600 }), keyFor, now: now(), maxAgeSeconds: 60, origTn: ORIG, destTn: DEST });
    assert.deepEqual([stale.sipStatus, asked.length], [403, 1], 'a stale PASSporT makes no fetch');
    assert.deepEqual(stale.checks.at(-1), { name: 'signature', ok: false, skipped: true, detail: 'not checked (the certificate is fetched only for a header that passes the other checks)' });
    const twice = await verifyIdentity({ identity: good.replace(`;info=<${X5U}>`, `;info=<https://attacker.example/a.pem>;info=<${X5U}>`), keyFor, now: now(), maxAgeSeconds: 60, origTn: ORIG, destTn: DEST });
    assert.deepEqual([twice.sipStatus, twice.checks.find((c) => !c.ok)?.detail, asked.length], [436, 'info given 2 times', 1]);
    const unbracketed = await verify(good.replace(`info=<${X5U}>`, `info=${X5U}`));
    assert.match(unbracketed.reason!, /^Bad Identity Info \(info: info missing \(or not in <>\)/);
    const untrusted = await verifyIdentity({ identity: good, keyFor: () => Promise.resolve({ ok: false, status: 437, reason: 'the certificate chain does not end at a trusted STI root' }), now: now(), maxAgeSeconds: 60, origTn: ORIG, destTn: DEST });
    assert.deepEqual([untrusted.sipStatus, untrusted.reason], [437, 'Unsupported Credential (certificate: the certificate chain does not end at a trusted STI root)']);
  });

  test('dest may match any called number (Request-URI or To); a Date header outside the window is 403 as a stale iat is', async () => {
    const good = await signed(base());
    assert.equal((await verifyIdentity({ identity: good, key: ours.publicKey, now: now(), maxAgeSeconds: 60, origTn: ORIG, destTn: ['+15550000000', DEST] })).verstat, 'TN-Validation-Passed');
    const fresh = await verifyIdentity({ identity: good, key: ours.publicKey, now: now(), maxAgeSeconds: 60, origTn: ORIG, destTn: DEST, date: new Date().toUTCString() });
    assert.equal(fresh.verstat, 'TN-Validation-Passed');
    const old = await verifyIdentity({ identity: good, key: ours.publicKey, now: now(), maxAgeSeconds: 60, origTn: ORIG, destTn: DEST, date: new Date(Date.now() - 3_600_000).toUTCString() });
    assert.deepEqual([old.sipStatus, old.checks.find((c) => !c.ok)?.name], [403, 'date']);
    const junk = await verifyIdentity({ identity: good, key: ours.publicKey, now: now(), maxAgeSeconds: 60, origTn: ORIG, destTn: DEST, date: 'yesterday' });
    assert.equal(junk.sipStatus, 403);
  });
});
