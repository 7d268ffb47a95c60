import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError, type Config } from '../../core/config.js';
import { httpDate } from '../build.js';
import { header, headerList, type SipRequest } from '../message.js';
import { stirNumbersOf } from '../phone-number.js';
import { CertificateCache } from './certificates.js';
import { identityHeader, parseIdentity, signPassport, verifyIdentity, type Attestation, type Check, type KeyLookup, type Verdict, type Verstat } from './passport.js';

type StirConfig = NonNullable<Config['stirShaken']>;

/** Signs our outbound INVITEs (RFC 8224 §4): the Identity header and the Date header equal to its `iat`. */
export class StirSigner {
  constructor(
    private readonly key: KeyObject,
    private readonly cfg: NonNullable<StirConfig['sign']>,
  ) {}

  /** ATIS-1000074 §5.2.3: A for the numbers configured as ours, else the default (B). */
  attestationOf(from: string): Attestation {
    return this.cfg.attestation.numbers[from] ?? this.cfg.attestation.default;
  }

  /** `attest` overrides the level for calls we pass on rather than originate (C, gateway attestation). */
  async headers(from: string, to: string, nowMs = Date.now(), attest: Attestation = this.attestationOf(from)): Promise<{ name: string; value: string }[]> {
    const iat = Math.floor(nowMs / 1000);
    const { jws } = await signPassport({ key: this.key, x5u: this.cfg.certificateUrl, attest, orig: from, dest: to, iat, ...(this.cfg.origId ? { origid: this.cfg.origId } : {}) });
    return [
      { name: 'Date', value: httpDate(iat * 1000) },
      { name: 'Identity', value: identityHeader(jws, this.cfg.certificateUrl) },
    ];
  }
}

/** What a verified (or unverified) INVITE tells the agent, the audit and the metrics. */
export interface StirResult {
  verstat: Verstat;
  /** The attestation and calling number, only when verification passed (a failed PASSporT's claims are not to be trusted). */
  attest: Attestation | undefined;
  origTn: string | undefined;
  /** What a PASSporT that failed claimed, for logs. */
  claimed: { attest: unknown; origTn: unknown } | undefined;
  /** Why it failed, for logs (undefined when it passed or there was nothing to verify). */
  reason: string | undefined;
  /** The certificate lookup's own story when it failed (addresses, TLS errors): for logs, never the wire. */
  certificateDetail: string | undefined;
  /** The RFC 8224 answer in enforce mode (undefined: let the call through), and the check that failed (for the audit). */
  refuse: { status: number; reason: string; check: Check['name'] | 'present' } | undefined;
}

/** A carrier's INVITE as STIR/SHAKEN sees it: its Identity headers, the numbers, its Date. */
export interface StirInput {
  identities: readonly string[];
  origTn: string | undefined;
  destTn: readonly string[];
  date: string | undefined;
}

/** The STIR/SHAKEN view of an INVITE: every Identity header, the numbers as presented (stirNumbersOf), the number it was routed on, its Date. */
export function stirInputOf(req: SipRequest, calledNumber: string): StirInput {
  const { orig, dest } = stirNumbersOf(req);
  return { identities: headerList(req, 'Identity'), origTn: orig, destTn: [...new Set([calledNumber, ...dest])], date: header(req, 'Date') };
}

/** How many Identity headers of one INVITE are tried (RFC 8224 allows several; each may cost a fetch). */
const MAX_IDENTITIES = 4;

/** Verifies inbound INVITEs' Identity headers (RFC 8224 §6.2): one composite verdict per call. */
export class StirVerifier {
  constructor(
    readonly cache: CertificateCache,
    private readonly cfg: NonNullable<StirConfig['verify']>,
  ) {}

  get mode(): 'observe' | 'enforce' {
    return this.cfg.mode;
  }

  /**
   * RFC 8224 §6.2: the SHAKEN PASSporTs of the request (a `ppt=div` or other kind is not ours to
   * judge: RFC 8946 diversion is not verified), each checked until one passes; the verdict is
   * that one's, else the first's.
   * Deviation: a repeated PASSporT on another call (RFC 8224 §12.1's replay) is not detected;
   * `iat`'s window and the `dest` check bound what a replay can do.
   */
  async verify(input: StirInput, nowMs = Date.now()): Promise<StirResult & { verdict?: Verdict }> {
    const enforce = this.cfg.mode === 'enforce';
    const none = { attest: undefined, origTn: undefined, claimed: undefined, certificateDetail: undefined };
    if (input.identities.length === 0) return { verstat: 'No-TN-Validation', ...none, reason: undefined, refuse: enforce ? { status: 428, reason: 'Use Identity Header', check: 'present' } : undefined };
    const shaken = input.identities.filter((v) => {
      const ppt = parseIdentity(v)?.ppt;
      return ppt === undefined || ppt === 'shaken';
    });
    const tried = (shaken.length ? shaken : input.identities).slice(0, MAX_IDENTITIES);
    let certificateDetail: string | undefined;
    const keyFor = async (x5u: string): Promise<KeyLookup> => {
      const got = await this.cache.keyFor(x5u);
      if (got.ok) return { ok: true, key: got.key };
      certificateDetail = got.detail;
      return got;
    };
    let first: Verdict | undefined;
    for (const identity of tried) {
      const verdict = await verifyIdentity({ identity, keyFor, now: Math.floor(nowMs / 1000), maxAgeSeconds: this.cfg.maxAgeSeconds, origTn: input.origTn, destTn: input.destTn, date: input.date });
      if (verdict.verstat === 'TN-Validation-Passed') {
        return { verstat: verdict.verstat, attest: verdict.claims!.attest, origTn: verdict.claims!.orig!.tn, claimed: undefined, reason: undefined, certificateDetail: undefined, refuse: undefined, verdict };
      }
      first ??= verdict;
    }
    const status = first!.sipStatus ?? 438;
    const reason = first!.reason ?? 'Invalid Identity Header';
    const check = first!.checks.find((c) => !c.ok)?.name ?? 'format';
    return { verstat: 'TN-Validation-Failed', attest: undefined, origTn: undefined, claimed: { attest: first!.claims?.attest, origTn: first!.claims?.orig?.tn }, reason, certificateDetail, refuse: enforce ? { status, reason, check } : undefined, verdict: first! };
  }
}

/** The signer and verifier the config asks for; an unreadable file or a wrong key stops start-up, naming the field. */
export function loadStirShaken(cfg: Config['stirShaken']): { signer: StirSigner | undefined; verifier: StirVerifier | undefined } {
  if (!cfg) return { signer: undefined, verifier: undefined };
  const problems: string[] = [];
  const read = (field: string, path: string): string | undefined => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      problems.push(`${field}: cannot read ${path} (${(err as Error).message})`);
      return undefined;
    }
  };
  let signer: StirSigner | undefined;
  if (cfg.sign) {
    const pem = read('stirShaken.sign.privateKey', cfg.sign.privateKey);
    if (pem) {
      try {
        const key = createPrivateKey(pem);
        if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') problems.push(`stirShaken.sign.privateKey: ${cfg.sign.privateKey} is not an EC P-256 key (ES256 needs one)`);
        else signer = new StirSigner(key, cfg.sign);
      } catch (err) {
        problems.push(`stirShaken.sign.privateKey: ${cfg.sign.privateKey} is not a PEM private key (${(err as Error).message})`);
      }
    }
  }
  let verifier: StirVerifier | undefined;
  if (cfg.verify) {
    const v = cfg.verify;
    const anchors = v.trustAnchors.map((p, i) => read(`stirShaken.verify.trustAnchors.${i}`, p)).filter((x): x is string => x !== undefined);
    const fetchCa = v.fetchCa?.map((p, i) => read(`stirShaken.verify.fetchCa.${i}`, p)).filter((x): x is string => x !== undefined);
    if (anchors.length === v.trustAnchors.length) {
      try {
        const cache = new CertificateCache({ trustAnchors: anchors, ttlMs: v.certificateCache.ttlSeconds * 1000, maxBytes: v.certificateCache.maxBytes, timeoutMs: v.certificateCache.timeoutMs, allowPrivateAddresses: v.allowPrivateAddresses, ...(fetchCa ? { fetchCa } : {}) });
        verifier = new StirVerifier(cache, v);
      } catch (err) {
        problems.push(`stirShaken.verify.trustAnchors: not PEM certificates (${(err as Error).message})`);
      }
    }
  }
  if (problems.length) throw new ConfigError(problems);
  return { signer, verifier };
}
