import { randomBytes, randomFillSync } from 'node:crypto';

/** 128 bits of randomness, URL-safe: session ids are unguessable (RFC 9725 §5) and carry nothing secret. */
export function newSessionId(): string {
  return randomBytes(16).toString('base64url');
}

/** A strong entity-tag (RFC 9110 §8.8.3), quoted. */
export function newEtag(): string {
  return `"${randomBytes(12).toString('base64url')}"`;
}

export function newToken(): string {
  return randomBytes(24).toString('base64url');
}

/**
 * Random bytes from a pool refilled 4 KiB at a time: SIP mints a tag, a branch or a nonce
 * per message, and one getrandom() per message showed up in the profile.
 */
const POOL = Buffer.alloc(4096);
let poolAt = POOL.length;

/** n random bytes from the pool, as hex or base64url text (no Buffer made on the way). */
export function pooledRandom(n: number, encoding: 'hex' | 'base64url'): string {
  if (poolAt + n > POOL.length) {
    randomFillSync(POOL);
    poolAt = 0;
  }
  const out = POOL.toString(encoding, poolAt, poolAt + n);
  poolAt += n;
  return out;
}
