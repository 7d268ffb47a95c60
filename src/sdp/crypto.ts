/**
 * SDES keys (RFC 4568): the `a=crypto` attribute's value as a plain value, its text again, the
 * choice of one offered line, and fresh master keys. Pure apart from newMasterKey's randomness.
 * Suites are plain strings here so that sdp/ need not import rtp/; the caller passes what its
 * SRTP implementation supports (rtp/srtp.ts SRTP_SUITES).
 */
import { randomBytes } from 'node:crypto';

export interface CryptoKeyParam {
  key: Buffer;
  salt: Buffer;
  /** RFC 4568 §6.1: packets this master key may protect; `2^20` reads as 1048576. */
  lifetime?: number;
  /** RFC 4568 §6.1: master key identifier and its length in bytes, carried in every packet. */
  mki?: { value: number; length: number };
}

export interface CryptoAttribute {
  tag: number;
  suite: string;
  keys: CryptoKeyParam[];
  /** RFC 4568 §6.3, verbatim: `KDR=10`, `UNENCRYPTED_SRTP`, `WSH=128` ... */
  sessionParams: string[];
}

/** Which part of the line is wrong. */
export type CryptoField = 'syntax' | 'tag' | 'suite' | 'key-method' | 'key' | 'lifetime' | 'mki';

export class CryptoParseError extends Error {
  constructor(
    readonly field: CryptoField,
    message: string,
  ) {
    super(message);
    this.name = 'CryptoParseError';
  }
}

/**
 * Master key and salt bytes of the suites registered for SDES: RFC 4568 §6.2, RFC 6188 §7.1 (AES-192
 * and -256), RFC 7714 §14.1 (AES-GCM). Knowing them lets a line be checked even when we do not use it.
 */
const KEY_SALT_BYTES: Record<string, readonly [key: number, salt: number]> = {
  AES_CM_128_HMAC_SHA1_80: [16, 14],
  AES_CM_128_HMAC_SHA1_32: [16, 14],
  F8_128_HMAC_SHA1_80: [16, 14],
  AES_192_CM_HMAC_SHA1_80: [24, 14],
  AES_192_CM_HMAC_SHA1_32: [24, 14],
  AES_256_CM_HMAC_SHA1_80: [32, 14],
  AES_256_CM_HMAC_SHA1_32: [32, 14],
  AEAD_AES_128_GCM: [16, 12],
  AEAD_AES_256_GCM: [32, 12],
};

// RFC 4568 §9.1: key-salt is base64 with its padding (RFC 3548 §3).
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
// RFC 3711 §9.2: no master key protects more than 2^48 SRTP packets.
const MAX_LIFETIME = 2 ** 48;

/**
 * Parses an `a=crypto` value (RFC 4568 §9.1/§9.2):
 * `tag 1*WSP crypto-suite 1*WSP key-params *(1*WSP session-param)`, where key-params is
 * `inline:<key‖salt base64>[|lifetime][|mki-value:mki-length]`, several joined by `;`.
 * Throws CryptoParseError naming the part that is wrong.
 */
export function parseCrypto(value: string): CryptoAttribute {
  const parts = value.trim().split(/[ \t]+/);
  if (parts.length < 3) throw new CryptoParseError('syntax', 'an a=crypto value is "<tag> <crypto-suite> inline:<key>", and this one has fewer parts');
  const [tagText, suite, keyParams, ...sessionParams] = parts as [string, string, string, ...string[]];
  if (!/^\d{1,9}$/.test(tagText)) throw new CryptoParseError('tag', `the tag "${tagText}" is not 1 to 9 digits (RFC 4568 §9.1)`);
  if (!/^[A-Za-z0-9_]+$/.test(suite)) throw new CryptoParseError('suite', `"${suite}" is not a crypto-suite name`);
  const lengths = KEY_SALT_BYTES[suite];
  if (!lengths) throw new CryptoParseError('suite', `unknown crypto-suite ${suite}`);
  const keys = keyParams.split(';').map((param) => parseKeyParam(param, suite, lengths));
  // RFC 4568 §6.1: "the MKI length MUST be the same for all keys in a given crypto attribute".
  if (new Set(keys.map((k) => k.mki?.length ?? 0)).size > 1) {
    throw new CryptoParseError('mki', 'the keys of one a=crypto line have different MKI lengths (RFC 4568 §6.1)');
  }
  return { tag: Number(tagText), suite, keys, sessionParams };
}

function parseKeyParam(param: string, suite: string, [keyBytes, saltBytes]: readonly [number, number]): CryptoKeyParam {
  const colon = param.indexOf(':');
  // RFC 4568 §9.2: "inline" is the only SRTP key method; ABNF literals match in any case.
  if (colon < 0 || param.slice(0, colon).toLowerCase() !== 'inline') {
    throw new CryptoParseError('key-method', `the key "${param.slice(0, 20)}" does not start with inline: (RFC 4568 §6.1)`);
  }
  const [keySalt, ...extras] = param.slice(colon + 1).split('|') as [string, ...string[]];
  if (!keySalt || !BASE64.test(keySalt)) throw new CryptoParseError('key', 'the inline key is not base64 (RFC 4568 §9.2)');
  const bytes = Buffer.from(keySalt, 'base64');
  if (bytes.length !== keyBytes + saltBytes) {
    throw new CryptoParseError('key', `${suite} takes a ${keyBytes}-byte key and a ${saltBytes}-byte salt, ${keyBytes + saltBytes} bytes in all; this key is ${bytes.length} bytes (RFC 4568 §6.2)`);
  }
  const out: CryptoKeyParam = { key: bytes.subarray(0, keyBytes), salt: bytes.subarray(keyBytes) };
  // RFC 4568 §9.2: key-salt ["|" lifetime] ["|" mki]; only the MKI has a colon.
  if (extras.length > 2 || (extras.length === 2 && (extras[0]!.includes(':') || !extras[1]!.includes(':')))) {
    throw new CryptoParseError('syntax', `"${extras.join('|')}" after the key is not [|lifetime][|mki:length]`);
  }
  for (const extra of extras) {
    if (extra.includes(':')) out.mki = parseMki(extra);
    else out.lifetime = parseLifetime(extra);
  }
  return out;
}

function parseLifetime(text: string): number {
  const m = /^(2\^)?(\d{1,15})$/.exec(text);
  const n = m ? (m[1] ? 2 ** Number(m[2]) : Number(m[2])) : NaN;
  if (!(n >= 1 && n <= MAX_LIFETIME)) {
    throw new CryptoParseError('lifetime', `the key lifetime "${text}" is not a count of packets from 1 to 2^48, in decimal or as 2^n (RFC 4568 §6.1)`);
  }
  return n;
}

function parseMki(text: string): { value: number; length: number } {
  const m = /^(\d{1,16}):(\d{1,3})$/.exec(text);
  const value = m ? Number(m[1]) : NaN;
  const length = m ? Number(m[2]) : NaN;
  // RFC 4568 §9.2: mki-length is 1..128 bytes, and the value has to fit in it.
  if (!(length >= 1 && length <= 128) || !Number.isSafeInteger(value) || (length < 7 && value >= 256 ** length)) {
    throw new CryptoParseError('mki', `the MKI "${text}" is not value:length with a length of 1 to 128 bytes that holds the value (RFC 4568 §6.1)`);
  }
  return { value, length };
}

/** The `a=crypto` value for an attribute; parseCrypto reads it back unchanged. */
export function formatCrypto(attr: CryptoAttribute): string {
  const keys = attr.keys.map((k) => {
    let text = `inline:${Buffer.concat([k.key, k.salt]).toString('base64')}`;
    if (k.lifetime !== undefined) {
      const exp = Math.log2(k.lifetime);
      text += `|${Number.isInteger(exp) && exp >= 10 ? `2^${exp}` : k.lifetime}`;
    }
    if (k.mki) text += `|${k.mki.value}:${k.mki.length}`;
    return text;
  });
  return [String(attr.tag), attr.suite, keys.join(';'), ...attr.sessionParams].join(' ');
}

/** A fresh master key and salt, sized for the suite (RFC 4568 §6.2; RFC 3711 §8.2 wants them random). */
export function newMasterKey(suite = 'AES_CM_128_HMAC_SHA1_80'): { key: Buffer; salt: Buffer } {
  const lengths = KEY_SALT_BYTES[suite];
  if (!lengths) throw new RangeError(`unknown crypto-suite ${suite}`);
  return { key: randomBytes(lengths[0]), salt: randomBytes(lengths[1]) };
}

/**
 * Session parameters we can honour by ignoring them. RFC 4568 §6.3.6: WSH is only a hint of the
 * replay window wanted (ours is 128); §6.3.4: FEC_ORDER=FEC_SRTP is the default order, and we send
 * no FEC. Everything else changes the packets and is refused: KDR=n (§6.3.1) asks to re-derive
 * keys every 2^n packets where we derive once; UNENCRYPTED_SRTP/SRTCP and UNAUTHENTICATED_SRTP
 * (§6.3.2, §6.3.3) turn protection off; FEC_KEY (§6.3.5) keys an FEC stream we do not have.
 */
const IGNORABLE_PARAM = /^(?:WSH=\d+|FEC_ORDER=FEC_SRTP)$/;

/**
 * RFC 4568 §7.1.2: the answerer takes one offered line it can use, keeps its tag and suite, and
 * answers with its own key. Offers put the line they prefer first, so the first usable one wins.
 * Usable: it parses, its suite is in `supported`, it has exactly one key and no MKI
 * (an MKI would have to go into every packet, RFC 3711 §3.1, which our SrtpSession does not write),
 * and its session parameters can all be ignored. The offered key is the one the offerer sends with;
 * the answer's fresh key is the one we send with. Undefined when no line is usable (answer 488).
 */
export function chooseCrypto(offered: readonly string[], supported: readonly string[]): CryptoAttribute | undefined {
  for (const line of offered) {
    let attr: CryptoAttribute;
    try {
      attr = parseCrypto(line);
    } catch (e) {
      if (e instanceof CryptoParseError) continue; // one malformed line does not spoil the others
      throw e;
    }
    if (!supported.includes(attr.suite)) continue;
    if (attr.keys.length !== 1 || attr.keys[0]!.mki) continue;
    if (!attr.sessionParams.every((p) => IGNORABLE_PARAM.test(p))) continue;
    return attr;
  }
  return undefined;
}
