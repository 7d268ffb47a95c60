import { X509Certificate, type KeyObject } from 'node:crypto';
import { lookup as dnsLookup } from 'node:dns';
import { request } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/**
 * The STIR/SHAKEN certificates verifiers fetch (RFC 8224 §6.2.2, ATIS-1000074 §5.3.1): the
 * `x5u` fetched over HTTPS only, no redirects, bounded in size, time and number at once, never
 * to a private address unless asked; the chain it serves checked against the STI trust anchors,
 * which are kept apart from the web PKI the fetch itself trusts; the signer's key kept for
 * `ttlMs` (never past its certificates), and a failure for a short while (no hammering).
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
  /** Most keys remembered (default 1000, the oldest go first); failures are kept apart, at most 1000, for 30 s. */
  maxEntries?: number;
  /**
   * Whether an x5u may name, or resolve to, a loopback, private, link-local, CGNAT or unique-local
   * address (a lab on one machine). Default false: the x5u is chosen by whoever signed the call.
   */
  allowPrivateAddresses?: boolean;
  /** Fetches of different URLs at once (default 16); one more is refused at once (436), not queued. */
  maxInflight?: number;
}

/** `reason` is safe for the wire (the SIP reason phrase in enforce mode); `detail` is the whole story, for logs. */
export type CertificateFailure = { ok: false; status: 436 | 437; reason: string; detail: string };
export type CertificateResult = { ok: true; key: KeyObject; chain: X509Certificate[] } | CertificateFailure;

/**
 * What a refusal says to the carrier: fixed text, never the socket's or TLS's error, nor the URL,
 * so a signer cannot use our answers to scan the network behind us.
 */
const WIRE = {
  notUrl: 'the x5u is not a URL',
  notHttps: 'the x5u is not https',
  private: 'the x5u names a private address',
  busy: 'too many certificate fetches at once',
  unfetched: 'the x5u certificate could not be fetched',
  noPem: 'the x5u served no certificate',
  unreadable: 'the x5u served an unreadable certificate',
  notValidNow: 'a certificate in the chain is not valid now',
  broken: 'the certificate chain is broken',
  leafIsCa: "the signer's certificate is a CA",
  issuerNotCa: 'a certificate in the chain is not a CA',
  untrusted: 'the certificate chain does not end at a trusted STI root',
  noTnAuthList: "the signer's certificate has no TNAuthList",
  notP256: 'the certificate key is not EC P-256',
  unchecked: 'the certificate chain could not be checked',
} as const;

/** How long a URL that failed is not asked again, and how many such URLs are remembered. */
const FAILURE_TTL_MS = 30_000;
const MAX_FAILURES = 1000;
/** id-pe-TNAuthList (RFC 8226 §9), id-ce-basicConstraints (RFC 5280 §4.2.1.9). */
const TN_AUTH_LIST = '1.3.6.1.5.5.7.1.26';
const BASIC_CONSTRAINTS = '2.5.29.19';

const fail = (status: 436 | 437, reason: string, detail: string): CertificateFailure => ({ ok: false, status, reason, detail });

type Entry = { result: CertificateResult; until: number };

/** Sets an entry, the oldest going first beyond `max`. */
function remember(map: Map<string, Entry>, max: number, key: string, entry: Entry): void {
  map.set(key, entry);
  while (map.size > max) map.delete(map.keys().next().value!);
}

export class CertificateCache {
  readonly #anchors: X509Certificate[];
  readonly #keys = new Map<string, Entry>();
  /** Apart from #keys, so that a flood of bad URLs cannot push good keys out. */
  readonly #failures = new Map<string, Entry>();
  readonly #inflight = new Map<string, Promise<CertificateResult>>();
  readonly #now: () => number;
  /** Fetches made (tests and metrics: a cached key costs none). */
  fetches = 0;

  constructor(private readonly opts: CertificateCacheOptions) {
    this.#anchors = opts.trustAnchors.flatMap(splitPem).map((p) => new X509Certificate(p));
    this.#now = opts.now ?? (() => Date.now());
  }

  /** What is held now (metrics, and the tests of the bounds). */
  get sizes(): { keys: number; failures: number; inflight: number } {
    return { keys: this.#keys.size, failures: this.#failures.size, inflight: this.#inflight.size };
  }

  /** The signer's public key for an `x5u`, or why there is none (436: not fetched, 437: not trusted). */
  async keyFor(x5u: string): Promise<CertificateResult> {
    const hit = this.#keys.get(x5u) ?? this.#failures.get(x5u);
    if (hit && hit.until > this.#now()) return hit.result;
    const pending = this.#inflight.get(x5u);
    if (pending) return pending;
    // Not queued, and not remembered: calls naming many slow URLs must not hold up the others.
    const max = this.opts.maxInflight ?? 16;
    if (this.#inflight.size >= max) return fail(436, WIRE.busy, `${max} certificate fetches already in flight; ${x5u} was not fetched`);
    const p = this.#load(x5u).finally(() => this.#inflight.delete(x5u));
    this.#inflight.set(x5u, p);
    const result = await p;
    this.#remember(x5u, result);
    return result;
  }

  #remember(x5u: string, result: CertificateResult): void {
    this.#keys.delete(x5u);
    this.#failures.delete(x5u);
    const now = this.#now();
    if (!result.ok) return remember(this.#failures, MAX_FAILURES, x5u, { result, until: now + FAILURE_TTL_MS });
    // A key is not kept past the first end of validity in its chain, whatever the ttl.
    const until = Math.min(now + this.opts.ttlMs, ...result.chain.map((c) => Date.parse(c.validTo)));
    remember(this.#keys, this.opts.maxEntries ?? 1000, x5u, { result, until });
  }

  async #load(x5u: string): Promise<CertificateResult> {
    let url: URL;
    try {
      url = new URL(x5u);
    } catch {
      return fail(436, WIRE.notUrl, `x5u ${x5u} is not a URL`);
    }
    if (url.protocol !== 'https:') return fail(436, WIRE.notHttps, `x5u ${x5u} is not https: (RFC 8226 §9)`);
    // An IP literal is connected to without a lookup, so it is checked here; a name, in publicOnlyLookup.
    const literal = url.hostname.replace(/^\[(.*)\]$/, '$1');
    if (!this.opts.allowPrivateAddresses && isIP(literal) && isPrivateAddress(literal)) return fail(436, WIRE.private, `x5u ${x5u} names ${literal}, a private address (allowPrivateAddresses is off)`);
    let pem: string;
    try {
      this.fetches++;
      pem = await this.#fetch(url);
    } catch (err) {
      if (err instanceof PrivateAddressError) return fail(436, WIRE.private, `x5u ${x5u}: ${err.message}`);
      return fail(436, WIRE.unfetched, `x5u ${x5u} could not be fetched: ${(err as Error).message}`);
    }
    try {
      return this.checkChain(pem, x5u);
    } catch (err) {
      // Whatever the served bytes make the checks throw, it is a chain we do not trust.
      return fail(437, WIRE.unchecked, `the chain of ${x5u} could not be checked: ${(err as Error).message}`);
    }
  }

  #fetch(url: URL): Promise<string> {
    return new Promise((resolve, reject) => {
      const opts = {
        method: 'GET',
        timeout: this.opts.timeoutMs,
        // No pooled sockets: each fetch connects, and so looks up (and checks) its address.
        agent: false,
        ...(this.opts.allowPrivateAddresses ? {} : { lookup: publicOnlyLookup }),
        ...(this.opts.fetchCa ? { ca: [...this.opts.fetchCa] } : {}),
        headers: { Accept: 'application/pem-certificate-chain' },
      } as const;
      const req = request(url, opts, (res) => {
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
   * anchor, all valid at `nowMs` (default the cache's clock); every issuer a CA and the leaf not;
   * a TNAuthList and an EC P-256 key on the leaf. Public for `voxgate stir verify --cert` and for
   * checking a published vector on a fixed clock.
   */
  checkChain(pem: string, x5u: string, nowMs = this.#now()): CertificateResult {
    const blocks = splitPem(pem);
    if (blocks.length === 0) return fail(436, WIRE.noPem, `x5u ${x5u} served no PEM certificate`);
    let chain: X509Certificate[];
    try {
      chain = blocks.map((b) => new X509Certificate(b));
    } catch (err) {
      return fail(436, WIRE.unreadable, `x5u ${x5u} served an unreadable certificate: ${(err as Error).message}`);
    }
    const name = (c: X509Certificate) => c.subject.replace(/\n/g, ', ');
    for (const c of chain) {
      if (Date.parse(c.validFrom) > nowMs || Date.parse(c.validTo) < nowMs) return fail(437, WIRE.notValidNow, `certificate ${name(c)} of ${x5u} is not valid now (${c.validFrom} - ${c.validTo})`);
    }
    for (let i = 0; i + 1 < chain.length; i++) {
      if (!chain[i]!.checkIssued(chain[i + 1]!) || !chain[i]!.verify(chain[i + 1]!.publicKey)) return fail(437, WIRE.broken, `certificate ${i} of ${x5u} is not issued by the next one`);
    }
    // RFC 5280 §4.2.1.9, ATIS-1000080 §5: whoever issues is a CA (checkIssued looks at names and
    // keyUsage only, so an end entity without keyUsage would pass it); the STI-SP certificate is not.
    const leaf = chain[0]!;
    const extensions = certificateExtensions(leaf.raw);
    if (!extensions) return fail(437, WIRE.unchecked, `the signer's certificate ${name(leaf)} of ${x5u} has extensions we cannot read`);
    // Node's .ca is OpenSSL's X509_check_ca, false for cA TRUE when keyUsage lacks keyCertSign: read the extension too.
    const bc = extensions.find((e) => e.oid === BASIC_CONSTRAINTS);
    if (leaf.ca || (bc && basicConstraintsCa(bc.value))) return fail(437, WIRE.leafIsCa, `the signer's certificate ${name(leaf)} of ${x5u} is a CA; an STI-SP certificate is an end entity`);
    const issuer = chain.findIndex((c, i) => i > 0 && !c.ca);
    if (issuer > 0) return fail(437, WIRE.issuerNotCa, `certificate ${issuer} of ${x5u} (${name(chain[issuer]!)}) issued the one before it but is not a CA`);
    const last = chain.at(-1)!;
    const anchor = this.#anchors.find((a) => last.fingerprint256 === a.fingerprint256 || (last.checkIssued(a) && last.verify(a.publicKey)));
    if (!anchor) return fail(437, WIRE.untrusted, `the chain of ${x5u} does not end at a configured STI trust anchor (its last issuer: ${last.issuer.replace(/\n/g, ', ')})`);
    if (!anchor.ca) return fail(437, WIRE.issuerNotCa, `the trust anchor ${name(anchor)} that ends the chain of ${x5u} is not a CA`);
    // ATIS-1000080 §5, RFC 8226 §9: an STI certificate says which numbers it speaks for.
    // Deviation: its presence only; whether its SPC or TNs cover the call's orig is not checked.
    if (!extensions.some((e) => e.oid === TN_AUTH_LIST)) return fail(437, WIRE.noTnAuthList, `the signer's certificate ${name(leaf)} of ${x5u} has no TNAuthList extension (${TN_AUTH_LIST})`);
    const key = leaf.publicKey;
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') return fail(437, WIRE.notP256, `the certificate key of ${x5u} is not EC P-256 (ES256)`);
    return { ok: true, key, chain };
  }
}

/** The PEM certificate blocks of a text, in order. */
export function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/**
 * Addresses an x5u may not make us reach (RFC 6890): this network and unspecified, RFC 1918,
 * CGNAT (RFC 6598), loopback, link-local; IPv6 unspecified, loopback and the old IPv4-compatible
 * form (::/96), unique-local (RFC 4193), link-local. BlockList matches IPv4-mapped IPv6
 * (::ffff:10.0.0.1) against the IPv4 ranges.
 */
const PRIVATE_RANGES = new BlockList();
for (const [net, bits] of [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.168.0.0', 16]] as const) PRIVATE_RANGES.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [['::', 96], ['fc00::', 7], ['fe80::', 10]] as const) PRIVATE_RANGES.addSubnet(net, bits, 'ipv6');

/** Whether an address is one an x5u must not reach; what is not an address at all counts as one. */
export function isPrivateAddress(ip: string): boolean {
  const family = isIP(ip);
  return family === 0 || PRIVATE_RANGES.check(ip, family === 6 ? 'ipv6' : 'ipv4');
}

class PrivateAddressError extends Error {}

/**
 * dns.lookup that refuses a name with any private address. The connection uses the address
 * checked here, so a name cannot resolve one way for a check and another to connect (DNS rebinding).
 */
const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, '');
    const bad = addresses.find((a) => isPrivateAddress(a.address));
    if (bad || !addresses[0]) return callback(new PrivateAddressError(`${hostname} resolves to ${bad?.address ?? 'nothing'}, a private address (allowPrivateAddresses is off)`), '');
    if (options.all) callback(null, addresses);
    else callback(null, addresses[0].address, addresses[0].family);
  });
};

/**
 * A certificate's extensions, from its DER (RFC 5280 §4.1): Certificate ::= SEQUENCE {
 * tbsCertificate, signatureAlgorithm, signatureValue }; TBSCertificate ::= SEQUENCE { [0] version,
 * serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, [1] issuerUniqueID,
 * [2] subjectUniqueID, [3] EXPLICIT Extensions }; Extensions ::= SEQUENCE OF Extension ::=
 * SEQUENCE { extnID OBJECT IDENTIFIER, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }.
 * Walked, not searched: an OID inside another field or another extension's value is not one.
 * undefined when the DER is not that shape.
 */
export function certificateExtensions(der: Buffer): { oid: string; value: Buffer }[] | undefined {
  const cert = tlv(der, 0, der.length);
  const tbs = cert?.tag === 0x30 ? tlv(der, cert.start, cert.end) : undefined;
  const fields = tbs?.tag === 0x30 ? children(der, tbs) : undefined;
  if (!fields) return undefined;
  const explicit = fields.find((f) => f.tag === 0xa3);
  if (!explicit) return [];
  const [extensions, ...extra] = children(der, explicit) ?? [];
  const list = extensions?.tag === 0x30 && extra.length === 0 ? children(der, extensions) : undefined;
  const out: { oid: string; value: Buffer }[] = [];
  for (const ext of list ?? []) {
    const parts = (ext.tag === 0x30 && children(der, ext)) || [];
    const [id, value] = [parts[0], parts.at(-1)];
    const critical = parts.length === 2 || (parts.length === 3 && parts[1]!.tag === 0x01);
    if (id?.tag !== 0x06 || value?.tag !== 0x04 || !critical) return undefined;
    out.push({ oid: oidText(der.subarray(id.start, id.end)), value: der.subarray(value.start, value.end) });
  }
  return list ? out : undefined;
}

/** Whether a basicConstraints value (RFC 5280 §4.2.1.9: SEQUENCE { cA BOOLEAN DEFAULT FALSE, ... }) says cA TRUE. */
function basicConstraintsCa(value: Buffer): boolean {
  const seq = tlv(value, 0, value.length);
  const first = seq?.tag === 0x30 ? tlv(value, seq.start, seq.end) : undefined;
  return first?.tag === 0x01 && first.end > first.start && value[first.start] !== 0;
}

type Tlv = { tag: number; start: number; end: number };

/** The DER TLV at `at` (X.690 §8.1, §10.1): its tag and where its content starts and ends; undefined if malformed or past `limit`. */
function tlv(der: Buffer, at: number, limit: number): Tlv | undefined {
  if (at + 2 > limit) return undefined;
  const tag = der[at]!;
  let len = der[at + 1]!;
  let start = at + 2;
  // High tag numbers do not occur in these structures; indefinite lengths are not DER.
  if ((tag & 0x1f) === 0x1f || len === 0x80) return undefined;
  if (len > 0x80) {
    const n = len & 0x7f;
    if (n > 4 || start + n > limit) return undefined;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[start + i]!;
    start += n;
  }
  return start + len <= limit ? { tag, start, end: start + len } : undefined;
}

/** The TLVs inside a constructed one, or undefined if they do not exactly fill it. */
function children(der: Buffer, outer: Tlv): Tlv[] | undefined {
  const out: Tlv[] = [];
  for (let at = outer.start; at < outer.end; ) {
    const t = tlv(der, at, outer.end);
    if (!t) return undefined;
    out.push(t);
    at = t.end;
  }
  return out;
}

/** An OBJECT IDENTIFIER's content as dotted text (X.690 §8.19: base-128 arcs, the first two as 40·X + Y). */
function oidText(content: Buffer): string {
  const arcs: number[] = [];
  let v = 0;
  for (const byte of content) {
    v = v * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      arcs.push(v);
      v = 0;
    }
  }
  const first = arcs.shift() ?? 0;
  return [first < 80 ? Math.floor(first / 40) : 2, first < 80 ? first % 40 : first - 80, ...arcs].join('.');
}
