import type { RemoteInfo } from 'node:dgram';
import { isIPv4 } from 'node:net';
import { TypedEmitter } from '../../core/events.js';
import type { RtpSink } from '../../rtp/rtp-counter.js';
import type { Direction } from '../../sdp/sdp.js';
import type { RtpRemote } from '../../sdp/profile-rtp.js';
import type { MediaTransport, MediaTransportEvents, TransportState } from '../media-transport.js';
import type { RtpPortPair } from './port-pool.js';

/** SRTP for one leg (SDES keys, RFC 4568): our sending context and the far end's. */
export interface SrtpContexts {
  protectRtp(packet: Buffer): Buffer;
  unprotectRtp(packet: Buffer): Buffer | string;
  protectRtcp(packet: Buffer): Buffer;
  unprotectRtcp(packet: Buffer): Buffer | string;
}

/** Counters a plain-RTP leg keeps about what it dropped, for describe() and /api/sessions. */
export interface RtpUdpCounters {
  /** Packets from an address other than the one latched (or before latching, not the peer's). */
  foreign: number;
  /** SRTP packets that failed authentication or replay checks. */
  unprotectFailed: number;
  /** RTP we did not send because the far end holds the call (RFC 3264 §8.4). */
  heldBack: number;
}

export interface RtpUdpTransportOptions {
  pair: RtpPortPair;
  remote: RtpRemote;
  /** The signalling peer's host: RTP from it may latch even when the SDP address is private (NAT). */
  signallingHost: string;
  /** Our direction as answered. */
  direction: Direction;
  srtp: SrtpContexts | undefined;
  localSdp: string;
  /** Called once when the transport closes (the pool takes the ports back). */
  release(pair: RtpPortPair): void;
}

interface Address {
  host: string;
  port: number;
}

/**
 * A plain RTP/AVP (or SDES RTP/SAVP) leg on one port pair. Symmetric RTP (RFC 4961): we send
 * from the port we receive on, and latch to the first packet from the SDP address or the
 * signalling peer's host (a NATed phone's SDP names its private address), dropping anything
 * from elsewhere once latched. RTCP on port + 1, or muxed (RFC 5761 §4: payload types 64-95
 * after the marker bit are RTCP). `connected` once media arrives; it can be sent before.
 */
export class RtpUdpTransport extends TypedEmitter<MediaTransportEvents> implements MediaTransport {
  readonly kind = 'rtp-udp' as const;
  readonly dataChannel = undefined;
  rtpSink: RtpSink | undefined;
  localSdp: string;
  readonly counters: RtpUdpCounters = { foreign: 0, unprotectFailed: 0, heldBack: 0 };
  #state: TransportState = 'connecting';
  #remote: RtpRemote;
  #direction: Direction;
  #latchedRtp: Address | undefined;
  #latchedRtcp: Address | undefined;
  #allowedHosts: Set<string>;
  /** Nothing is sent before the call is answered: a 180 carries no SDP, so there is no session to send on yet (RFC 3264 §6). */
  #answered = false;
  /** The sockets are IPv6 (bound to `::`): IPv4 peers are written as ::ffff:a.b.c.d to them. */
  readonly #v6: boolean;

  constructor(private readonly opts: RtpUdpTransportOptions) {
    super();
    this.#remote = opts.remote;
    this.#direction = opts.direction;
    this.localSdp = opts.localSdp;
    this.#allowedHosts = new Set([opts.remote.host, opts.signallingHost]);
    this.#v6 = opts.pair.rtp.address().family === 'IPv6';
    // A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d; latching compares plain addresses.
    // (Only on an IPv6 socket: the packet path of an IPv4 one does no address work.)
    const peer = this.#v6 ? plain : (rinfo: RemoteInfo) => rinfo;
    opts.pair.rtp.on('message', (msg, rinfo) => this.#onRtpSocket(msg, peer(rinfo)));
    opts.pair.rtcp.on('message', (msg, rinfo) => this.#onRtcp(msg, peer(rinfo)));
    // Socket errors (an ICMP unreachable reported on send) are not fatal to a call.
    opts.pair.rtp.on('error', () => undefined);
    opts.pair.rtcp.on('error', () => undefined);
  }

  get state(): TransportState {
    return this.#state;
  }

  get port(): number {
    return this.opts.pair.port;
  }

  get direction(): Direction {
    return this.#direction;
  }

  /** Our answer is sendonly or inactive: the far end sends nothing now, so silence is not a dead call. */
  get onHold(): boolean {
    return this.#direction === 'sendonly' || this.#direction === 'inactive' || this.#remote.held;
  }

  get remote(): RtpRemote {
    return this.#remote;
  }

  /**
   * A re-INVITE or UPDATE moved the far end (a new c=/m= address) or changed the direction
   * (hold, resume): the latch is reset when the address changed.
   */
  update(remote: RtpRemote, direction: Direction, localSdp: string): void {
    // RFC 3264 §8.4: c=0.0.0.0 is hold, not a move; the latch stays for the resume.
    const moved = !remote.held && (remote.host !== this.#remote.host || remote.port !== this.#remote.port || remote.rtcpPort !== this.#remote.rtcpPort);
    if (moved) {
      this.#latchedRtp = undefined;
      this.#latchedRtcp = undefined;
      this.#allowedHosts = new Set([remote.host, this.opts.signallingHost]);
    }
    // A hold keeps the address media came from: only the direction changes.
    this.#remote = remote.held ? { ...remote, host: this.#remote.host, port: this.#remote.port, rtcpPort: this.#remote.rtcpPort, held: true } : remote;
    this.#direction = direction;
    this.localSdp = localSdp;
  }

  /** The 200 with our SDP is going out: media may flow now. */
  answered(): void {
    this.#answered = true;
  }

  sendRtp(packet: Buffer): boolean {
    if (this.#state === 'closed' || this.#state === 'failed' || !this.#answered) return false;
    // RFC 3264 §8.4: nothing goes to a c=0.0.0.0 hold, whatever the directions say.
    if (this.#direction === 'recvonly' || this.#direction === 'inactive' || this.#remote.held) {
      this.counters.heldBack++;
      return false;
    }
    const to = this.#latchedRtp ?? (this.#remote.held ? undefined : { host: this.#remote.host, port: this.#remote.port });
    if (!to) return false;
    const out = this.opts.srtp ? this.opts.srtp.protectRtp(packet) : packet;
    this.opts.pair.rtp.send(out, to.port, this.#socketHost(to.host));
    return true;
  }

  sendRtcp(packet: Buffer): boolean {
    if (this.#state === 'closed' || this.#state === 'failed' || !this.#answered || this.#remote.held) return false;
    const muxed = this.#remote.rtcpMux;
    const to = (muxed ? this.#latchedRtp : this.#latchedRtcp) ?? (this.#remote.held ? undefined : { host: this.#remote.host, port: this.#remote.rtcpPort });
    if (!to) return false;
    const out = this.opts.srtp ? this.opts.srtp.protectRtcp(packet) : packet;
    (muxed ? this.opts.pair.rtp : this.opts.pair.rtcp).send(out, to.port, this.#socketHost(to.host));
    return true;
  }

  remoteAddress(): string | undefined {
    const a = this.#latchedRtp ?? { host: this.#remote.host, port: this.#remote.port };
    return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
  }

  /** Ends the leg's media: the sockets close and the ports go back to the pool's quarantine. */
  close(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.rtpSink = undefined;
    this.opts.release(this.opts.pair);
    this.emit('state', 'closed', undefined);
    this.removeAllListeners();
  }

  #socketHost(host: string): string {
    return this.#v6 && isIPv4(host) ? `::ffff:${host}` : host;
  }

  #onRtpSocket(msg: Buffer, rinfo: RemoteInfo): void {
    // RFC 5761 §4: with rtcp-mux, the second byte 192-223 (payload type 64-95 plus marker) is RTCP.
    if (this.#remote.rtcpMux && msg.length >= 2 && msg[1]! >= 192 && msg[1]! <= 223) return this.#onRtcp(msg, rinfo);
    if (this.#state === 'closed' || msg.length < 12 || msg[0]! >> 6 !== 2) return;
    if (!this.#allowed(rinfo, 'rtp')) return;
    // Authenticated before it may latch: a forged packet must not steer our media elsewhere.
    const packet = this.#plain(msg, false);
    if (!packet) return;
    this.#latch(rinfo, 'rtp');
    if (this.#state === 'connecting') {
      this.#state = 'connected';
      this.emit('state', 'connected', undefined);
    }
    this.rtpSink?.writeRtp(packet);
  }

  #onRtcp(msg: Buffer, rinfo: RemoteInfo): void {
    if (this.#state === 'closed' || msg.length < 8 || msg[0]! >> 6 !== 2) return;
    const which = this.#remote.rtcpMux ? 'rtp' : 'rtcp';
    if (!this.#allowed(rinfo, which)) return;
    const packet = this.#plain(msg, true);
    if (!packet) return;
    this.#latch(rinfo, which);
    this.emit('rtcp', packet);
  }

  /** The packet as sent: SRTP checked and decrypted when the leg has it; undefined (counted) when that fails. */
  #plain(msg: Buffer, rtcp: boolean): Buffer | undefined {
    const srtp = this.opts.srtp;
    if (!srtp) return msg;
    const plain = rtcp ? srtp.unprotectRtcp(msg) : srtp.unprotectRtp(msg);
    if (typeof plain !== 'string') return plain;
    this.counters.unprotectFailed++;
    return undefined;
  }

  /** RFC 4961 latching: once latched only that address:port; before, any allowed host. Others are dropped. */
  #allowed(rinfo: RemoteInfo, which: 'rtp' | 'rtcp'): boolean {
    const latched = which === 'rtp' ? this.#latchedRtp : this.#latchedRtcp;
    const ok = latched ? latched.host === rinfo.address && latched.port === rinfo.port : this.#allowedHosts.has(rinfo.address);
    if (!ok) this.counters.foreign++;
    return ok;
  }

  /** The first good packet fixes where we send. */
  #latch(rinfo: RemoteInfo, which: 'rtp' | 'rtcp'): void {
    if (which === 'rtp') this.#latchedRtp ??= { host: rinfo.address, port: rinfo.port };
    else this.#latchedRtcp ??= { host: rinfo.address, port: rinfo.port };
  }
}

/** The peer's address as a plain IPv4 when a dual-stack socket mapped it (::ffff:a.b.c.d). */
function plain(rinfo: RemoteInfo): RemoteInfo {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(rinfo.address);
  return m ? { ...rinfo, address: m[1]!, family: 'IPv4' } : rinfo;
}
