import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { pooledRandom } from '../core/ids.js';
import { splitList, unquote } from './grammar.js';

/**
 * HTTP digest for SIP (RFC 3261 §22.4, RFC 8760): qop=auth with SHA-256 and MD5. JsSIP and
 * SIP.js understand only MD5 and keep only the last WWW-Authenticate header, so MD5 is
 * offered last. Nonces are self-validating (a timestamp and an HMAC), so any node can check
 * them; an expired one is answered with `stale=true` and the client retries silently.
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
  return createHash(HASH[algorithm]).update(text).digest('hex');
}

/** `Digest a="b", c=d` auth-params, names lower-cased, quoted values unquoted. */
export function parseAuthParams(value: string): Map<string, string> | undefined {
  const m = /^\s*Digest\s+(.*)$/is.exec(value);
  if (!m) return undefined;
  const params = new Map<string, string>();
  for (const part of splitList(m[1]!)) {
    const eq = part.indexOf('=');
    if (eq <= 0) return undefined;
    const name = part.slice(0, eq).trim().toLowerCase();
    let v = part.slice(eq + 1).trim();
    try {
      if (v.startsWith('"')) v = unquote(v);
    } catch {
      return undefined;
    }
    params.set(name, v);
  }
  return params;
}

export class DigestAuthenticator {
  readonly #secret = randomBytes(32);
  /** Each user's HA1 per algorithm, hashed once from a password or taken as configured. */
  readonly #ha1s: Map<string, Partial<Record<DigestAlgorithm, string>>>;
  /** Highest nonce-count seen per nonce (replay protection), bounded. */
  readonly #nc = new Map<string, number>();

  constructor(
    readonly realm: string,
    users: DigestUser[],
    private readonly now: () => number,
    private readonly nonceTtlMs = 300_000,
  ) {
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
    const age = this.#nonceAge(nonce);
    if (age === undefined) return { ok: false, stale: false, user, reason: 'nonce was not issued here' };
    const record = this.#ha1s.get(user);
    if (!record) return { ok: false, stale: false, user, reason: 'unknown user' };
    const ha1 = record[algorithm];
    if (!ha1) return { ok: false, stale: false, user, reason: `no ${algorithm} credentials for this user` };
    const qop = p.get('qop');
    const ha2 = digestHash(algorithm, `${method}:${p.get('uri') ?? ''}`);
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
    const got = Buffer.from((p.get('response') ?? '').toLowerCase());
    if (got.length !== expected.length || !timingSafeEqual(got, Buffer.from(expected))) {
      return { ok: false, stale: false, user, reason: 'wrong password' };
    }
    // Right password on an old nonce: ask again with stale=true (the client retries silently).
    if (age > this.nonceTtlMs) return { ok: false, stale: true, user, reason: 'stale nonce' };
    if (qop === 'auth' && !this.#freshCount(nonce, parseInt(p.get('nc')!, 16))) return { ok: false, stale: true, user, reason: 'replayed nonce count' };
    return { ok: true, user, algorithm };
  }

  #nonce(): string {
    const body = Buffer.alloc(16);
    body.writeBigUInt64BE(BigInt(Math.floor(this.now())), 0);
    pooledRandom(8).copy(body, 8);
    const mac = createHmac('sha256', this.#secret).update(body).digest().subarray(0, 16);
    return Buffer.concat([body, mac]).toString('base64url');
  }

  /** ms since the nonce was issued, or undefined when it is not one of ours. */
  #nonceAge(nonce: string): number | undefined {
    const raw = Buffer.from(nonce, 'base64url');
    if (raw.length !== 32) return undefined;
    const mac = createHmac('sha256', this.#secret).update(raw.subarray(0, 16)).digest().subarray(0, 16);
    if (!timingSafeEqual(mac, raw.subarray(16))) return undefined;
    return this.now() - Number(raw.readBigUInt64BE(0));
  }

  #freshCount(nonce: string, nc: number): boolean {
    const last = this.#nc.get(nonce) ?? 0;
    if (nc <= last) return false;
    this.#nc.delete(nonce);
    this.#nc.set(nonce, nc);
    if (this.#nc.size > 100_000) this.#nc.delete(this.#nc.keys().next().value!);
    return true;
  }
}
