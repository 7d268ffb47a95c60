import type { Clock, TimerHandle } from '../core/clock.js';
import { header, headerList, type SipHeader, type SipRequest } from '../sip/message.js';

/** Session-Expires we accept at least (RFC 4028 §5: Min-SE, never below 90); JsSIP asks for 90. */
export const MIN_SE = 90;
/** The longest interval we keep: a day. */
export const MAX_SE = 86_400;

/** What the UAS side of a session timer agreed (RFC 4028 §9). */
export interface SessionTimerTerms {
  /** Seconds. */
  interval: number;
  refresher: 'uac' | 'uas';
}

export type SessionTimerOffer =
  | { kind: 'none' }
  | { kind: 'too-small'; minSe: number }
  | { kind: 'agreed'; terms: SessionTimerTerms; headers: SipHeader[] };

/**
 * RFC 4028 §9, as the UAS of an INVITE (or a refreshing re-INVITE/UPDATE): the interval asked
 * (422 with Min-SE below ours), and who refreshes. A UAC that supports timers refreshes unless
 * it asked us to; one that does not (a proxy inserted Session-Expires) leaves it to us, and then
 * the answer carries no `Require: timer`, which it would not understand (§9).
 */
export function negotiateSessionTimer(req: SipRequest): SessionTimerOffer {
  const se = header(req, 'Session-Expires');
  if (!se) return { kind: 'none' };
  const m = /^\s*(\d+)\s*(?:;(.*))?$/.exec(se);
  if (!m) return { kind: 'none' };
  // §9 lets the UAS lower the interval: a day at most (a timer beyond 2^31 ms would fire at once).
  const interval = Math.min(Number(m[1]), MAX_SE);
  // §5: Min-SE the UAC stated raises our floor for this session.
  const theirMin = Number(/^\s*(\d+)/.exec(header(req, 'Min-SE') ?? '')?.[1] ?? 0);
  if (interval < MIN_SE) return { kind: 'too-small', minSe: Math.max(MIN_SE, theirMin) };
  const asked = /refresher\s*=\s*(uac|uas)/i.exec(m[2] ?? '')?.[1]?.toLowerCase() as 'uac' | 'uas' | undefined;
  const uacSupports = headerList(req, 'Supported').some((s) => s.toLowerCase() === 'timer');
  const refresher: 'uac' | 'uas' = uacSupports ? asked ?? 'uac' : 'uas';
  const headers: SipHeader[] = [{ name: 'Session-Expires', value: `${interval};refresher=${refresher}` }];
  if (uacSupports) headers.push({ name: 'Require', value: 'timer' });
  return { kind: 'agreed', terms: { interval, refresher }, headers };
}

/**
 * The session timer of one dialog where voxgate is the UAS (RFC 4028 §10): as the refresher it
 * refreshes at half the interval; otherwise it ends the session when no refresh came before
 * the interval minus min(32 s, a third of it), as §10 asks of the side that waits.
 */
export class SessionTimer {
  #timer: TimerHandle | undefined;
  #terms: SessionTimerTerms;
  #stopped = false;

  constructor(
    private readonly clock: Clock,
    terms: SessionTimerTerms,
    private readonly actions: { refresh(interval: number): void; expired(): void },
  ) {
    this.#terms = terms;
    this.#arm();
  }

  get terms(): SessionTimerTerms {
    return this.#terms;
  }

  /** We refresh (the UAS was named refresher). */
  get ours(): boolean {
    return this.#terms.refresher === 'uas';
  }

  /** A refresh happened (theirs arrived, or ours was answered 2xx): the interval starts again, maybe with new terms. */
  refreshed(terms: SessionTimerTerms = this.#terms): void {
    if (this.#stopped) return;
    this.#terms = terms;
    this.#arm();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) this.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(): void {
    if (this.#timer) this.clock.clearTimeout(this.#timer);
    const ms = this.#terms.interval * 1000;
    if (this.ours) {
      this.#timer = this.clock.setTimeout(() => {
        if (this.#stopped) return;
        this.actions.refresh(this.#terms.interval);
        // §10: if the refresh gets no answer, the session ends min(32 s, interval/3) before it expires.
        this.#timer = this.clock.setTimeout(() => this.#expire(), ms / 2 - Math.min(32_000, ms / 3));
      }, ms / 2);
    } else {
      this.#timer = this.clock.setTimeout(() => this.#expire(), ms - Math.min(32_000, ms / 3));
    }
  }

  #expire(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.actions.expired();
  }
}
