import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CertificateCache } from '../sip/identity/certificates.js';
import { identityHeader, signPassport, verifyIdentity, type Attestation } from '../sip/identity/passport.js';
import { certificateMaker } from '../sip/identity/dev-certificates.js';

const USAGE = `usage:
  voxgate stir keygen --dir DIR                 a development STI root and a signer key and certificate it issued (openssl)
  voxgate stir sign --key KEY.pem --x5u URL --orig +E164 --dest +E164 [--attest A|B|C]
                                                prints an Identity header value
  voxgate stir verify --identity VALUE --orig +E164 --dest +E164 (--cert CHAIN.pem [--anchor ROOT.pem] | --anchor ROOT.pem [--fetch-ca CA.pem])
                      [--max-age SECONDS] [--at SECONDS|ISO-DATE]
                                                prints each check; exit 0 when it passes. --cert: the
                                                certificate (chain) from a file, checked to --anchor if
                                                given; else fetched from the header's x5u. --at: verify
                                                as of the moment of the call (default now)`;

type Out = { out(text: string): void; err(text: string): void };
const std: Out = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) };

/** `voxgate stir ...`: for operators debugging a carrier's complaint, and for development keys. */
export async function stirCommand(argv: string[], io: Out = std): Promise<number> {
  const [sub, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      dir: { type: 'string' },
      key: { type: 'string' },
      x5u: { type: 'string' },
      orig: { type: 'string' },
      dest: { type: 'string' },
      attest: { type: 'string' },
      identity: { type: 'string' },
      cert: { type: 'string' },
      anchor: { type: 'string' },
      'fetch-ca': { type: 'string' },
      'max-age': { type: 'string' },
      at: { type: 'string' },
    },
  });
  const usage = () => (io.err(`${USAGE}\n`), 2);
  if (sub === 'keygen') {
    if (!values.dir) return usage();
    const make = certificateMaker(values.dir);
    make.root('sti-root', { days: 365 });
    make.leaf('signer', 'sti-root', [], { days: 90 });
    io.out(`${join(values.dir, 'signer.key')}: the signing key (stirShaken.sign.privateKey)\n${join(values.dir, 'signer.pem')}: its certificate; serve it with sti-root.pem appended at certificateUrl\n${join(values.dir, 'sti-root.pem')}: the root verifiers trust (stirShaken.verify.trustAnchors)\n`);
    return 0;
  }
  if (sub === 'sign') {
    if (!values.key || !values.x5u || !values.orig || !values.dest) return usage();
    const attest = (values.attest ?? 'B').toUpperCase();
    if (!['A', 'B', 'C'].includes(attest)) return usage();
    const { jws } = await signPassport({ key: createPrivateKey(readFileSync(values.key)), x5u: values.x5u, attest: attest as Attestation, orig: values.orig, dest: values.dest });
    io.out(`${identityHeader(jws, values.x5u)}\n`);
    return 0;
  }
  if (sub === 'verify') {
    if (!values.identity || !values.orig || !values.dest || (!values.cert && !values.anchor)) return usage();
    const atMs = values.at === undefined ? Date.now() : /^\d+$/.test(values.at) ? Number(values.at) * 1000 : Date.parse(values.at);
    if (Number.isNaN(atMs)) return usage();
    let key;
    const x5u = /;\s*info\s*=\s*<([^>]*)>/i.exec(values.identity)?.[1] ?? '';
    if (values.cert && !values.anchor) key = new X509Certificate(readFileSync(values.cert)).publicKey;
    else {
      const cache = new CertificateCache({ trustAnchors: [readFileSync(values.anchor!, 'utf8')], ttlMs: 0, maxBytes: 65_536, timeoutMs: 5000, now: () => atMs, allowPrivateAddresses: true, ...(values['fetch-ca'] ? { fetchCa: [readFileSync(values['fetch-ca'], 'utf8')] } : {}) });
      const got = values.cert ? cache.checkChain(readFileSync(values.cert, 'utf8'), values.cert) : await cache.keyFor(x5u);
      io.out(`certificate ${got.ok ? 'ok' : `FAILED (${got.status}): ${got.reason}`} ${values.cert ?? x5u}\n`);
      if (got.ok) key = got.key;
    }
    const v = await verifyIdentity({ identity: values.identity, key, now: Math.floor(atMs / 1000), maxAgeSeconds: Number(values['max-age'] ?? 60), origTn: values.orig, destTn: values.dest });
    for (const c of v.checks) io.out(`${c.ok ? 'ok    ' : c.skipped ? 'skip  ' : 'FAILED'} ${c.name.padEnd(9)} ${c.detail}\n`);
    io.out(`${v.verstat}${v.sipStatus ? ` (enforce mode would answer ${v.reason})` : ''}\n`);
    return v.verstat === 'TN-Validation-Passed' ? 0 : 1;
  }
  return usage();
}
