/**
 * Test support (imported by *.test.ts only): a STIR/SHAKEN lab on loopback. openssl makes an
 * STI root, a signer certificate it issued (EC P-256) and a separate web CA for the HTTPS
 * server that serves the signer's chain at `x5u`, as the STI and web PKIs are apart in the field.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { certificateMaker } from '../sip/identity/dev-certificates.js';
import { join } from 'node:path';

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
  close(): Promise<void>;
}

export async function stiLab(): Promise<StiLab> {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-sti-lab-'));
  const f = (n: string) => join(dir, n);
  const { root, leaf } = certificateMaker(dir);
  root('sti-root');
  root('web-ca');
  leaf('signer', 'sti-root');
  leaf('web', 'web-ca', ['subjectAltName=IP:127.0.0.1']);
  const chain = readFileSync(f('signer.pem'), 'utf8') + readFileSync(f('sti-root.pem'), 'utf8');
  const hits: string[] = [];
  const server = createServer({ key: readFileSync(f('web.key')), cert: readFileSync(f('web.pem')) }, (req, res) => {
    hits.push(req.url ?? '');
    if (req.url !== '/sp.pem') {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { 'Content-Type': 'application/pem-certificate-chain' });
    res.end(chain);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    x5u: `https://127.0.0.1:${(server.address() as AddressInfo).port}/sp.pem`,
    signerKey: f('signer.key'),
    signerCert: f('signer.pem'),
    stiRoot: f('sti-root.pem'),
    webCa: f('web-ca.pem'),
    hits,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
