import { createHmac, hash, randomBytes, timingSafeEqual } from 'node:crypto';
import { pooledRandom } from '../../core/ids.js';

/**
 * HTTP digest for SIP (RFC 3261 §22.4, RFC 8760): qop=auth with SHA-256 and MD5. JsSIP and
 * SIP.js understand only MD5 and keep only the last WWW-Authenticate header, so MD5 is
 * offered last. Nonces are 128 random bits kept in a table with their issue time and the
 * highest nonce-count used (as Kamailio's auth module keeps them): checking one is a lookup,
 * not a MAC. An expired nonce is answered with `stale=true` and the client retries silently.
 *
 * In a fleet the answer may reach another node (a phone behind a load balancer, a trunk's
 * carrier retrying elsewhere): each nonce also carries its issue time and a MAC under a secret
 * the nodes share (as Kamailio's auth module does with one `secret` on every server), so any
 * node can check one it did not issue and then counts its nonce-counts from there. Deviation:
 * replay protection is per node (the same nonce-count could be used once on each node within
 * the nonce's lifetime); a shared counter would cost a KV round trip per request.
 */
export type DigestAlgorithm = 'MD5' | 'SHA-256';

export interface DigestUser {
  user: string;
  password?: string | undefined;
  /** MD5(user:realm:password), for deployments that do not keep passwords. */
  ha1?: string | undefined;
  /** SHA-256(user:realm:password). */
  ha1Sha256?: string | undefined;
}

export type DigestOutcome =
  | { ok: true; user: string; algorithm: DigestAlgorithm }
  | { ok: false; stale: boolean; user: string | undefined; reason: string };

const HASH: Record<DigestAlgorithm, string> = { MD5: 'md5', 'SHA-256': 'sha256' };

export function digestHash(algorithm: DigestAlgorithm, text: string): string {
  // One-shot crypto.hash (Node >= 20.12): half the cost of a Hash object for a short input.
  return hash(HASH[algorithm], text, 'hex');
}

const DIGEST_SCHEME = /^\s*Digest\s+/i;
const PARAM_NAME = /^[A-Za-z0-9\-.!%*_+`'~]+$/;

const isSpace = (c: number) => c === 0x20 || c === 0x09;

/**
 * `Digest a="b", c=d` auth-params (RFC 7235 §2.1), names lower-cased, quoted values unquoted;
 * undefined when it is not Digest or does not parse. One pass: every REGISTER and INVITE
 * carries one.
 */
export function parseAuthParams(value: string): Map<string, string> | undefined {
  const scheme = DIGEST_SCHEME.exec(value);
  if (!scheme) return undefined;
  const params = new Map<string, string>();
  const n = value.length;
  let i = scheme[0].length;
  while (i < n) {
    const c = value.charCodeAt(i);
    if (isSpace(c) || c === 0x2c) {
      i++;
      continue;
    }
    const eq = value.indexOf('=', i);
    if (eq < 0) return undefined;
    const name = value.slice(i, eq).trim();
    if (!PARAM_NAME.test(name)) return undefined;
    i = eq + 1;
    while (i < n && isSpace(value.charCodeAt(i))) i++;
    let v: string;
    if (value.charCodeAt(i) === 0x22) {
      // quoted-string: \x is x; the closing quote must be followed by a comma or the end.
      let from = ++i;
      v = '';
      for (;;) {
        if (i >= n) return undefined;
        const q = value.charCodeAt(i);
        if (q === 0x22) break;
        if (q === 0x5c) {
          v += value.slice(from, i);
          from = ++i;
        }
        i++;
      }
      v += value.slice(from, i);
      i++;
      while (i < n && isSpace(value.charCodeAt(i))) i++;
      if (i < n && value.charCodeAt(i) !== 0x2c) return undefined;
    } else {
      const comma = value.indexOf(',', i);
      const end = comma < 0 ? n : comma;
      v = value.slice(i, end).trim();
      i = end;
    }
    params.set(name.toLowerCase(), v);
  }
  return params;
}

/**
 * A digest response against the expected lower-case hex, case-insensitively, in time that
 * depends only on the length (the length of a hash is no secret).
 */
function sameHex(got: string, expected: string): boolean {
  if (got.length !== expected.length) return false;
  let diff = 0;
  for (let i = 0; i < got.length; i++) {
    const c = got.charCodeAt(i);
    // A-F as a-f; nothing else changes.
    diff |= (c >= 0x41 && c <= 0x46 ? c | 0x20 : c) ^ expected.charCodeAt(i);
  }
  return diff === 0;
}

interface IssuedNonce {
  issuedAt: number;
  /** Highest nonce-count used with it (replay protection). */
  nc: number;
}

/** Nonces remembered at most; the oldest go first (a flood of challenges cannot grow memory). */
const MAX_NONCES = 100_000;

export class DigestAuthenticator {
  /** Each user's HA1 per algorithm, hashed once from a password or taken as configured. */
  readonly #ha1s: Map<string, Partial<Record<DigestAlgorithm, string>>>;
  /**
   * Issued nonces. One is kept for two lifetimes, so a client answering with an expired nonce
   * hears `stale=true` rather than a plain 401.
   */
  readonly #nonces = new Map<string, IssuedNonce>();
  /** The same nonces in issue order, from #head on. */
  #order: string[] = [];
  #head = 0;
  readonly #ha2s = new Map<string, string>();

  readonly #secret: Buffer;

  constructor(
    readonly realm: string,
    users: DigestUser[],
    private readonly now: () => number,
    private readonly nonceTtlMs = 300_000,
    /** Shared by the nodes of a fleet; without it, this process's own. */
    secret: Buffer = randomBytes(32),
  ) {
    this.#secret = secret;
    this.#ha1s = new Map(
      users.map((u) => {
        const fromPassword = (alg: DigestAlgorithm) => (u.password === undefined ? undefined : digestHash(alg, `${u.user}:${realm}:${u.password}`));
        return [u.user, { MD5: fromPassword('MD5') ?? u.ha1, 'SHA-256': fromPassword('SHA-256') ?? u.ha1Sha256 }];
      }),
    );
  }

  hasUser(user: string): boolean {
    return this.#ha1s.has(user);
  }

  /** WWW-Authenticate values, SHA-256 first and MD5 last (RFC 8760 §2.4 and the clients' habit). */
  challenges(stale = false): string[] {
    const nonce = this.#nonce();
    const tail = `, qop="auth"${stale ? ', stale=true' : ''}`;
    return (['SHA-256', 'MD5'] as const).map((alg) => `Digest realm="${this.realm}", nonce="${nonce}", algorithm=${alg}${tail}`);
  }

  verify(authorization: string | undefined, method: string): DigestOutcome {
    if (!authorization) return { ok: false, stale: false, user: undefined, reason: 'no credentials' };
    const p = parseAuthParams(authorization);
    if (!p) return { ok: false, stale: false, user: undefined, reason: 'malformed Authorization header' };
    const user = p.get('username');
    const algorithm = (p.get('algorithm') ?? 'MD5').toUpperCase() as DigestAlgorithm;
    if (!user) return { ok: false, stale: false, user, reason: 'no username' };
    if (!(algorithm in HASH)) return { ok: false, stale: false, user, reason: `algorithm ${algorithm} is not offered` };
    if (p.get('realm') !== this.realm) return { ok: false, stale: false, user, reason: `realm ${JSON.stringify(p.get('realm'))} is not ours` };
    const nonce = p.get('nonce') ?? '';
    const issued = this.#nonces.get(nonce) ?? this.#adopt(nonce);
    if (issued === undefined) return { ok: false, stale: false, user, reason: 'nonce was not issued here' };
    const record = this.#ha1s.get(user);
    if (!record) return { ok: false, stale: false, user, reason: 'unknown user' };
    const ha1 = record[algorithm];
    if (!ha1) return { ok: false, stale: false, user, reason: `no ${algorithm} credentials for this user` };
    const qop = p.get('qop');
    const ha2 = this.#ha2(algorithm, method, p.get('uri') ?? '');
    let expected: string;
    if (qop === 'auth') {
      const nc = p.get('nc') ?? '';
      const cnonce = p.get('cnonce') ?? '';
      if (!/^[0-9a-fA-F]{8}$/.test(nc) || !cnonce) return { ok: false, stale: false, user, reason: 'qop=auth needs nc and cnonce' };
      expected = digestHash(algorithm, `${ha1}:${nonce}:${nc}:${cnonce}:auth:${ha2}`);
    } else if (qop === undefined) {
      expected = digestHash(algorithm, `${ha1}:${nonce}:${ha2}`);
    } else {
      return { ok: false, stale: false, user, reason: `qop ${qop} is not offered` };
    }
    if (!sameHex(p.get('response') ?? '', expected)) {
      return { ok: false, stale: false, user, reason: 'wrong password' };
    }
    // Right password on an old nonce: ask again with stale=true (the client retries silently).
    if (this.now() - issued.issuedAt > this.nonceTtlMs) return { ok: false, stale: true, user, reason: 'stale nonce' };
    if (qop === 'auth') {
      const nc = parseInt(p.get('nc')!, 16);
      if (nc <= issued.nc) return { ok: false, stale: true, user, reason: 'replayed nonce count' };
      issued.nc = nc;
    }
    return { ok: true, user, algorithm };
  }

  /** H(method:uri): a client sends the same few (REGISTER sip:domain) over and over. */
  #ha2(algorithm: DigestAlgorithm, method: string, uri: string): string {
    // A long URI is hashed, not kept: 1,024 of them, each as long as a message, would be
    // megabytes held for anyone who has asked for a nonce.
    if (uri.length > 256) return digestHash(algorithm, `${method}:${uri}`);
    const key = `${algorithm} ${method} ${uri}`;
    let ha2 = this.#ha2s.get(key);
    if (ha2 === undefined) {
      ha2 = digestHash(algorithm, `${method}:${uri}`);
      if (this.#ha2s.size >= 1024) this.#ha2s.clear();
      this.#ha2s.set(key, ha2);
    }
    return ha2;
  }

  #nonce(): string {
    const now = this.now();
    // Forget what has passed two lifetimes, and the oldest beyond the cap. The issue order is
    // kept in a queue: deleting a Map's first entries over and over leaves holes that every
    // later iteration from the start walks over.
    while (this.#head < this.#order.length) {
      const old = this.#order[this.#head]!;
      const issued = this.#nonces.get(old);
      if (issued !== undefined && now - issued.issuedAt <= 2 * this.nonceTtlMs && this.#nonces.size < MAX_NONCES) break;
      this.#nonces.delete(old);
      this.#head++;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#order.length) {
      this.#order = this.#order.slice(this.#head);
      this.#head = 0;
    }
    const body = Buffer.alloc(16);
    body.writeUIntBE(now, 0, 6);
    Buffer.from(pooledRandom(10, 'hex'), 'hex').copy(body, 6);
    const nonce = Buffer.concat([body, this.#mac(body)]).toString('base64url');
    this.#remember(nonce, now);
    return nonce;
  }

  #remember(nonce: string, issuedAt: number): IssuedNonce {
    const issued = { issuedAt, nc: 0 };
    this.#nonces.set(nonce, issued);
    this.#order.push(nonce);
    return issued;
  }

  #mac(body: Buffer): Buffer {
    return createHmac('sha256', this.#secret).update(body).digest().subarray(0, 16);
  }

  /** A nonce another node of the fleet issued (its MAC ours, within two lifetimes): counted from here on. */
  #adopt(nonce: string): IssuedNonce | undefined {
    if (nonce.length !== 43) return undefined;
    const raw = Buffer.from(nonce, 'base64url');
    if (raw.length !== 32 || !timingSafeEqual(this.#mac(raw.subarray(0, 16)), raw.subarray(16))) return undefined;
    const issuedAt = raw.readUIntBE(0, 6);
    const age = this.now() - issuedAt;
    if (age > 2 * this.nonceTtlMs || age < -this.nonceTtlMs || this.#nonces.size >= MAX_NONCES) return undefined;
    return this.#remember(nonce, issuedAt);
  }
}
