import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Development STI certificates, made by openssl (Node has no certificate issuing of its own):
 * for `voxgate stir keygen` and the tests' STI lab, never for production keys.
 */
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

