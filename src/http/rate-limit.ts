/** Token bucket per client address for mutating requests (RFC 9725 §5: rate-limit POST, PATCH, DELETE). */
export class RateLimiter {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly now: () => number,
  ) {}

  /** Takes one token; returns 0 when allowed, else the seconds to wait. */
  take(key: string): number {
    const t = this.now();
    let b = this.#buckets.get(key);
    if (!b) {
      b = { tokens: this.burst, at: t };
      this.#buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) / 1000) * this.perSecond);
      b.at = t;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    if (this.#buckets.size > 10_000) this.#prune(t);
    return Math.max(1, Math.ceil((1 - b.tokens) / this.perSecond));
  }

  /** Buckets that have refilled completely carry no state worth keeping. */
  #prune(t: number): void {
    for (const [k, b] of this.#buckets) {
      if (b.tokens + ((t - b.at) / 1000) * this.perSecond >= this.burst) this.#buckets.delete(k);
    }
  }
}
