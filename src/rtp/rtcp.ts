/** RTCP (RFC 3550 §6): the sender and receiver reports voxgate sends and reads. Pure. */
export interface ReportBlock {
  ssrc: number;
  fractionLost: number; // 0..255
  cumulativeLost: number;
  highestSeq: number; // extended
  jitter: number; // timestamp units
  lsr: number; // middle 32 bits of the last SR's NTP time
  dlsr: number; // 1/65536 s
}

export interface SenderInfo {
  ntpSec: number;
  ntpFrac: number;
  rtpTimestamp: number;
  packets: number;
  octets: number;
}

export type RtcpPacket =
  | { type: 'sr'; ssrc: number; sender: SenderInfo; reports: ReportBlock[] }
  | { type: 'rr'; ssrc: number; reports: ReportBlock[] }
  | { type: 'other'; packetType: number };

const NTP_EPOCH_OFFSET = 2208988800;

export function ntpFromMs(ms: number): { sec: number; frac: number } {
  const sec = Math.floor(ms / 1000) + NTP_EPOCH_OFFSET;
  const frac = Math.floor(((ms % 1000) / 1000) * 2 ** 32) >>> 0;
  return { sec: sec >>> 0, frac };
}

/** The middle 32 bits of an NTP timestamp, as LSR carries it. */
export function ntpMiddle(sec: number, frac: number): number {
  return (((sec & 0xffff) << 16) | (frac >>> 16)) >>> 0;
}

export function parseRtcp(buf: Buffer): RtcpPacket[] {
  const out: RtcpPacket[] = [];
  let off = 0;
  while (off + 4 <= buf.length) {
    if (buf[off]! >> 6 !== 2) break;
    const count = buf[off]! & 0x1f;
    const pt = buf[off + 1]!;
    const len = (buf.readUInt16BE(off + 2) + 1) * 4;
    if (off + len > buf.length) break;
    const body = buf.subarray(off, off + len);
    if (pt === 200 && len >= 28) {
      out.push({
        type: 'sr',
        ssrc: body.readUInt32BE(4),
        sender: { ntpSec: body.readUInt32BE(8), ntpFrac: body.readUInt32BE(12), rtpTimestamp: body.readUInt32BE(16), packets: body.readUInt32BE(20), octets: body.readUInt32BE(24) },
        reports: readBlocks(body, 28, count),
      });
    } else if (pt === 201 && len >= 8) {
      out.push({ type: 'rr', ssrc: body.readUInt32BE(4), reports: readBlocks(body, 8, count) });
    } else {
      out.push({ type: 'other', packetType: pt });
    }
    off += len;
  }
  return out;
}

function readBlocks(body: Buffer, start: number, count: number): ReportBlock[] {
  const blocks: ReportBlock[] = [];
  for (let i = 0; i < count && start + 24 * (i + 1) <= body.length; i++) {
    const o = start + 24 * i;
    const lost = body.readUIntBE(o + 5, 3);
    blocks.push({
      ssrc: body.readUInt32BE(o),
      fractionLost: body[o + 4]!,
      cumulativeLost: lost & 0x800000 ? lost - 0x1000000 : lost,
      highestSeq: body.readUInt32BE(o + 8),
      jitter: body.readUInt32BE(o + 12),
      lsr: body.readUInt32BE(o + 16),
      dlsr: body.readUInt32BE(o + 20),
    });
  }
  return blocks;
}

function writeBlock(buf: Buffer, o: number, b: ReportBlock): void {
  buf.writeUInt32BE(b.ssrc >>> 0, o);
  buf[o + 4] = b.fractionLost & 0xff;
  buf.writeUIntBE(Math.max(-0x800000, Math.min(0x7fffff, b.cumulativeLost)) & 0xffffff, o + 5, 3);
  buf.writeUInt32BE(b.highestSeq >>> 0, o + 8);
  buf.writeUInt32BE(b.jitter >>> 0, o + 12);
  buf.writeUInt32BE(b.lsr >>> 0, o + 16);
  buf.writeUInt32BE(b.dlsr >>> 0, o + 20);
}

/** RFC 3550 §6.5: SDES with the CNAME every compound packet must carry. */
function sdes(ssrc: number, cname: string): Buffer {
  const name = Buffer.from(cname, 'utf8').subarray(0, 255);
  const itemLen = 2 + name.length + 1; // CNAME item + end marker
  const padded = Math.ceil((4 + itemLen) / 4) * 4;
  const buf = Buffer.alloc(4 + padded);
  buf[0] = 0x81;
  buf[1] = 202;
  buf.writeUInt16BE(buf.length / 4 - 1, 2);
  buf.writeUInt32BE(ssrc >>> 0, 4);
  buf[8] = 1;
  buf[9] = name.length;
  name.copy(buf, 10);
  return buf;
}

export function buildReceiverReport(ssrc: number, cname: string, blocks: ReportBlock[]): Buffer {
  const rr = Buffer.alloc(8 + 24 * blocks.length);
  rr[0] = 0x80 | blocks.length;
  rr[1] = 201;
  rr.writeUInt16BE(rr.length / 4 - 1, 2);
  rr.writeUInt32BE(ssrc >>> 0, 4);
  blocks.forEach((b, i) => writeBlock(rr, 8 + 24 * i, b));
  return Buffer.concat([rr, sdes(ssrc, cname)]);
}

export function buildSenderReport(ssrc: number, cname: string, sender: SenderInfo, blocks: ReportBlock[]): Buffer {
  const sr = Buffer.alloc(28 + 24 * blocks.length);
  sr[0] = 0x80 | blocks.length;
  sr[1] = 200;
  sr.writeUInt16BE(sr.length / 4 - 1, 2);
  sr.writeUInt32BE(ssrc >>> 0, 4);
  sr.writeUInt32BE(sender.ntpSec >>> 0, 8);
  sr.writeUInt32BE(sender.ntpFrac >>> 0, 12);
  sr.writeUInt32BE(sender.rtpTimestamp >>> 0, 16);
  sr.writeUInt32BE(sender.packets >>> 0, 20);
  sr.writeUInt32BE(sender.octets >>> 0, 24);
  blocks.forEach((b, i) => writeBlock(sr, 28 + 24 * i, b));
  return Buffer.concat([sr, sdes(ssrc, cname)]);
}
