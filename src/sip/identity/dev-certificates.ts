import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Development STI certificates, made by openssl (Node has no certificate issuing of its own):
 * for `voxgate stir keygen` and the tests' STI lab, never for production keys.
 */

export interface LeafOptions {
  /**
   * Whether to add what an STI-SP certificate carries (ATIS-1000080 §5): `basicConstraints=critical,CA:FALSE`,
   * `keyUsage=critical,digitalSignature` and a TNAuthList naming `spc`. Default true; an `ext` line for the
   * same extension replaces its default. false: only the `ext` lines (the tests' malformed certificates).
   */
  sti?: boolean;
  /** The service provider code the TNAuthList names; default "1234". */
  spc?: string;
  /** Validity; default 1 (tests). */
  days?: number;
}

export interface CertificateMaker {
  /** A self-signed EC P-256 CA, `name.pem` and `name.key`; valid `days` (default 2). */
  root(name: string, opts?: { days?: number }): void;
  /** An EC P-256 certificate the CA `ca` issued, with `-addext`-style `ext` lines. */
  leaf(name: string, ca: string, ext?: string[], opts?: LeafOptions): void;
}

/** openssl in `dir`. */
export function certificateMaker(dir: string): CertificateMaker {
  const f = (n: string) => join(dir, n);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const extName = (line: string) => line.slice(0, line.indexOf('=')).trim();
  return {
    root: (name, { days = 2 } = {}) =>
      void openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.pem`), '-days', String(days), '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'),
    leaf: (name, ca, ext = [], { sti = true, spc = '1234', days = 1 } = {}) => {
      const defaults = sti ? ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', tnAuthListExtension(spc)] : [];
      const lines = [...defaults.filter((d) => !ext.some((e) => extName(e) === extName(d))), ...ext];
      openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${name}`);
      writeFileSync(f(`${name}.ext`), `${lines.join('\n')}\n`);
      openssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f(`${ca}.pem`), '-CAkey', f(`${ca}.key`), '-CAcreateserial', '-out', f(`${name}.pem`), '-days', String(days), '-extfile', f(`${name}.ext`));
    },
  };
}

/**
 * The TNAuthList extension (id-pe-TNAuthList, 1.3.6.1.5.5.7.1.26) naming one service provider code,
 * as an openssl extension line. RFC 8226 §9 and its ASN.1 module (EXPLICIT TAGS):
 * TNAuthorizationList ::= SEQUENCE SIZE (1..MAX) OF TNEntry; TNEntry ::= CHOICE { spc [0]
 * ServiceProviderCode, range [1] ..., one [2] ... }; ServiceProviderCode ::= IA5String. Explicit,
 * so the constructed [0] wraps the IA5String: "1234" is 30 08 A0 06 16 04 31 32 33 34, as carriers'
 * certificates carry it.
 */
export function tnAuthListExtension(spc: string): string {
  // Up to 100 characters keeps every length in DER's one-byte short form.
  if (!/^[\x20-\x7e]{1,100}$/.test(spc)) throw new RangeError(`a service provider code is 1-100 printable ASCII characters, not ${JSON.stringify(spc)}`);
  const tlv = (tag: number, body: Buffer) => Buffer.concat([Buffer.from([tag, body.length]), body]);
  const der = tlv(0x30, tlv(0xa0, tlv(0x16, Buffer.from(spc, 'ascii'))));
  return `1.3.6.1.5.5.7.1.26=DER:${[...der].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
}
