import { ntpFromMs, ntpMiddle, type ReportBlock } from './rtcp.js';

/** Reception statistics of one source, per RFC 3550 Appendix A.3 (loss) and A.8 (jitter). */
export class ReceiverStats {
  received = 0;
  #baseSeq: number | undefined;
  #maxSeq = 0;
  #jitter = 0; // timestamp units, RFC 3550 A.8 (×16 kept implicit by the /16 update)
  #lastTransit: number | undefined;
  #expectedPrior = 0;
  #receivedPrior = 0;
  #lastSr: { middle: number; atMs: number } | undefined;

  constructor(private readonly clockRate: number) {}

  /** Records an RTP packet: its extended sequence number, timestamp and arrival time. */
  record(extSeq: number, timestamp: number, arrivalMs: number): void {
    this.#baseSeq ??= extSeq;
    if (extSeq > this.#maxSeq || this.received === 0) this.#maxSeq = Math.max(this.#maxSeq, extSeq);
    this.received++;
    const transit = (arrivalMs * this.clockRate) / 1000 - timestamp;
    if (this.#lastTransit !== undefined) this.#jitter += (Math.abs(transit - this.#lastTransit) - this.#jitter) / 16;
    this.#lastTransit = transit;
  }

  recordSenderReport(ntpSec: number, ntpFrac: number, arrivalMs: number): void {
    this.#lastSr = { middle: ntpMiddle(ntpSec, ntpFrac), atMs: arrivalMs };
  }

  get expected(): number {
    return this.#baseSeq === undefined ? 0 : this.#maxSeq - this.#baseSeq + 1;
  }

  get lost(): number {
    return Math.max(0, this.expected - this.received);
  }

  get lossPercent(): number {
    return this.expected ? (100 * this.lost) / this.expected : 0;
  }

  get jitterMs(): number {
    return (this.#jitter * 1000) / this.clockRate;
  }

  /** A report block for our RR (RFC 3550 §6.4.1), advancing the interval counters. */
  reportBlock(sourceSsrc: number, nowMs: number): ReportBlock {
    const expected = this.expected;
    const expectedInterval = expected - this.#expectedPrior;
    const receivedInterval = this.received - this.#receivedPrior;
    this.#expectedPrior = expected;
    this.#receivedPrior = this.received;
    const lostInterval = expectedInterval - receivedInterval;
    const fraction = expectedInterval <= 0 || lostInterval <= 0 ? 0 : Math.floor((lostInterval << 8) / expectedInterval);
    return {
      ssrc: sourceSsrc,
      fractionLost: Math.min(255, fraction),
      cumulativeLost: expected - this.received,
      highestSeq: this.#maxSeq >>> 0,
      jitter: Math.round(this.#jitter) >>> 0,
      lsr: this.#lastSr?.middle ?? 0,
      dlsr: this.#lastSr ? Math.round(((nowMs - this.#lastSr.atMs) / 1000) * 65536) : 0,
    };
  }
}

/** RFC 3550 §6.4.1: RTT = A − LSR − DLSR, in 1/65536 s, from a report block about our stream. */
export function rttFromReport(block: ReportBlock, arrivalMs: number): number | undefined {
  if (block.lsr === 0) return undefined;
  const a = ntpFromMs(arrivalMs);
  const rtt = (ntpMiddle(a.sec, a.frac) - block.lsr - block.dlsr) >>> 0;
  const ms = (rtt / 65536) * 1000;
  return ms < 60_000 ? ms : undefined;
}
