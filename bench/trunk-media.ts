/**
 * The carrier's RTP for bench/trunk.ts: one leg per call on its own port pair (voxgate latches
 * each leg to its source address, RFC 4961), 20 ms PCMU paced by one drift-corrected timer for
 * all calls, and a probe in the audio to find again in what the echo agent sends back.
 *
 * The probe: silence, and every MARKER_EVERY frames one 20 ms frame of a tone (one of
 * MARKER_HZ in turn, so a marker is told from its neighbours). On the way back each marker's
 * onset is found to the sample (|x| over ONSET_LEVEL after a quiet stretch), its tone told by
 * counting zero crossings, and it is matched to the latest marker of that tone we sent, which
 * is right while the round trip stays under MARKER_EVERY x MARKER_HZ.length frames (800 ms).
 */
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { linearToUlaw, ulawToLinear } from '../src/audio/g711.js';
import { parseRtcp } from '../src/rtp/rtcp.js';

export const FRAME_MS = 20;
const SAMPLES = 160;
export const MARKER_EVERY = 10;
export const MARKER_HZ = [600, 1200, 1800, 2400] as const;
const MARKER_LEVEL = 10_000;
const ONSET_LEVEL = 3_000;
/** Below this a sample is quiet; QUIET_SAMPLES of them in a row re-arm the onset search. */
const QUIET_LEVEL = 300;
const QUIET_SAMPLES = 40;
/** Zero crossings are counted from ZC_SKIP samples after the onset (past the filter's edge), over ZC_SAMPLES. */
const ZC_SKIP = 8;
const ZC_SAMPLES = 120;
/** A crossing needs the signal past this, so noise about zero is not counted. */
const ZC_LEVEL = 200;

const ULAW = Int16Array.from({ length: 256 }, (_, b) => ulawToLinear(b));
const SILENCE = Buffer.alloc(SAMPLES, linearToUlaw(0));
const MARKERS = MARKER_HZ.map((hz) => Buffer.from(Array.from({ length: SAMPLES }, (_, i) => linearToUlaw(Math.round(MARKER_LEVEL * Math.sin((2 * Math.PI * hz * i) / 8000))))));
const EXPECTED_CROSSINGS = MARKER_HZ.map((hz) => (2 * hz * ZC_SAMPLES) / 8000);

/** Even ports for our legs, outside voxgate's sip.rtp range in the bench config (20000-29999). */
const PORT_MIN = 40_000;
const PORT_MAX = 59_998;
let nextPort = PORT_MIN + 2 * Math.floor(Math.random() * ((PORT_MAX - PORT_MIN) / 2));

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

/** Counters of a leg; the bench takes them at the start and the end of its window. */
export interface LegCounts {
  sent: number;
  received: number;
  /** When the last packet from the gateway arrived: the packets it should have sent since are the time since / 20 ms. */
  lastArrival: number;
  /** Gaps in the gateway's sequence numbers (packets it sent that we did not get). */
  seqGaps: number;
  /** Markers sent so far (the index of the next one). */
  markers: number;
  /** The gateway's last RTCP report about our stream (RFC 3550 §6.4.1), cumulative. */
  report: GatewayReport | undefined;
}

export interface GatewayReport {
  cumulativeLost: number;
  /** Extended highest sequence number received. */
  highestSeq: number;
}

/** What the detector made of one onset in the echoed audio (for debugging the probe). */
export interface MarkerEvent {
  kind: 'matched' | 'garbled' | 'duplicate' | 'stray';
  crossings: number;
  /** The marker it was matched to (-1: none). */
  marker: number;
  onsetAt: number;
}

export class RtpLeg {
  readonly ssrc = randomBytes(4).readUInt32BE(0);
  sent = 0;
  received = 0;
  rtcpReceived = 0;
  seqGaps = 0;
  lastArrival = 0;
  report: GatewayReport | undefined;
  /** Packets of another payload type or SSRC change: not audio of this call. */
  other = 0;
  /** Markers detected whose tone could not be told, or whose marker had already come back. */
  garbled = 0;
  duplicates = 0;
  /** When each marker was sent (performance.now()), and its added latency once it came back (NaN before). */
  readonly markerSentAt: number[] = [];
  readonly markerLatency: number[] = [];
  onMarker: ((e: MarkerEvent) => void) | undefined;
  #seq = randomBytes(2).readUInt16BE(0);
  /** Our first sequence number: what the gateway's extended highest one counts from. */
  readonly firstSeq = this.#seq;
  #ts = randomBytes(4).readUInt32BE(0);
  #frames = 0;
  #lastSeq = -1;
  #remoteSsrc: number | undefined;
  // The marker detector's state, carried across packets.
  #armed = true;
  #quiet = QUIET_SAMPLES;
  #collect = 0;
  #skip = 0;
  #crossings = 0;
  #sign = 0;
  #onsetAt = 0;
  #sending = false;

  private constructor(
    readonly rtp: Socket,
    readonly rtcp: Socket,
    readonly port: number,
    /** Which frame of every MARKER_EVERY carries a marker: spread over the calls. */
    readonly phase: number,
  ) {
    rtp.on('message', (msg) => this.#onRtp(msg, performance.now()));
    rtcp.on('message', (msg) => this.#onRtcp(msg));
  }

  /** A leg on the next free even/odd port pair. */
  static async open(index: number): Promise<RtpLeg> {
    for (let tries = 0; tries < 2000; tries++) {
      const port = nextPort;
      nextPort = nextPort + 2 > PORT_MAX ? PORT_MIN : nextPort + 2;
      const rtp = await bind(port);
      if (!rtp) continue;
      const rtcp = await bind(port + 1);
      if (!rtcp) {
        rtp.close();
        continue;
      }
      return new RtpLeg(rtp, rtcp, port, index % MARKER_EVERY);
    }
    throw new Error(`no free RTP port pair in ${PORT_MIN}-${PORT_MAX + 1}`);
  }

  counts(): LegCounts {
    return { sent: this.sent, received: this.received, lastArrival: this.lastArrival, seqGaps: this.seqGaps, markers: this.markerSentAt.length, report: this.report };
  }

  /** Sends to the answer's address from now on (a connected socket: only the gateway's packets come in). */
  async start(host: string, port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => this.rtp.connect(port, host, (err?: Error) => (err ? reject(err) : resolve())));
    this.#sending = true;
  }

  /** One 20 ms PCMU packet: silence or this leg's next marker. */
  sendFrame(): void {
    if (!this.#sending) return;
    const marker = this.#frames % MARKER_EVERY === this.phase;
    const payload = marker ? MARKERS[this.markerSentAt.length % MARKERS.length]! : SILENCE;
    const p = Buffer.allocUnsafe(12 + SAMPLES);
    p[0] = 0x80;
    // RFC 3551: PCMU is payload type 0; the marker bit on the first packet of the stream.
    p[1] = this.#frames === 0 ? 0x80 : 0x00;
    p.writeUInt16BE(this.#seq, 2);
    p.writeUInt32BE(this.#ts, 4);
    p.writeUInt32BE(this.ssrc, 8);
    payload.copy(p, 12);
    this.#seq = (this.#seq + 1) & 0xffff;
    this.#ts = (this.#ts + SAMPLES) >>> 0;
    this.#frames++;
    if (marker) {
      this.markerSentAt.push(performance.now());
      this.markerLatency.push(NaN);
    }
    this.rtp.send(p);
    this.sent++;
  }

  stop(): void {
    this.#sending = false;
  }

  close(): void {
    this.#sending = false;
    this.rtp.close();
    this.rtcp.close();
  }

  #onRtp(msg: Buffer, arrival: number): void {
    if (msg.length < 12 || msg[0]! >> 6 !== 2 || (msg[1]! & 0x7f) !== 0) {
      this.other++;
      return;
    }
    const ssrc = msg.readUInt32BE(8);
    if (this.#remoteSsrc !== ssrc) {
      if (this.#remoteSsrc !== undefined) this.other++;
      this.#remoteSsrc = ssrc;
      this.#lastSeq = -1;
    }
    const seq = msg.readUInt16BE(2);
    if (this.#lastSeq >= 0) {
      const gap = (seq - this.#lastSeq - 1) & 0xffff;
      if (gap > 0 && gap < 1000) this.seqGaps += gap;
    }
    this.#lastSeq = seq;
    this.received++;
    this.lastArrival = arrival;
    const cc = msg[0]! & 0x0f;
    let offset = 12 + 4 * cc;
    if (msg[0]! & 0x10 && msg.length >= offset + 4) offset += 4 + 4 * msg.readUInt16BE(offset + 2);
    this.#detect(msg, offset, arrival);
  }

  #onRtcp(msg: Buffer): void {
    this.rtcpReceived++;
    try {
      for (const p of parseRtcp(msg)) {
        if (p.type !== 'sr' && p.type !== 'rr') continue;
        const b = p.reports.find((r) => r.ssrc === this.ssrc);
        if (b) this.report = { cumulativeLost: b.cumulativeLost, highestSeq: b.highestSeq };
      }
    } catch {
      // Not RTCP we can read: counted, not used.
    }
  }

  /** The marker detector over one packet's samples (8 per ms): onset, then zero crossings, then quiet. */
  #detect(msg: Buffer, offset: number, arrival: number): void {
    for (let i = offset; i < msg.length; i++) {
      const x = ULAW[msg[i]!]!;
      const ax = x < 0 ? -x : x;
      if (ax < QUIET_LEVEL) this.#quiet++;
      else this.#quiet = 0;
      if (this.#collect > 0) {
        if (this.#skip > 0) {
          this.#skip--;
          continue;
        }
        if (ax >= ZC_LEVEL) {
          const s = x > 0 ? 1 : -1;
          if (this.#sign !== 0 && s !== this.#sign) this.#crossings++;
          this.#sign = s;
        }
        if (--this.#collect === 0) this.#matched(this.#crossings);
        continue;
      }
      if (this.#armed) {
        if (ax > ONSET_LEVEL) {
          this.#armed = false;
          this.#onsetAt = arrival + (i - offset) / 8;
          this.#collect = ZC_SAMPLES;
          this.#skip = ZC_SKIP;
          this.#crossings = 0;
          this.#sign = 0;
        }
      } else if (this.#quiet >= QUIET_SAMPLES) {
        this.#armed = true;
      }
    }
  }

  #matched(crossings: number): void {
    let tone = 0;
    for (let t = 1; t < EXPECTED_CROSSINGS.length; t++) {
      if (Math.abs(crossings - EXPECTED_CROSSINGS[t]!) < Math.abs(crossings - EXPECTED_CROSSINGS[tone]!)) tone = t;
    }
    const at = this.#onsetAt;
    if (Math.abs(crossings - EXPECTED_CROSSINGS[tone]!) > 6) {
      this.garbled++;
      this.onMarker?.({ kind: 'garbled', crossings, marker: -1, onsetAt: at });
      return;
    }
    // The latest marker of this tone sent so far.
    const last = this.markerSentAt.length - 1;
    const m = last - ((((last - tone) % MARKERS.length) + MARKERS.length) % MARKERS.length);
    if (m < 0) {
      this.garbled++;
      this.onMarker?.({ kind: 'stray', crossings, marker: -1, onsetAt: at });
      return;
    }
    if (!Number.isNaN(this.markerLatency[m]!)) {
      this.duplicates++;
      this.onMarker?.({ kind: 'duplicate', crossings, marker: m, onsetAt: at });
      return;
    }
    this.markerLatency[m] = at - this.markerSentAt[m]!;
    this.onMarker?.({ kind: 'matched', crossings, marker: m, onsetAt: at });
  }
}

/**
 * One timer for every leg: frame k of the run is due at start + k x 20 ms (no drift). A late
 * tick sends the frames it missed (up to MAX_CATCH_UP each), as a phone's stack would after a
 * stall; beyond that they are skipped. How late each tick ran is kept, to tell a generator
 * that could not keep up from a gateway that could not.
 */
const MAX_CATCH_UP = 5;

export class FramePacer {
  readonly legs = new Set<RtpLeg>();
  /** ms each tick ran after its due time. */
  lateness: number[] = [];
  skipped = 0;
  #start = 0;
  #done = 0;
  #timer: NodeJS.Timeout | undefined;

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
    const due = this.#start + (this.#done + 1) * FRAME_MS;
    this.#timer = setTimeout(() => this.#tick(), Math.max(0, due - performance.now()));
  }

  #tick(): void {
    const now = this.#start + (this.#done + 1) * FRAME_MS;
    const at = performance.now();
    this.lateness.push(at - now);
    let due = Math.floor((at - this.#start) / FRAME_MS) - this.#done;
    if (due > MAX_CATCH_UP) {
      this.skipped += due - MAX_CATCH_UP;
      this.#done += due - MAX_CATCH_UP;
      due = MAX_CATCH_UP;
    }
    for (let f = 0; f < Math.max(1, due); f++) for (const leg of this.legs) leg.sendFrame();
    this.#done += Math.max(1, due);
    this.#schedule();
  }
}
