/** Signals and measurements for audio tests (kept in src/ so unit tests and e2e share them). */
export function tone(hz: number, rate: number, samples: number, amplitude = 16000, phase = 0): Int16Array {
  const out = new Int16Array(samples);
  for (let i = 0; i < samples; i++) out[i] = Math.round(amplitude * Math.sin(phase + (2 * Math.PI * hz * i) / rate));
  return out;
}

/** SNR of `x` against the best-fitting sinusoid at `hz` (any phase and gain), dB. */
export function toneSnrDb(x: ArrayLike<number>, hz: number, rate: number): number {
  let ss = 0;
  let sc = 0;
  let cc = 0;
  let xs = 0;
  let xc = 0;
  for (let i = 0; i < x.length; i++) {
    const s = Math.sin((2 * Math.PI * hz * i) / rate);
    const c = Math.cos((2 * Math.PI * hz * i) / rate);
    ss += s * s;
    sc += s * c;
    cc += c * c;
    xs += x[i]! * s;
    xc += x[i]! * c;
  }
  const det = ss * cc - sc * sc;
  const a = (xs * cc - xc * sc) / det;
  const b = (xc * ss - xs * sc) / det;
  let pSig = 0;
  let pErr = 0;
  for (let i = 0; i < x.length; i++) {
    const fit = a * Math.sin((2 * Math.PI * hz * i) / rate) + b * Math.cos((2 * Math.PI * hz * i) / rate);
    pSig += fit * fit;
    pErr += (x[i]! - fit) ** 2;
  }
  return 10 * Math.log10(pSig / Math.max(pErr, 1e-9));
}

export function rms(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return Math.sqrt(s / Math.max(1, x.length));
}

/** Frames (or any PCM parts) joined into one signal. */
export function concatPcm(parts: readonly Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * The share of a signal's energy that is a tone at `hz`, as the median over its 100 ms windows
 * (so a gap or a ramp does not decide it): 1 for a pure tone, near 0 when the tone is absent.
 */
export function toneShare(pcm: Int16Array, hz: number, rate: number): number {
  const win = rate / 10;
  const shares: number[] = [];
  for (let at = 0; at + win <= pcm.length; at += win) shares.push(1 / (1 + 10 ** (-toneSnrDb(pcm.subarray(at, at + win), hz, rate) / 10)));
  shares.sort((a, b) => a - b);
  return shares[Math.floor(shares.length / 2)] ?? 0;
}
