import { randomUUID, type KeyObject } from 'node:crypto';
import { CompactSign, compactVerify, decodeProtectedHeader } from 'jose';

/**
 * STIR/SHAKEN PASSporTs (RFC 8225, RFC 8588) and the SIP Identity header that carries them
 * (RFC 8224): signing in canonical form with ES256, parsing, and the checks a verifier makes
 * once it has the signer's public key (the certificate fetch and chain are another step).
 * Checklist: ../../../../shared/specs/stir-shaken.md (S1-S7, S9, S10).
 */

export type Attestation = 'A' | 'B' | 'C';

export interface PassportClaims {
  attest: Attestation;
  dest: { tn: string[] };
  /** Seconds since the epoch. */
  iat: number;
  orig: { tn: string };
  origid: string;
}

/** RFC 8225 §5.2.1 / RFC 8588: telephone numbers as bare digits, no `+`, no visual separators. */
export function canonicalTn(number: string): string {
  return number.replace(/[^0-9]/g, '');
}

/** RFC 8225 §9: JSON with every object's keys in lexicographic order and no whitespace. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

export interface SignRequest {
  /** The ES256 (P-256) private key. */
  key: KeyObject;
  /** Where verifiers fetch our certificate (HTTPS). */
  x5u: string;
  attest: Attestation;
  orig: string;
  dest: string | string[];
  /** Seconds; default now. */
  iat?: number;
  /** Default a new UUID. */
  origid?: string;
}

/**
 * A signed PASSporT in compact form (`header.payload.signature`): the header
 * `{alg: ES256, ppt: shaken, typ: passport, x5u}` and the claims, each in canonical form, and
 * the ES256 signature as JWS's raw r‖s (RFC 7518 §3.4).
 */
export async function signPassport(req: SignRequest): Promise<{ jws: string; claims: PassportClaims }> {
  const claims: PassportClaims = {
    attest: req.attest,
    dest: { tn: [req.dest].flat().map(canonicalTn) },
    iat: req.iat ?? Math.floor(Date.now() / 1000),
    orig: { tn: canonicalTn(req.orig) },
    origid: req.origid ?? randomUUID(),
  };
  // Built in key order, so jose's JSON.stringify of the header is the canonical form too.
  const header = { alg: 'ES256', ppt: 'shaken', typ: 'passport', x5u: req.x5u } as const;
  const jws = await new CompactSign(new TextEncoder().encode(canonicalJson(claims))).setProtectedHeader(header).sign(req.key);
  return { jws, claims };
}

/** RFC 8224 §4.1 / RFC 8588 §6: `Identity: <jws>;info=<x5u>;alg=ES256;ppt=shaken`. */
export function identityHeader(jws: string, x5u: string): string {
  return `${jws};info=<${x5u}>;alg=ES256;ppt=shaken`;
}

export interface ParsedIdentity {
  jws: string;
  info: string | undefined;
  alg: string | undefined;
  ppt: string | undefined;
}

/** The parts of an Identity header value (RFC 8224 §4.1's compact form only: `header.payload.signature`). */
export function parseIdentity(value: string): ParsedIdentity | undefined {
  const m = /^\s*([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)\s*((?:;[^;]*)*)$/.exec(value);
  if (!m) return undefined;
  const params = new Map<string, string>();
  for (const p of m[2]!.split(';').slice(1)) {
    const i = p.indexOf('=');
    if (i < 0) continue;
    params.set(p.slice(0, i).trim().toLowerCase(), p.slice(i + 1).trim());
  }
  const info = params.get('info');
  return { jws: m[1]!, info: info?.replace(/^<|>$/g, ''), alg: params.get('alg'), ppt: params.get('ppt')?.replace(/^"|"$/g, '') };
}

export type Verstat = 'TN-Validation-Passed' | 'TN-Validation-Failed' | 'No-TN-Validation';

export interface Check {
  name: 'format' | 'header' | 'info' | 'signature' | 'iat' | 'orig' | 'dest';
  ok: boolean;
  detail: string;
}

export interface Verdict {
  verstat: Verstat;
  checks: Check[];
  claims: Partial<PassportClaims> | undefined;
  x5u: string | undefined;
  /** RFC 8224 §6.2.2 / §13: what an enforcing verifier answers (undefined when every check passed). */
  sipStatus: 403 | 436 | 437 | 438 | undefined;
  reason: string | undefined;
}

export interface VerifyRequest {
  identity: string;
  /** The signer's public key, from the certificate `x5u` names (undefined: not fetched yet). */
  key: KeyObject | undefined;
  /** Seconds now, and the freshness window either way (S6: a future `iat` fails too). */
  now: number;
  maxAgeSeconds: number;
  /** The caller ID presented (PAI or From) and the called number (Request-URI or To), as numbers. */
  origTn: string | undefined;
  destTn: string | undefined;
}

const STATUS_OF: Record<Check['name'], NonNullable<Verdict['sipStatus']>> = { format: 438, header: 437, info: 436, signature: 438, iat: 403, orig: 438, dest: 438 };
const REASON_OF: Record<NonNullable<Verdict['sipStatus']>, string> = { 403: 'Stale Date', 436: 'Bad Identity Info', 437: 'Unsupported Credential', 438: 'Invalid Identity Header' };

/**
 * Every check of one Identity header (the composite verdict: one failure fails it), each with
 * what it found, for logs, the agent and `voxgate stir verify`. Never trusts a claim before
 * the signature over it verified, except to say what was claimed.
 */
export async function verifyIdentity(req: VerifyRequest): Promise<Verdict> {
  const checks: Check[] = [];
  const done = (claims: Partial<PassportClaims> | undefined, x5u: string | undefined): Verdict => {
    const failed = checks.find((c) => !c.ok);
    const sipStatus = failed ? STATUS_OF[failed.name] : undefined;
    return { verstat: failed ? 'TN-Validation-Failed' : 'TN-Validation-Passed', checks, claims, x5u, sipStatus, reason: failed ? `${REASON_OF[sipStatus!]} (${failed.name}: ${failed.detail})` : undefined };
  };
  const parsed = parseIdentity(req.identity);
  if (!parsed) {
    checks.push({ name: 'format', ok: false, detail: 'not a compact JWS (header.payload.signature) with ;info=<...> parameters' });
    return done(undefined, undefined);
  }
  checks.push({ name: 'format', ok: true, detail: 'compact JWS' });
  let header: Record<string, unknown>;
  let claims: Partial<PassportClaims>;
  try {
    header = decodeProtectedHeader(parsed.jws) as Record<string, unknown>;
    claims = JSON.parse(Buffer.from(parsed.jws.split('.')[1]!, 'base64url').toString('utf8')) as Partial<PassportClaims>;
  } catch (err) {
    checks[0] = { name: 'format', ok: false, detail: `the JWS does not decode: ${(err as Error).message}` };
    return done(undefined, undefined);
  }
  const x5u = typeof header.x5u === 'string' ? header.x5u : undefined;
  const headerOk = header.alg === 'ES256' && header.ppt === 'shaken' && header.typ === 'passport' && x5u !== undefined && (parsed.alg === undefined || parsed.alg === 'ES256') && (parsed.ppt === undefined || parsed.ppt === 'shaken');
  checks.push({ name: 'header', ok: headerOk, detail: headerOk ? 'ES256, shaken, passport, x5u' : `alg ${String(header.alg)}, ppt ${String(header.ppt)}, typ ${String(header.typ)}, x5u ${x5u ?? 'missing'} (header params alg ${parsed.alg ?? '-'}, ppt ${parsed.ppt ?? '-'})` });
  checks.push({ name: 'info', ok: parsed.info !== undefined && parsed.info === x5u, detail: parsed.info === x5u ? 'info equals x5u' : `info ${parsed.info ?? 'missing'} is not x5u ${x5u ?? 'missing'}` });
  if (!req.key) checks.push({ name: 'signature', ok: false, detail: 'no certificate key to check it with' });
  else {
    try {
      await compactVerify(parsed.jws, req.key, { algorithms: ['ES256'] });
      checks.push({ name: 'signature', ok: true, detail: 'ES256 signature verifies with the certificate key' });
    } catch (err) {
      checks.push({ name: 'signature', ok: false, detail: `the signature does not verify: ${(err as Error).message}` });
    }
  }
  const age = typeof claims.iat === 'number' ? req.now - claims.iat : NaN;
  checks.push({ name: 'iat', ok: Math.abs(age) <= req.maxAgeSeconds, detail: Number.isNaN(age) ? 'no iat' : `${age >= 0 ? `${age} s old` : `${-age} s in the future`} (window ±${req.maxAgeSeconds} s)` });
  const orig = claims.orig?.tn;
  const want = req.origTn === undefined ? undefined : canonicalTn(req.origTn);
  checks.push({ name: 'orig', ok: orig !== undefined && orig === want, detail: `orig ${orig ?? 'missing'} vs presented ${want ?? 'none'}` });
  const dest = Array.isArray(claims.dest?.tn) ? claims.dest.tn : [];
  const called = req.destTn === undefined ? undefined : canonicalTn(req.destTn);
  checks.push({ name: 'dest', ok: called !== undefined && dest.includes(called), detail: `dest ${dest.join(',') || 'missing'} vs called ${called ?? 'none'}` });
  return done(claims, x5u);
}
