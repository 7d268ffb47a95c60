/**
 * Test and benchmark support: an Opus encoder/decoder pair for peers the tests play (a publisher
 * sending Opus, a listener decoding what it hears), with the shape @discordjs/opus had: PCM in
 * and out as Buffers of 16-bit samples. Encoders start at libopus's own defaults (bitrate auto,
 * complexity 10), not at voxgate's.
 */
import { OPUS_AUTO, opusNative, type OpusHandle } from '../audio/opus-native.js';

export class OpusEncoder {
  readonly #enc: OpusHandle;
  readonly #dec: OpusHandle;
  readonly #out: Int16Array;

  constructor(rate: number, channels = 1) {
    if (channels !== 1) throw new Error('mono only');
    this.#enc = opusNative.createEncoder(rate, OPUS_AUTO, 10);
    this.#dec = opusNative.createDecoder(rate);
    this.#out = new Int16Array((rate * 120) / 1000);
  }

  /** One frame of 16-bit PCM (a Buffer or an Int16Array) to one packet. */
  encode(pcm: Buffer | Int16Array): Buffer {
    const samples = pcm instanceof Int16Array ? pcm : new Int16Array(pcm.buffer, pcm.byteOffset, pcm.byteLength / 2);
    return opusNative.encode(this.#enc, samples);
  }

  /** One packet to its 16-bit PCM, as a Buffer. */
  decode(packet: Buffer): Buffer {
    const n = opusNative.decode(this.#dec, packet, false, this.#out);
    return Buffer.from(this.#out.slice(0, n).buffer);
  }

  setBitrate(bitrate: number): void {
    opusNative.ctl(this.#enc, 4002, bitrate);
  }

  /** An OPUS_SET_* request, e.g. 4012 (OPUS_SET_INBAND_FEC), 1. */
  applyEncoderCTL(request: number, value: number): void {
    opusNative.ctl(this.#enc, request, value);
  }

  close(): void {
    opusNative.destroy(this.#enc);
    opusNative.destroy(this.#dec);
  }
}
