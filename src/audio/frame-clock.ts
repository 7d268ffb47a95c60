import type { Clock, TimerHandle } from '../core/clock.js';
import { FRAME_MS } from './frame.js';

/**
 * One 20 ms tick for every session of the process (one timer, not one per session), aligned
 * to ideal times so it does not drift. A subscriber that throws is reported and skipped.
 */
export class FrameClock {
  readonly #subs = new Set<(nowMs: number) => void>();
  #timer: TimerHandle | undefined;
  #next = 0;

  constructor(
    private readonly clock: Clock,
    private readonly onError: (err: unknown) => void,
  ) {}

  get size(): number {
    return this.#subs.size;
  }

  subscribe(fn: (nowMs: number) => void): () => void {
    this.#subs.add(fn);
    if (!this.#timer) {
      this.#next = this.clock.now() + FRAME_MS;
      this.#schedule();
    }
    return () => {
      this.#subs.delete(fn);
      if (this.#subs.size === 0 && this.#timer) {
        this.clock.clearTimeout(this.#timer);
        this.#timer = undefined;
      }
    };
  }

  #schedule(): void {
    this.#timer = this.clock.setTimeout(() => this.#tick(), Math.max(0, this.#next - this.clock.now()));
  }

  #tick(): void {
    const now = this.clock.now();
    for (const fn of [...this.#subs]) {
      try {
        fn(now);
      } catch (err) {
        this.onError(err);
      }
    }
    this.#next += FRAME_MS;
    // After a long stall (GC, a blocked loop) skip ahead instead of bursting to catch up.
    if (this.clock.now() - this.#next > 5 * FRAME_MS) this.#next = this.clock.now() + FRAME_MS;
    if (this.#subs.size > 0) this.#schedule();
    else this.#timer = undefined;
  }
}
