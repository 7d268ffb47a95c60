import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { certificateMaker } from './dev-certificates.js';
import { CertificateCache } from './certificates.js';
import { identityHeader, signPassport, verifyIdentity } from './passport.js';

/**
 * The x5u fetch and chain check against a real HTTPS server on loopback: a test STI root and a
 * signer certificate it issued (made by openssl), served under a separate test web CA, as the
 * STI PKI and the web PKI are apart in the field.
 */

const dir = mkdtempSync(join(tmpdir(), 'voxgate-sti-'));
const f = (name: string) => join(dir, name);
const { root, leaf } = certificateMaker(dir);

let server: Server;
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
  const pem = (n: string) => readFileSync(f(`${n}.pem`), 'utf8');
  routes.set('/sp.pem', (res) => res.end(pem('signer') + pem('sti-root')));
  routes.set('/leaf-only.pem', (res) => res.end(pem('signer')));
  routes.set('/stranger.pem', (res) => res.end(pem('stranger') + pem('other-root')));
  routes.set('/big.pem', (res) => res.end('x'.repeat(200_000)));
  routes.set('/slow.pem', () => undefined);
  routes.set('/moved.pem', (res) => {
    res.writeHead(302, { Location: '/sp.pem' });
    res.end();
  });
  server = createServer({ key: readFileSync(f('web.key')), cert: readFileSync(f('web.pem')) }, (req, res) => {
    hits.push(req.url ?? '');
    const route = routes.get(req.url ?? '');
    if (!route) {
      res.writeHead(404);
      return res.end();
    }
    route(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

function cache(o: Partial<ConstructorParameters<typeof CertificateCache>[0]> = {}): CertificateCache {
  return new CertificateCache({ trustAnchors: [readFileSync(f('sti-root.pem'), 'utf8')], ttlMs: 3_600_000, maxBytes: 65_536, timeoutMs: 500, fetchCa: [readFileSync(f('web-ca.pem'), 'utf8')], ...o });
}

describe('x5u certificates (RFC 8224 §6.2.2, ATIS-1000074 §5.3)', () => {
  test('a chain to the STI root gives the signer key; a PASSporT it signs verifies with it; the second ask is cached', async () => {
    const c = cache();
    const r = await c.keyFor(`${base}/sp.pem`);
    assert.ok(r.ok, r.ok ? '' : r.reason);
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

  test('refusals: a chain to another root (437), http: (436), a redirect (436), too large (436), too slow (436), 404 (436)', async () => {
    const c = cache();
    const reasons: string[] = [];
    const status = async (path: string) => {
      const r = await c.keyFor(path.startsWith('http') ? path : `${base}${path}`);
      assert.equal(r.ok, false, path);
      if (!r.ok) reasons.push(r.reason);
      return r.ok ? 0 : r.status;
    };
    assert.equal(await status('/stranger.pem'), 437);
    assert.equal(await status(`http://127.0.0.1:1/sp.pem`), 436);
    assert.equal(await status('/moved.pem'), 436);
    assert.equal(await status('/big.pem'), 436);
    const t0 = Date.now();
    assert.equal(await status('/slow.pem'), 436);
    assert.ok(Date.now() - t0 < 2000, 'bounded by timeoutMs');
    assert.equal(await status('/nothing.pem'), 436);
    // Each for its own reason, not one catch-all.
    for (const [i, re] of [/trust anchor/, /not https/, /redirects are not followed/, /more than 65536 bytes/, /no certificate within 500 ms/, /HTTP 404/].entries()) assert.match(reasons[i]!, re);
  });

  test('the fetch trusts only its own CAs: a server certificate outside them fails (436), the STI anchors do not stand in for them', async () => {
    const c = cache({ fetchCa: [readFileSync(f('sti-root.pem'), 'utf8')] });
    const r = await c.keyFor(`${base}/sp.pem`);
    assert.equal(r.ok, false);
    assert.equal(r.ok ? 0 : r.status, 436);
  });

  test('a certificate not valid now (the clock past its end) is 437', async () => {
    const r = await cache({ now: () => Date.now() + 3 * 86_400_000 }).keyFor(`${base}/sp.pem`);
    assert.equal(r.ok ? 0 : r.status, 437);
  });
});
