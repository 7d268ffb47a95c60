import { serializeRtp, Unwrapper, type RtpPacket } from './packet.js';
import { buildReceiverReport, buildSenderReport, ntpFromMs, parseRtcp } from './rtcp.js';
import { ReceiverStats, rttFromReport } from './receiver-stats.js';

/**
 * One audio stream each way in an RTP session (RFC 3550): our SSRC, sequence number and
 * timestamp with the counts an SR reports, and the far end's stream as received (extended
 * sequence numbers and timestamps, loss and jitter, RTT from their reports of us). No I/O.
 */
export class RtpSession {
  readonly ssrc: number;
  readonly cname: string;
  /** The timestamp of the next frame we send (random start, RFC 3550 §5.1). */
  ts = Math.floor(Math.random() * 0xffffffff);
  seq = Math.floor(Math.random() * 0xffff);
  packetsSent = 0;
  octetsSent = 0;
  lastSentTs = 0;
  /** A packet has been built (lastSentTs means something). */
  seqUsed = false;
  stats: ReceiverStats;
  remoteSsrc = 0;
  rttMs: number | undefined;
  #seq = new Unwrapper(16);
  #ts = new Unwrapper(32);

  constructor(
    private readonly clockRate: number,
    out: { ssrc: number; cname: string },
  ) {
    this.ssrc = out.ssrc;
    this.cname = out.cname;
    this.stats = new ReceiverStats(clockRate);
  }

  get sentAny(): boolean {
    return this.packetsSent > 0;
  }

  /** The extended sequence number and timestamp of the far end's last packet (set by received()). */
  receivedSeq = 0;
  receivedTs = 0;

  /** A packet of the far end's stream, recorded; its extended numbers land in `receivedSeq` and `receivedTs` (no object per packet). */
  received(p: RtpPacket, nowMs: number): void {
    this.receivedSeq = this.#seq.unwrap(p.sequenceNumber);
    this.receivedTs = this.#ts.unwrap(p.timestamp);
    this.remoteSsrc = p.ssrc;
    this.stats.record(this.receivedSeq, this.receivedTs, nowMs);
  }

  /** The far end started a new stream (another SSRC): its statistics start again. */
  resetRemote(): void {
    this.stats = new ReceiverStats(this.clockRate);
    this.#seq = new Unwrapper(16);
    this.#ts = new Unwrapper(32);
    this.remoteSsrc = 0;
    this.rttMs = undefined;
  }

  /** Our next packet; `sent()` counts it once the transport took it. */
  packet(payloadType: number, payload: Buffer, marker: boolean, ts: number): Buffer {
    const pkt = serializeRtp({ marker, payloadType, sequenceNumber: this.seq, timestamp: ts, ssrc: this.ssrc, payload });
    this.seq = (this.seq + 1) & 0xffff;
    this.lastSentTs = ts;
    this.seqUsed = true;
    return pkt;
  }

  /** The SR's counts (RFC 3550 §6.4.1): packets and payload octets actually sent. */
  sent(payloadOctets: number): void {
    this.packetsSent++;
    this.octetsSent += payloadOctets;
  }

  /** RFC 3550 §6.4: an SR once we have sent (with our reception block), an RR before that. */
  report(nowMs: number): Buffer {
    const blocks = this.remoteSsrc ? [this.stats.reportBlock(this.remoteSsrc, nowMs)] : [];
    if (!this.sentAny) return buildReceiverReport(this.ssrc, this.cname, blocks);
    const ntp = ntpFromMs(nowMs);
    return buildSenderReport(this.ssrc, this.cname, { ntpSec: ntp.sec, ntpFrac: ntp.frac, rtpTimestamp: this.ts, packets: this.packetsSent, octets: this.octetsSent }, blocks);
  }

  /** The far end's RTCP: its SR times our next report's LSR/DLSR; its report of us gives the RTT. */
  receivedRtcp(packet: Buffer, nowMs: number): void {
    for (const p of parseRtcp(packet)) {
      if (p.type === 'sr') this.stats.recordSenderReport(p.sender.ntpSec, p.sender.ntpFrac, nowMs);
      if (p.type === 'sr' || p.type === 'rr') {
        for (const b of p.reports) {
          if (b.ssrc !== this.ssrc) continue;
          const rtt = rttFromReport(b, nowMs);
          if (rtt !== undefined) this.rttMs = rtt;
        }
      }
    }
  }
}
