/**
 * Test support (imported by *.test.ts only): a STIR/SHAKEN lab on loopback. openssl makes an
 * STI root, a signer certificate it issued (EC P-256) and a separate web CA for the HTTPS
 * server that serves the signer's chain at `x5u`, as the STI and web PKIs are apart in the field.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { certificateMaker } from '../sip/identity/dev-certificates.js';
import { join } from 'node:path';

/** Certificate URLs a verifier must refuse, on the same HTTPS server as `x5u` (`stiLab({ refusals: true })`). */
export interface StiLabRefusals {
  /** A signer chain to another root (`untrustedKey` is that signer's key): 437. */
  untrusted: string;
  untrustedKey: string;
  /** 200 000 bytes of body: more than any sane certificate cache takes (436). */
  oversized: string;
  /** Never answers (the connection stays open until close()): the fetch must time out (436). */
  slow: string;
  /** A 302 to `x5u`: redirects are not followed (436). */
  redirect: string;
}

export interface StiLab {
  /** Where the signer's chain is served (HTTPS on 127.0.0.1). */
  x5u: string;
  /** PEM file paths: the signer's key, its certificate, the STI root, the web CA the fetch must trust. */
  signerKey: string;
  signerCert: string;
  stiRoot: string;
  webCa: string;
  /** Paths under `x5u`'s directory the server was asked for. */
  hits: string[];
  /** Only when asked for (it costs two more openssl certificates). */
  refusals: StiLabRefusals | undefined;
  close(): Promise<void>;
}

export async function stiLab(opts: { refusals?: boolean } = {}): Promise<StiLab> {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-sti-lab-'));
  const f = (n: string) => join(dir, n);
  const { root, leaf } = certificateMaker(dir);
  root('sti-root');
  root('web-ca');
  leaf('signer', 'sti-root');
  leaf('web', 'web-ca', ['subjectAltName=IP:127.0.0.1']);
  const pem = (n: string) => readFileSync(f(`${n}.pem`), 'utf8');
  const routes = new Map<string, (res: ServerResponse) => void>();
  const chain = pem('signer') + pem('sti-root');
  routes.set('/sp.pem', (res) => {
    res.writeHead(200, { 'Content-Type': 'application/pem-certificate-chain' });
    res.end(chain);
  });
  if (opts.refusals) {
    root('other-root');
    leaf('stranger', 'other-root');
    const strangerChain = pem('stranger') + pem('other-root');
    routes.set('/stranger.pem', (res) => res.end(strangerChain));
    routes.set('/big.pem', (res) => res.end('x'.repeat(200_000)));
    routes.set('/slow.pem', () => undefined);
    routes.set('/moved.pem', (res) => {
      res.writeHead(302, { Location: '/sp.pem' });
      res.end();
    });
  }
  const hits: string[] = [];
  const server = createServer({ key: readFileSync(f('web.key')), cert: readFileSync(f('web.pem')) }, (req, res) => {
    hits.push(req.url ?? '');
    const route = routes.get(req.url ?? '');
    if (!route) {
      res.writeHead(404);
      return res.end();
    }
    route(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    x5u: `${base}/sp.pem`,
    signerKey: f('signer.key'),
    signerCert: f('signer.pem'),
    stiRoot: f('sti-root.pem'),
    webCa: f('web-ca.pem'),
    hits,
    refusals: opts.refusals ? { untrusted: `${base}/stranger.pem`, untrustedKey: f('stranger.key'), oversized: `${base}/big.pem`, slow: `${base}/slow.pem`, redirect: `${base}/moved.pem` } : undefined,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
