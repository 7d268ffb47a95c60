import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import type { CodecName, SourceConfig } from '../core/config.js';
import { VoxgateError } from '../core/errors.js';

/** Who is publishing: what a Bearer token resolves to. */
export interface SourceIdentity {
  name: string;
  kind: string;
  agent: SourceConfig['agent'];
  codecs: CodecName[];
  maxSessions: number | undefined;
  via: 'token' | 'jwt' | 'sip-digest' | 'sip-trunk';
  /** May place calls (`POST /api/calls`): only ever from `sources[].outbound` in the config, never from a JWT's claims. */
  outbound?: boolean;
}

const DEFAULT_CODECS: CodecName[] = ['opus'];
const CHALLENGE = 'Bearer realm="voxgate"';

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Reads a `Authorization: Bearer <token>` header (RFC 6750 §2.1). */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer\s+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(header);
  return m?.[1];
}

/**
 * What a 401 says when the header is there but not `Bearer <token>` (a player that sends the raw
 * key, `Basic`, `Token`): the fix is the scheme, not the key.
 */
export function notBearerDetail(authorization: string, what: string): string {
  const scheme = /^([A-Za-z][\w!#$%&'*+.^`|~-]*)\s+\S/.exec(authorization.trim())?.[1];
  if (scheme?.toLowerCase() === 'bearer') return `The ${what} after "Bearer " is not a token (RFC 6750: letters, digits and -._~+/, then any "=").`;
  return `The Authorization header must be "Bearer <${what}>" (RFC 6750); it has ${scheme ? `the "${scheme}" scheme` : 'no scheme'}: put "Bearer " before the token.`;
}

/** RFC 6750 §3: the challenge says what was wrong. */
function invalid(code: 'VG_AUTH_INVALID' | 'VG_AUTH_EXPIRED', description: string): VoxgateError {
  return new VoxgateError(code, description, {
    headers: { 'WWW-Authenticate': `${CHALLENGE}, error="invalid_token", error_description="${description.replace(/"/g, "'")}"` },
  });
}

export class SourceAuthenticator {
  readonly #sources: { digest: Buffer; identity: SourceIdentity }[];
  readonly #byName = new Map<string, SourceConfig>();

  constructor(
    sources: SourceConfig[],
    private readonly jwtSecret: string | undefined,
    private readonly clock: Clock,
  ) {
    this.#sources = sources.map((s) => ({ digest: sha256(s.token), identity: identityOf(s, 'token') }));
    for (const s of sources) this.#byName.set(s.name, s);
  }

  /** Resolves the Authorization header to a source, or throws a 401 VoxgateError. */
  authenticate(authorization: string | undefined): SourceIdentity {
    if (!authorization) {
      throw new VoxgateError('VG_AUTH_MISSING', 'Send "Authorization: Bearer <source token>".', {
        headers: { 'WWW-Authenticate': CHALLENGE },
      });
    }
    const token = bearerToken(authorization);
    if (!token) throw invalid('VG_AUTH_INVALID', notBearerDetail(authorization, 'source token'));
    if (this.jwtSecret && token.split('.').length === 3) return this.#verifyJwt(token, this.jwtSecret);
    // Compare against every configured token in constant time, with no early exit.
    const presented = sha256(token);
    let found: SourceIdentity | undefined;
    for (const s of this.#sources) {
      if (timingSafeEqual(s.digest, presented)) found = s.identity;
    }
    if (!found) throw invalid('VG_AUTH_INVALID', 'The token is not known.');
    return found;
  }

  #verifyJwt(token: string, secret: string): SourceIdentity {
    const [h, p, s] = token.split('.') as [string, string, string];
    const expected = createHmac('sha256', secret).update(`${h}.${p}`).digest();
    const given = Buffer.from(s, 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw invalid('VG_AUTH_INVALID', 'The token signature does not verify.');
    }
    let header: { alg?: unknown };
    let claims: { exp?: unknown; nbf?: unknown; sub?: unknown; kind?: unknown; codecs?: unknown; maxSessions?: unknown };
    try {
      header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as typeof header;
      claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as typeof claims;
    } catch {
      throw invalid('VG_AUTH_INVALID', 'The token is not a well-formed JWT.');
    }
    if (header.alg !== 'HS256') throw invalid('VG_AUTH_INVALID', 'Only HS256 tokens are accepted.');
    const now = this.clock.now() / 1000;
    if (typeof claims.exp !== 'number') throw invalid('VG_AUTH_INVALID', 'The token has no exp claim.');
    if (claims.exp <= now) throw invalid('VG_AUTH_EXPIRED', 'The token has expired.');
    if (typeof claims.nbf === 'number' && claims.nbf > now + 30) throw invalid('VG_AUTH_INVALID', 'The token is not valid yet.');
    if (typeof claims.sub !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(claims.sub)) {
      throw invalid('VG_AUTH_INVALID', 'The token needs a sub claim naming the source.');
    }
    const configured = this.#byName.get(claims.sub);
    if (configured) return { ...identityOf(configured, 'jwt') };
    const codecs = Array.isArray(claims.codecs)
      ? claims.codecs.filter((c): c is CodecName => c === 'opus' || c === 'pcmu' || c === 'pcma' || c === 'g722')
      : DEFAULT_CODECS;
    return {
      name: claims.sub,
      kind: typeof claims.kind === 'string' ? claims.kind : 'browser',
      agent: undefined,
      codecs: codecs.length ? codecs : DEFAULT_CODECS,
      maxSessions: typeof claims.maxSessions === 'number' ? claims.maxSessions : undefined,
      via: 'jwt',
    };
  }
}

function identityOf(s: SourceConfig, via: 'token' | 'jwt'): SourceIdentity {
  // Present only when granted, so an identity without it reads the same as before the field existed.
  return { name: s.name, kind: s.kind, agent: s.agent, codecs: s.codecs ?? DEFAULT_CODECS, maxSessions: s.maxSessions, via, ...(s.outbound ? { outbound: true } : {}) };
}

/** Signs an HS256 JWT; used by `voxgate token` and tests. */
export function signJwt(claims: Record<string, unknown>, secret: string): string {
  const h = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
  const p = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const s = createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url');
  return `${h}.${p}.${s}`;
}

/** Constant-time equality for secrets such as the admin token. */
export function secretEquals(a: string | undefined, b: string): boolean {
  if (a === undefined) return false;
  return timingSafeEqual(sha256(a), sha256(b));
}
