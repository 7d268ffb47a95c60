import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { certificateMaker, tnAuthListExtension } from './dev-certificates.js';
import { CertificateCache, certificateExtensions, isPrivateAddress, type CertificateResult } from './certificates.js';
import { identityHeader, signPassport, verifyIdentity } from './passport.js';

/**
 * The x5u fetch and chain check against a real HTTPS server on loopback: a test STI root and a
 * signer certificate it issued (made by openssl), served under a separate test web CA, as the
 * STI PKI and the web PKI are apart in the field.
 */

const dir = mkdtempSync(join(tmpdir(), 'voxgate-sti-'));
const f = (name: string) => join(dir, name);
const { root, leaf } = certificateMaker(dir);
const pem = (n: string) => readFileSync(f(`${n}.pem`), 'utf8');
const TN_AUTH_LIST = '1.3.6.1.5.5.7.1.26';

let server: Server;
let port = 0;
let base = '';
const hits: string[] = [];
const routes = new Map<string, (res: import('node:http').ServerResponse) => void>();

before(async () => {
  root('sti-root');
  root('other-root');
  root('web-ca');
  leaf('signer', 'sti-root');
  leaf('stranger', 'other-root');
  leaf('web', 'web-ca', ['subjectAltName=IP:127.0.0.1']);
  // An SP end entity (CA:FALSE, and no keyUsage, so checkIssued does not catch it) that "issues" a certificate.
  leaf('sp-ee', 'sti-root', ['basicConstraints=critical,CA:FALSE', tnAuthListExtension('1234')], { sti: false });
  leaf('minted', 'sp-ee');
  leaf('ca-leaf', 'sti-root', ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,digitalSignature']);
  // cA TRUE but no keyCertSign: OpenSSL's X509_check_ca (Node's .ca) calls it no CA.
  leaf('ca-named-leaf', 'sti-root', ['basicConstraints=critical,CA:TRUE']);
  // No TNAuthList, but its OID in another extension's value: found by a byte search, not by the DER walk.
  leaf('no-tn', 'sti-root', ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', `certificatePolicies=${TN_AUTH_LIST}`], { sti: false });
  routes.set('/sp.pem', (res) => res.end(pem('signer') + pem('sti-root')));
  routes.set('/leaf-only.pem', (res) => res.end(pem('signer')));
  routes.set('/stranger.pem', (res) => res.end(pem('stranger') + pem('other-root')));
  routes.set('/minted.pem', (res) => res.end(pem('minted') + pem('sp-ee') + pem('sti-root')));
  routes.set('/ca-leaf.pem', (res) => res.end(pem('ca-leaf') + pem('sti-root')));
  routes.set('/ca-named-leaf.pem', (res) => res.end(pem('ca-named-leaf') + pem('sti-root')));
  routes.set('/no-tn.pem', (res) => res.end(pem('no-tn') + pem('sti-root')));
  routes.set('/big.pem', (res) => res.end('x'.repeat(200_000)));
  routes.set('/slow.pem', () => undefined);
  routes.set('/moved.pem', (res) => {
    res.writeHead(302, { Location: '/sp.pem' });
    res.end();
  });
  server = createServer({ key: readFileSync(f('web.key')), cert: readFileSync(f('web.pem')) }, (req, res) => {
    hits.push(req.url ?? '');
    const route = routes.get((req.url ?? '').split('?')[0]!);
    if (!route) {
      res.writeHead(404);
      return res.end();
    }
    route(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  base = `https://127.0.0.1:${port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

/** The lab is on loopback, so private addresses are allowed unless a test says otherwise. */
function cache(o: Partial<ConstructorParameters<typeof CertificateCache>[0]> = {}): CertificateCache {
  return new CertificateCache({ trustAnchors: [pem('sti-root')], ttlMs: 3_600_000, maxBytes: 65_536, timeoutMs: 500, fetchCa: [pem('web-ca')], allowPrivateAddresses: true, ...o });
}

function refused(r: CertificateResult): { status: number; reason: string; detail: string } {
  assert.equal(r.ok, false, 'refused');
  return r.ok ? { status: 0, reason: '', detail: '' } : r;
}

describe('x5u certificates (RFC 8224 §6.2.2, ATIS-1000074 §5.3)', () => {
  test('a chain to the STI root gives the signer key; a PASSporT it signs verifies with it; the second ask is cached', async () => {
    const c = cache();
    const r = await c.keyFor(`${base}/sp.pem`);
    assert.ok(r.ok, r.ok ? '' : r.detail);
    const { jws } = await signPassport({ key: createPrivateKey(readFileSync(f('signer.key'))), x5u: `${base}/sp.pem`, attest: 'A', orig: '+15551230000', dest: '+15557654321' });
    const v = await verifyIdentity({ identity: identityHeader(jws, `${base}/sp.pem`), key: r.key, now: Math.floor(Date.now() / 1000), maxAgeSeconds: 60, origTn: '+15551230000', destTn: '+15557654321' });
    assert.equal(v.verstat, 'TN-Validation-Passed', JSON.stringify(v.checks));
    const before = hits.length;
    assert.ok((await c.keyFor(`${base}/sp.pem`)).ok);
    assert.equal(hits.length, before, 'served from the cache');
    assert.equal(c.fetches, 1);
  });

  test('a leaf issued directly by the anchor is enough (the chain may stop short of the root)', async () => {
    assert.ok((await cache().keyFor(`${base}/leaf-only.pem`)).ok);
  });

  test('refusals: a chain to another root (437), http: (436), a redirect (436), too large (436), too slow (436), 404 (436); each says why in its detail', async () => {
    const c = cache();
    const got: { reason: string; detail: string }[] = [];
    const status = async (path: string) => {
      const r = refused(await c.keyFor(path.startsWith('http') ? path : `${base}${path}`));
      got.push(r);
      return r.status;
    };
    assert.equal(await status('/stranger.pem'), 437);
    assert.equal(await status(`http://127.0.0.1:1/sp.pem`), 436);
    assert.equal(await status('/moved.pem'), 436);
    assert.equal(await status('/big.pem'), 436);
    const t0 = Date.now();
    assert.equal(await status('/slow.pem'), 436);
    assert.ok(Date.now() - t0 < 2000, 'bounded by timeoutMs');
    assert.equal(await status('/nothing.pem'), 436);
    const fetchFailed = 'the x5u certificate could not be fetched';
    const expected: [string, RegExp][] = [
      ['the certificate chain does not end at a trusted STI root', /trust anchor/],
      ['the x5u is not https', /not https/],
      [fetchFailed, /redirects are not followed/],
      [fetchFailed, /more than 65536 bytes/],
      [fetchFailed, /no certificate within 500 ms/],
      [fetchFailed, /HTTP 404/],
    ];
    for (const [i, [reason, detail]] of expected.entries()) {
      assert.equal(got[i]!.reason, reason);
      assert.match(got[i]!.detail, detail);
    }
  });

  test('the wire reason of a failed fetch is fixed text: no socket error, address or port (no port scanning through us); the detail has them', async () => {
    const r = refused(await cache().keyFor('https://127.0.0.1:1/sp.pem'));
    assert.equal(r.status, 436);
    assert.equal(r.reason, 'the x5u certificate could not be fetched');
    assert.match(r.detail, /ECONNREFUSED 127\.0\.0\.1:1/);
  });

  test('the fetch trusts only its own CAs: a server certificate outside them fails (436), the STI anchors do not stand in for them', async () => {
    const r = refused(await cache({ fetchCa: [pem('sti-root')] }).keyFor(`${base}/sp.pem`));
    assert.equal(r.status, 436);
    assert.equal(r.reason, 'the x5u certificate could not be fetched');
  });

  test('a certificate not valid now (the clock past its end) is 437', async () => {
    const r = refused(await cache({ now: () => Date.now() + 3 * 86_400_000 }).keyFor(`${base}/sp.pem`));
    assert.equal(r.status, 437);
    assert.equal(r.reason, 'a certificate in the chain is not valid now');
  });
});

describe('chain rules (RFC 5280 §4.2.1.9, ATIS-1000080 §5)', () => {
  test('a certificate "issued" by an SP end entity (CA:FALSE, no keyUsage) is 437, though checkIssued and verify accept it', async () => {
    const [minted, spEe] = [new X509Certificate(pem('minted')), new X509Certificate(pem('sp-ee'))];
    assert.ok(minted.checkIssued(spEe) && minted.verify(spEe.publicKey), 'the names, keyUsage and signature alone do not catch it');
    const r = refused(await cache().keyFor(`${base}/minted.pem`));
    assert.equal(r.status, 437);
    assert.equal(r.reason, 'a certificate in the chain is not a CA');
    assert.match(r.detail, /certificate 1 .*CN=sp-ee.* not a CA/);
  });

  test('a trust anchor that is not a CA does not anchor what it "issued" (437)', () => {
    const r = refused(cache({ trustAnchors: [pem('sp-ee')] }).checkChain(pem('minted'), 'x5u'));
    assert.equal(r.status, 437);
    assert.match(r.detail, /trust anchor CN=sp-ee .*is not a CA/);
  });

  test('a CA:TRUE signer certificate is 437: an STI-SP certificate is an end entity; also when its keyUsage lacks keyCertSign, which X509Certificate.ca does not see', async () => {
    assert.equal(new X509Certificate(pem('ca-leaf')).ca, true);
    assert.equal(new X509Certificate(pem('ca-named-leaf')).ca, false);
    for (const path of ['/ca-leaf.pem', '/ca-named-leaf.pem']) {
      const r = refused(await cache().keyFor(`${base}${path}`));
      assert.equal(r.status, 437, path);
      assert.equal(r.reason, "the signer's certificate is a CA", path);
    }
  });

  test('a signer certificate without a TNAuthList extension is 437, even with the OID elsewhere in its bytes', async () => {
    const noTn = new X509Certificate(pem('no-tn'));
    assert.ok(noTn.raw.includes(Buffer.from('06082b0601050507011a', 'hex')), 'the OID is in the certificate, as a policy');
    const r = refused(await cache().keyFor(`${base}/no-tn.pem`));
    assert.equal(r.status, 437);
    assert.equal(r.reason, "the signer's certificate has no TNAuthList");
  });

  test('certificateExtensions walks the extensions only; malformed DER gives undefined, not a throw', () => {
    const signer = new X509Certificate(pem('signer'));
    const oids = (raw: Buffer) => certificateExtensions(raw)?.map((e) => e.oid);
    assert.deepEqual(
      new Set(oids(signer.raw)),
      // basicConstraints, keyUsage, TNAuthList, and the key identifiers openssl adds.
      new Set(['2.5.29.19', '2.5.29.15', TN_AUTH_LIST, '2.5.29.14', '2.5.29.35']),
    );
    assert.ok(!oids(new X509Certificate(pem('no-tn')).raw)!.includes(TN_AUTH_LIST));
    assert.deepEqual(certificateExtensions(signer.raw)!.find((e) => e.oid === TN_AUTH_LIST)!.value, Buffer.from('3008a006160431323334', 'hex'));
    for (const cut of [1, 10, signer.raw.length - 1]) assert.equal(certificateExtensions(signer.raw.subarray(0, cut)), undefined);
    assert.equal(certificateExtensions(Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff])), undefined);
  });

  test('the dev STI leaf: CA:FALSE, critical digitalSignature, TNAuthList SPC "1234" encoded as RFC 8226 says (explicit [0] IA5String)', () => {
    assert.equal(tnAuthListExtension('1234'), '1.3.6.1.5.5.7.1.26=DER:30:08:a0:06:16:04:31:32:33:34');
    const signer = new X509Certificate(pem('signer'));
    assert.equal(signer.ca, false);
    const has = (hex: string) => signer.raw.includes(Buffer.from(hex.replace(/ /g, ''), 'hex'));
    assert.ok(has('06 03 551d13 01 01 ff 04 02 3000'), 'basicConstraints, critical, cA FALSE');
    assert.ok(has('06 03 551d0f 01 01 ff 04 04 03 02 07 80'), 'keyUsage, critical, digitalSignature only');
    assert.ok(has('06 08 2b0601050507011a 04 0a 3008 a006 1604 31323334'), 'TNAuthList { spc [0] "1234" }');
  });

  test('certificateMaker days: a root and leaf for `voxgate stir keygen` can be made to last 365 and 90 days', () => {
    root('long-root', { days: 365 });
    leaf('long-signer', 'long-root', [], { days: 90 });
    const days = (n: string) => Math.round((Date.parse(new X509Certificate(pem(n)).validTo) - Date.now()) / 86_400_000);
    assert.equal(days('long-root'), 365);
    assert.equal(days('long-signer'), 90);
  });

  test('an exception while checking the chain becomes 437, not a rejected promise', async () => {
    class Throwing extends CertificateCache {
      override checkChain(): CertificateResult {
        throw new Error('boom');
      }
    }
    const r = refused(await new Throwing({ trustAnchors: [pem('sti-root')], ttlMs: 1000, maxBytes: 65_536, timeoutMs: 500, fetchCa: [pem('web-ca')], allowPrivateAddresses: true }).keyFor(`${base}/sp.pem`));
    assert.equal(r.status, 437);
    assert.equal(r.reason, 'the certificate chain could not be checked');
    assert.match(r.detail, /boom/);
  });
});

describe('cache bounds', () => {
  test('a cached key does not outlive its certificates: past the leaf notAfter it is fetched again (and refused), whatever the ttl', async () => {
    let t = Date.now();
    const c = cache({ now: () => t, ttlMs: 30 * 86_400_000 });
    assert.ok((await c.keyFor(`${base}/sp.pem`)).ok);
    t += 3_600_000;
    assert.ok((await c.keyFor(`${base}/sp.pem`)).ok);
    assert.equal(c.fetches, 1, 'within its validity: cached');
    t = Date.parse(new X509Certificate(pem('signer')).validTo) + 1000;
    assert.equal(refused(await c.keyFor(`${base}/sp.pem`)).status, 437);
    assert.equal(c.fetches, 2, 'fetched again');
  });

  test('1000+ failing URLs do not push a good key out: failures are kept apart and bounded', async () => {
    const c = cache({ maxEntries: 10 });
    assert.ok((await c.keyFor(`${base}/sp.pem`)).ok);
    for (let i = 0; i < 1200; i++) refused(await c.keyFor(`http://bad.example/${i}.pem`));
    assert.deepEqual(c.sizes, { keys: 1, failures: 1000, inflight: 0 });
    const before = hits.length;
    assert.ok((await c.keyFor(`${base}/sp.pem`)).ok);
    assert.equal(hits.length, before, 'still cached');
    assert.equal(c.fetches, 1);
  });

  test('fetches of different URLs at once are capped (maxInflight): one more is refused at once (436), not queued or remembered; the same URL joins its fetch', async () => {
    const c = cache({ maxInflight: 2 });
    const slow = [c.keyFor(`${base}/slow.pem?1`), c.keyFor(`${base}/slow.pem?2`), c.keyFor(`${base}/slow.pem?1`)];
    const t0 = Date.now();
    const busy = refused(await c.keyFor(`${base}/sp.pem`));
    assert.ok(Date.now() - t0 < 100, 'at once');
    assert.equal(busy.status, 436);
    assert.equal(busy.reason, 'too many certificate fetches at once');
    assert.equal(c.sizes.inflight, 2);
    await Promise.all(slow);
    assert.equal(c.fetches, 2, 'the same URL twice is one fetch');
    assert.ok((await c.keyFor(`${base}/sp.pem`)).ok, 'the refusal was not remembered');
  });
});

describe('private addresses (the x5u is chosen by whoever signed the call)', () => {
  test('by default an x5u naming or resolving to loopback is refused (436) before connecting', async () => {
    const c = cache({ allowPrivateAddresses: false });
    const before = hits.length;
    for (const x5u of [`${base}/sp.pem`, `https://localhost:${port}/sp.pem`, `https://[::ffff:127.0.0.1]:${port}/sp.pem`, `https://[::1]:${port}/sp.pem`, `https://127.1:${port}/sp.pem`]) {
      const r = refused(await c.keyFor(x5u));
      assert.equal(r.status, 436, x5u);
      assert.equal(r.reason, 'the x5u names a private address', x5u);
      assert.match(r.detail, /private address/);
    }
    assert.equal(hits.length, before, 'the server was never asked');
  });

  test('isPrivateAddress: loopback, RFC 1918, link-local, CGNAT, unspecified, unique-local, IPv4-mapped; not public ones', () => {
    const priv = ['127.0.0.1', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '100.127.255.255', '0.0.0.0', '::', '::1', 'fe80::1', 'fc00::1', 'fd12:3456::1', '::ffff:10.0.0.1', '::ffff:7f00:1', '::ffff:169.254.169.254', 'not-an-address'];
    const pub = ['8.8.8.8', '172.32.0.1', '100.128.0.1', '192.0.2.1', '2001:4860:4860::8888', '::ffff:8.8.8.8'];
    for (const a of priv) assert.equal(isPrivateAddress(a), true, a);
    for (const a of pub) assert.equal(isPrivateAddress(a), false, a);
  });
});
