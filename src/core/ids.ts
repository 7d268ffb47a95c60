import { randomBytes } from 'node:crypto';

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
