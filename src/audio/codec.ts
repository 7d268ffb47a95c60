import opus from '@discordjs/opus';
import type { CodecName } from '../core/config.js';
import { decodeG711, encodeG711 } from './g711.js';
import { G722Decoder, G722Encoder } from './g722.js';
import { Resampler } from './resampler.js';
import { samplesPerFrame } from './frame.js';

/** Turns a codec's payloads into 20 ms PCM frames at `outRate`, and conceals lost frames. */
export interface AudioDecoder {
  decode(payload: Buffer): Int16Array;
  /** A frame of concealment for a lost packet (codec PLC where it has one). */
  conceal(): Int16Array;
  toString(): string;
}

export interface AudioEncoder {
  encode(frame: Int16Array): Buffer;
  toString(): string;
}

/** Opus decodes natively at 8, 12, 16, 24 or 48 kHz: no separate resampler on this path. */
class OpusDecoderStage implements AudioDecoder {
  readonly #dec: InstanceType<typeof opus.OpusEncoder>;
  readonly #frame: number;
  #last: Int16Array;

  constructor(private readonly rate: number) {
    this.#dec = new opus.OpusEncoder(rate, 1);
    this.#frame = samplesPerFrame(rate);
    this.#last = new Int16Array(this.#frame);
  }

  decode(payload: Buffer): Int16Array {
    const pcm = this.#dec.decode(payload);
    const out = new Int16Array(pcm.buffer.slice(pcm.byteOffset, pcm.byteOffset + pcm.byteLength));
    this.#last = out;
    return out;
  }

  conceal(): Int16Array {
    // opus_decode with an empty packet runs libopus PLC. Deviation: @discordjs/opus asks for its
    // maximum frame size, so we keep the first 20 ms; in-band FEC is not reachable through it.
    try {
      const pcm = this.#dec.decode(Buffer.alloc(0));
      return new Int16Array(pcm.buffer.slice(pcm.byteOffset, pcm.byteOffset + this.#frame * 2));
    } catch {
      return fadeOut(this.#last);
    }
  }

  toString(): string {
    return `Opus(decode@${this.rate / 1000}k)`;
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
    return `${this.law.toUpperCase()}(decode)${this.#resampler ? ` -> ${String(this.#resampler)}` : ''}`;
  }
}

class OpusEncoderStage implements AudioEncoder {
  readonly #enc: InstanceType<typeof opus.OpusEncoder>;
  constructor(private readonly rate: number) {
    this.#enc = new opus.OpusEncoder(rate, 1);
    this.#enc.setBitrate(32000);
    // OPUS_SET_COMPLEXITY(5): libopus defaults to 10; 5 halves the cost and is ample for voice.
    this.#enc.applyEncoderCTL(4010, 5);
  }
  encode(frame: Int16Array): Buffer {
    return this.#enc.encode(Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength));
  }
  toString(): string {
    return `Opus(encode@${this.rate / 1000}k)`;
  }
}

class G711EncoderStage implements AudioEncoder {
  readonly #resampler: Resampler | undefined;
  constructor(
    private readonly law: 'pcmu' | 'pcma',
    rate: number,
  ) {
    this.#resampler = rate === 8000 ? undefined : new Resampler(rate, 8000);
  }
  encode(frame: Int16Array): Buffer {
    return encodeG711(this.#resampler ? this.#resampler.process(frame) : frame, this.law);
  }
  toString(): string {
    return `${this.#resampler ? `${String(this.#resampler)} -> ` : ''}${this.law.toUpperCase()}(encode)`;
  }
}

/** G.722 carries 16 kHz audio (its RTP clock says 8000 for historical reasons, RFC 3551). */
class G722DecoderStage implements AudioDecoder {
  readonly #dec = new G722Decoder();
  readonly #resampler: Resampler | undefined;
  #last: Int16Array = new Int16Array(320);

  constructor(rate: number) {
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
    return `G722(decode)${this.#resampler ? ` -> ${String(this.#resampler)}` : ''}`;
  }
}

class G722EncoderStage implements AudioEncoder {
  readonly #enc = new G722Encoder();
  readonly #resampler: Resampler | undefined;
  constructor(rate: number) {
    this.#resampler = rate === 16000 ? undefined : new Resampler(rate, 16000);
  }
  encode(frame: Int16Array): Buffer {
    return this.#enc.encode(this.#resampler ? this.#resampler.process(frame) : frame);
  }
  toString(): string {
    return `${this.#resampler ? `${String(this.#resampler)} -> ` : ''}G722(encode)`;
  }
}

function fadeOut(x: Int16Array): Int16Array {
  const out = new Int16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = Math.round(x[i]! * 0.5);
  return out;
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
