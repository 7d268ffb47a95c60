import { randomUUID, verify as verifySignature, type KeyObject } from 'node:crypto';
import { CompactSign, decodeProtectedHeader } from 'jose';

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
  /** The `info` URI, without its angle brackets (RFC 8224 §4.1 requires them). */
  info: string | undefined;
  /** How many `info` parameters there were: a verifier must not pick one of several. */
  infoCount: number;
  alg: string | undefined;
  ppt: string | undefined;
}

/**
 * The parts of an Identity header value (RFC 8224 §4.1): a PASSporT in its full form (a JWS in
 * compact serialization, `header.payload.signature`; RFC 8225 §7's compact form, with the
 * payload left out, is not accepted) and its parameters.
 */
export function parseIdentity(value: string): ParsedIdentity | undefined {
  const m = /^\s*([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)\s*((?:;[^;]*)*)$/.exec(value);
  if (!m) return undefined;
  const params = new Map<string, string>();
  let infoCount = 0;
  for (const p of m[2]!.split(';').slice(1)) {
    const i = p.indexOf('=');
    if (i < 0) continue;
    const name = p.slice(0, i).trim().toLowerCase();
    if (name === 'info') infoCount++;
    if (!params.has(name)) params.set(name, p.slice(i + 1).trim());
  }
  const info = /^<([^<>]*)>$/.exec(params.get('info') ?? '')?.[1];
  return { jws: m[1]!, info, infoCount, alg: params.get('alg'), ppt: params.get('ppt')?.replace(/^"|"$/g, '') };
}

export type Verstat = 'TN-Validation-Passed' | 'TN-Validation-Failed' | 'No-TN-Validation';
type Refusal = 403 | 436 | 437 | 438;

export interface Check {
  name: 'format' | 'header' | 'info' | 'claims' | 'iat' | 'date' | 'orig' | 'dest' | 'certificate' | 'signature';
  ok: boolean;
  detail: string;
  /** The answer when this check fails, where it is not the check's usual one (a certificate not had). */
  status?: Refusal;
  /** Not made, because an earlier check failed (the signature, whose certificate is fetched only for a header worth it). */
  skipped?: true;
}

export interface Verdict {
  verstat: Verstat;
  checks: Check[];
  /** What the PASSporT claims: trusted only when `verstat` is TN-Validation-Passed. */
  claims: Partial<PassportClaims> | undefined;
  x5u: string | undefined;
  /** RFC 8224 §6.2.2 / §13: what an enforcing verifier answers (undefined when every check passed). */
  sipStatus: Refusal | undefined;
  reason: string | undefined;
}

/** The signer's key for an x5u, or why there is none (436: not had, 437: not trusted); `detail` is for logs only. */
export type KeyLookup = { ok: true; key: KeyObject } | { ok: false; status: 436 | 437; reason: string; detail?: string };

export interface VerifyRequest {
  identity: string;
  /** The signer's public key in hand, or a lookup for the PASSporT's own `x5u`, asked only once every other check passed. */
  key?: KeyObject | undefined;
  keyFor?: (x5u: string) => Promise<KeyLookup>;
  /** Seconds now, and the freshness window either way (S6: a future `iat` fails too). */
  now: number;
  maxAgeSeconds: number;
  /** The caller ID presented (PAI or From), as a number. */
  origTn: string | undefined;
  /** The called number: the Request-URI's, To's (any may match `dest`). */
  destTn: string | readonly string[] | undefined;
  /** The request's Date header, if any (RFC 8224 §6.2 step 4: it must be fresh too). */
  date?: string | undefined;
}

const STATUS_OF: Record<Check['name'], Refusal> = { format: 438, header: 437, info: 436, claims: 438, iat: 403, date: 403, orig: 438, dest: 438, certificate: 436, signature: 438 };
const REASON_OF: Record<Refusal, string> = { 403: 'Stale Date', 436: 'Bad Identity Info', 437: 'Unsupported Credential', 438: 'Invalid Identity Header' };

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** RFC 8588 §4: attest A/B/C, origid, orig.tn a string, dest.tn a list of strings. */
function claimsProblem(c: Record<string, unknown>): string | undefined {
  if (c.attest !== 'A' && c.attest !== 'B' && c.attest !== 'C') return `attest ${JSON.stringify(c.attest)} is not A, B or C`;
  if (typeof c.origid !== 'string' || c.origid === '') return 'no origid';
  if (!isObject(c.orig) || typeof c.orig.tn !== 'string') return 'no orig.tn';
  if (!isObject(c.dest) || !Array.isArray(c.dest.tn) || c.dest.tn.length === 0 || !c.dest.tn.every((t) => typeof t === 'string')) return 'no dest.tn list';
  if (typeof c.iat !== 'number') return 'no iat';
  return undefined;
}

/**
 * Every check of one Identity header (the composite verdict: one failure fails it), each with
 * what it found, for logs, the agent and `voxgate stir verify`. The signature is checked last:
 * the certificate is fetched only for a header that passed everything else (a stale or
 * malformed one makes no request), and only from the `x5u` that the signature covers. No claim
 * is trusted before the signature over it verified, except to say what was claimed.
 */
export async function verifyIdentity(req: VerifyRequest): Promise<Verdict> {
  const checks: Check[] = [];
  const done = (claims: Partial<PassportClaims> | undefined, x5u: string | undefined): Verdict => {
    const failed = checks.find((c) => !c.ok);
    const sipStatus = failed ? failed.status ?? STATUS_OF[failed.name] : undefined;
    return { verstat: failed ? 'TN-Validation-Failed' : 'TN-Validation-Passed', checks, claims, x5u, sipStatus, reason: failed ? `${REASON_OF[sipStatus!]} (${failed.name}: ${failed.detail})` : undefined };
  };
  const parsed = parseIdentity(req.identity);
  if (!parsed) {
    checks.push({ name: 'format', ok: false, detail: 'not a JWS (header.payload.signature) with ;info=<...> parameters' });
    return done(undefined, undefined);
  }
  let header: Record<string, unknown>;
  let payload: unknown;
  try {
    header = decodeProtectedHeader(parsed.jws) as Record<string, unknown>;
    payload = JSON.parse(Buffer.from(parsed.jws.split('.')[1]!, 'base64url').toString('utf8'));
  } catch (err) {
    checks.push({ name: 'format', ok: false, detail: `the JWS does not decode: ${(err as Error).message}` });
    return done(undefined, undefined);
  }
  if (!isObject(payload)) {
    checks.push({ name: 'format', ok: false, detail: 'the PASSporT payload is not a JSON object' });
    return done(undefined, undefined);
  }
  checks.push({ name: 'format', ok: true, detail: 'JWS' });
  const claims = payload as Partial<PassportClaims>;
  const x5u = typeof header.x5u === 'string' ? header.x5u : undefined;
  const headerOk = header.alg === 'ES256' && header.ppt === 'shaken' && header.typ === 'passport' && x5u !== undefined && (parsed.alg === undefined || parsed.alg === 'ES256') && (parsed.ppt === undefined || parsed.ppt === 'shaken');
  checks.push({ name: 'header', ok: headerOk, detail: headerOk ? 'ES256, shaken, passport, x5u' : `alg ${String(header.alg)}, ppt ${String(header.ppt)}, typ ${String(header.typ)}, x5u ${x5u ?? 'missing'} (header params alg ${parsed.alg ?? '-'}, ppt ${parsed.ppt ?? '-'})` });
  const infoOk = parsed.infoCount === 1 && parsed.info !== undefined && parsed.info === x5u;
  checks.push({ name: 'info', ok: infoOk, detail: infoOk ? 'info equals x5u' : parsed.infoCount > 1 ? `info given ${parsed.infoCount} times` : `info ${parsed.info === undefined ? 'missing (or not in <>)' : parsed.info} is not x5u ${x5u ?? 'missing'}` });
  const problem = claimsProblem(payload);
  checks.push({ name: 'claims', ok: !problem, detail: problem ?? 'attest, dest, iat, orig, origid' });
  const age = typeof claims.iat === 'number' ? req.now - claims.iat : NaN;
  checks.push({ name: 'iat', ok: Math.abs(age) <= req.maxAgeSeconds, detail: Number.isNaN(age) ? 'no iat' : `${age >= 0 ? `${age} s old` : `${-age} s in the future`} (window ±${req.maxAgeSeconds} s)` });
  if (req.date !== undefined) {
    const dateAge = req.now - Math.floor(Date.parse(req.date) / 1000);
    checks.push({ name: 'date', ok: Math.abs(dateAge) <= req.maxAgeSeconds, detail: Number.isNaN(dateAge) ? `Date ${req.date} is not an HTTP date` : `Date ${dateAge >= 0 ? `${dateAge} s old` : `${-dateAge} s in the future`}` });
  }
  // RFC 8224 §8.3: both sides canonical (the claim's raw bytes were signed; the comparison is of numbers).
  const orig = typeof claims.orig?.tn === 'string' ? canonicalTn(claims.orig.tn) : undefined;
  const want = req.origTn === undefined ? undefined : canonicalTn(req.origTn);
  checks.push({ name: 'orig', ok: orig !== undefined && orig !== '' && orig === want, detail: `orig ${orig ?? 'missing'} vs presented ${want ?? 'none'}` });
  const dest = Array.isArray(claims.dest?.tn) ? claims.dest.tn.filter((t): t is string => typeof t === 'string').map(canonicalTn) : [];
  const called = [req.destTn ?? []].flat().map(canonicalTn);
  checks.push({ name: 'dest', ok: called.some((c) => c !== '' && dest.includes(c)), detail: `dest ${dest.join(',') || 'missing'} vs called ${called.join(' or ') || 'none'}` });
  if (checks.some((c) => !c.ok)) {
    checks.push({ name: 'signature', ok: false, skipped: true, detail: 'not checked (the certificate is fetched only for a header that passes the other checks)' });
    return done(claims, x5u);
  }
  let key = req.key;
  if (!key && req.keyFor) {
    const got = await req.keyFor(x5u!);
    if (!got.ok) {
      checks.push({ name: 'certificate', ok: false, status: got.status, detail: got.reason });
      return done(claims, x5u);
    }
    key = got.key;
  }
  checks.push(signatureCheck(parsed.jws, key));
  return done(claims, x5u);
}

/**
 * RFC 7515 §5.2 / RFC 7518 §3.4: ES256 over `header.payload`, the signature raw r‖s (64 bytes).
 * Checked with node:crypto at once rather than through jose: jose runs on WebCrypto, whose
 * thread hop adds some 0.4 ms to every inbound call's setup (bench:stir); the header was
 * already checked to say ES256, so there is no algorithm to negotiate.
 */
function signatureCheck(jws: string, key: KeyObject | undefined): Check {
  if (!key) return { name: 'signature', ok: false, detail: 'no certificate key to check it with' };
  const dot = jws.lastIndexOf('.');
  const signature = Buffer.from(jws.slice(dot + 1), 'base64url');
  if (signature.length !== 64) return { name: 'signature', ok: false, detail: `an ES256 signature is 64 bytes (r||s), this one ${signature.length}` };
  try {
    const ok = verifySignature('sha256', Buffer.from(jws.slice(0, dot), 'ascii'), { key, dsaEncoding: 'ieee-p1363' }, signature);
    return ok ? { name: 'signature', ok, detail: 'ES256 signature verifies with the certificate key' } : { name: 'signature', ok, detail: 'the signature does not verify with the certificate key' };
  } catch (err) {
    return { name: 'signature', ok: false, detail: `the signature cannot be checked with the certificate key: ${(err as Error).message}` };
  }
}
