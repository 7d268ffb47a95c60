import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError, type Config } from '../../core/config.js';
import { httpDate } from '../build.js';
import { CertificateCache } from './certificates.js';
import { identityHeader, signPassport, verifyIdentity, type Attestation, type Verdict, type Verstat } from './passport.js';

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
  attest: Attestation | undefined;
  origTn: string | undefined;
  /** Why it failed, for logs (undefined when it passed or there was nothing to verify). */
  reason: string | undefined;
  /** The RFC 8224 answer in enforce mode (undefined: let the call through). */
  refuse: { status: number; reason: string } | undefined;
}

/** Verifies inbound INVITEs' Identity headers (RFC 8224 §6.2): one composite verdict per call. */
export class StirVerifier {
  constructor(
    readonly cache: CertificateCache,
    private readonly cfg: NonNullable<StirConfig['verify']>,
  ) {}

  get mode(): 'observe' | 'enforce' {
    return this.cfg.mode;
  }

  async verify(identity: string | undefined, origTn: string | undefined, destTn: string | undefined, nowMs = Date.now()): Promise<StirResult & { verdict?: Verdict }> {
    const enforce = this.cfg.mode === 'enforce';
    if (!identity) {
      return { verstat: 'No-TN-Validation', attest: undefined, origTn: undefined, reason: undefined, refuse: enforce ? { status: 428, reason: 'Use Identity Header' } : undefined };
    }
    const x5u = /;\s*info\s*=\s*<([^>]*)>/i.exec(identity)?.[1];
    const cert = x5u ? await this.cache.keyFor(x5u) : undefined;
    const verdict = await verifyIdentity({ identity, key: cert?.ok ? cert.key : undefined, now: Math.floor(nowMs / 1000), maxAgeSeconds: this.cfg.maxAgeSeconds, origTn, destTn });
    const attest = verdict.claims?.attest;
    const claimedOrig = verdict.claims?.orig?.tn;
    if (verdict.verstat === 'TN-Validation-Passed') return { verstat: verdict.verstat, attest, origTn: claimedOrig, reason: undefined, refuse: undefined, verdict };
    // A certificate that could not be had says why better than "the signature did not verify".
    const certProblem = cert && !cert.ok ? cert : undefined;
    const status = certProblem?.status ?? verdict.sipStatus ?? 438;
    const reason = certProblem ? `${status === 436 ? 'Bad Identity Info' : 'Unsupported Credential'} (${certProblem.reason})` : verdict.reason ?? 'Invalid Identity Header';
    return { verstat: 'TN-Validation-Failed', attest, origTn: claimedOrig, reason, refuse: enforce ? { status, reason } : undefined, verdict };
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
        const cache = new CertificateCache({ trustAnchors: anchors, ttlMs: v.certificateCache.ttlSeconds * 1000, maxBytes: v.certificateCache.maxBytes, timeoutMs: v.certificateCache.timeoutMs, ...(fetchCa ? { fetchCa } : {}) });
        verifier = new StirVerifier(cache, v);
      } catch (err) {
        problems.push(`stirShaken.verify.trustAnchors: not PEM certificates (${(err as Error).message})`);
      }
    }
  }
  if (problems.length) throw new ConfigError(problems);
  return { signer, verifier };
}
