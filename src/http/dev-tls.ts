import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { StartupError } from '../core/config.js';

/**
 * HTTPS for development (`voxgate serve --dev-tls`, `http.devTls`): browsers give a page the
 * microphone only on a secure origin, so a phone on the same network needs https to talk to the
 * demo page. A self-signed EC P-256 certificate for this machine's names and addresses is made
 * once by openssl (Node issues no certificates) and reused while it still covers them; the
 * banner prints its SHA-256 fingerprint so the phone's warning can be checked against it.
 */

export interface DevCertificate {
  certPath: string;
  keyPath: string;
  /** SHA-256, colon-separated hex, as browsers show it. */
  fingerprint: string;
  /** The names and addresses it is valid for. */
  names: string[];
  /** Made now (false: the one from an earlier run). */
  created: boolean;
}

/** This machine's names and addresses: localhost, loopback, the host name, every interface's address. */
export function machineNames(): string[] {
  const names = new Set(['localhost', '127.0.0.1', '::1']);
  const host = hostname();
  if (/^[A-Za-z0-9.-]+$/.test(host)) names.add(host).add(`${host.split('.')[0]}.local`);
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal && !a.address.startsWith('fe80:')) names.add(a.address);
  }
  return [...names];
}

const isIp = (n: string) => /^[\d.]+$/.test(n) || n.includes(':');

/** The certificate in `dir` (made, or remade when it no longer covers `names` or is near expiry). */
export function devCertificate(dir: string, names: string[] = machineNames()): DevCertificate {
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  const covers = (cert: X509Certificate) => {
    const san = cert.subjectAltName ?? '';
    const ok = names.every((n) => (isIp(n) ? san.includes(`IP Address:${n.includes(':') ? expandV6(n) : n}`) || san.includes(`IP Address:${n}`) : san.includes(`DNS:${n}`)));
    return ok && Date.parse(cert.validTo) - Date.now() > 7 * 86_400_000;
  };
  if (existsSync(certPath) && existsSync(keyPath)) {
    try {
      const cert = new X509Certificate(readFileSync(certPath));
      if (covers(cert)) return { certPath, keyPath, fingerprint: cert.fingerprint256, names, created: false };
    } catch {
      // unreadable: made again below
    }
  }
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const san = names.map((n) => (isIp(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
    // 397 days: the longest validity browsers accept for a server certificate.
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '397', '-subj', '/CN=voxgate development', '-addext', `subjectAltName=${san}`, '-addext', 'extendedKeyUsage=serverAuth', '-addext', 'basicConstraints=critical,CA:FALSE'], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    const why = e.code === 'ENOENT' ? 'openssl is not installed (apt-get install openssl)' : (e.stderr?.toString().trim().split('\n')[0] ?? e.message);
    throw new StartupError(`http.devTls: cannot make a development certificate in ${dir}: ${why}; or set http.tls to a certificate of your own`);
  }
  const cert = new X509Certificate(readFileSync(certPath));
  return { certPath, keyPath, fingerprint: cert.fingerprint256, names, created: true };
}

/** openssl prints IPv6 SANs in full (0:0:0:0:0:0:0:1); Node's subjectAltName does too. */
function expandV6(a: string): string {
  const [head = '', tail = ''] = a.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = a.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : a.split(':');
  return groups.map((g) => g.replace(/^0+(?=.)/, '').toUpperCase()).join(':');
}
