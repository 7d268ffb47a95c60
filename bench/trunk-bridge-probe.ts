/**
 * The audio probe of the bridge bench (bench/trunk-bridge.ts), for both codecs: the same
 * markers as bench/trunk-media.ts (every MARKER_EVERY frames a 20 ms tone, MARKER_HZ in turn),
 * here over a low noise floor so that Opus is coded at a speech-like rate rather than as
 * digital silence (a silent stream is far cheaper to decode and would flatter a transcoder).
 *
 * The signal is a cycle of CYCLE_FRAMES frames, encoded once per codec: PCMU by G.711, Opus by
 * one libopus encoder run over the cycle twice, the second pass kept, so the frame after the
 * last is coded from the state the cycle itself leaves (the wrap is seamless). Each call starts
 * the cycle at its own offset, spreading the markers over the 20 ms ticks.
 *
 * The detector works on 8 kHz linear samples (PCMU expanded, Opus decoded at 8 kHz): a marker's
 * onset found to the sample (|x| over ONSET_LEVEL after a quiet stretch), its tone told by zero
 * crossings, matched to the latest marker of that tone the far end sent. Thresholds as in
 * bench/trunk-media.ts.
 */
import { OpusEncoder } from '../src/testing/opus.js';
import { linearToUlaw, ulawToLinear } from '../src/audio/g711.js';
import { FRAME_MS, MARKER_EVERY, MARKER_HZ } from './trunk-media.js';

export const CYCLE_FRAMES = MARKER_EVERY * MARKER_HZ.length;
const MARKER_LEVEL = 10_000;
/**
 * The noise floor's peak (uniform): about -60 dBFS RMS, a quiet room or line, under QUIET_LEVEL
 * even after Opus's coding noise. BENCH_NOISE_PEAK=0: digital silence between the markers, to
 * see how much a transcoder's cost depends on what it codes.
 */
const NOISE_PEAK = Number(process.env.BENCH_NOISE_PEAK ?? 60);
const ONSET_LEVEL = 3_000;
const QUIET_LEVEL = 300;
const QUIET_SAMPLES = 40;
const ZC_SKIP = 8;
const ZC_SAMPLES = 120;
const ZC_LEVEL = 200;
const EXPECTED_CROSSINGS = MARKER_HZ.map((hz) => (2 * hz * ZC_SAMPLES) / 8000);
/**
 * Opus as a browser sends it: mono, 32 kbit/s (Chrome's default for a microphone), which libopus
 * codes in hybrid mode (SILK + CELT, TOC config 15) for this signal; BENCH_OPUS_BITRATE to change.
 */
export const OPUS_BITRATE = Number(process.env.BENCH_OPUS_BITRATE ?? 32_000);

/** Frame j of the cycle at `rate`: noise, and on every MARKER_EVERY-th frame a tone from its first sample. */
function cycleFrame(j: number, rate: number, noise: () => number): Int16Array {
  const n = (rate * FRAME_MS) / 1000;
  const out = new Int16Array(n);
  const marker = j % MARKER_EVERY === 0;
  const hz = MARKER_HZ[Math.floor(j / MARKER_EVERY)]!;
  for (let i = 0; i < n; i++) out[i] = Math.round(noise() + (marker ? MARKER_LEVEL * Math.sin((2 * Math.PI * hz * i) / rate) : 0));
  return out;
}

/** A fixed pseudo-random noise source (the same signal every run). */
function noiseSource(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 2 * NOISE_PEAK;
  };
}

/** Whether frame j of the cycle carries a marker, and which tone. */
export function markerAt(j: number): number | undefined {
  return j % MARKER_EVERY === 0 ? Math.floor(j / MARKER_EVERY) : undefined;
}

/** The cycle as 20 ms PCMU payloads (160 bytes). */
export function pcmuCycle(): Buffer[] {
  const noise = noiseSource(1);
  return Array.from({ length: CYCLE_FRAMES }, (_, j) => Buffer.from(Array.from(cycleFrame(j, 8000, noise), (x) => linearToUlaw(x))));
}

/** The cycle as 20 ms Opus payloads (48 kHz mono, OPUS_BITRATE), coded continuously. */
export function opusCycle(): Buffer[] {
  const enc = new OpusEncoder(48000, 1);
  enc.setBitrate(OPUS_BITRATE);
  let out: Buffer[] = [];
  for (let pass = 0; pass < 2; pass++) {
    const noise = noiseSource(2);
    out = Array.from({ length: CYCLE_FRAMES }, (_, j) => {
      const pcm = cycleFrame(j, 48000, noise);
      return enc.encode(Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength));
    });
  }
  return out;
}

const ULAW = Int16Array.from({ length: 256 }, (_, b) => ulawToLinear(b));

/** PCMU bytes to 8 kHz linear. */
export function expandPcmu(payload: Buffer): Int16Array {
  const out = new Int16Array(payload.length);
  for (let i = 0; i < payload.length; i++) out[i] = ULAW[payload[i]!]!;
  return out;
}

/** An Opus decoder at 8 kHz mono (libopus decodes to the asked rate directly; stereo streams are downmixed). */
export class OpusTo8k {
  readonly #dec = new OpusEncoder(8000, 1);
  errors = 0;
  decode(payload: Buffer): Int16Array | undefined {
    try {
      const pcm = this.#dec.decode(payload);
      return new Int16Array(pcm.buffer, pcm.byteOffset, pcm.byteLength >> 1);
    } catch {
      this.errors++;
      return undefined;
    }
  }
}

/** The markers one end sent: when, which tone, and the latency once the far end found it (NaN before). */
export class MarkerLog {
  readonly sentAt: number[] = [];
  readonly tone: number[] = [];
  readonly latency: number[] = [];
  /** Subtracted from each latency: the sender's own codec delay (see calibrateOpus). */
  constructor(readonly codecDelayMs: number) {}

  sent(tone: number, at: number): void {
    this.sentAt.push(at);
    this.tone.push(tone);
    this.latency.push(NaN);
  }
}

export interface DetectorCounts {
  matched: number;
  /** Onsets whose tone could not be told, or that matched no marker sent. */
  garbled: number;
  /** Onsets of a marker already found (a repeated or concealed frame). */
  duplicates: number;
}

/** Finds the far end's markers in 8 kHz audio as it arrives; state is carried across packets. */
export class MarkerDetector implements DetectorCounts {
  matched = 0;
  garbled = 0;
  duplicates = 0;
  #armed = true;
  #quiet = QUIET_SAMPLES;
  #collect = 0;
  #skip = 0;
  #crossings = 0;
  #sign = 0;
  #onsetAt = 0;

  constructor(readonly far: MarkerLog) {}

  /** Samples of one packet that arrived at `arrival` (performance.now()): sample i is taken to play at arrival + i/8 ms. */
  push(x: Int16Array, arrival: number): void {
    for (let i = 0; i < x.length; i++) {
      const v = x[i]!;
      const ax = v < 0 ? -v : v;
      if (ax < QUIET_LEVEL) this.#quiet++;
      else this.#quiet = 0;
      if (this.#collect > 0) {
        if (this.#skip > 0) {
          this.#skip--;
          continue;
        }
        if (ax >= ZC_LEVEL) {
          const s = v > 0 ? 1 : -1;
          if (this.#sign !== 0 && s !== this.#sign) this.#crossings++;
          this.#sign = s;
        }
        if (--this.#collect === 0) this.#classify();
        continue;
      }
      if (this.#armed) {
        if (ax > ONSET_LEVEL) {
          this.#armed = false;
          this.#onsetAt = arrival + i / 8;
          this.#collect = ZC_SAMPLES;
          this.#skip = ZC_SKIP;
          this.#crossings = 0;
          this.#sign = 0;
        }
      } else if (this.#quiet >= QUIET_SAMPLES) {
        this.#armed = true;
      }
    }
  }

  /** A marker recognised without decoding (a frame known byte for byte, see KnownOpusFrames), its onset at `onsetAt`. */
  known(tone: number, onsetAt: number): void {
    this.#match(tone, onsetAt);
  }

  #classify(): void {
    let tone = 0;
    for (let t = 1; t < EXPECTED_CROSSINGS.length; t++) {
      if (Math.abs(this.#crossings - EXPECTED_CROSSINGS[t]!) < Math.abs(this.#crossings - EXPECTED_CROSSINGS[tone]!)) tone = t;
    }
    if (Math.abs(this.#crossings - EXPECTED_CROSSINGS[tone]!) > 6) {
      this.garbled++;
      return;
    }
    this.#match(tone, this.#onsetAt);
  }

  #match(tone: number, onsetAt: number): void {
    // The latest marker of this tone sent so far (the round trip stays far under CYCLE_FRAMES x 20 ms).
    const log = this.far;
    let m = log.tone.length - 1;
    for (let back = 0; m >= 0 && back < MARKER_HZ.length && log.tone[m] !== tone; back++) m--;
    if (m < 0 || log.tone[m] !== tone) {
      this.garbled++;
      return;
    }
    if (!Number.isNaN(log.latency[m]!)) {
      this.duplicates++;
      return;
    }
    log.latency[m] = onsetAt - log.sentAt[m]! - log.codecDelayMs;
    this.matched++;
  }
}

export interface OpusCalibration {
  /** The median marker onset - send time over a link of no delay: the codec's own delay. */
  delayMs: number;
  /** Per frame of the cycle: where its marker's onset falls after the frame was sent (NaN: no marker). */
  onsetMs: number[];
}

/**
 * The Opus cycle's own delay: its frames sent one every 20 ms over a link of no delay, decoded
 * at 8 kHz and run through the detector; the median of marker onset - send time (libopus's
 * look-ahead and the 8 kHz decoder's filter, ~6.5 ms). A bridge's added latency is what is
 * measured beyond this. Throws if the detector does not find every marker, so a probe that
 * Opus mangles is caught before any run.
 */
export function calibrateOpus(frames: Buffer[]): OpusCalibration {
  const log = new MarkerLog(0);
  const det = new MarkerDetector(log);
  const dec = new OpusTo8k();
  const cycles = 3;
  const frameOf: number[] = [];
  for (let k = 0; k < cycles * CYCLE_FRAMES; k++) {
    const j = k % CYCLE_FRAMES;
    const tone = markerAt(j);
    if (tone !== undefined) {
      log.sent(tone, k * FRAME_MS);
      frameOf.push(j);
    }
    det.push(dec.decode(frames[j]!)!, k * FRAME_MS);
  }
  const found = log.latency.filter((l) => !Number.isNaN(l));
  if (found.length !== log.latency.length || det.garbled || det.duplicates) {
    throw new Error(`the Opus probe does not survive its own codec: ${found.length}/${log.latency.length} markers found, ${det.garbled} garbled, ${det.duplicates} duplicated`);
  }
  const onsetMs = Array.from({ length: CYCLE_FRAMES }, () => NaN);
  // The last cycle's: decoded from the state the cycle itself leaves, as in a call.
  log.latency.forEach((l, m) => (onsetMs[frameOf[m]!] = l));
  return { delayMs: [...found].sort((a, b) => a - b)[Math.floor(found.length / 2)]!, onsetMs };
}

/**
 * The Opus cycle's frames, known byte for byte: when a bridge passes Opus through, what arrives
 * is the sender's own frames, and a frame recognised here need not be decoded (its audio is
 * known, and so is where its marker's onset falls). This keeps the generator's decoding off the
 * passthrough runs, where it would be most of the generator's work. A frame not recognised (a
 * bridge that re-encoded) is decoded as usual.
 */
export class KnownOpusFrames {
  readonly #index = new Map<string, number>();

  constructor(
    frames: Buffer[],
    readonly calibration: OpusCalibration,
  ) {
    const seen = new Map<string, number>();
    for (const f of frames) seen.set(f.toString('latin1'), (seen.get(f.toString('latin1')) ?? 0) + 1);
    // A payload that occurs twice in the cycle cannot name its frame: those are decoded.
    frames.forEach((f, j) => seen.get(f.toString('latin1')) === 1 && this.#index.set(f.toString('latin1'), j));
  }

  /** The frame of the cycle this payload is, or -1. */
  match(payload: Buffer): number {
    return this.#index.get(payload.toString('latin1')) ?? -1;
  }
}

/** The same check for PCMU (its delay is 0 by construction; this proves the detector). */
export function checkPcmu(frames: Buffer[]): void {
  const log = new MarkerLog(0);
  const det = new MarkerDetector(log);
  for (let k = 0; k < 2 * CYCLE_FRAMES; k++) {
    const j = k % CYCLE_FRAMES;
    const tone = markerAt(j);
    if (tone !== undefined) log.sent(tone, k * FRAME_MS);
    det.push(expandPcmu(frames[j]!), k * FRAME_MS);
  }
  const bad = log.latency.filter((l) => Number.isNaN(l) || Math.abs(l) > 0.5).length;
  if (bad || det.garbled) throw new Error(`the PCMU probe fails its own detector: ${bad} markers missed, ${det.garbled} garbled`);
}
