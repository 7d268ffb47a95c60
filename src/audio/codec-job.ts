import type { CodecName } from '../core/config.js';
import { createDecoder, createEncoder, type AudioDecoder, type AudioEncoder } from './codec.js';

/** What a session's decoder does this tick (the jitter buffer's verdict on the frame due). */
export type DecodeOp = 'none' | 'packet' | 'recover' | 'conceal';
export const DECODE_OPS: readonly DecodeOp[] = ['none', 'packet', 'recover', 'conceal'];

/** One session's codec work for one 20 ms tick: at most one frame decoded and one encoded. */
export interface CodecJob {
  decode: DecodeOp;
  /** The packet to decode ('packet'), or the packet after the lost one ('recover'). */
  payload?: Uint8Array;
  /** A frame of the agent's audio (or silence) to encode for the caller. */
  encode?: Int16Array;
}

export interface CodecResult {
  samples: Int16Array | undefined;
  /** The payload could not be decoded and was concealed instead. */
  decodeError: boolean;
  encoded: Buffer | undefined;
  /** Not run: the codec thread was too far behind (overload is shed, not queued). */
  shed?: boolean;
}

/** A session's codec state: the decoder (and encoder, when the agent answers) it keeps between ticks. */
export class CodecState {
  readonly decoder: AudioDecoder;
  readonly encoder: AudioEncoder | undefined;

  constructor(codec: CodecName, rate: number, encode: boolean) {
    this.decoder = createDecoder(codec, rate);
    this.encoder = encode ? createEncoder(codec, rate) : undefined;
  }

  /** The session ended: native codec state is freed now, not at some later collection of this thread. */
  close(): void {
    this.decoder.close?.();
    this.encoder?.close?.();
  }

  /** The same work wherever it runs (the media thread or a codec thread). */
  run(job: CodecJob): CodecResult {
    let samples: Int16Array | undefined;
    let decodeError = false;
    const d = this.decoder;
    if (job.decode === 'packet') {
      try {
        samples = d.decode(asBuffer(job.payload!));
      } catch {
        // A payload the codec cannot decode is concealed like a lost one; the call goes on.
        decodeError = true;
        samples = d.conceal();
      }
    } else if (job.decode === 'recover') {
      samples = d.recover ? d.recover(asBuffer(job.payload!)) : d.conceal();
    } else if (job.decode === 'conceal') {
      samples = d.conceal();
    }
    const encoded = job.encode && this.encoder ? this.encoder.encode(job.encode) : undefined;
    return { samples, decodeError, encoded };
  }
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}
