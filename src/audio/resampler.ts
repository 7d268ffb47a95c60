/**
 * A band-limited rational resampler (polyphase FIR, Kaiser-windowed sinc) for the rates voxgate
 * uses: 8, 16, 24 and 48 kHz. The filter passes up to 87.5 % of the lower Nyquist frequency
 * (3.5 kHz of telephone band, 7 kHz of wideband: G.711's and G.722's own passbands) and stops at
 * the lower Nyquist with 75 dB of attenuation (twice G.711's own dynamic range), so nothing
 * above the new Nyquist folds back audibly. Why not more: every 8 <-> 48 kHz call runs two of
 * these for each 20 ms frame, and the filter length grows with attenuation over transition
 * width; these bounds cost about a third of a 90 dB / 10 % filter. It keeps its history across
 * calls, so a stream can be fed frame by frame, and allocates only its output.
 */
export class Resampler {
  readonly up: number;
  readonly down: number;
  /** Every phase's taps, one after another: phase p's k-th tap at p * tapsPerPhase + k. */
  readonly #taps: Float64Array;
  readonly #tapsPerPhase: number;
  /** The last tapsPerPhase - 1 input samples, then room for one frame: grown when a bigger one comes. */
  #buf: Float64Array;
  /** Position of the next output sample, in input samples × up. */
  #t = 0;

  constructor(
    readonly inRate: number,
    readonly outRate: number,
  ) {
    const g = gcd(inRate, outRate);
    this.up = outRate / g;
    this.down = inRate / g;
    const { taps, tapsPerPhase } = filterFor(inRate, outRate, this.up);
    this.#taps = taps;
    const T = (this.#tapsPerPhase = tapsPerPhase);
    this.#buf = new Float64Array(T - 1 + Math.ceil(inRate / 50));
  }

  /** The delay the filter adds, in output samples. */
  get delaySamples(): number {
    return Math.round((this.#tapsPerPhase * this.up) / 2 / this.down);
  }

  process(input: Int16Array): Int16Array {
    if (this.up === 1 && this.down === 1) return input.slice();
    const T = this.#tapsPerPhase;
    const h = T - 1;
    if (this.#buf.length < h + input.length) {
      const grown = new Float64Array(h + input.length);
      grown.set(this.#buf.subarray(0, h));
      this.#buf = grown;
    }
    const buf = this.#buf;
    for (let i = 0; i < input.length; i++) buf[h + i] = input[i]!;
    const { up, down } = this;
    const taps = this.#taps;
    const limit = input.length * up;
    const out = new Int16Array(Math.max(0, Math.ceil((limit - this.#t) / down)));
    let t = this.#t;
    let o = 0;
    while (t < limit) {
      const n = (t / up) | 0;
      const base = (t - n * up) * T;
      // y = Σ_k h[k·up + phase] · x[n − k]; x[n] sits at buf[h + n].
      let acc = 0;
      for (let k = 0, j = h + n; k < T; k++, j--) acc += taps[base + k]! * buf[j]!;
      out[o++] = acc >= 32767 ? 32767 : acc <= -32768 ? -32768 : Math.round(acc);
      t += down;
    }
    this.#t = t - limit;
    // The newest h samples become the history of the next frame.
    buf.copyWithin(0, input.length, input.length + h);
    return o === out.length ? out : out.subarray(0, o);
  }

  toString(): string {
    return `Resample(${this.inRate / 1000}k->${this.outRate / 1000}k)`;
  }
}

/**
 * The polyphase taps for a rate pair, made once per thread and shared by every resampler of that
 * pair (they are only read): a call's own copy would live as long as the call and, freed, wait
 * for a rare old-generation collection of its codec thread.
 */
const filters = new Map<string, { taps: Float64Array; tapsPerPhase: number }>();

function filterFor(inRate: number, outRate: number, up: number): { taps: Float64Array; tapsPerPhase: number } {
  const key = `${inRate}:${outRate}`;
  const hit = filters.get(key);
  if (hit) return hit;
  const fsProto = inRate * up;
  const nyq = Math.min(inRate, outRate) / 2;
  const pass = 0.875 * nyq;
  const stop = nyq;
  const atten = 75;
  const beta = 0.1102 * (atten - 8.7);
  const transition = (2 * Math.PI * (stop - pass)) / fsProto;
  let n = Math.ceil((atten - 8) / (2.285 * transition)) + 1;
  n = Math.ceil(n / up) * up;
  const fc = (pass + stop) / 2 / fsProto; // cycles per sample at the prototype rate
  const proto = new Float64Array(n);
  const mid = (n - 1) / 2;
  const i0b = besselI0(beta);
  for (let i = 0; i < n; i++) {
    const x = i - mid;
    const sinc = x === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * x) / (Math.PI * x);
    const w = besselI0(beta * Math.sqrt(1 - ((2 * i) / (n - 1) - 1) ** 2)) / i0b;
    proto[i] = sinc * w * up; // gain `up` restores the level after zero-stuffing
  }
  const T = n / up;
  const taps = new Float64Array(n);
  for (let p = 0; p < up; p++) for (let k = 0; k < T; k++) taps[p * T + k] = proto[k * up + p]!;
  const filter = { taps, tapsPerPhase: T };
  filters.set(key, filter);
  return filter;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function besselI0(x: number): number {
  let sum = 1;
  let term = 1;
  for (let k = 1; k < 50; k++) {
    term *= (x / (2 * k)) ** 2;
    sum += term;
    if (term < 1e-12 * sum) break;
  }
  return sum;
}
