import { TypedEmitter } from '../core/events.js';

/**
 * One thing that happened in a call, as the console's timeline shows it: what the agent sent
 * (`turn`, `turn-start`, `barge-in`, `mark`, `agent-text`, `cleared`, ...), a digit, a transfer
 * and its outcome. Plain JSON, `type` first, the wording in web/timeline.js.
 */
export interface ActivityEvent {
  type: string;
  [field: string]: unknown;
}

export interface CallActivityEvents extends Record<string, unknown[]> {
  event: [event: ActivityEvent, at: number];
}

/** Audio level of one side over a window, dBFS relative to a full-scale square wave (floored at -90: digital silence). */
export interface Levels {
  /** What the caller sends (decoded). */
  in: number;
  /** What the caller hears (the agent, or the other party). */
  out: number;
}

/** A window's RMS levels and the peak of each side, dBFS. */
export type MeteredLevels = Levels & { peakIn: number; peakOut: number };

/** Below this a side reads as silent on the meters. */
const FLOOR_DBFS = -90;

/**
 * What a call does that an operator watches: its event timeline and, while someone meters it,
 * the levels of the two sides. Metering is off by default: a call nobody watches spends nothing
 * on it (the tick is one boolean test).
 */
export class CallActivity extends TypedEmitter<CallActivityEvents> {
  #metering = false;
  readonly #sum = { in: 0, out: 0 };
  readonly #peak = { in: 0, out: 0 };
  #samples = 0;

  constructor(private readonly now: () => number = Date.now) {
    super();
  }

  /** Records an event (a listener that throws is reported and never reaches the call). */
  event(event: ActivityEvent): void {
    this.emit('event', event, this.now());
  }

  /** Levels are measured from now on (or no longer). */
  meter(on: boolean): void {
    this.#metering = on;
    if (!on) this.#reset();
  }

  /** Once per tick: the caller's frame and the other side's (either may be missing: silence). */
  tick(caller: Int16Array | undefined, other: Int16Array | undefined): void {
    if (!this.#metering) return;
    const n = caller?.length ?? other?.length ?? 0;
    if (caller) this.#add('in', caller);
    if (other) this.#add('out', other);
    this.#samples += n;
  }

  /** RMS level of each side since the last call (or since metering began), then starts a new window. */
  takeLevels(): MeteredLevels {
    const n = this.#samples;
    const db = (energy: number) => (n === 0 || energy === 0 ? FLOOR_DBFS : Math.max(FLOOR_DBFS, 10 * Math.log10(energy / n / 32768 ** 2)));
    const peak = (p: number) => (p === 0 ? FLOOR_DBFS : Math.max(FLOOR_DBFS, 20 * Math.log10(p / 32768)));
    const levels = { in: round1(db(this.#sum.in)), out: round1(db(this.#sum.out)), peakIn: round1(peak(this.#peak.in)), peakOut: round1(peak(this.#peak.out)) };
    this.#reset();
    return levels;
  }

  #add(side: 'in' | 'out', frame: Int16Array): void {
    let sum = 0;
    let peak = this.#peak[side];
    for (let i = 0; i < frame.length; i++) {
      const s = frame[i]!;
      sum += s * s;
      const a = s < 0 ? -s : s;
      if (a > peak) peak = a;
    }
    this.#sum[side] += sum;
    this.#peak[side] = peak;
  }

  #reset(): void {
    this.#sum.in = this.#sum.out = 0;
    this.#peak.in = this.#peak.out = 0;
    this.#samples = 0;
  }
}

const round1 = (x: number) => Math.round(x * 10) / 10;
