import { X509Certificate, type KeyObject } from 'node:crypto';
import { request } from 'node:https';

/**
 * The STIR/SHAKEN certificates verifiers fetch (RFC 8224 §6.2.2, ATIS-1000074 §5.3.1): the
 * `x5u` fetched over HTTPS only, no redirects, bounded in size and time; the chain it serves
 * checked against the STI trust anchors, which are kept apart from the web PKI the fetch itself
 * trusts; the signer's key kept for `ttlMs`, and a failure for a short while (no hammering).
 */

export interface CertificateCacheOptions {
  /** STI-CA roots (PEM): a chain must end at one of them. */
  trustAnchors: readonly string[];
  ttlMs: number;
  maxBytes: number;
  timeoutMs: number;
  /** CAs the HTTPS fetch trusts (PEM); default the system's (the web PKI). */
  fetchCa?: readonly string[];
  now?: () => number;
  /** Most URLs remembered (the oldest go first). */
  maxEntries?: number;
}

export type CertificateResult = { ok: true; key: KeyObject; chain: X509Certificate[] } | { ok: false; status: 436 | 437; reason: string };

/** How long a URL that failed is not asked again. */
const FAILURE_TTL_MS = 30_000;

export class CertificateCache {
  readonly #anchors: X509Certificate[];
  readonly #entries = new Map<string, { result: CertificateResult; until: number }>();
  readonly #inflight = new Map<string, Promise<CertificateResult>>();
  readonly #now: () => number;
  /** Fetches made (tests and metrics: a cached key costs none). */
  fetches = 0;

  constructor(private readonly opts: CertificateCacheOptions) {
    this.#anchors = opts.trustAnchors.flatMap(splitPem).map((p) => new X509Certificate(p));
    this.#now = opts.now ?? (() => Date.now());
  }

  /** The signer's public key for an `x5u`, or why there is none (436: not fetched, 437: not trusted). */
  async keyFor(x5u: string): Promise<CertificateResult> {
    const now = this.#now();
    const hit = this.#entries.get(x5u);
    if (hit && hit.until > now) return hit.result;
    const pending = this.#inflight.get(x5u);
    if (pending) return pending;
    const p = this.#load(x5u).finally(() => this.#inflight.delete(x5u));
    this.#inflight.set(x5u, p);
    const result = await p;
    this.#entries.delete(x5u);
    this.#entries.set(x5u, { result, until: this.#now() + (result.ok ? this.opts.ttlMs : FAILURE_TTL_MS) });
    while (this.#entries.size > (this.opts.maxEntries ?? 1000)) this.#entries.delete(this.#entries.keys().next().value!);
    return result;
  }

  async #load(x5u: string): Promise<CertificateResult> {
    let url: URL;
    try {
      url = new URL(x5u);
    } catch {
      return { ok: false, status: 436, reason: `x5u ${x5u} is not a URL` };
    }
    if (url.protocol !== 'https:') return { ok: false, status: 436, reason: `x5u ${x5u} is not https: (RFC 8226 §9)` };
    let pem: string;
    try {
      this.fetches++;
      pem = await this.#fetch(url);
    } catch (err) {
      return { ok: false, status: 436, reason: `x5u ${x5u} could not be fetched: ${(err as Error).message}` };
    }
    return this.checkChain(pem, x5u);
  }

  #fetch(url: URL): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = request(url, { method: 'GET', timeout: this.opts.timeoutMs, ...(this.opts.fetchCa ? { ca: [...this.opts.fetchCa] } : {}), headers: { Accept: 'application/pem-certificate-chain' } }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          // No redirects are followed: a 3xx names a certificate the signer did not name.
          return reject(new Error(`HTTP ${res.statusCode ?? '?'}${res.headers.location ? ' (redirects are not followed)' : ''}`));
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > this.opts.maxBytes) {
            req.destroy(new Error(`more than ${this.opts.maxBytes} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
        res.on('error', reject);
      });
      // The whole fetch, not only each socket read, is bounded.
      const timer = setTimeout(() => req.destroy(new Error(`no certificate within ${this.opts.timeoutMs} ms`)), this.opts.timeoutMs);
      req.on('timeout', () => req.destroy(new Error(`no certificate within ${this.opts.timeoutMs} ms`)));
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      req.on('close', () => clearTimeout(timer));
      req.end();
    });
  }

  /**
   * The chain as served (leaf first): each certificate issued by the next, the last by a trust
   * anchor, all valid at `nowMs` (default the cache's clock); an EC P-256 leaf. Public for
   * `voxgate stir verify --cert` and for checking a published vector on a fixed clock.
   */
  checkChain(pem: string, x5u: string, nowMs = this.#now()): CertificateResult {
    const blocks = splitPem(pem);
    if (blocks.length === 0) return { ok: false, status: 436, reason: `x5u ${x5u} served no PEM certificate` };
    let chain: X509Certificate[];
    try {
      chain = blocks.map((b) => new X509Certificate(b));
    } catch (err) {
      return { ok: false, status: 436, reason: `x5u ${x5u} served an unreadable certificate: ${(err as Error).message}` };
    }
    for (const c of chain) {
      if (Date.parse(c.validFrom) > nowMs || Date.parse(c.validTo) < nowMs) return { ok: false, status: 437, reason: `certificate ${c.subject.replace(/\n/g, ', ')} is not valid now (${c.validFrom} - ${c.validTo})` };
    }
    for (let i = 0; i + 1 < chain.length; i++) {
      if (!chain[i]!.checkIssued(chain[i + 1]!) || !chain[i]!.verify(chain[i + 1]!.publicKey)) return { ok: false, status: 437, reason: `certificate ${i} of ${x5u} is not issued by the next one` };
    }
    const last = chain.at(-1)!;
    const anchored = this.#anchors.some((a) => last.fingerprint256 === a.fingerprint256 || (last.checkIssued(a) && last.verify(a.publicKey)));
    if (!anchored) return { ok: false, status: 437, reason: `the chain of ${x5u} does not end at a configured STI trust anchor (its last issuer: ${last.issuer.replace(/\n/g, ', ')})` };
    const key = chain[0]!.publicKey;
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') return { ok: false, status: 437, reason: 'the certificate key is not EC P-256 (ES256)' };
    return { ok: true, key, chain };
  }
}

/** The PEM certificate blocks of a text, in order. */
export function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}
