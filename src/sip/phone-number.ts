import { parseNameAddr, splitList } from './grammar.js';
import { header, headerList, type SipRequest } from './message.js';

/**
 * A telephone number from a `sip:` or `tel:` URI as E.164 with `+` (RFC 3966 §5.1, RFC 3261
 * §19.1.6 `;user=phone`), or undefined when the user part is not a number (`agent`, `alice`).
 * Visual separators go; `00` is the international prefix; 11 to 15 bare digits (what many
 * carriers send) are read as international.
 * Deviation: a national number (10 digits or fewer, or a `phone-context`) is not expanded; it
 * is returned as its digits without `+`, for the number tables to miss loudly rather than guess.
 */
export function e164Of(uri: string): string | undefined {
  const m = /^\s*(?:sips?:([^@?>]+)@|tel:([^;?>]+))/i.exec(uri);
  // RFC 4694: a user part may carry its own parameters (`+15551230000;npdi;rn=...`).
  const raw = (m?.[1] ?? m?.[2])?.split(';')[0];
  if (!raw) return undefined;
  let user = raw;
  try {
    user = decodeURIComponent(raw);
  } catch {
    // Keep it undecoded: a bad escape is just not a number.
  }
  // RFC 3966 §5.1.1: visual separators are ignored.
  const digits = user.replace(/[-.() ]/g, '');
  if (/^\+[1-9]\d{1,14}$/.test(digits)) return digits;
  if (/^00[1-9]\d{1,14}$/.test(digits)) return `+${digits.slice(2)}`;
  // 11-15 digits: an international number sent without its `+` (a 10-digit US national number is not).
  if (/^[1-9]\d{10,14}$/.test(digits) && !/phone-context=/i.test(uri)) return `+${digits}`;
  if (/^\d{1,15}$/.test(digits)) return digits;
  return undefined;
}

/** A number in E.164 form with its `+` (ITU-T E.164: up to 15 digits, no leading zero). */
export const isE164 = (n: string): boolean => /^\+[1-9]\d{1,14}$/.test(n);

/** Where the caller's identity was read from, in the order a terminating gateway trusts them. */
export type CallerIdSource = 'P-Asserted-Identity' | 'P-Preferred-Identity' | 'Remote-Party-ID' | 'From';

export interface CallerId {
  /** E.164 where it is a number; else the URI's user part; `anonymous` when withheld. */
  number: string;
  name: string | undefined;
  /** RFC 3323 `Privacy: id` (or Remote-Party-ID `privacy=full`): the number is withheld from the agent. */
  privacy: boolean;
  source: CallerIdSource;
  uri: string;
}

/**
 * The caller's identity (RFC 3325 §9.1 P-Asserted-Identity, then P-Preferred-Identity, the
 * older Remote-Party-ID, then From). Only for requests from a trusted network (an identified
 * trunk): anyone else can write these headers.
 */
export function callerIdOf(req: SipRequest): CallerId {
  const privacyHeader = headerList(req, 'Privacy').flatMap((p) => p.split(';')).map((p) => p.trim().toLowerCase());
  for (const source of ['P-Asserted-Identity', 'P-Preferred-Identity', 'Remote-Party-ID', 'From'] as const) {
    // RFC 3325 §9.1: a comma-separated list is allowed in P-Asserted- and P-Preferred-Identity.
    const values = source === 'P-Asserted-Identity' || source === 'P-Preferred-Identity' ? headerList(req, source).flatMap((v) => splitList(v)) : headerList(req, source);
    // RFC 3325 §9.1: up to one sip: and one tel: identity; the first with a number wins.
    const parsed = values.flatMap((v) => {
      try {
        return [{ v, na: parseNameAddr(v) }];
      } catch {
        return [];
      }
    });
    const chosen = parsed.find((p) => e164Of(p.na.uri)?.startsWith('+')) ?? parsed[0];
    if (!chosen) continue;
    const rpidPrivacy = source === 'Remote-Party-ID' && /;\s*privacy=(full|name|uri)/i.test(chosen.v);
    const privacy = privacyHeader.includes('id') || privacyHeader.includes('user') || rpidPrivacy;
    const uri = chosen.na.uri;
    const number = e164Of(uri) ?? /^sips?:([^@;]+)@/i.exec(uri)?.[1] ?? uri;
    const anonymous = /^anonymous$/i.test(number) || /anonymous\.invalid/i.test(uri);
    return {
      number: privacy || anonymous ? 'anonymous' : number,
      name: privacy ? undefined : chosen.na.displayName || undefined,
      privacy: privacy || anonymous,
      source,
      uri: privacy ? 'sip:anonymous@anonymous.invalid' : uri,
    };
  }
  return { number: 'anonymous', name: undefined, privacy: true, source: 'From', uri: header(req, 'From') ?? '' };
}

/** RFC 5806 Diversion values, newest first as sent (who forwarded the call, and why). */
export function diversionOf(req: SipRequest): string[] {
  // RFC 5806 §3: diversion-params *(COMMA diversion-params).
  return headerList(req, 'Diversion').flatMap((v) => splitList(v));
}

/**
 * The carrier's own headers (`X-*`), for the agent and the routing webhook; at most 32, each cut
 * at 256 characters. Deviation: passed on under `Privacy: id` too (they are the carrier's, not
 * the caller's identity; Diversion likewise), where RFC 3323 would have a privacy service strip them.
 */
export function carrierHeaders(req: SipRequest): Record<string, string> {
  const out: Record<string, string> = {};
  let n = 0;
  for (const h of req.headers) {
    if (!/^x-/i.test(h.name) || n >= 32) continue;
    out[h.name] = out[h.name] === undefined ? h.value.slice(0, 256) : `${out[h.name]}, ${h.value.slice(0, 256)}`;
    n++;
  }
  return out;
}

/**
 * The numbers a STIR/SHAKEN verifier compares a PASSporT with (RFC 8224 §6.2, ATIS-1000074
 * §5.3.1): the calling number as presented, P-Asserted-Identity's else From's, before any
 * privacy is applied (a withheld caller's PASSporT still names them); and the called number,
 * the Request-URI's and To's (a retargeted call keeps the number it was signed for in To).
 */
export function stirNumbersOf(req: SipRequest): { orig: string | undefined; dest: string[] } {
  const numberIn = (values: string[]) =>
    values
      .flatMap((v) => {
        try {
          return [e164Of(parseNameAddr(v).uri)];
        } catch {
          return [];
        }
      })
      .find((n) => n !== undefined);
  const orig = numberIn(headerList(req, 'P-Asserted-Identity').flatMap((v) => splitList(v))) ?? numberIn(headerList(req, 'From'));
  const dest = [e164Of(req.uri), numberIn(headerList(req, 'To'))].filter((n): n is string => n !== undefined);
  return { orig, dest: [...new Set(dest)] };
}
