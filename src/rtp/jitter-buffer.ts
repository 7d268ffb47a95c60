/**
 * An adaptive jitter buffer for one audio stream of fixed-duration packets (20 ms here).
 *
 * It is pulled once per frame by the playout clock. Playout starts when the first packet has
 * waited the target delay; then each pull returns the next sequence number, a loss to conceal
 * (a later packet is already here), or an underrun (nothing later yet: conceal, and hold the
 * read position so the buffer grows by one frame). The target follows the measured jitter
 * (RFC 3550 §6.4.1 estimator): min 20 ms on a clean network, up to the configured cap; excess
 * delay is shed one frame at a time once it has persisted for a second.
 */
export interface JitterPacket {
  /** Extended (unwrapped) sequence number. */
  seq: number;
  /** Extended timestamp in clock-rate units. */
  timestamp: number;
  payload: Buffer;
  arrivalMs: number;
}

export type JitterOutput =
  | { kind: 'packet'; packet: JitterPacket }
  /** `next`: the packet after the lost one, when it is already here (its in-band FEC may hold the lost frame). */
  | { kind: 'lost'; seq: number; next: JitterPacket | undefined }
  | { kind: 'underrun' }
  | { kind: 'idle' };

export interface JitterStats {
  pushed: number;
  duplicates: number;
  late: number;
  lost: number;
  underruns: number;
  shed: number;
  /** Frames dropped because the buffer went past its cap (the consumer fell behind). */
  overflow: number;
}

export class JitterBuffer {
  readonly #queue = new Map<number, JitterPacket>();
  #nextSeq: number | undefined;
  #highestSeq = -Infinity;
  #started = false;
  #firstArrival = 0;
  #jitterMs = 0;
  #lastTransit: number | undefined;
  #excessPulls = 0;
  #emptySince: number | undefined;
  readonly stats: JitterStats = { pushed: 0, duplicates: 0, late: 0, lost: 0, underruns: 0, shed: 0, overflow: 0 };

  constructor(
    private readonly opts: { clockRate: number; frameMs: number; minDelayMs: number; maxDelayMs: number },
  ) {}

  /** The interarrival jitter estimate, ms. */
  get jitterMs(): number {
    return this.#jitterMs;
  }

  /** The delay the buffer aims for, ms: a frame multiple between min and max. */
  get targetDelayMs(): number {
    const { frameMs, minDelayMs, maxDelayMs } = this.opts;
    const want = Math.ceil((3 * this.#jitterMs) / frameMs) * frameMs;
    return Math.min(maxDelayMs, Math.max(minDelayMs, want));
  }

  /** Audio held ahead of the read position, ms: the delay the buffer currently adds. */
  get delayMs(): number {
    if (this.#nextSeq === undefined) return 0;
    return Math.max(0, this.#highestSeq - this.#nextSeq + 1) * this.opts.frameMs;
  }

  push(p: JitterPacket): 'ok' | 'duplicate' | 'late' {
    if (this.#nextSeq !== undefined && p.seq < this.#nextSeq) {
      if (this.#started) {
        this.stats.late++;
        return 'late';
      }
      this.#nextSeq = p.seq; // reordered before playout began: start from the earliest
    }
    if (this.#queue.has(p.seq)) {
      this.stats.duplicates++;
      return 'duplicate';
    }
    // RFC 3550 §6.4.1: J += (|D| - J) / 16, with D the change in transit time.
    const transit = p.arrivalMs - (p.timestamp * 1000) / this.opts.clockRate;
    if (this.#lastTransit !== undefined) this.#jitterMs += (Math.abs(transit - this.#lastTransit) - this.#jitterMs) / 16;
    this.#lastTransit = transit;
    if (this.#queue.size === 0 && this.#nextSeq === undefined) this.#firstArrival = p.arrivalMs;
    this.#queue.set(p.seq, p);
    if (p.seq > this.#highestSeq) this.#highestSeq = p.seq;
    this.#nextSeq ??= p.seq;
    this.stats.pushed++;
    this.#emptySince = undefined;
    // A hard ceiling: if playout falls behind (an overloaded process), drop the oldest audio
    // rather than let latency grow without bound; shedding brings it back to the target.
    if (this.#started && this.delayMs > this.opts.maxDelayMs) {
      while (this.delayMs > this.opts.maxDelayMs && this.#nextSeq! < this.#highestSeq) {
        if (this.#queue.delete(this.#nextSeq!)) this.stats.overflow++;
        this.#nextSeq!++;
      }
    }
    return 'ok';
  }

  /** One frame's worth of output, called every frameMs by the playout clock. */
  pop(nowMs: number): JitterOutput {
    if (this.#nextSeq === undefined) return { kind: 'idle' };
    if (!this.#started) {
      if (nowMs - this.#firstArrival < this.targetDelayMs) return { kind: 'idle' };
      this.#started = true;
    }
    const seq = this.#nextSeq;
    const p = this.#queue.get(seq);
    if (p) {
      this.#queue.delete(seq);
      this.#nextSeq = seq + 1;
      this.#shedExcess();
      return { kind: 'packet', packet: p };
    }
    if (this.#highestSeq > seq) {
      this.stats.lost++;
      this.#nextSeq = seq + 1;
      return { kind: 'lost', seq, next: this.#queue.get(seq + 1) };
    }
    // Nothing later has arrived: conceal, keep the read position (the buffer deepens by a frame).
    this.stats.underruns++;
    this.#emptySince ??= nowMs;
    if (nowMs - this.#emptySince >= this.opts.maxDelayMs) {
      // A pause (DTX, mute, a dead source): start afresh with the next packet.
      this.#reset();
      return { kind: 'idle' };
    }
    this.#jitterMs = Math.max(this.#jitterMs, this.opts.frameMs / 3);
    return { kind: 'underrun' };
  }

  #shedExcess(): void {
    if (this.delayMs > this.targetDelayMs + this.opts.frameMs) this.#excessPulls++;
    else this.#excessPulls = 0;
    if (this.#excessPulls >= 1000 / this.opts.frameMs && this.#nextSeq !== undefined) {
      this.#queue.delete(this.#nextSeq);
      this.#nextSeq++;
      this.stats.shed++;
      this.#excessPulls = 0;
    }
  }

  #reset(): void {
    this.#queue.clear();
    this.#nextSeq = undefined;
    this.#highestSeq = -Infinity;
    this.#started = false;
    this.#emptySince = undefined;
    this.#lastTransit = undefined;
  }
}
