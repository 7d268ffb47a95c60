import type { CodecName } from '../core/config.js';
import { decodeG711, encodeG711 } from './g711.js';
import { G722Decoder, G722Encoder } from './g722.js';
import { opusNative as native, type OpusHandle } from './opus-native.js';
import { Resampler } from './resampler.js';
import { samplesPerFrame } from './frame.js';

/** Turns a codec's payloads into 20 ms PCM frames at `outRate`, and conceals lost frames. */
export interface AudioDecoder {
  decode(payload: Buffer): Int16Array;
  /** A frame of concealment for a lost packet (codec PLC where it has one). */
  conceal(): Int16Array;
  /** The lost frame rebuilt from redundancy in the packet after it (Opus in-band FEC). */
  recover?(next: Buffer): Int16Array;
  /** Frees native state now (its session ended); it does nothing after. */
  close?(): void;
  toString(): string;
}

export interface AudioEncoder {
  encode(frame: Int16Array): Buffer;
  /** Frees native state now; it does nothing after. */
  close?(): void;
  toString(): string;
}

/**
 * Room for the longest Opus packet (120 ms), one per rate and thread: decoding is synchronous and
 * its output is copied out at once. One per session was a buffer that lived as long as its call,
 * so it reached the old generation of a codec thread, whose collector runs rarely: under churn
 * the freed sessions' buffers piled up for minutes (issue 19's soak drift).
 */
const scratch = new Map<number, Int16Array>();

/** Opus decodes natively at 8, 12, 16, 24 or 48 kHz: no separate resampler on this path. */
class OpusDecoderStage implements AudioDecoder {
  readonly #dec: OpusHandle;
  readonly #frame: number;
  readonly #scratch: Int16Array;

  constructor(private readonly rate: number) {
    this.#dec = native.createDecoder(rate);
    this.#frame = samplesPerFrame(rate);
    let s = scratch.get(rate);
    if (!s) scratch.set(rate, (s = new Int16Array((rate * 120) / 1000)));
    this.#scratch = s;
  }

  decode(payload: Buffer): Int16Array {
    const n = native.decode(this.#dec, payload, false, this.#scratch);
    return this.#scratch.slice(0, n);
  }

  conceal(): Int16Array {
    const out = new Int16Array(this.#frame);
    native.decode(this.#dec, null, false, out);
    return out;
  }

  /**
   * RFC 6716 §2.1.7: the lost frame from the in-band FEC (LBRR) data of the packet after it,
   * when the sender put some there (`useinbandfec=1`); libopus falls back to PLC otherwise.
   */
  recover(next: Buffer): Int16Array {
    const out = new Int16Array(this.#frame);
    native.decode(this.#dec, next, true, out);
    return out;
  }

  close(): void {
    native.destroy(this.#dec);
  }

  toString(): string {
    return decoderName('opus', this.rate);
  }
}

class G711DecoderStage implements AudioDecoder {
  readonly #resampler: Resampler | undefined;
  #last: Int16Array = new Int16Array(160);

  constructor(
    private readonly law: 'pcmu' | 'pcma',
    private readonly rate: number,
  ) {
    this.#resampler = rate === 8000 ? undefined : new Resampler(8000, rate);
  }

  decode(payload: Buffer): Int16Array {
    const pcm8 = decodeG711(payload, this.law);
    this.#last = pcm8;
    return this.#resampler ? this.#resampler.process(pcm8) : pcm8;
  }

  conceal(): Int16Array {
    // G.711 has no PLC of its own: repeat the last frame, fading (G.711 Appendix I in spirit).
    this.#last = fadeOut(this.#last);
    return this.#resampler ? this.#resampler.process(this.#last) : this.#last;
  }

  toString(): string {
    return decoderName(this.law, this.rate);
  }
}

class OpusEncoderStage implements AudioEncoder {
  readonly #enc: OpusHandle;
  constructor(private readonly rate: number) {
    // 32 kb/s; complexity 5: libopus defaults to 10, and 5 halves the cost and is ample for voice.
    this.#enc = native.createEncoder(rate, 32000, 5);
  }
  encode(frame: Int16Array): Buffer {
    return native.encode(this.#enc, frame);
  }
  close(): void {
    native.destroy(this.#enc);
  }
  toString(): string {
    return encoderName('opus', this.rate);
  }
}

class G711EncoderStage implements AudioEncoder {
  readonly #resampler: Resampler | undefined;
  constructor(
    private readonly law: 'pcmu' | 'pcma',
    private readonly rate: number,
  ) {
    this.#resampler = rate === 8000 ? undefined : new Resampler(rate, 8000);
  }
  encode(frame: Int16Array): Buffer {
    return encodeG711(this.#resampler ? this.#resampler.process(frame) : frame, this.law);
  }
  toString(): string {
    return encoderName(this.law, this.rate);
  }
}

/** G.722 carries 16 kHz audio (its RTP clock says 8000 for historical reasons, RFC 3551). */
class G722DecoderStage implements AudioDecoder {
  readonly #dec = new G722Decoder();
  readonly #resampler: Resampler | undefined;
  #last: Int16Array = new Int16Array(320);

  constructor(private readonly rate: number) {
    this.#resampler = rate === 16000 ? undefined : new Resampler(16000, rate);
  }

  decode(payload: Buffer): Int16Array {
    this.#last = this.#dec.decode(payload);
    return this.#resampler ? this.#resampler.process(this.#last) : this.#last;
  }

  conceal(): Int16Array {
    this.#last = fadeOut(this.#last);
    return this.#resampler ? this.#resampler.process(this.#last) : this.#last;
  }

  toString(): string {
    return decoderName('g722', this.rate);
  }
}

class G722EncoderStage implements AudioEncoder {
  readonly #enc = new G722Encoder();
  readonly #resampler: Resampler | undefined;
  constructor(private readonly rate: number) {
    this.#resampler = rate === 16000 ? undefined : new Resampler(rate, 16000);
  }
  encode(frame: Int16Array): Buffer {
    return this.#enc.encode(this.#resampler ? this.#resampler.process(frame) : frame);
  }
  toString(): string {
    return encoderName('g722', this.rate);
  }
}

function fadeOut(x: Int16Array): Int16Array {
  const out = new Int16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = Math.round(x[i]! * 0.5);
  return out;
}

/** How a decoder to `rate` prints itself, without making one. */
export function decoderName(codec: CodecName, rate: number): string {
  if (codec === 'opus') return `Opus(decode@${rate / 1000}k, FEC)`;
  const native = codec === 'g722' ? 16000 : 8000;
  const resample = rate === native ? '' : ` -> Resample(${native / 1000}k->${rate / 1000}k)`;
  return `${codec === 'g722' ? 'G722' : codec.toUpperCase()}(decode)${resample}`;
}

/** How an encoder from `rate` prints itself, without making one. */
export function encoderName(codec: CodecName, rate: number): string {
  if (codec === 'opus') return `Opus(encode@${rate / 1000}k)`;
  const native = codec === 'g722' ? 16000 : 8000;
  const resample = rate === native ? '' : `Resample(${rate / 1000}k->${native / 1000}k) -> `;
  return `${resample}${codec === 'g722' ? 'G722' : codec.toUpperCase()}(encode)`;
}

export function createDecoder(codec: CodecName, outRate: number): AudioDecoder {
  if (codec === 'opus') return new OpusDecoderStage(outRate);
  if (codec === 'pcmu' || codec === 'pcma') return new G711DecoderStage(codec, outRate);
  return new G722DecoderStage(outRate);
}

export function createEncoder(codec: CodecName, inRate: number): AudioEncoder {
  if (codec === 'opus') return new OpusEncoderStage(inRate);
  if (codec === 'pcmu' || codec === 'pcma') return new G711EncoderStage(codec, inRate);
  return new G722EncoderStage(inRate);
}

/** RTP clock rate of a codec (RFC 7587: Opus is always 48 kHz; RFC 3551: G.722 is "8000"). */
export function rtpClockRate(codec: CodecName): number {
  return codec === 'opus' ? 48000 : 8000;
}
