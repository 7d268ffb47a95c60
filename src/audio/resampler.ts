/**
 * A band-limited rational resampler (polyphase FIR, Kaiser-windowed sinc) for the rates voxgate
 * uses: 8, 16, 24 and 48 kHz. The filter passes up to 90 % of the lower Nyquist frequency and
 * stops at the lower Nyquist with about 90 dB of attenuation, so nothing above the new Nyquist
 * folds back. It keeps its history across calls, so a stream can be fed frame by frame.
 */
export class Resampler {
  readonly up: number;
  readonly down: number;
  readonly #phases: Float64Array[];
  readonly #tapsPerPhase: number;
  #history: Float64Array;
  /** Position of the next output sample, in input samples × up. */
  #t = 0;

  constructor(
    readonly inRate: number,
    readonly outRate: number,
  ) {
    const g = gcd(inRate, outRate);
    this.up = outRate / g;
    this.down = inRate / g;
    const fsProto = inRate * this.up;
    const nyq = Math.min(inRate, outRate) / 2;
    const pass = 0.9 * nyq;
    const stop = nyq;
    const atten = 90;
    const beta = 0.1102 * (atten - 8.7);
    const transition = (2 * Math.PI * (stop - pass)) / fsProto;
    let n = Math.ceil((atten - 8) / (2.285 * transition)) + 1;
    n = Math.ceil(n / this.up) * this.up;
    const fc = (pass + stop) / 2 / fsProto; // cycles per sample at the prototype rate
    const proto = new Float64Array(n);
    const mid = (n - 1) / 2;
    const i0b = besselI0(beta);
    for (let i = 0; i < n; i++) {
      const x = i - mid;
      const sinc = x === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * x) / (Math.PI * x);
      const w = besselI0(beta * Math.sqrt(1 - ((2 * i) / (n - 1) - 1) ** 2)) / i0b;
      proto[i] = sinc * w * this.up; // gain `up` restores the level after zero-stuffing
    }
    this.#tapsPerPhase = n / this.up;
    this.#phases = Array.from({ length: this.up }, (_, p) => {
      const taps = new Float64Array(this.#tapsPerPhase);
      for (let k = 0; k < this.#tapsPerPhase; k++) taps[k] = proto[k * this.up + p]!;
      return taps;
    });
    this.#history = new Float64Array(this.#tapsPerPhase - 1);
  }

  /** The delay the filter adds, in output samples. */
  get delaySamples(): number {
    return Math.round((this.#tapsPerPhase * this.up) / 2 / this.down);
  }

  process(input: Int16Array): Int16Array {
    if (this.up === 1 && this.down === 1) return input.slice();
    const h = this.#history.length;
    const buf = new Float64Array(h + input.length);
    buf.set(this.#history);
    for (let i = 0; i < input.length; i++) buf[h + i] = input[i]!;
    const out: number[] = [];
    const limit = input.length * this.up;
    const T = this.#tapsPerPhase;
    while (this.#t < limit) {
      const n = Math.floor(this.#t / this.up);
      const phase = this.#t % this.up;
      const taps = this.#phases[phase]!;
      let acc = 0;
      // y = Σ_k h[k·up + phase] · x[n − k]; x[n] sits at buf[h + n].
      for (let k = 0; k < T; k++) acc += taps[k]! * buf[h + n - k]!;
      out.push(acc);
      this.#t += this.down;
    }
    this.#t -= limit;
    this.#history = buf.slice(buf.length - h);
    const result = new Int16Array(out.length);
    for (let i = 0; i < out.length; i++) result[i] = Math.max(-32768, Math.min(32767, Math.round(out[i]!)));
    return result;
  }

  toString(): string {
    return `Resample(${this.inRate / 1000}k->${this.outRate / 1000}k)`;
  }
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
