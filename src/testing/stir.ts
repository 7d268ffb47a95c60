/**
 * Test support (imported by *.test.ts only): a STIR/SHAKEN lab on loopback. openssl makes an
 * STI root, a signer certificate it issued (EC P-256) and a separate web CA for the HTTPS
 * server that serves the signer's chain at `x5u`, as the STI and web PKIs are apart in the field.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
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

/**
 * openssl in `dir`: `root(name)` a self-signed EC P-256 CA (`name.pem`, `name.key`), valid 2 days;
 * `leaf(name, ca, ext)` an EC P-256 certificate that CA issued, valid a day, with `-addext`-style lines.
 */
export function certificateMaker(dir: string): { root(name: string): void; leaf(name: string, ca: string, ext?: string[]): void } {
  const f = (n: string) => join(dir, n);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  return {
    root: (name) =>
      void openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.pem`), '-days', '2', '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'),
    leaf: (name, ca, ext = []) => {
      openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${name}`);
      writeFileSync(f(`${name}.ext`), `${ext.join('\n')}\n`);
      openssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f(`${ca}.pem`), '-CAkey', f(`${ca}.key`), '-CAcreateserial', '-out', f(`${name}.pem`), '-days', '1', '-extfile', f(`${name}.ext`));
    },
  };
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
