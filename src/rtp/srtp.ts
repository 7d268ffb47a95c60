/**
 * SRTP and SRTCP (RFC 3711) with the two SDES suites a SIP trunk offers (RFC 4568 §6.2):
 * AES_CM_128_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_32. Pure: packets in, packets out, no I/O.
 * One SrtpSession is one direction's crypto context; a leg uses one to send and one to receive.
 */
import { createCipheriv, createHmac, timingSafeEqual, type Cipher } from 'node:crypto';

export type SrtpSuite = 'AES_CM_128_HMAC_SHA1_80' | 'AES_CM_128_HMAC_SHA1_32';
export const SRTP_SUITES: readonly SrtpSuite[] = ['AES_CM_128_HMAC_SHA1_80', 'AES_CM_128_HMAC_SHA1_32'];

export interface SrtpMasterKey {
  key: Buffer; // 16 bytes
  salt: Buffer; // 14 bytes
}

/** Why an incoming packet was dropped. */
export type SrtpFailure = 'short' | 'auth' | 'replay' | 'malformed' | 'ssrc-limit';

/** Thrown by protect*() only for packets we built wrong ourselves; the network never causes it. */
export class SrtpError extends Error {
  constructor(
    readonly code: SrtpFailure,
    message: string,
  ) {
    super(message);
    this.name = 'SrtpError';
  }
}

/**
 * SSRCs one context keeps state for. A trunk leg has one SSRC per direction, and RTCP shares its
 * RTP's; an SBC may switch source on a re-INVITE or transfer a few times in a call. A further SSRC
 * is refused rather than an old one evicted: forgetting a receive window would let that SSRC's
 * recorded packets be replayed, and forgetting a send ROC would reuse keystream (RFC 3711 §9.1).
 * State is created only after a packet authenticates, so only a key holder can use up the slots.
 */
export const MAX_SSRCS = 16;

/** RFC 3711 §3.3.2: the replay window; at least 64 is required, libsrtp defaults to 128. */
export const REPLAY_WINDOW = 128;

// RFC 4568 §6.2.1/§6.2.2: an 80- or 32-bit SRTP tag; SRTCP keeps the 80-bit tag with either suite.
const TAG_BYTES: Record<SrtpSuite, number> = { AES_CM_128_HMAC_SHA1_80: 10, AES_CM_128_HMAC_SHA1_32: 4 };
const SRTCP_TAG_BYTES = 10;
const MAX_PACKET = 65535; // a UDP datagram; also keeps the keystream under 2^16 blocks (RFC 3711 §4.1.1)

export interface SessionKeys {
  encryption: Buffer; // 16 bytes
  auth: Buffer; // 20 bytes
  salt: Buffer; // 14 bytes
}

/**
 * RFC 3711 §4.3.1 with key_derivation_rate 0 (the SDES default, RFC 4568 §6.3.1): r = 0, so
 * x = (label·2^48) XOR master_salt, and each key is AES-CM(master key, IV = x·2^16) over zeros.
 * RFC 3711 §4.3.1: labels 0, 1, 2 for SRTP; §4.3.2: 3, 4, 5 for SRTCP.
 */
export function deriveSessionKeys(master: SrtpMasterKey, protocol: 'srtp' | 'srtcp'): SessionKeys {
  if (master.key.length !== 16 || master.salt.length !== 14) {
    throw new RangeError(`an AES_CM_128 master key is 16 bytes and its salt 14, not ${master.key.length} and ${master.salt.length}`);
  }
  const ecb = createCipheriv('aes-128-ecb', master.key, null).setAutoPadding(false);
  const base = protocol === 'srtp' ? 0 : 3;
  const derive = (label: number, length: number): Buffer => {
    const blocks = Buffer.alloc(Math.ceil(length / 16) * 16);
    for (let b = 0; b * 16 < blocks.length; b++) {
      master.salt.copy(blocks, b * 16);
      blocks[b * 16 + 7]! ^= label; // the label sits just above the 48-bit r in the 112-bit salt
      blocks.writeUInt16BE(b, b * 16 + 14);
    }
    return ecb.update(blocks).subarray(0, length);
  };
  return { encryption: derive(base, 16), auth: derive(base + 1, 20), salt: derive(base + 2, 14) };
}

/**
 * AES in counter mode, RFC 3711 §4.1.1: IV = (k_s·2^16) XOR (SSRC·2^64) XOR (i·2^16), block j
 * encrypts IV + j. One reused aes-128-ecb cipher encrypts all the counter blocks of a packet at
 * once, and we XOR. Measured (Node 20, 2 loaded cores, 172-byte PCMU packet): keystream 1.1 µs,
 * whole protectRtp 3.8-4.0 µs and unprotectRtp 2.6-4.5 µs (HMAC-SHA1 is ~2.1 of it); with a
 * createCipheriv('aes-128-ctr', key, iv) per packet instead, whose setup dominates, protectRtp
 * took 6.9-7.0 µs. 500 calls × 50 packets/s each way is then ~0.2 of a core.
 */
export class AesCmKeystream {
  readonly #ecb: Cipher;
  readonly #salt: [number, number, number, number];
  // Counter blocks kept between packets: bytes 14-15 of block j are always j, and bytes 0-11
  // change only with the SSRC or the upper index bits, so a packet usually rewrites 2 bytes a block.
  #blocks = Buffer.alloc(0);
  #filled = 0; // blocks whose bytes 0-11 hold (#w1, #w2)
  #w1 = 0;
  #w2 = 0;

  constructor(key: Buffer, salt: Buffer) {
    this.#ecb = createCipheriv('aes-128-ecb', key, null).setAutoPadding(false);
    this.#salt = [salt.readUInt32BE(0), salt.readUInt32BE(4), salt.readUInt32BE(8), salt.readUInt16BE(12)];
  }

  /**
   * XORs the keystream into buf[start, end) in place. The index i is given as its upper bits
   * (`high`: the ROC for SRTP, index >>> 16 for SRTCP) and its low 16 bits (`low`: SEQ).
   */
  xor(buf: Buffer, start: number, end: number, ssrc: number, high: number, low: number): void {
    const length = end - start;
    if (length <= 0) return;
    const n = Math.ceil(length / 16);
    if (n > 0x10000) throw new RangeError('more than 2^16 keystream blocks');
    const [s0, s1, s2, s3] = this.#salt;
    const w1 = (s1 ^ ssrc) >>> 0;
    const w2 = (s2 ^ high) >>> 0;
    if (w1 !== this.#w1 || w2 !== this.#w2) {
      this.#w1 = w1;
      this.#w2 = w2;
      this.#filled = 0;
    }
    if (this.#blocks.length < n * 16) {
      const grown = Buffer.alloc(Math.max(n, 16) * 16);
      this.#blocks.copy(grown);
      this.#blocks = grown;
    }
    const blocks = this.#blocks;
    for (let j = this.#filled, o = j * 16; j < n; j++, o += 16) {
      blocks.writeUInt32BE(s0, o);
      blocks.writeUInt32BE(w1, o + 4);
      blocks.writeUInt32BE(w2, o + 8);
      blocks.writeUInt16BE(j, o + 14); // the low 16 bits of the IV are zero: IV + j = IV | j
    }
    if (n > this.#filled) this.#filled = n;
    const hi = ((s3 ^ low) >>> 8) & 0xff;
    const lo = (s3 ^ low) & 0xff;
    for (let o = 12; o < n * 16; o += 16) {
      blocks[o] = hi;
      blocks[o + 1] = lo;
    }
    const ks = this.#ecb.update(blocks.subarray(0, n * 16));
    for (let k = 0; k < length; k++) buf[start + k]! ^= ks[k]!;
  }
}

/**
 * RFC 3711 §3.3.2 / Appendix A: which indices were seen. A ring of REPLAY_WINDOW bits over the
 * indices below `top`, the highest authenticated one; -1 until the first.
 */
class ReplayWindow {
  top = -1;
  readonly #bits = new Uint32Array(REPLAY_WINDOW / 32);

  /** True when the index is new: above the top, or inside the window and not yet seen. */
  fresh(index: number): boolean {
    if (index > this.top) return true;
    if (this.top - index >= REPLAY_WINDOW) return false; // RFC 3711 §3.3.2: too old is treated as replayed
    const bit = index % REPLAY_WINDOW;
    return (this.#bits[bit >>> 5]! & (1 << (bit & 31))) === 0;
  }

  /** Records an authenticated index (RFC 3711 §3.3 step 6: only after the tag checked out). */
  accept(index: number): void {
    if (index > this.top) {
      if (index - this.top >= REPLAY_WINDOW) this.#bits.fill(0);
      else for (let i = this.top + 1; i < index; i++) this.#clear(i % REPLAY_WINDOW);
      this.top = index;
      this.#clear(index % REPLAY_WINDOW);
    }
    const bit = index % REPLAY_WINDOW;
    this.#bits[bit >>> 5]! |= 1 << (bit & 31);
  }

  #clear(bit: number): void {
    this.#bits[bit >>> 5]! &= ~(1 << (bit & 31));
  }
}

/**
 * RFC 3711 §3.3.1 and Appendix A: the ROC guess v for SEQ, given the highest index so far, so that
 * the 48-bit index v·2^16 + SEQ is the nearest to it. May be -1 just after the start.
 */
function guessRoc(top: number, seq: number): number {
  const roc = Math.floor(top / 0x10000);
  const sL = top % 0x10000;
  if (sL < 0x8000) return seq - sL > 0x8000 ? roc - 1 : roc;
  return sL - 0x8000 > seq ? roc + 1 : roc;
}

interface SsrcState {
  rtpIn: ReplayWindow | undefined;
  rtcpIn: ReplayWindow | undefined;
  /** Highest SRTP index sent, -1 before the first. */
  rtpOut: number;
  /** RFC 3711 §3.4: the next SRTCP index; zero before the first packet. */
  rtcpOut: number;
}

/** Where the payload begins (RFC 3550 §5.1/§5.3.1: after CSRCs and any header extension), or -1. */
function rtpPayloadOffset(packet: Buffer, end: number): number {
  if (end < 12 || packet[0]! >> 6 !== 2) return -1;
  let offset = 12 + (packet[0]! & 0x0f) * 4;
  if (packet[0]! & 0x10) {
    if (offset + 4 > end) return -1;
    offset += 4 + packet.readUInt16BE(offset + 2) * 4;
  }
  return offset > end ? -1 : offset;
}

/** One direction's SRTP/SRTCP crypto context for one master key (RFC 3711 §3.2). */
export class SrtpSession {
  readonly suite: SrtpSuite;
  readonly #tagBytes: number;
  readonly #rtpAuth: Buffer;
  readonly #rtcpAuth: Buffer;
  readonly #rtpCipher: AesCmKeystream;
  readonly #rtcpCipher: AesCmKeystream;
  readonly #ssrcs = new Map<number, SsrcState>();
  readonly #roc = Buffer.alloc(4);

  constructor(suite: SrtpSuite, master: SrtpMasterKey) {
    if (!(suite in TAG_BYTES)) throw new RangeError(`unsupported SRTP suite ${String(suite)}`);
    this.suite = suite;
    this.#tagBytes = TAG_BYTES[suite];
    const rtp = deriveSessionKeys(master, 'srtp');
    const rtcp = deriveSessionKeys(master, 'srtcp');
    this.#rtpAuth = rtp.auth;
    this.#rtcpAuth = rtcp.auth;
    this.#rtpCipher = new AesCmKeystream(rtp.encryption, rtp.salt);
    this.#rtcpCipher = new AesCmKeystream(rtcp.encryption, rtcp.salt);
  }

  /** SSRCs with state in this context (bounded by MAX_SSRCS). */
  get ssrcCount(): number {
    return this.#ssrcs.size;
  }

  /** RFC 3711 §3.3: encrypts the payload and appends the tag. Returns a new buffer. */
  protectRtp(packet: Buffer): Buffer {
    const len = packet.length;
    const offset = len > MAX_PACKET ? -1 : rtpPayloadOffset(packet, len);
    if (offset < 0) throw new SrtpError('malformed', 'protectRtp was given something that is not an RTP packet');
    const ssrc = packet.readUInt32BE(8);
    const seq = packet.readUInt16BE(2);
    const state = this.#stateForSending(ssrc);
    // RFC 3711 §3.3.1: the sender's ROC counts the wraps of SEQ; the same guess as the receiver's
    // keeps a slightly late packet (sent after the wrap, numbered before it) on the old ROC.
    const roc = state.rtpOut < 0 ? 0 : Math.max(0, guessRoc(state.rtpOut, seq));
    state.rtpOut = Math.max(state.rtpOut, roc * 0x10000 + seq);
    const out = Buffer.allocUnsafe(len + this.#tagBytes);
    packet.copy(out, 0, 0, len);
    this.#rtpCipher.xor(out, offset, len, ssrc, roc, seq);
    this.#rtpTag(out, len, roc).copy(out, len, 0, this.#tagBytes);
    return out;
  }

  /** RFC 3711 §3.3, receiving: index, replay check, tag, decrypt; then the window advances. */
  unprotectRtp(packet: Buffer): Buffer | SrtpFailure {
    const len = packet.length - this.#tagBytes;
    if (len < 12) return 'short';
    const offset = packet.length > MAX_PACKET ? -1 : rtpPayloadOffset(packet, len);
    if (offset < 0) return 'malformed';
    const ssrc = packet.readUInt32BE(8);
    const seq = packet.readUInt16BE(2);
    const state = this.#ssrcs.get(ssrc);
    if (!state && this.#ssrcs.size >= MAX_SSRCS) return 'ssrc-limit';
    const window = state?.rtpIn;
    // RFC 3711 §3.3.1: the first packet of an SSRC sets s_l to its SEQ with ROC 0 (SDES signals no ROC).
    const roc = window ? guessRoc(window.top, seq) : 0;
    if (roc < 0) return 'replay'; // from before the first packet we accepted
    const index = roc * 0x10000 + seq;
    if (window && !window.fresh(index)) return 'replay';
    const tag = this.#rtpTag(packet, len, roc);
    if (!timingSafeEqual(tag.subarray(0, this.#tagBytes), packet.subarray(len))) return 'auth';
    const out = Buffer.allocUnsafe(len);
    packet.copy(out, 0, 0, len);
    this.#rtpCipher.xor(out, offset, len, ssrc, roc, seq);
    const s = state ?? this.#newState(ssrc);
    (s.rtpIn ??= new ReplayWindow()).accept(index);
    return out;
  }

  /** RFC 3711 §3.4: encrypts after the first 8 bytes, appends E=1 | SRTCP index and the tag. */
  protectRtcp(packet: Buffer): Buffer {
    const len = packet.length;
    if (len < 8 || len > MAX_PACKET || packet[0]! >> 6 !== 2) {
      throw new SrtpError('malformed', 'protectRtcp was given something that is not an RTCP packet');
    }
    const ssrc = packet.readUInt32BE(4);
    const state = this.#stateForSending(ssrc);
    // RFC 3711 §3.4: 31 bits, so 2^31 packets per key; at one RTCP packet every few seconds a
    // call never gets near, and RFC 3711 §9.2's rekeying is left to a new SDES exchange.
    const index = state.rtcpOut++ & 0x7fffffff;
    const out = Buffer.allocUnsafe(len + 4 + SRTCP_TAG_BYTES);
    packet.copy(out, 0, 0, len);
    this.#rtcpCipher.xor(out, 8, len, ssrc, index >>> 16, index & 0xffff);
    out.writeUInt32BE((0x80000000 | index) >>> 0, len);
    this.#rtcpTag(out, len + 4).copy(out, len + 4, 0, SRTCP_TAG_BYTES);
    return out;
  }

  /** RFC 3711 §3.4, receiving; the index is explicit, so no guessing. */
  unprotectRtcp(packet: Buffer): Buffer | SrtpFailure {
    const len = packet.length - 4 - SRTCP_TAG_BYTES;
    if (len < 8) return 'short';
    if (packet.length > MAX_PACKET || packet[0]! >> 6 !== 2) return 'malformed';
    const ssrc = packet.readUInt32BE(4);
    const state = this.#ssrcs.get(ssrc);
    if (!state && this.#ssrcs.size >= MAX_SSRCS) return 'ssrc-limit';
    const word = packet.readUInt32BE(len);
    const index = word & 0x7fffffff;
    if (state?.rtcpIn && !state.rtcpIn.fresh(index)) return 'replay';
    const tag = this.#rtcpTag(packet, len + 4);
    if (!timingSafeEqual(tag.subarray(0, SRTCP_TAG_BYTES), packet.subarray(len + 4))) return 'auth';
    const out = Buffer.allocUnsafe(len);
    packet.copy(out, 0, 0, len);
    // RFC 3711 §3.4: E says whether the sender encrypted; an authenticated E=0 packet is plain RTCP.
    if (word >>> 31) this.#rtcpCipher.xor(out, 8, len, ssrc, index >>> 16, index & 0xffff);
    const s = state ?? this.#newState(ssrc);
    (s.rtcpIn ??= new ReplayWindow()).accept(index);
    return out;
  }

  /** RFC 3711 §4.2: HMAC-SHA1 over the authenticated portion ‖ ROC. */
  #rtpTag(buf: Buffer, len: number, roc: number): Buffer {
    this.#roc.writeUInt32BE(roc >>> 0, 0);
    return createHmac('sha1', this.#rtpAuth).update(buf.subarray(0, len)).update(this.#roc).digest();
  }

  /** RFC 3711 §3.4: over the packet ‖ E-flag and SRTCP index (already in buf[0, len)). */
  #rtcpTag(buf: Buffer, len: number): Buffer {
    return createHmac('sha1', this.#rtcpAuth).update(buf.subarray(0, len)).digest();
  }

  #stateForSending(ssrc: number): SsrcState {
    const state = this.#ssrcs.get(ssrc);
    if (state) return state;
    if (this.#ssrcs.size >= MAX_SSRCS) throw new SrtpError('ssrc-limit', `more than ${MAX_SSRCS} SSRCs sent with one SRTP key`);
    return this.#newState(ssrc);
  }

  #newState(ssrc: number): SsrcState {
    const state: SsrcState = { rtpIn: undefined, rtcpIn: undefined, rtpOut: -1, rtcpOut: 0 };
    this.#ssrcs.set(ssrc, state);
    return state;
  }
}
