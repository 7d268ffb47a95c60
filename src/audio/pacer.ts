import { samplesPerFrame } from './frame.js';

/**
 * The agent's outbound audio: `play()` takes any length, the pacer hands out exactly one
 * 20 ms frame per tick. Marks sit between frames and resolve when everything queued before
 * them has been played (`played`) or dropped by `clear()` (`cleared`).
 */
type Item = { kind: 'audio'; samples: Int16Array } | { kind: 'mark'; name: string; resolve: (r: MarkResult) => void };
export type MarkResult = 'played' | 'cleared';

export class Pacer {
  readonly #frame: number;
  readonly #queue: Item[] = [];
  #pending = new Int16Array(0);
  #queuedSamples = 0;

  constructor(readonly rate: number) {
    this.#frame = samplesPerFrame(rate);
  }

  /** Queued audio, ms. */
  get queuedMs(): number {
    return ((this.#queuedSamples + this.#pending.length) * 1000) / this.rate;
  }

  play(samples: Int16Array): void {
    // Whole frames go to the queue; a remainder waits for the next play() or is padded at the end.
    let data = samples;
    if (this.#pending.length) {
      data = new Int16Array(this.#pending.length + samples.length);
      data.set(this.#pending);
      data.set(samples, this.#pending.length);
    }
    const whole = data.length - (data.length % this.#frame);
    for (let i = 0; i < whole; i += this.#frame) this.#push({ kind: 'audio', samples: data.slice(i, i + this.#frame) });
    this.#pending = data.slice(whole);
  }

  mark(name: string): Promise<MarkResult> {
    this.#flushPending();
    return new Promise((resolve) => {
      this.#queue.push({ kind: 'mark', name, resolve });
      this.#resolveLeadingMarks();
    });
  }

  /** Barge-in: drop everything queued; marks resolve as cleared. */
  clear(): number {
    let dropped = 0;
    for (const item of this.#queue.splice(0)) {
      if (item.kind === 'mark') item.resolve('cleared');
      else dropped++;
    }
    this.#pending = new Int16Array(0);
    this.#queuedSamples = 0;
    return dropped;
  }

  /** The next frame to send, or undefined when nothing is queued (the caller sends silence). */
  next(): Int16Array | undefined {
    this.#resolveLeadingMarks();
    const item = this.#queue.shift();
    if (!item) return undefined;
    if (item.kind !== 'audio') return undefined;
    this.#queuedSamples -= item.samples.length;
    this.#resolveLeadingMarks();
    return item.samples;
  }

  #push(item: Item): void {
    this.#queue.push(item);
    if (item.kind === 'audio') this.#queuedSamples += item.samples.length;
  }

  #flushPending(): void {
    if (!this.#pending.length) return;
    const padded = new Int16Array(this.#frame);
    padded.set(this.#pending);
    this.#pending = new Int16Array(0);
    this.#push({ kind: 'audio', samples: padded });
  }

  #resolveLeadingMarks(): void {
    while (this.#queue[0]?.kind === 'mark') (this.#queue.shift() as Extract<Item, { kind: 'mark' }>).resolve('played');
  }
}
