import { createDecoder, createEncoder } from '../audio/codec.js';
import { CodecPool } from '../audio/codec-pool.js';
import { samplesPerFrame } from '../audio/frame.js';
import { FrameClock } from '../audio/frame-clock.js';
import { concatPcm, tone } from '../audio/test-signals.js';
import { FakeClock } from '../core/clock.js';
import type { CodecName } from '../core/config.js';
import { parseRtp, serializeRtp, type RtpPacket } from '../rtp/packet.js';
import { FakeMediaTransport } from '../transport/fake.js';
import { MediaEndpoint, type MediaFormat, type MediaRuntime } from './endpoint.js';

/**
 * Test scaffolding for media endpoints: a runtime on a fake clock with inline codecs (so
 * `clock.advance(20)` runs exactly one tick and its codec work), endpoints on fake transports,
 * and a far end that builds RTP and decodes what was sent. Not imported by production code.
 */
export interface TestRuntime extends MediaRuntime {
  clock: FakeClock;
  /** What frame-clock subscribers threw (a test expects none). */
  errors: unknown[];
}

export function testRuntime(opts: { maxJitterMs?: number; codecs?: CodecPool; start?: number } = {}): TestRuntime {
  const clock = new FakeClock(opts.start);
  const errors: unknown[] = [];
  return { clock, frameClock: new FrameClock(clock, (e) => errors.push(e)), codecs: opts.codecs ?? new CodecPool(0), maxJitterMs: opts.maxJitterMs ?? 200, errors };
}

/** The static or usual dynamic payload type of each codec (RFC 3551 §6; 111 as browsers offer Opus). */
const PAYLOAD_TYPE: Record<CodecName, number> = { pcmu: 0, pcma: 8, g722: 9, opus: 111 };

/** A negotiated format as an SDP answer would give it: telephone-event 101 at the codec's clock, sendrecv. */
export function formatOf(codec: CodecName, over: Partial<MediaFormat> = {}): MediaFormat {
  const clockRate = codec === 'opus' ? 48000 : 8000;
  return { codec, payloadType: PAYLOAD_TYPE[codec], clockRate, telephoneEvent: { payloadType: 101, clockRate }, sends: true, ...over };
}

export interface TestLeg {
  endpoint: MediaEndpoint;
  transport: FakeMediaTransport;
}

/** A MediaEndpoint on a connected FakeMediaTransport. */
export function testEndpoint(
  runtime: MediaRuntime,
  format: MediaFormat,
  opts: { pcmRate?: number; ssrc?: number; id?: string; connect?: boolean; dataChannel?: boolean } = {},
): TestLeg {
  const transport = new FakeMediaTransport('192.0.2.10:40000', { dataChannel: opts.dataChannel });
  if (opts.connect !== false) transport.connect();
  const endpoint = new MediaEndpoint(opts.id ?? 'ep', transport, format, opts.pcmRate ?? 8000, { ssrc: opts.ssrc ?? 0x1111_1111, cname: 'test@voxgate' }, runtime);
  return { endpoint, transport };
}

/** `count` frames of one continuous tone at `rate`, 20 ms each. */
export function toneFrames(hz: number, rate: number, count: number, amplitude = 12000): Int16Array[] {
  const n = samplesPerFrame(rate);
  const all = tone(hz, rate, n * count, amplitude);
  return Array.from({ length: count }, (_, i) => all.slice(i * n, (i + 1) * n));
}

/** The far end of a leg: one RTP stream with its own SSRC, sequence numbers and timestamps. */
export class FarEnd {
  seq: number;
  ts: number;

  constructor(
    readonly payloadType: number,
    readonly clockRate: number,
    readonly ssrc = 0x2222_2222,
    start: { seq?: number; ts?: number } = {},
  ) {
    this.seq = start.seq ?? 1000;
    this.ts = start.ts ?? 160_000;
  }

  get frameUnits(): number {
    return (this.clockRate * 20) / 1000;
  }

  /** The next 20 ms packet of audio (sequence number and timestamp move on). */
  audio(payload: Buffer, marker = false): Buffer {
    const pkt = serializeRtp({ marker, payloadType: this.payloadType, sequenceNumber: this.seq, timestamp: this.ts, ssrc: this.ssrc, payload });
    this.seq = (this.seq + 1) & 0xffff;
    this.ts = (this.ts + this.frameUnits) >>> 0;
    return pkt;
  }

  /** A packet that takes a sequence number without being sent (a loss on the way). */
  skip(): void {
    this.seq = (this.seq + 1) & 0xffff;
    this.ts = (this.ts + this.frameUnits) >>> 0;
  }

  /** Any packet on this stream's sequence space (the timestamp is the caller's). */
  packet(payloadType: number, payload: Buffer, timestamp: number, marker = false): Buffer {
    const pkt = serializeRtp({ marker, payloadType, sequenceNumber: this.seq, timestamp, ssrc: this.ssrc, payload });
    this.seq = (this.seq + 1) & 0xffff;
    return pkt;
  }
}

/** Encodes frames at `rate` with a fresh encoder of `codec` (one payload per frame). */
export function encodeFrames(codec: CodecName, rate: number, frames: Int16Array[]): Buffer[] {
  const enc = createEncoder(codec, rate);
  return frames.map((f) => enc.encode(f));
}

/** Decodes the payloads of sent RTP packets of `payloadType` with a fresh decoder, as the far end would hear them. */
export function decodeSent(codec: CodecName, rate: number, packets: readonly Buffer[], payloadType: number): Int16Array {
  const dec = createDecoder(codec, rate);
  return concatPcm(packets.map(parseRtp).filter((p) => p.payloadType === payloadType).map((p) => dec.decode(p.payload)));
}

export function parsed(packets: readonly Buffer[]): RtpPacket[] {
  return packets.map(parseRtp);
}

/** RFC 4733 §2.3 payload: event, E bit, volume, duration. */
export function eventPayload(event: number, end: boolean, duration: number, volume = 10): Buffer {
  return Buffer.from([event, (end ? 0x80 : 0) | volume, duration >> 8, duration & 0xff]);
}
