import { decoderName, encoderName } from '../audio/codec.js';
import type { DecodeOp } from '../audio/codec-job.js';
import type { CodecChannel, CodecPool } from '../audio/codec-pool.js';
import { FRAME_MS, samplesPerFrame, type AudioFrame } from '../audio/frame.js';
import type { FrameClock } from '../audio/frame-clock.js';
import type { Clock } from '../core/clock.js';
import type { CodecName } from '../core/config.js';
import { TypedEmitter } from '../core/events.js';
import { DtmfDetector, DtmfSender, type TelephoneEventPacket } from '../rtp/dtmf.js';
import { CODEC_IMPAIRMENT, mos } from '../rtp/emodel.js';
import { JitterBuffer } from '../rtp/jitter-buffer.js';
import { parseRtp, RtpParseError, type RtpPacket } from '../rtp/packet.js';
import type { RtpSink } from '../rtp/rtp-counter.js';
import { RtpSession } from '../rtp/rtp-session.js';
import type { MediaTransport } from '../transport/media-transport.js';
import type { FrameSource } from './frames.js';

/** What every endpoint of a gateway shares; built once, handed to whatever makes endpoints. */
export interface MediaRuntime {
  clock: Clock;
  frameClock: FrameClock;
  codecs: CodecPool;
  maxJitterMs: number;
}

/** The negotiated stream of one leg, whatever the signalling (SDP answer plan, either way). */
export interface MediaFormat {
  codec: CodecName;
  payloadType: number;
  /** RTP clock rate (8000 for G.722, RFC 3551 §4.5.2). */
  clockRate: number;
  telephoneEvent: { payloadType: number; clockRate: number } | undefined;
  /** We send RTP on this leg (sendrecv or sendonly answered). */
  sends: boolean;
}

export interface Quality {
  packets: number;
  lost: number;
  lossPercent: number;
  jitterMs: number;
  rttMs: number | null;
  jitterBufferMs: number;
  mos: number;
  at: string;
}

/** Frames a decoding endpoint could not take as they came. */
export interface AudioRepairs {
  /** Lost frames rebuilt from the next packet's in-band FEC (Opus LBRR). */
  fecRecovered: number;
  /** Lost, late or missing frames concealed (codec PLC, or a fade for G.711/G.722). */
  concealed: number;
  /** Packets whose payload the codec rejected (concealed too). */
  decodeErrors: number;
  /** Frames dropped because the codec threads were overloaded. */
  shed: number;
}

export interface MediaEndpointEvents extends Record<string, unknown[]> {
  /** An RFC 4733 digit from the far end (once per event). */
  dtmf: [digit: string];
  quality: [quality: Quality];
  /** Once per tick, after the codec answered: what was decoded from the far end and what was sent to it. */
  tick: [received: Int16Array | undefined, sent: Int16Array | undefined];
}

const REPORT_INTERVAL_MS = 5000;
const NO_EVENTS: readonly never[] = [];
/** Silent frames really encoded after the source falls quiet, so the codec decays; then the last one is resent. */
const SILENCE_ENCODED = 5;

/**
 * One leg's audio, whatever carries it (MediaTransport): RTP in -> stats/DTMF -> JitterBuffer ->
 * decoder -> PCM frames out (`onFrame`), and PCM in (a pulled FrameSource, or frames pushed with
 * sendFrame) -> encoder -> RTP out, with RTCP SR/RR every 5 s and RFC 4733 events both ways.
 * Packets can also be forwarded untouched but for the header (`onPacket` / `forward`), where two
 * legs share a codec. Decoding happens only while `decode` is on: a forwarded leg nobody listens
 * to costs no codec work.
 */
export class MediaEndpoint extends TypedEmitter<MediaEndpointEvents> implements RtpSink {
  readonly rtp: RtpSession;
  jitter: JitterBuffer;
  quality: Quality | undefined;
  readonly repairs: AudioRepairs = { fecRecovered: 0, concealed: 0, decodeErrors: 0, shed: 0 };
  /** Every RTP packet that arrived (any payload type), and when: the leg's counters. */
  readonly received = { packets: 0, bytes: 0, firstArrival: 0, lastArrival: 0 };
  /** Arrival -> decoded frame delivered, ms, for the last frames (benchmarks read it). */
  readonly ingressLatencies: number[] = [];
  #decode = false;
  /** Decoded frames, at `pcmRate`, while `decode` is on. */
  onFrame: ((frame: AudioFrame) => void) | undefined;
  /** Received packets of the negotiated codec and telephone-events, as they arrive (forwarding). */
  onPacket: ((packet: RtpPacket, event: boolean) => void) | undefined;
  /** Pulled once per tick for what to send; unset: nothing is sent by the tick itself. */
  source: FrameSource | undefined;
  #codec: CodecChannel;
  readonly #unsubscribe: () => void;
  #silence: Int16Array;
  readonly #frameUnits: number;
  readonly #dtmfOut: DtmfSender | undefined;
  #dtmfIn = new DtmfDetector();
  #firstTs: number | undefined;
  #tsBaseMs = 0;
  #lastTsMs = 0;
  #silentFrames = 0;
  #silencePacket: Buffer | undefined;
  #lastReport = 0;
  #forwarding: { ssrc: number; srcBase: number; base: number; at: number } | undefined;
  #eventTs: number | undefined;
  /** RFC 4733 packets of this stream so far, and the highest sequence number: the jitter buffer is numbered without events. */
  #eventSeqs = 0;
  #maxSeq = -1;
  #closed = false;

  constructor(
    readonly id: string,
    readonly transport: MediaTransport,
    readonly format: MediaFormat,
    /** The rate PCM frames are exchanged at (the agent's, or the bridge's); see setPcmRate. */
    public pcmRate: number,
    out: { ssrc: number; cname: string },
    private readonly runtime: MediaRuntime,
  ) {
    super();
    this.rtp = new RtpSession(format.clockRate, out);
    this.jitter = this.#newJitter();
    this.#frameUnits = (format.clockRate * FRAME_MS) / 1000;
    this.#silence = new Int16Array(samplesPerFrame(pcmRate));
    this.#codec = runtime.codecs.open(format.codec, pcmRate, format.sends);
    this.#dtmfOut = format.telephoneEvent && format.sends ? new DtmfSender(format.telephoneEvent.clockRate) : undefined;
    transport.rtpSink = this;
    transport.on('rtcp', this.#onRtcp);
    this.#unsubscribe = runtime.frameClock.subscribe((now) => this.#tick(now));
  }

  /** Decode the received stream (someone consumes its PCM). */
  get decode(): boolean {
    return this.#decode;
  }

  set decode(on: boolean) {
    // Packets were not buffered while nobody decoded: start playout afresh rather than from a stale position.
    if (on && !this.#decode) this.jitter = this.#newJitter();
    this.#decode = on;
  }

  /** Where this endpoint's codec runs ('codec thread N' or 'inline'). */
  get codecThread(): string {
    return this.#codec.where;
  }

  /**
   * Exchanges PCM at another rate from now on: a new codec channel (decoder and encoder state
   * start again, as at a transfer, which is when this happens) and the frames it hands out and
   * takes are at `rate`.
   */
  setPcmRate(rate: number): void {
    if (rate === this.pcmRate || this.#closed) return;
    this.#codec.close();
    this.#codec = this.runtime.codecs.open(this.format.codec, rate, this.format.sends);
    this.pcmRate = rate;
    this.#silence = new Int16Array(samplesPerFrame(rate));
    this.#silencePacket = undefined;
    this.#silentFrames = 0;
  }

  /** Both halves: what this endpoint does to the stream it receives and to the one it sends. */
  describe(): string {
    return this.format.sends ? `${this.describeIn()} | PCM@${this.pcmRate / 1000}k -> ${this.describeOut()}` : this.describeIn();
  }

  /** The receive half, e.g. `RTP -> Jitter(20-200ms) -> Opus(decode@16k, FEC)`. */
  describeIn(): string {
    return `RTP -> Jitter(20-${this.runtime.maxJitterMs}ms) -> ${decoderName(this.format.codec, this.pcmRate)}`;
  }

  /** The send half, e.g. `Opus(encode@16k) -> RTP`. */
  describeOut(): string {
    return `${encoderName(this.format.codec, this.pcmRate)} -> RTP`;
  }

  lastMediaAt(): number {
    // A party that holds the call (RFC 3264 §8.4: it sends nothing) is not idle; its session timer still watches it.
    if (this.transport.onHold) return this.runtime.clock.now();
    return this.received.lastArrival;
  }

  /** RTP from the transport: counted, checked, then to DTMF detection, forwarding and the jitter buffer. */
  writeRtp(packet: Buffer): void {
    // RFC 3550 §5.1: version 2; anything else arriving on the track is not ours to count.
    if (packet.length < 12 || packet[0]! >> 6 !== 2) return;
    const now = this.runtime.clock.now();
    const r = this.received;
    r.packets++;
    r.bytes += packet.length;
    r.lastArrival = now;
    if (r.firstArrival === 0) r.firstArrival = now;
    let p: RtpPacket;
    try {
      p = parseRtp(packet);
    } catch (err) {
      if (err instanceof RtpParseError) return;
      throw err;
    }
    const f = this.format;
    const event = f.telephoneEvent !== undefined && p.payloadType === f.telephoneEvent.payloadType;
    if (p.payloadType !== f.payloadType && !event) return;
    // A new SSRC is a new stream (a re-INVITE, a proxy that switched sources): fresh sequence space.
    if (this.rtp.remoteSsrc !== 0 && p.ssrc !== this.rtp.remoteSsrc) this.#newStream();
    // RFC 4733 events share the stream's sequence space: count them, or they would look lost.
    this.rtp.received(p, now);
    const seq = this.rtp.receivedSeq;
    const ts = this.rtp.receivedTs;
    this.onPacket?.(p, event);
    const fresh = seq > this.#maxSeq;
    if (fresh) this.#maxSeq = seq;
    if (event) {
      // The jitter buffer sees audio only: numbered with the events' sequence numbers left in, each
      // digit would look like lost audio to conceal (~120 ms of delay added per digit).
      if (fresh) this.#eventSeqs++;
      const digit = this.#dtmfIn.push(p.timestamp, p.payload);
      if (digit) this.emit('dtmf', digit);
      return;
    }
    this.#firstTs ??= ts;
    if (this.#decode) this.jitter.push({ seq: seq - this.#eventSeqs, timestamp: ts, payload: p.payload, arrivalMs: now });
  }

  /** Encodes one frame pushed by another leg (a transcoding bridge) and sends it now. */
  sendFrame(samples: Int16Array): void {
    if (this.#closed || !this.format.sends || this.#dtmfOut?.busy) return;
    this.#codec.run({ decode: 'none', encode: samples }, (r) => {
      if (this.#closed || !r.encoded) return;
      this.#send(this.format.payloadType, r.encoded, false, this.#nextTs());
    });
  }

  /**
   * Sends a packet of another leg's stream on ours (same codec: no transcoding), with our SSRC,
   * sequence numbers and the sender's timestamp spacing on our own base.
   */
  forward(p: RtpPacket, event: boolean): void {
    if (this.#closed || !this.format.sends || this.#dtmfOut?.busy) return;
    const pt = event ? this.format.telephoneEvent?.payloadType : this.format.payloadType;
    if (pt === undefined) return;
    const now = this.runtime.clock.now();
    let fw = this.#forwarding;
    let marker = p.marker;
    // A new source, or one back after a pause: restart its timestamp mapping at our clock.
    if (!fw || fw.ssrc !== p.ssrc || now - fw.at > 1000) {
      fw = this.#forwarding = { ssrc: p.ssrc, srcBase: p.timestamp, base: this.#nextTs(), at: now };
      marker = true;
    }
    fw.at = now;
    this.#send(pt, p.payload, marker, (fw.base + ((p.timestamp - fw.srcBase) >>> 0)) >>> 0);
  }

  /** Queues an RFC 4733 digit to the far end; false when this leg negotiated no telephone-event. */
  sendDtmf(digit: string, durationMs = 100): boolean {
    if (this.#closed) return false;
    return this.#dtmfOut?.queue(digit, durationMs) ?? false;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe();
    this.#codec.close();
    this.transport.off('rtcp', this.#onRtcp);
    if (this.transport.rtpSink === this) this.transport.rtpSink = undefined;
    this.onFrame = this.onPacket = this.source = undefined;
    this.removeAllListeners();
  }

  #newJitter(): JitterBuffer {
    return new JitterBuffer({ clockRate: this.format.clockRate, frameMs: FRAME_MS, minDelayMs: 20, maxDelayMs: this.runtime.maxJitterMs });
  }

  #newStream(): void {
    this.rtp.resetRemote();
    this.jitter = this.#newJitter();
    this.#dtmfIn = new DtmfDetector();
    this.#firstTs = undefined;
    this.#tsBaseMs = this.#lastTsMs + FRAME_MS;
    this.#eventSeqs = 0;
    this.#maxSeq = -1;
  }

  /** The timestamp for a packet sent between ticks: never behind the tick's, never a repeat. */
  #nextTs(): number {
    return this.rtp.seqUsed && ((this.rtp.ts - this.rtp.lastSentTs) | 0) <= 0 ? (this.rtp.lastSentTs + this.#frameUnits) >>> 0 : this.rtp.ts;
  }

  /**
   * One 20 ms tick: the frame due from the jitter buffer and the source's next frame go to the
   * codec together; the decoded frame goes to `onFrame` and the encoded one to the far end when
   * the codec answers (at once inline, a fraction of a millisecond later from a codec thread).
   */
  #tick(now: number): void {
    const tickTs = this.rtp.ts;
    this.rtp.ts = (tickTs + this.#frameUnits) >>> 0;
    let decode: DecodeOp = 'none';
    let payload: Buffer | undefined;
    let arrivalMs: number | undefined;
    let tsMs = 0;
    if (this.#decode) {
      const o = this.jitter.pop(now);
      if (o.kind === 'packet') {
        decode = 'packet';
        payload = o.packet.payload;
        arrivalMs = o.packet.arrivalMs;
        tsMs = this.#tsBaseMs + ((o.packet.timestamp - (this.#firstTs ?? 0)) * 1000) / this.format.clockRate;
        this.#lastTsMs = tsMs;
      } else if (o.kind === 'lost' && o.next && this.format.codec === 'opus') {
        decode = 'recover';
        payload = o.next.payload;
      } else if (o.kind === 'lost' || o.kind === 'underrun') {
        decode = 'conceal';
      }
      // A repaired frame takes the slot after the last one, so frame time never runs back.
      if (decode === 'recover' || decode === 'conceal') tsMs = this.#lastTsMs = this.#lastTsMs + FRAME_MS;
    }
    const events = this.#dtmfOut?.next() ?? NO_EVENTS;
    if (events.length) this.#sendEvents(events, tickTs);
    const source = this.source;
    // The source's frame is taken every tick, whether or not this leg hears it (listeners may).
    const frame = source?.next();
    let encode: Int16Array | undefined;
    if (source && this.format.sends && !events.length) {
      // Idle: encode a few frames of real silence so the codec decays, then resend the last
      // silent packet instead of running the encoder every 20 ms for nothing.
      if (frame) {
        encode = frame;
        this.#silentFrames = 0;
      } else if (this.#silentFrames < SILENCE_ENCODED || !this.#silencePacket) {
        encode = this.#silence;
        this.#silentFrames++;
      }
    }
    if (decode !== 'none' || encode || source) {
      this.#codec.run({ decode, payload, encode }, (r) => {
        if (this.#closed) return;
        if (r.shed) {
          // Overload: this tick's frame is dropped both ways; the far end's stream stays in time.
          if (decode !== 'none') this.repairs.shed++;
          return;
        }
        if (r.decodeError) this.repairs.decodeErrors++;
        if (decode === 'recover') this.repairs.fecRecovered++;
        if (decode === 'conceal') this.repairs.concealed++;
        if (r.samples) this.onFrame?.({ samples: r.samples, sampleRate: this.pcmRate, timestampMs: tsMs });
        if (arrivalMs !== undefined) {
          this.ingressLatencies.push(this.runtime.clock.now() - arrivalMs);
          if (this.ingressLatencies.length > 3000) this.ingressLatencies.splice(0, 1000);
        }
        // Barge-in: a frame taken before the source voided it and encoded since is not heard.
        const heard = frame && source && !source.voided(frame) ? frame : undefined;
        if (source && this.format.sends && !events.length) {
          let out: Buffer | undefined;
          if (heard) out = r.encoded;
          else if (!frame && r.encoded) out = this.#silencePacket = r.encoded;
          else out = this.#silencePacket;
          if (out) this.#send(this.format.payloadType, out, false, tickTs);
        }
        source?.sent(heard);
        this.emit('tick', r.samples, heard);
      });
    } else {
      // Nothing to decode or send this tick: listeners still get the tick (the other party's audio, or silence).
      this.emit('tick', undefined, undefined);
    }
    if (now - this.#lastReport >= REPORT_INTERVAL_MS) {
      this.#lastReport = now;
      this.#report(now);
    }
  }

  /** RFC 4733 §2.5.1.2: every packet of an event carries the timestamp of its start. */
  #sendEvents(events: readonly TelephoneEventPacket[], tickTs: number): void {
    const pt = this.format.telephoneEvent!.payloadType;
    for (const e of events) {
      if (e.start) this.#eventTs = tickTs;
      this.#send(pt, e.payload, e.marker, this.#eventTs ?? tickTs);
    }
  }

  #send(payloadType: number, payload: Buffer, marker: boolean, ts: number): void {
    if (this.transport.sendRtp(this.rtp.packet(payloadType, payload, marker, ts))) this.rtp.sent(payload.length);
  }

  #report(now: number): void {
    // RFC 3550 §6.4: a sender sends SR (with its reception blocks), a pure receiver RR.
    this.transport.sendRtcp(this.rtp.report(now));
    const stats = this.rtp.stats;
    if (!stats.received) return;
    const codec = CODEC_IMPAIRMENT[this.format.codec] ?? CODEC_IMPAIRMENT.opus!;
    // One-way mouth-to-ear estimate: half the RTT (or a LAN guess), packetization, jitter buffer.
    const oneWay = (this.rtp.rttMs ?? 20) / 2 + FRAME_MS + this.jitter.delayMs;
    const q: Quality = {
      packets: stats.received,
      lost: stats.lost,
      lossPercent: round(stats.lossPercent, 2),
      jitterMs: round(stats.jitterMs, 1),
      rttMs: this.rtp.rttMs === undefined ? null : round(this.rtp.rttMs, 1),
      jitterBufferMs: this.jitter.delayMs,
      mos: round(mos(oneWay, stats.lossPercent, codec), 2),
      at: new Date(now).toISOString(),
    };
    this.quality = q;
    this.emit('quality', q);
  }

  readonly #onRtcp = (packet: Buffer): void => {
    this.rtp.receivedRtcp(packet, this.runtime.clock.now());
  };
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
