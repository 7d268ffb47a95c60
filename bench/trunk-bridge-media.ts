/**
 * The two ends of a bridged call for bench/trunk-bridge.ts, both in the bench process:
 *
 * - BrowserLeg: a node-datachannel PeerConnection (ICE, DTLS-SRTP, one Opus track) sending the
 *   probe cycle as 20 ms Opus (pt 111) and finding the phone's markers in what comes back
 *   (decoded at 8 kHz);
 * - PhoneLeg: plain RTP/AVP on its own UDP port pair, sending the probe as 20 ms PCMU (pt 0) or,
 *   when the phone answered Opus, the same Opus frames the browser sends; and finding the
 *   browser's markers in what arrives.
 *
 * One FramePacer sends every leg's next frame each 20 ms, as bench/trunk-media.ts does.
 */
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import ndc from 'node-datachannel';
import { FRAME_MS } from './trunk-media.js';
import { CYCLE_FRAMES, expandPcmu, type KnownOpusFrames, MarkerDetector, markerAt, MarkerLog, OpusTo8k } from './trunk-bridge-probe.js';

export type PhoneCodec = { name: 'pcmu'; pt: 0 } | { name: 'opus'; pt: number };

/** What a leg has sent and received, taken at the window's edges. */
export interface LegCounts {
  sent: number;
  received: number;
  /** Gaps in the far side's sequence numbers (packets the bridge sent that did not arrive). */
  seqGaps: number;
  /** Markers this leg sent so far. */
  markers: number;
}

/** RTP header fields of a packet, or undefined when it is not RTP (RTCP, STUN, short). */
function rtpPayload(p: Buffer): { pt: number; seq: number; ssrc: number; payload: Buffer } | undefined {
  if (p.length < 12 || p[0]! >> 6 !== 2) return undefined;
  const pt = p[1]! & 0x7f;
  // RFC 5761 §4: 64-95 (with the marker bit: 192-223) are RTCP on a muxed port.
  if (p[1]! >= 192 && p[1]! <= 223) return undefined;
  const cc = p[0]! & 0x0f;
  let off = 12 + 4 * cc;
  if (p[0]! & 0x10) {
    if (p.length < off + 4) return undefined;
    off += 4 + 4 * p.readUInt16BE(off + 2);
  }
  let end = p.length;
  if (p[0]! & 0x20) end -= p[end - 1]!;
  if (end < off) return undefined;
  return { pt, seq: p.readUInt16BE(2), ssrc: p.readUInt32BE(8), payload: p.subarray(off, end) };
}

/** The sending half shared by both legs: RTP header, the cycle position, the marker log. */
class RtpSender {
  readonly ssrc = randomBytes(4).readUInt32BE(0);
  sent = 0;
  #seq = randomBytes(2).readUInt16BE(0);
  #ts = randomBytes(4).readUInt32BE(0);
  #frame: number;

  constructor(
    readonly pt: number,
    readonly tsStep: number,
    readonly frames: Buffer[],
    readonly log: MarkerLog,
    offset: number,
  ) {
    this.#frame = offset;
  }

  next(): Buffer {
    const j = this.#frame % CYCLE_FRAMES;
    const payload = this.frames[j]!;
    const p = Buffer.allocUnsafe(12 + payload.length);
    p[0] = 0x80;
    p[1] = (this.sent === 0 ? 0x80 : 0) | this.pt;
    p.writeUInt16BE(this.#seq, 2);
    p.writeUInt32BE(this.#ts, 4);
    p.writeUInt32BE(this.ssrc, 8);
    payload.copy(p, 12);
    this.#seq = (this.#seq + 1) & 0xffff;
    this.#ts = (this.#ts + this.tsStep) >>> 0;
    this.#frame++;
    const tone = markerAt(j);
    if (tone !== undefined) this.log.sent(tone, performance.now());
    return p;
  }
}

/** The receiving half: one expected payload type, sequence gaps, decode (or recognise), detect. */
class RtpReceiver {
  received = 0;
  seqGaps = 0;
  /** Opus frames recognised as the far end's own (passed through), not decoded. */
  recognised = 0;
  /** Packets of another payload type, or an SSRC change. */
  other = 0;
  #lastSeq = -1;
  #ssrc: number | undefined;
  readonly #decode: (payload: Buffer) => Int16Array | undefined;

  constructor(
    readonly pt: number,
    codec: 'pcmu' | 'opus',
    readonly detector: MarkerDetector,
    readonly known?: KnownOpusFrames,
  ) {
    if (codec === 'pcmu') this.#decode = expandPcmu;
    else {
      const dec = new OpusTo8k();
      this.#decode = (p) => dec.decode(p);
    }
  }

  onPacket(msg: Buffer, arrival: number): void {
    const r = rtpPayload(msg);
    if (!r) return;
    if (r.pt !== this.pt) {
      this.other++;
      return;
    }
    if (this.#ssrc !== r.ssrc) {
      if (this.#ssrc !== undefined) this.other++;
      this.#ssrc = r.ssrc;
      this.#lastSeq = -1;
    }
    if (this.#lastSeq >= 0) {
      const gap = (r.seq - this.#lastSeq - 1) & 0xffff;
      if (gap > 0 && gap < 1000) this.seqGaps += gap;
    }
    this.#lastSeq = r.seq;
    this.received++;
    const j = this.known ? this.known.match(r.payload) : -1;
    if (j >= 0) {
      this.recognised++;
      const tone = markerAt(j);
      if (tone !== undefined) this.detector.known(tone, arrival + this.known!.calibration.onsetMs[j]!);
      return;
    }
    const pcm = this.#decode(r.payload);
    if (pcm) this.detector.push(pcm, arrival);
  }
}

export interface FrameSource {
  sendFrame(): void;
}

/** Even ports for the phone legs, away from voxgate's RTP range (20000-29999) and the browsers' ICE range. */
const PHONE_PORT_MIN = 40_000;
const PHONE_PORT_MAX = 59_998;
let nextPort = PHONE_PORT_MIN + 2 * Math.floor(Math.random() * ((PHONE_PORT_MAX - PHONE_PORT_MIN) / 2));

function bind(port: number): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    s.once('error', () => {
      s.close();
      resolve(undefined);
    });
    s.bind(port, '127.0.0.1', () => {
      s.removeAllListeners('error');
      s.on('error', () => undefined);
      resolve(s);
    });
  });
}

/** The phone's RTP: one port pair (RTCP on port + 1, RFC 3550 §11), connected to the bridge's address once known. */
export class PhoneLeg implements FrameSource {
  rtcpReceived = 0;
  readonly #sender: RtpSender;
  readonly #receiver: RtpReceiver;
  #sending = false;

  private constructor(
    readonly rtp: Socket,
    readonly rtcp: Socket,
    readonly port: number,
    readonly codec: PhoneCodec,
    /** Markers this phone sends (the browser finds them). */
    readonly log: MarkerLog,
    /** The browser's markers, which this phone finds. */
    far: MarkerLog,
    frames: Buffer[],
    offset: number,
    known: KnownOpusFrames | undefined,
  ) {
    this.#sender = new RtpSender(codec.pt, codec.name === 'pcmu' ? 160 : 960, frames, log, offset);
    this.#receiver = new RtpReceiver(codec.pt, codec.name, new MarkerDetector(far), codec.name === 'opus' ? known : undefined);
    rtp.on('message', (msg) => this.#receiver.onPacket(msg, performance.now()));
    rtcp.on('message', () => this.rtcpReceived++);
  }

  static async open(opts: { codec: PhoneCodec; frames: Buffer[]; codecDelayMs: number; far: MarkerLog; offset: number; known?: KnownOpusFrames }): Promise<PhoneLeg> {
    for (let tries = 0; tries < 2000; tries++) {
      const port = nextPort;
      nextPort = nextPort + 2 > PHONE_PORT_MAX ? PHONE_PORT_MIN : nextPort + 2;
      const rtp = await bind(port);
      if (!rtp) continue;
      const rtcp = await bind(port + 1);
      if (!rtcp) {
        rtp.close();
        continue;
      }
      return new PhoneLeg(rtp, rtcp, port, opts.codec, new MarkerLog(opts.codecDelayMs), opts.far, opts.frames, opts.offset, opts.known);
    }
    throw new Error(`no free RTP port pair in ${PHONE_PORT_MIN}-${PHONE_PORT_MAX + 1}`);
  }

  get detector(): MarkerDetector {
    return this.#receiver.detector;
  }

  get other(): number {
    return this.#receiver.other;
  }

  get recognised(): number {
    return this.#receiver.recognised;
  }

  counts(): LegCounts {
    return { sent: this.#sender.sent, received: this.#receiver.received, seqGaps: this.#receiver.seqGaps, markers: this.log.sentAt.length };
  }

  /** Sends to the bridge's address from now on; only its packets come in (a connected socket). */
  async start(host: string, port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => this.rtp.connect(port, host, (err?: Error) => (err ? reject(err) : resolve())));
    this.#sending = true;
  }

  sendFrame(): void {
    if (!this.#sending) return;
    this.rtp.send(this.#sender.next());
    this.#sender.sent++;
  }

  stop(): void {
    this.#sending = false;
  }

  close(): void {
    this.#sending = false;
    this.rtp.close();
    this.rtcp.close();
  }
}

/** The browsers' ICE ports: below the phone legs', above voxgate's RTP range and rtpengine's. */
const ICE_PORT_MIN = 30_000;
const ICE_PORT_MAX = 39_999;
export const BROWSER_OPUS_PT = 111;

type Pc = InstanceType<typeof ndc.PeerConnection>;
type Track = ReturnType<Pc['addTrack']>;

/** A browser's WebRTC end: node-datachannel, one sendrecv Opus track, ICE gathered before the offer is read. */
export class BrowserLeg implements FrameSource {
  readonly pc: Pc;
  readonly track: Track;
  /** Markers this browser sends (the phone finds them). */
  readonly log: MarkerLog;
  readonly opened: Promise<void>;
  state = 'new';
  readonly #sender: RtpSender;
  #receiver: RtpReceiver | undefined;
  #closed = false;
  readonly #known: KnownOpusFrames | undefined;

  constructor(opts: { name: string; frames: Buffer[]; codecDelayMs: number; offset: number; known?: KnownOpusFrames }) {
    this.#known = opts.known;
    this.pc = new ndc.PeerConnection(opts.name, { iceServers: [], bindAddress: '127.0.0.1', portRangeBegin: ICE_PORT_MIN, portRangeEnd: ICE_PORT_MAX });
    const audio = new ndc.Audio('0', 'SendRecv');
    audio.addOpusCodec(BROWSER_OPUS_PT);
    this.log = new MarkerLog(opts.codecDelayMs);
    this.#sender = new RtpSender(BROWSER_OPUS_PT, 960, opts.frames, this.log, opts.offset);
    audio.addSSRC(this.#sender.ssrc, opts.name, `s-${opts.name}`, `t-${opts.name}`);
    this.track = this.pc.addTrack(audio);
    // node-datachannel frees a track's native wrapper only from its onClosed callback.
    this.track.onClosed(() => undefined);
    this.track.onMessage((m) => this.#receiver?.onPacket(m, performance.now()));
    this.opened = new Promise<void>((resolve) => this.track.onOpen(() => resolve()));
    this.pc.onStateChange((s) => (this.state = s));
  }

  /** The offer once ICE gathering is complete (no trickle over SIP), with Chrome's Opus fmtp. */
  async offer(): Promise<string> {
    const gathered = new Promise<void>((resolve) => this.pc.onGatheringStateChange((s) => s === 'complete' && resolve()));
    this.pc.setLocalDescription();
    if (this.pc.gatheringState() !== 'complete') await gathered;
    // libdatachannel offers stereo=1;sprop-stereo=1;maxaveragebitrate=96000; Chrome offers this.
    return this.pc.localDescription()!.sdp.replace(/a=fmtp:111 [^\r\n]*/, 'a=fmtp:111 minptime=10;useinbandfec=1');
  }

  /** The bridge's answer; `far` is the phone's marker log, which this browser's detector matches against. */
  answer(sdp: string, far: MarkerLog): void {
    this.#receiver = new RtpReceiver(BROWSER_OPUS_PT, 'opus', new MarkerDetector(far), this.#known);
    this.pc.setRemoteDescription(sdp, 'answer');
  }

  get detector(): MarkerDetector | undefined {
    return this.#receiver?.detector;
  }

  get other(): number {
    return this.#receiver?.other ?? 0;
  }

  get recognised(): number {
    return this.#receiver?.recognised ?? 0;
  }

  counts(): LegCounts {
    return { sent: this.#sender.sent, received: this.#receiver?.received ?? 0, seqGaps: this.#receiver?.seqGaps ?? 0, markers: this.log.sentAt.length };
  }

  sendFrame(): void {
    if (this.#closed || !this.track.isOpen()) return;
    try {
      if (this.track.sendMessageBinary(this.#sender.next())) this.#sender.sent++;
    } catch {
      // The track closed under us: the call's loss shows it.
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.track.close();
      this.pc.close();
    } catch {
      // Already closed.
    }
  }
}

/**
 * One timer for every leg, its 20 ms split into SLOTS slots: a leg sends in its own slot, so the
 * calls' packets are spread over the frame as independent phones and browsers spread them (not
 * one burst of N packets every 20 ms), and the packets in flight at any instant stay nearly
 * constant, which lets sent and received counts taken at the same instant be compared. Slot m
 * of the run is due at start + m x 20/SLOTS ms (no drift); a late wake-up sends what it missed
 * (up to MAX_CATCH_UP frames), beyond that frames are skipped. Lateness is kept, to tell a
 * generator that fell behind from a bridge that did. BENCH_PACER_SLOTS=1: every call in the same
 * slot, one burst per 20 ms (as /work/shared/peers/rtpengine-bridge.mjs sends), which batches
 * a bridge's wake-ups.
 */
const SLOTS = Math.max(1, Math.min(20, Math.round(Number(process.env.BENCH_PACER_SLOTS ?? 10))));
const SLOT_MS = FRAME_MS / SLOTS;
const MAX_CATCH_UP = 5 * SLOTS;

export class FramePacer {
  readonly #slots = Array.from({ length: SLOTS }, () => new Set<FrameSource>());
  lateness: number[] = [];
  /** Slots (of 20/SLOTS ms) skipped after a stall. */
  skipped = 0;
  #start = 0;
  #done = 0;
  #timer: NodeJS.Timeout | undefined;

  /** Adds a leg to the slot `key` falls in (the call's index, say). */
  add(leg: FrameSource, key: number): void {
    this.#slots[((key % SLOTS) + SLOTS) % SLOTS]!.add(leg);
  }

  delete(leg: FrameSource): void {
    for (const s of this.#slots) s.delete(leg);
  }

  start(): void {
    this.#start = performance.now();
    this.#done = 0;
    this.#schedule();
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    const due = this.#start + (this.#done + 1) * SLOT_MS;
    this.#timer = setTimeout(() => this.#tick(), Math.max(0, due - performance.now()));
  }

  #tick(): void {
    const at = performance.now();
    this.lateness.push(at - (this.#start + (this.#done + 1) * SLOT_MS));
    let due = Math.max(1, Math.floor((at - this.#start) / SLOT_MS) - this.#done);
    if (due > MAX_CATCH_UP) {
      this.skipped += due - MAX_CATCH_UP;
      this.#done += due - MAX_CATCH_UP;
      due = MAX_CATCH_UP;
    }
    for (let k = 0; k < due; k++) {
      this.#done++;
      for (const leg of this.#slots[this.#done % SLOTS]!) leg.sendFrame();
    }
    this.#schedule();
  }
}
