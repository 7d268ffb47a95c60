/** An RTP packet (RFC 3550 §5.1) as a value; the payload is a view into the original buffer. */
export interface RtpPacket {
  marker: boolean;
  payloadType: number;
  sequenceNumber: number;
  timestamp: number;
  ssrc: number;
  csrcs: number[];
  /** RFC 3550 §5.3.1 header extension: profile and data, when present. */
  extension: { profile: number; data: Buffer } | undefined;
  payload: Buffer;
}

export class RtpParseError extends Error {}

export function parseRtp(buf: Buffer): RtpPacket {
  if (buf.length < 12) throw new RtpParseError(`${buf.length} bytes is shorter than an RTP header`);
  const b0 = buf[0]!;
  if (b0 >> 6 !== 2) throw new RtpParseError(`RTP version ${b0 >> 6}, expected 2`);
  const padding = (b0 & 0x20) !== 0;
  const hasExtension = (b0 & 0x10) !== 0;
  const cc = b0 & 0x0f;
  let offset = 12 + cc * 4;
  if (buf.length < offset) throw new RtpParseError('truncated CSRC list');
  const csrcs: number[] = [];
  for (let i = 0; i < cc; i++) csrcs.push(buf.readUInt32BE(12 + i * 4));
  let extension: RtpPacket['extension'];
  if (hasExtension) {
    if (buf.length < offset + 4) throw new RtpParseError('truncated header extension');
    const profile = buf.readUInt16BE(offset);
    const words = buf.readUInt16BE(offset + 2);
    const end = offset + 4 + words * 4;
    if (buf.length < end) throw new RtpParseError('header extension longer than the packet');
    extension = { profile, data: buf.subarray(offset + 4, end) };
    offset = end;
  }
  let end = buf.length;
  if (padding) {
    // RFC 3550 §5.1: the last octet counts the padding, itself included.
    const pad = buf[buf.length - 1]!;
    if (pad === 0 || offset + pad > buf.length) throw new RtpParseError(`bad padding length ${pad}`);
    end -= pad;
  }
  return {
    marker: (buf[1]! & 0x80) !== 0,
    payloadType: buf[1]! & 0x7f,
    sequenceNumber: buf.readUInt16BE(2),
    timestamp: buf.readUInt32BE(4),
    ssrc: buf.readUInt32BE(8),
    csrcs,
    extension,
    payload: buf.subarray(offset, end),
  };
}

export function serializeRtp(p: { marker?: boolean; payloadType: number; sequenceNumber: number; timestamp: number; ssrc: number; payload: Buffer }): Buffer {
  const out = Buffer.allocUnsafe(12 + p.payload.length);
  out[0] = 0x80;
  out[1] = (p.marker ? 0x80 : 0) | (p.payloadType & 0x7f);
  out.writeUInt16BE(p.sequenceNumber & 0xffff, 2);
  out.writeUInt32BE(p.timestamp >>> 0, 4);
  out.writeUInt32BE(p.ssrc >>> 0, 8);
  p.payload.copy(out, 12);
  return out;
}

/**
 * Extends a wrapping counter (16-bit sequence numbers, 32-bit timestamps) to a monotonic number,
 * taking the nearest candidate to the last value (RFC 3550 Appendix A.1's idea).
 */
export class Unwrapper {
  #last: number | undefined;
  constructor(private readonly bits: 16 | 32) {}

  unwrap(value: number): number {
    const range = 2 ** this.bits;
    if (this.#last === undefined) {
      this.#last = value;
      return value;
    }
    const lastLow = ((this.#last % range) + range) % range;
    let delta = value - lastLow;
    if (delta > range / 2) delta -= range;
    else if (delta < -range / 2) delta += range;
    const extended = this.#last + delta;
    if (extended > this.#last) this.#last = extended;
    return extended;
  }
}
