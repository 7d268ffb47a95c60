import type { SipConfig } from '../../core/config.js';
import { e164Of } from '../../sip/phone-number.js';
import type { Trunk, TrunkTable } from './trunks.js';

/**
 * A number as people write it (`+1 555 123-4567`, `+15551234567`, `sip:+15551234567@host`,
 * `tel:+1-555-123-4567`, 11-15 digits without the `+`), as E.164; undefined when it is not an
 * international number (a short extension such as `1001` is a user, not a number).
 */
export function phoneNumberOf(target: string): string | undefined {
  const t = target.trim();
  const n = /^sips?:|^tel:/i.test(t) ? e164Of(t) : /^\+?[\d\-. ()]+$/.test(t) ? e164Of(`sip:${t.replace(/[\-. ()]/g, '')}@x`) : undefined;
  return n?.startsWith('+') ? n : undefined;
}

/**
 * Which trunk a number goes out on: `sip.outboundRoutes`, the longest matching prefix whose trunk
 * the caller may use (a SIP user's `trunks`; any for the agent and the API).
 */
export class OutboundRoutes {
  readonly #routes: { prefix: string; trunk: Trunk }[];

  constructor(
    readonly trunks: TrunkTable,
    routes: SipConfig['outboundRoutes'],
  ) {
    this.#routes = routes
      .map((r) => ({ prefix: r.prefix, trunk: trunks.byName(r.trunk)! }))
      .filter((r) => r.trunk?.config.outbound)
      .sort((a, b) => b.prefix.length - a.prefix.length);
  }

  /** The trunk for a number, or undefined when no route takes it (for this caller). */
  trunkFor(number: string, allowed?: readonly string[]): Trunk | undefined {
    const digits = number.replace(/^\+/, '');
    return this.#routes.find((r) => (number.startsWith(r.prefix) || digits.startsWith(r.prefix.replace(/^\+/, ''))) && (!allowed || allowed.includes(r.trunk.name)))?.trunk;
  }

  /** Trunks that can place calls. */
  get outbound(): Trunk[] {
    return this.trunks.all.filter((t) => t.config.outbound);
  }
}

/**
 * The caller ID a call on this trunk presents: `wanted` when the trunk owns it; else the trunk's
 * first `outbound.numbers`; else `fallback` (the number a phone call came in on), else undefined.
 */
export function callerIdFor(trunk: Trunk, wanted?: string, fallback?: string): string | undefined {
  const numbers = trunk.config.outbound?.numbers ?? [];
  if (wanted !== undefined) return numbers.includes(wanted) ? wanted : undefined;
  return numbers[0] ?? fallback;
}
