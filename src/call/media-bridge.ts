import type { Agent } from '../agent/agent.js';
import { AgentSession } from '../agent/agent.js';
import { decoderName, encoderName, rtpClockRate } from '../audio/codec.js';
import type { DecodeOp } from '../audio/codec-job.js';
import type { CodecChannel, CodecPool } from '../audio/codec-pool.js';
import { FRAME_MS, samplesPerFrame } from '../audio/frame.js';
import type { FrameClock } from '../audio/frame-clock.js';
import { Pacer } from '../audio/pacer.js';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import { DtmfDetector } from '../rtp/dtmf.js';
import { CODEC_IMPAIRMENT, mos } from '../rtp/emodel.js';
import { JitterBuffer } from '../rtp/jitter-buffer.js';
import { parseRtp, RtpParseError, serializeRtp, Unwrapper } from '../rtp/packet.js';
import { buildReceiverReport, buildSenderReport, ntpFromMs, parseRtcp } from '../rtp/rtcp.js';
import { ReceiverStats, rttFromReport } from '../rtp/receiver-stats.js';
import type { RtpSink } from '../rtp/rtp-counter.js';
import type { AnswerPlan } from '../sdp/codec-policy.js';
import type { WebRtcPeer } from '../webrtc/peer.js';
import type { AudioRepairs, EndReason, Leg } from './call.js';
import { EgressHub } from './egress-hub.js';

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

const REPORT_INTERVAL_MS = 5000;

/** What every bridge of a gateway shares; built once, handed to whatever makes bridges. */
export interface MediaRuntime {
  clock: Clock;
  frameClock: FrameClock;
  codecs: CodecPool;
  maxJitterMs: number;
}

/**
 * Joins a WebRTC peer to an agent, in both directions, one 20 ms tick at a time:
 *   RTP -> stats/DTMF -> JitterBuffer -> decoder -> AgentSession
 *   AgentSession.play -> Pacer -> encoder -> RTP (+ RTCP SR/RR every 5 s)
 * The stage order is fixed here, in one place, and `describe()` prints it.
 */
export class MediaBridge implements RtpSink, Leg {
  readonly kind = 'agent';
  readonly session: AgentSession;
  /** Reception statistics of the current peer's stream (new after a move). */
  stats: ReceiverStats;
  /** The call's WHEP listeners. */
  readonly egress: EgressHub;
  jitter: JitterBuffer;
  quality: Quality | undefined;
  /** Frames whose payload could not be decoded (concealed instead). */
  decodeErrors = 0;
  /** Lost frames decoded from the next packet's in-band FEC rather than concealed. */
  fecRecovered = 0;
  /** Frames concealed: lost, late or missing at their turn, with no FEC to rebuild them from. */
  concealed = 0;
  /** Ticks dropped because the codec threads were behind (overload). */
  shed = 0;
  /** Arrival → delivery to the agent, ms, for the last frames (benchmarks read it). */
  readonly ingressLatencies: number[] = [];
  /** This session's decoder and encoder, on a codec thread or inline. */
  readonly #codec: CodecChannel;
  readonly #encodes: boolean;
  readonly #pacer: Pacer;
  #dtmf = new DtmfDetector();
  #seq = new Unwrapper(16);
  #ts = new Unwrapper(32);
  /** Agent frame timestamps continue across a move to another peer. */
  #tsBaseMs = 0;
  #lastTsMs = 0;
  readonly #unsubscribe: () => void;
  readonly #clockRate: number;
  readonly #silence: Int16Array;
  #remoteSsrc = 0;
  #firstTs: number | undefined;
  #out = { seq: Math.floor(Math.random() * 0xffff), ts: Math.floor(Math.random() * 0xffffffff), packets: 0, octets: 0 };
  #lastReport = 0;
  #rttMs: number | undefined;
  #lastMedia = 0;
  #closed = false;
  #clearedAt: number | undefined;
  #framesAfterClear = 0;
  /** Bumped by clear(): agent audio pulled before it and still at the codec is not sent. */
  #clearEpoch = 0;
  #playAt: number | undefined;
  #silentFrames = 0;
  #silencePacket: Buffer | undefined;
  /** ms from play() into an idle pacer to that audio's first RTP packet (benchmarks read it). */
  readonly playToSendMs: number[] = [];
  /** ms from each clear() to the first silent frame sent after it (barge-in latency). */
  readonly clearToSilenceMs: number[] = [];

  constructor(
    private peer: WebRtcPeer,
    private plan: AnswerPlan,
    private readonly agent: Agent,
    callId: string,
    source: { name: string; kind: string },
    private readonly out: { ssrc: number; cname: string },
    private readonly deps: MediaRuntime & { log: Logger; onHangup: (reason: string) => void; onQuality?: (q: Quality) => void; transfer?: (target: string) => Promise<void> },
  ) {
    const a = plan.audio;
    this.#clockRate = rtpClockRate(a.codec);
    this.stats = new ReceiverStats(this.#clockRate);
    this.jitter = new JitterBuffer({ clockRate: this.#clockRate, frameMs: FRAME_MS, minDelayMs: 20, maxDelayMs: deps.maxJitterMs });
    this.#encodes = a.direction === 'sendrecv';
    this.#codec = deps.codecs.open(a.codec, agent.sampleRate, this.#encodes);
    this.#pacer = new Pacer(agent.sampleRate);
    this.#silence = new Int16Array(samplesPerFrame(agent.sampleRate));
    this.egress = new EgressHub(a.codec, agent.sampleRate);
    this.session = new AgentSession(callId, source, agent.sampleRate, {
      play: (s) => {
        if (this.#pacer.queuedMs === 0) this.#playAt ??= deps.clock.now();
        this.#pacer.play(s);
      },
      clear: () => {
        this.#pacer.clear();
        this.#clearEpoch++;
        this.#clearedAt = deps.clock.now();
      },
      mark: (name) => this.#pacer.mark(name),
      send: (data) => {
        this.peer.sendMessage(JSON.stringify(data));
        const type = (data as { type?: unknown } | null)?.type;
        if (type === 'turn' || type === 'agent-text') this.egress.publish(type === 'turn' ? 'turn' : 'agent-text', data);
      },
      hangup: (reason) => deps.onHangup(reason),
      transfer: deps.transfer ?? (() => Promise.reject(new Error('a WHIP session cannot be transferred'))),
    });
    this.#listen(peer);
    this.#unsubscribe = deps.frameClock.subscribe((now) => this.#tick(now));
  }

  /**
   * The agent carries on with another peer (a transfer voxgate placed the call for): same
   * session, pacer and outgoing stream; the new peer's stream gets a fresh jitter buffer,
   * statistics and sequence space. The codec must be the one already decoded and encoded.
   */
  moveTo(peer: WebRtcPeer, plan: AnswerPlan): void {
    if (plan.audio.codec !== this.plan.audio.codec) throw new Error(`cannot move a ${this.plan.audio.codec} bridge onto ${plan.audio.codec}`);
    this.peer.off('rtcp', this.#onRtcp);
    this.peer.off('message', this.#onMessage);
    this.peer = peer;
    this.plan = plan;
    this.stats = new ReceiverStats(this.#clockRate);
    this.jitter = new JitterBuffer({ clockRate: this.#clockRate, frameMs: FRAME_MS, minDelayMs: 20, maxDelayMs: this.deps.maxJitterMs });
    this.#dtmf = new DtmfDetector();
    this.#seq = new Unwrapper(16);
    this.#ts = new Unwrapper(32);
    this.#firstTs = undefined;
    this.#tsBaseMs = this.#lastTsMs + FRAME_MS;
    this.#remoteSsrc = 0;
    this.#rttMs = undefined;
    this.#listen(peer);
  }

  #listen(peer: WebRtcPeer): void {
    peer.on('rtcp', this.#onRtcp);
    peer.on('message', this.#onMessage);
  }

  /** The pipeline, as built. */
  describe(): string {
    const { codec } = this.plan.audio;
    const rate = this.agent.sampleRate;
    const inbound = `RTP -> Jitter(20-${this.deps.maxJitterMs}ms) -> ${decoderName(codec, rate)} -> Agent(${this.agent.name}@${rate / 1000}k)`;
    return this.#encodes ? `${inbound} -> Pacer -> ${encoderName(codec, rate)} -> RTP` : inbound;
  }

  /** Starts the agent; a failing agent ends the call with a reason. */
  async start(): Promise<void> {
    await this.agent.attach(this.session);
  }

  writeRtp(packet: Buffer): void {
    let p;
    try {
      p = parseRtp(packet);
    } catch (err) {
      if (err instanceof RtpParseError) return;
      throw err;
    }
    const now = this.deps.clock.now();
    this.#lastMedia = now;
    const a = this.plan.audio;
    if (p.payloadType !== a.payloadType && p.payloadType !== a.telephoneEvent?.payloadType) return;
    // RFC 4733 events share the stream's sequence space: count them, or they would look lost.
    const seq = this.#seq.unwrap(p.sequenceNumber);
    const ts = this.#ts.unwrap(p.timestamp);
    this.#remoteSsrc = p.ssrc;
    this.stats.record(seq, ts, now);
    if (a.telephoneEvent && p.payloadType === a.telephoneEvent.payloadType) {
      const digit = this.#dtmf.push(p.timestamp, p.payload);
      if (digit) {
        this.deps.log.info({ digit }, 'dtmf');
        this.session.deliverDtmf(digit);
        this.peer.sendMessage(JSON.stringify({ type: 'dtmf', digit }));
      }
      return;
    }
    this.#firstTs ??= ts;
    this.egress.onCallerRtp(p);
    this.jitter.push({ seq, timestamp: ts, payload: p.payload, arrivalMs: now });
  }

  audioRepairs(): AudioRepairs {
    return { fecRecovered: this.fecRecovered, concealed: this.concealed, decodeErrors: this.decodeErrors, shed: this.shed };
  }

  /** Where this session's codec runs ('codec thread N' or 'inline'). */
  get codecThread(): string {
    return this.#codec.where;
  }

  lastMediaAt(): number {
    return this.#lastMedia;
  }

  mediaReceived(): { packets: number; bytes: number } {
    return { packets: 0, bytes: 0 }; // counted once, by the WebRTC leg
  }

  close(reason: EndReason): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe();
    this.#codec.close();
    this.#pacer.clear();
    this.session.end(reason);
    this.egress.end();
  }

  /**
   * One 20 ms tick: the frame due from the jitter buffer and the agent's next frame go to the
   * codec together; the decoded frame reaches the agent and the encoded one the caller when it
   * comes back (at once inline, a fraction of a millisecond later from a codec thread).
   */
  #tick(now: number): void {
    const o = this.jitter.pop(now);
    let decode: DecodeOp = 'none';
    let payload: Buffer | undefined;
    let arrivalMs: number | undefined;
    let tsMs = 0;
    if (o.kind === 'packet') {
      decode = 'packet';
      payload = o.packet.payload;
      arrivalMs = o.packet.arrivalMs;
      tsMs = this.#tsBaseMs + ((o.packet.timestamp - (this.#firstTs ?? 0)) * 1000) / this.#clockRate;
      this.#lastTsMs = tsMs;
    } else if (o.kind === 'lost' && o.next && this.plan.audio.codec === 'opus') {
      decode = 'recover';
      payload = o.next.payload;
    } else if (o.kind === 'lost' || o.kind === 'underrun') {
      decode = 'conceal';
    }
    // The agent's frame is taken every tick, whether or not the caller hears it (WHEP listeners may).
    const frame = this.#pacer.next();
    // Idle: encode a few frames of real silence so the codec decays, then resend the last
    // silent packet instead of running the encoder every 20 ms for nothing.
    let encode: Int16Array | undefined;
    if (this.#encodes) {
      if (frame) {
        encode = frame;
        this.#silentFrames = 0;
      } else if (this.#silentFrames < 5 || !this.#silencePacket) {
        encode = this.#silence;
        this.#silentFrames++;
      }
    }
    const epoch = this.#clearEpoch;
    this.#codec.run({ decode, payload, encode }, (r) => {
      if (this.#closed) return;
      if (r.shed) {
        // Overload: this tick's frame is dropped both ways; the caller's stream stays in time.
        if (decode !== 'none') this.shed++;
        if (this.#encodes) this.#send(undefined);
        return;
      }
      if (r.decodeError) this.decodeErrors++;
      if (decode === 'recover') this.fecRecovered++;
      if (decode === 'conceal') this.concealed++;
      if (r.samples) this.session.deliverFrame({ samples: r.samples, sampleRate: this.agent.sampleRate, timestampMs: tsMs });
      if (arrivalMs !== undefined) {
        this.ingressLatencies.push(this.deps.clock.now() - arrivalMs);
        if (this.ingressLatencies.length > 3000) this.ingressLatencies.splice(0, 1000);
      }
      // Barge-in: a frame taken before clear() and encoded since is not heard; silence goes instead.
      const agentFrame = epoch === this.#clearEpoch ? frame : undefined;
      this.egress.onTick(r.samples, agentFrame);
      if (!this.#encodes) return;
      let out: Buffer | undefined;
      if (agentFrame) out = r.encoded;
      else if (!frame && r.encoded) out = this.#silencePacket = r.encoded;
      else out = this.#silencePacket;
      this.#send(out);
      this.#afterSend(agentFrame);
    });
    if (now - this.#lastReport >= REPORT_INTERVAL_MS) {
      this.#lastReport = now;
      this.#report(now);
    }
  }

  #afterSend(frame: Int16Array | undefined): void {
    const sentAt = this.deps.clock.now();
    if (frame && this.#playAt !== undefined) {
      this.playToSendMs.push(sentAt - this.#playAt);
      if (this.playToSendMs.length > 3000) this.playToSendMs.splice(0, 1000);
      this.#playAt = undefined;
    }
    if (this.#clearedAt !== undefined) {
      if (frame) this.#framesAfterClear++;
      else {
        const ms = sentAt - this.#clearedAt;
        this.clearToSilenceMs.push(ms);
        // framesBeforeSilence: agent audio sent between clear() and the first silent frame (0: the very next frame was silent).
        this.peer.sendMessage(JSON.stringify({ type: 'cleared', silenceAfterMs: ms, framesBeforeSilence: this.#framesAfterClear }));
        this.#clearedAt = undefined;
        this.#framesAfterClear = 0;
      }
    }
  }

  #send(payload: Buffer | undefined): void {
    const a = this.plan.audio;
    if (!payload) {
      // Nothing to send (no silence encoded yet): time still passes for the receiver.
      this.#out.ts = (this.#out.ts + (this.#clockRate * FRAME_MS) / 1000) >>> 0;
      return;
    }
    const pkt = serializeRtp({ payloadType: a.payloadType, sequenceNumber: this.#out.seq, timestamp: this.#out.ts, ssrc: this.out.ssrc, payload });
    this.#out.seq = (this.#out.seq + 1) & 0xffff;
    this.#out.ts = (this.#out.ts + (this.#clockRate * FRAME_MS) / 1000) >>> 0;
    if (this.peer.sendMedia(pkt)) {
      this.#out.packets++;
      this.#out.octets += payload.length;
    }
  }

  #report(now: number): void {
    const blocks = this.#remoteSsrc ? [this.stats.reportBlock(this.#remoteSsrc, now)] : [];
    const ntp = ntpFromMs(now);
    // RFC 3550 §6.4: a sender sends SR (with its reception blocks), a pure receiver RR.
    const rtcp = this.#encodes
      ? buildSenderReport(this.out.ssrc, this.out.cname, { ntpSec: ntp.sec, ntpFrac: ntp.frac, rtpTimestamp: this.#out.ts, packets: this.#out.packets, octets: this.#out.octets }, blocks)
      : buildReceiverReport(this.out.ssrc, this.out.cname, blocks);
    this.peer.sendMedia(rtcp);
    if (!this.stats.received) return;
    const codec = CODEC_IMPAIRMENT[this.plan.audio.codec] ?? CODEC_IMPAIRMENT.opus!;
    // One-way mouth-to-ear estimate: half the RTT (or a LAN guess), packetization, jitter buffer.
    const oneWay = (this.#rttMs ?? 20) / 2 + FRAME_MS + this.jitter.delayMs;
    const q: Quality = {
      packets: this.stats.received,
      lost: this.stats.lost,
      lossPercent: round(this.stats.lossPercent, 2),
      jitterMs: round(this.stats.jitterMs, 1),
      rttMs: this.#rttMs === undefined ? null : round(this.#rttMs, 1),
      jitterBufferMs: this.jitter.delayMs,
      mos: round(mos(oneWay, this.stats.lossPercent, codec), 2),
      at: new Date(now).toISOString(),
    };
    this.quality = q;
    this.deps.onQuality?.(q);
    this.egress.publish('quality', q);
    this.peer.sendMessage(JSON.stringify({ type: 'quality', ...q }));
  }

  readonly #onRtcp = (packet: Buffer): void => {
    const now = this.deps.clock.now();
    for (const p of parseRtcp(packet)) {
      if (p.type === 'sr') this.stats.recordSenderReport(p.sender.ntpSec, p.sender.ntpFrac, now);
      if (p.type === 'sr' || p.type === 'rr') {
        for (const b of p.reports) {
          if (b.ssrc !== this.out.ssrc) continue;
          const rtt = rttFromReport(b, now);
          if (rtt !== undefined) this.#rttMs = rtt;
        }
      }
    }
  };

  readonly #onMessage = (text: string): void => {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      this.deps.log.warn({ length: text.length }, 'data channel message is not JSON; ignored');
      this.peer.sendMessage(JSON.stringify({ type: 'error', error: 'messages must be JSON' }));
      return;
    }
    this.session.deliverMessage(data);
  };
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
