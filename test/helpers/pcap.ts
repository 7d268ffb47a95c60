import { writeFileSync } from 'node:fs';

/**
 * A tiny writer of classic libpcap files holding one RTP stream, for SIPp's `play_pcap_audio`.
 *
 * What SIPp 3.6.1 reads (src/prepare_pcap.c): any file libpcap opens, link type Ethernet (1) or
 * Linux cooked (113), nothing else ("Unsupported link-type"; raw IP, 101, is refused); IPv4 or
 * IPv6 then UDP. It keeps each UDP datagram (header + payload, by the UDP length field), and on
 * replay rewrites the ports (source: [media_port], destination: the port in the far end's SDP,
 * plus each packet's offset from the lowest destination port in the file), recomputes the UDP
 * checksum, and spaces the packets as their pcap timestamps are spaced. The Ethernet and IP
 * addresses are never used. This mimics Debian's /usr/share/sip-tester/g711a.pcap: little-endian
 * magic a1b2c3d4, version 2.4, snaplen 65535, Ethernet, IPv4 (DF, TTL 64), whole packets.
 */

export interface RtpPcapOptions {
  /** RTP payload type; default 0 (PCMU). */
  payloadType?: number;
  /** Payload bytes per packet; default 160 (20 ms of G.711 at 8 kHz). */
  samplesPerPacket?: number;
  /** Sample rate of the RTP clock; default 8000. */
  clockRate?: number;
  /** Byte that pads the last packet; default 0xff (µ-law silence; use 0xd5 for A-law). */
  pad?: number;
  ssrc?: number;
  firstSeq?: number;
  firstTimestamp?: number;
  /** UDP ports written in the file (SIPp replaces both); default 6000 -> 6002. */
  srcPort?: number;
  dstPort?: number;
  /** Capture time of the first packet, in seconds since the epoch; default 1 700 000 000. */
  startTime?: number;
}

export interface RtpPcap {
  /** The whole file. */
  file: Buffer;
  packets: number;
  /** Capture time from the first packet to the last, ms. */
  durationMs: number;
}

const PCAP_MAGIC = 0xa1b2c3d4;
const LINKTYPE_ETHERNET = 1;
const ETH_HEADER = 14;
const IPV4_HEADER = 20;
const UDP_HEADER = 8;
const RTP_HEADER = 12;

/** The Internet checksum (RFC 1071) of some buffers taken one after the other (each of even length but the last). */
function inetChecksum(...parts: Buffer[]): number {
  let sum = 0;
  for (const p of parts) {
    for (let i = 0; i + 1 < p.length; i += 2) sum += p.readUInt16BE(i);
    if (p.length % 2) sum += p[p.length - 1]! << 8;
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** One Ethernet frame: IPv4 127.0.0.1 -> 127.0.0.1, UDP srcPort -> dstPort, then `udpPayload`. */
function ethernetUdpFrame(udpPayload: Buffer, srcPort: number, dstPort: number, ipId: number): Buffer {
  const frame = Buffer.alloc(ETH_HEADER + IPV4_HEADER + UDP_HEADER + udpPayload.length);
  // Ethernet: destination and source MAC (locally administered), EtherType IPv4.
  Buffer.from([0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01]).copy(frame, 0);
  frame.writeUInt16BE(0x0800, 12);

  const ip = frame.subarray(ETH_HEADER, ETH_HEADER + IPV4_HEADER);
  ip[0] = 0x45; // version 4, header 5 words
  ip[1] = 0; // DSCP/ECN
  ip.writeUInt16BE(IPV4_HEADER + UDP_HEADER + udpPayload.length, 2);
  ip.writeUInt16BE(ipId & 0xffff, 4);
  ip.writeUInt16BE(0x4000, 6); // DF, offset 0
  ip[8] = 64; // TTL
  ip[9] = 17; // UDP
  const loopback = Buffer.from([127, 0, 0, 1]);
  loopback.copy(ip, 12);
  loopback.copy(ip, 16);
  ip.writeUInt16BE(inetChecksum(ip), 10);

  const udpAt = ETH_HEADER + IPV4_HEADER;
  const udpLength = UDP_HEADER + udpPayload.length;
  frame.writeUInt16BE(srcPort, udpAt);
  frame.writeUInt16BE(dstPort, udpAt + 2);
  frame.writeUInt16BE(udpLength, udpAt + 4);
  udpPayload.copy(frame, udpAt + UDP_HEADER);
  const pseudo = Buffer.alloc(12);
  loopback.copy(pseudo, 0);
  loopback.copy(pseudo, 4);
  pseudo[9] = 17;
  pseudo.writeUInt16BE(udpLength, 10);
  const sum = inetChecksum(pseudo, frame.subarray(udpAt, udpAt + udpLength));
  frame.writeUInt16BE(sum === 0 ? 0xffff : sum, udpAt + 6);
  return frame;
}

/**
 * A pcap of `payload` (already encoded, e.g. raw µ-law from `sox ... -t ul`) as one RTP stream:
 * a packet per `samplesPerPacket` bytes, sequence numbers +1 and RTP timestamps +samplesPerPacket
 * a packet, capture times samplesPerPacket/clockRate apart (20 ms), the marker bit on the first.
 */
export function rtpPcap(payload: Buffer, opts: RtpPcapOptions = {}): RtpPcap {
  const pt = opts.payloadType ?? 0;
  const spp = opts.samplesPerPacket ?? 160;
  const rate = opts.clockRate ?? 8000;
  const ssrc = (opts.ssrc ?? 0x5eed5eed) >>> 0;
  const firstSeq = opts.firstSeq ?? 1000;
  const firstTs = opts.firstTimestamp ?? 160_000;
  const srcPort = opts.srcPort ?? 6000;
  const dstPort = opts.dstPort ?? 6002;
  const startUs = Math.round((opts.startTime ?? 1_700_000_000) * 1e6);
  const count = Math.ceil(payload.length / spp);

  const header = Buffer.alloc(24);
  header.writeUInt32LE(PCAP_MAGIC, 0);
  header.writeUInt16LE(2, 4); // version 2.4
  header.writeUInt16LE(4, 6);
  header.writeInt32LE(0, 8); // thiszone
  header.writeUInt32LE(0, 12); // sigfigs
  header.writeUInt32LE(65535, 16); // snaplen
  header.writeUInt32LE(LINKTYPE_ETHERNET, 20);

  const records: Buffer[] = [header];
  for (let i = 0; i < count; i++) {
    const rtp = Buffer.alloc(RTP_HEADER + spp, opts.pad ?? 0xff);
    rtp[0] = 0x80; // V=2, no padding, no extension, no CSRC
    rtp[1] = (i === 0 ? 0x80 : 0) | (pt & 0x7f);
    rtp.writeUInt16BE((firstSeq + i) & 0xffff, 2);
    rtp.writeUInt32BE((firstTs + i * spp) >>> 0, 4);
    rtp.writeUInt32BE(ssrc, 8);
    payload.copy(rtp, RTP_HEADER, i * spp, Math.min(payload.length, (i + 1) * spp));
    const frame = ethernetUdpFrame(rtp, srcPort, dstPort, i + 1);

    const atUs = startUs + Math.round((i * spp * 1e6) / rate);
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(Math.floor(atUs / 1e6), 0);
    rec.writeUInt32LE(atUs % 1e6, 4);
    rec.writeUInt32LE(frame.length, 8); // captured length
    rec.writeUInt32LE(frame.length, 12); // original length: the same (SIPp refuses truncated packets)
    records.push(rec, frame);
  }
  return { file: Buffer.concat(records), packets: count, durationMs: count > 0 ? ((count - 1) * spp * 1000) / rate : 0 };
}

/** Writes rtpPcap(payload, opts) to `path`; returns what it wrote. */
export function writeRtpPcap(path: string, payload: Buffer, opts: RtpPcapOptions = {}): RtpPcap {
  const pcap = rtpPcap(payload, opts);
  writeFileSync(path, pcap.file);
  return pcap;
}
