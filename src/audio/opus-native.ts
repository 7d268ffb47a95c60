import { createRequire } from 'node:module';

/**
 * voxgate's libopus binding (native/opus, built by `npm install` from the libopus 1.3.1 sources
 * vendored there): mono decoders with PLC of exactly one frame and in-band FEC, mono encoders
 * (OPUS_APPLICATION_AUDIO), and explicit freeing.
 */
export interface OpusBinding {
  createDecoder(rate: number): OpusHandle;
  createEncoder(rate: number, bitrate: number, complexity: number): OpusHandle;
  /** Samples written to `out`; payload null is PLC, fec true decodes the frame before `payload`. */
  decode(decoder: OpusHandle, payload: Buffer | null, fec: boolean, out: Int16Array): number;
  /** One frame (2.5 to 60 ms of samples) to one packet. */
  encode(encoder: OpusHandle, pcm: Int16Array): Buffer;
  /** An OPUS_SET_* request with one integer (e.g. 4012 OPUS_SET_INBAND_FEC, 1). */
  ctl(encoder: OpusHandle, request: number, value: number): void;
  /** Frees the codec state now (a finalizer would, at the next collection); the handle refuses work after. */
  destroy(handle: OpusHandle): void;
  /** [handles, bytes] of codec state not yet freed, in every thread of the process (each is also reported to its thread's V8 as external memory). */
  live(): [number, number];
}

/** An encoder or decoder: opaque, freed by destroy() or its finalizer. */
export type OpusHandle = { readonly __opus: unique symbol };

/** libopus's OPUS_AUTO (bitrate chosen by the encoder). */
export const OPUS_AUTO = -1000;

export const opusNative = createRequire(import.meta.url)('../../native/opus/build/Release/voxgate_opus.node') as OpusBinding;
