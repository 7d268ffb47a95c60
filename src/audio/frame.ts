/** 20 ms of 16-bit mono PCM at the rate the consumer asked for. */
export interface AudioFrame {
  samples: Int16Array;
  sampleRate: number;
  /** ms since the stream started (RTP-timestamp based for received audio). */
  timestampMs: number;
}

export const FRAME_MS = 20;

export function samplesPerFrame(rate: number): number {
  return (rate * FRAME_MS) / 1000;
}
