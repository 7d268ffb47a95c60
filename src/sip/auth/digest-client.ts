import { hash, randomBytes } from 'node:crypto';
import { digestHash, parseAuthParams, type DigestAlgorithm } from './digest.js';

/**
 * The UAC half of SIP digest (RFC 3261 §22.2-22.4, RFC 7616, RFC 8760): answers one 401/407
 * with an Authorization / Proxy-Authorization value, counts each nonce's uses, and tells a
 * re-challenge worth answering from one that means the credentials are wrong.
 *
 * Supported: MD5 and SHA-256, qop=auth, qop=auth-int (only when auth is not offered) and the
 * RFC 2069 form without qop. Not supported, so skipped like any unknown algorithm: the `-sess`
 * variants, SHA-512-256, `userhash` and `username*`.
 */
export interface DigestCredentials {
  username: string;
  password?: string | undefined;
  /** MD5(username:realm:password): it answers challenges for that one realm only. */
  ha1?: string | undefined;
  /** SHA-256(username:realm:password), likewise for one realm. */
  ha1Sha256?: string | undefined;
}

export interface DigestRequest {
  method: string;
  /** The Request-URI, which is also the digest-uri (RFC 3261 §22.4). */
  uri: string;
  /** Needed for qop=auth-int only; the exact bytes sent (a string is sent as UTF-8). */
  body?: Buffer | string | undefined;
}

export interface DigestAnswer {
  /** Authorization value for a 401, Proxy-Authorization for a 407 (RFC 3261 §22.2, §22.3). */
  value: string;
  algorithm: DigestAlgorithm;
  realm: string;
  /** The challenge answered said stale=true: same credentials, new nonce (RFC 7616 §3.3). */
  stale: boolean;
}

interface Challenge {
  algorithm: DigestAlgorithm;
  realm: string;
  nonce: string;
  opaque: string | undefined;
  qop: 'auth' | 'auth-int' | undefined;
  stale: boolean;
}

interface NonceUse {
  /** Answers given with this nonce so far: the last nc sent (RFC 7616 §3.4). */
  nc: number;
  /** The nonce came in a stale=true challenge (see shouldRetry). */
  stale: boolean;
}

/**
 * (realm, nonce) pairs whose count is kept; past that the least recently answered is
 * forgotten. A forgotten nonce answered again starts over at nc=1, which a server refuses as
 * a replay (ours with stale=true), so forgetting costs one round trip, never a lock-out.
 */
const MAX_NONCES = 64;

/**
 * Strongest first. RFC 8760 §2 has the UAC take the topmost header it supports unless local
 * policy says otherwise; ours is strength, so a proxy that lists MD5 first cannot downgrade us.
 */
const PREFERENCE: readonly DigestAlgorithm[] = ['SHA-256', 'MD5'];

// Characters a quoted-string cannot carry (RFC 3261 §25.1): echoing one would break the header.
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
const HEX = { MD5: /^[0-9a-f]{32}$/i, 'SHA-256': /^[0-9a-f]{64}$/i } as const;

// RFC 3261 §25.1: inside a quoted-string, " and \ travel as quoted-pairs.
const quote = (s: string): string => `"${s.replace(/["\\]/g, '\\$&')}"`;
const nonceKey = (realm: string, nonce: string): string => `${realm}\n${nonce}`;

export class DigestClient {
  readonly #credentials: DigestCredentials;
  readonly #cnonce: () => string;
  /** Insertion order is use order: the first key is the least recently answered. */
  readonly #nonces = new Map<string, NonceUse>();

  constructor(credentials: DigestCredentials, cnonce: () => string = () => randomBytes(16).toString('hex')) {
    const { username, password, ha1, ha1Sha256 } = credentials;
    if (CONTROL.test(username)) throw new Error('DigestClient: the username contains a control character');
    if (password === undefined && ha1 === undefined && ha1Sha256 === undefined) {
      throw new Error('DigestClient needs a password, an ha1 (MD5) or an ha1Sha256');
    }
    if (ha1 !== undefined && !HEX.MD5.test(ha1)) throw new Error('DigestClient: ha1 must be 32 hex digits (MD5)');
    if (ha1Sha256 !== undefined && !HEX['SHA-256'].test(ha1Sha256)) throw new Error('DigestClient: ha1Sha256 must be 64 hex digits');
    this.#credentials = { ...credentials };
    this.#cnonce = cnonce;
  }

  /**
   * The credentials for the strongest challenge we can answer among every WWW-Authenticate
   * (or Proxy-Authenticate) value of one response; undefined when none is usable.
   * Deviation: RFC 3261 §22.3 asks for credentials for each realm of a forked 407; this
   * answers one realm (a client holds one set of credentials), the first of the strongest.
   */
  answer(challenges: readonly string[], request: DigestRequest): DigestAnswer | undefined {
    const c = this.#choose(challenges);
    if (!c) return undefined;
    const H = (text: string) => digestHash(c.algorithm, text);
    const ha1 = this.#ha1(c.algorithm, c.realm);
    // RFC 7616 §3.4.3: A2 is method:uri, and with auth-int also H(entity-body), over its bytes.
    const a2 = c.qop === 'auth-int' ? `${request.method}:${request.uri}:${bodyHash(c.algorithm, request.body)}` : `${request.method}:${request.uri}`;
    const nc = this.#count(c);
    const parts = [`Digest username=${quote(this.#credentials.username)}`, `realm=${quote(c.realm)}`, `nonce=${quote(c.nonce)}`, `uri=${quote(request.uri)}`];
    if (c.qop !== undefined) {
      // RFC 7616 §3.4.1: response = H(HA1:nonce:nc:cnonce:qop:HA2), nc as 8 hex digits.
      const ncHex = nc.toString(16).padStart(8, '0');
      const cnonce = this.#cnonce();
      const response = H(`${ha1}:${c.nonce}:${ncHex}:${cnonce}:${c.qop}:${H(a2)}`);
      parts.push(`response="${response}"`, `algorithm=${c.algorithm}`, `cnonce=${quote(cnonce)}`, `nc=${ncHex}`, `qop=${c.qop}`);
    } else {
      // RFC 2617 §3.2.2.1 / RFC 3261 §22.4: without qop (RFC 2069), H(HA1:nonce:HA2) and no cnonce or nc.
      parts.push(`response="${H(`${ha1}:${c.nonce}:${H(a2)}`)}"`, `algorithm=${c.algorithm}`);
    }
    // RFC 7616 §3.3: opaque goes back unchanged.
    if (c.opaque !== undefined) parts.push(`opaque=${quote(c.opaque)}`);
    return { value: parts.join(', '), algorithm: c.algorithm, realm: c.realm, stale: c.stale };
  }

  /**
   * Whether to answer this 401/407 at all, given `sent`: the Authorization (for a 401) or
   * Proxy-Authorization (for a 407) value the challenged request carried, undefined if none.
   * It is required so that forgetting it cannot silently mean "retry forever".
   *
   * The rule, for the challenge `answer` would pick:
   * - none usable: false (nothing we could send would do better);
   * - `sent` carried no credentials for that realm, or ones we no longer remember: true;
   * - `sent` reused a nonce (nc > 1, a pre-emptive answer): true, the server let it go;
   * - `sent` was our first answer to that nonce: true only if the new challenge is stale=true
   *   and that nonce did not itself come stale; otherwise the credentials are wrong (RFC 7616
   *   §3.3: without stale=true the username or password is invalid), or the server keeps
   *   saying stale, and either way retrying would loop.
   * Each retry is an nc=1 answer, so a UA following this stops after at most two retries.
   */
  shouldRetry(challenges: readonly string[], sent: string | undefined): boolean {
    const c = this.#choose(challenges);
    if (!c) return false;
    const p = sent === undefined ? undefined : parseAuthParams(sent);
    if (!p || p.get('realm') !== c.realm) return true;
    const use = this.#nonces.get(nonceKey(c.realm, p.get('nonce') ?? ''));
    if (!use) return true;
    const nc = p.get('nc');
    const uses = nc === undefined ? use.nc : parseInt(nc, 16);
    if (uses > 1) return true;
    return c.stale && !use.stale;
  }

  #choose(challenges: readonly string[]): Challenge | undefined {
    let best: Challenge | undefined;
    for (const value of challenges) {
      const c = parseChallenge(value);
      if (!c || !this.#hasSecret(c.algorithm)) continue;
      if (!best || PREFERENCE.indexOf(c.algorithm) < PREFERENCE.indexOf(best.algorithm)) best = c;
    }
    return best;
  }

  #hasSecret(algorithm: DigestAlgorithm): boolean {
    const { password, ha1, ha1Sha256 } = this.#credentials;
    return password !== undefined || (algorithm === 'MD5' ? ha1 : ha1Sha256) !== undefined;
  }

  /** RFC 7616 §3.4.2: HA1 = H(username:realm:password); a password wins over a stored HA1. */
  #ha1(algorithm: DigestAlgorithm, realm: string): string {
    const { username, password, ha1, ha1Sha256 } = this.#credentials;
    if (password !== undefined) return digestHash(algorithm, `${username}:${realm}:${password}`);
    return ((algorithm === 'MD5' ? ha1 : ha1Sha256) ?? '').toLowerCase();
  }

  /** RFC 7616 §3.4: the nc of this answer, 1 for a new nonce, one more on each reuse. */
  #count(c: Challenge): number {
    const key = nonceKey(c.realm, c.nonce);
    const before = this.#nonces.get(key);
    const use: NonceUse = { nc: (before?.nc ?? 0) + 1, stale: before?.stale ?? c.stale };
    this.#nonces.delete(key);
    this.#nonces.set(key, use);
    if (this.#nonces.size > MAX_NONCES) this.#nonces.delete(this.#nonces.keys().next().value as string);
    return use.nc;
  }
}

/** One Digest challenge we can answer, or undefined (another scheme, algorithm or qop). */
function parseChallenge(value: string): Challenge | undefined {
  const p = parseAuthParams(value);
  if (!p) return undefined;
  // RFC 7616 §3.3: no algorithm means MD5; "MD5-sess", "SHA-512-256" and the rest are skipped.
  const named = (p.get('algorithm') ?? 'MD5').toUpperCase();
  const algorithm = PREFERENCE.find((a) => a === named);
  const realm = p.get('realm');
  const nonce = p.get('nonce');
  const opaque = p.get('opaque');
  if (!algorithm || realm === undefined || !nonce) return undefined;
  if (CONTROL.test(realm) || CONTROL.test(nonce) || (opaque !== undefined && CONTROL.test(opaque))) return undefined;
  let qop: Challenge['qop'];
  const offered = p.get('qop');
  if (offered !== undefined) {
    // RFC 7616 §3.3: a list of tokens. auth when offered: it is what every server checks.
    const tokens = offered.split(',').map((t) => t.trim().toLowerCase());
    qop = tokens.includes('auth') ? 'auth' : tokens.includes('auth-int') ? 'auth-int' : undefined;
    if (qop === undefined) return undefined;
  }
  return { algorithm, realm, nonce, opaque, qop, stale: p.get('stale')?.toLowerCase() === 'true' };
}

/** H(entity-body) for auth-int: the bytes on the wire, none for a request without a body. */
function bodyHash(algorithm: DigestAlgorithm, body: Buffer | string | undefined): string {
  if (body === undefined || typeof body === 'string') return digestHash(algorithm, body ?? '');
  return hash(algorithm === 'MD5' ? 'md5' : 'sha256', body, 'hex');
}
