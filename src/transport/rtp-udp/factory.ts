import { randomBytes } from 'node:crypto';
import { VoxgateError } from '../../core/errors.js';
import type { CodecName } from '../../core/config.js';
import { rtpOfferSdp, rtpSdp, type RtpAnswerPlan } from '../../sdp/profile-rtp.js';
import { RtpPortPool, type RtpPortPoolOptions } from './port-pool.js';
import { RtpUdpTransport, type RtpUdpTransportOptions, type SrtpContexts } from './rtp-udp-transport.js';

/** Keys a SAVP leg: picks one of the offered `a=crypto` lines and answers with our own key. */
export interface SdesKeying {
  /** Undefined when no offered line can be used (the offer is then refused with 488). */
  answer(offeredLines: string[]): { answerLine: string; contexts: SrtpContexts } | undefined;
}

export interface RtpTransportsOptions extends RtpPortPoolOptions {
  /** The address written into our SDP (`sip.externalAddress` behind NAT, else the bound one). */
  announcedAddress: string;
  sdes: SdesKeying | undefined;
}

/**
 * Plain-RTP legs for SIP trunks and phones: a port pair from the pool, our SDP answer, and the
 * transport. One per gateway.
 */
export class RtpTransports {
  readonly pool: RtpPortPool;
  readonly #live = new Set<RtpUdpTransport>();

  constructor(private readonly opts: RtpTransportsOptions) {
    this.pool = new RtpPortPool(opts);
  }

  /** Legs open now. */
  get size(): number {
    return this.#live.size;
  }

  /**
   * Answers a plain-RTP offer already planned (planRtpAnswer). Throws VG_RTP_PORTS_EXHAUSTED
   * (503) when the range is used up, VG_SDP_PROFILE (488) when no offered SDES key line is usable.
   */
  async answer(plan: RtpAnswerPlan, signallingHost: string): Promise<RtpUdpTransport> {
    let keyed: ReturnType<SdesKeying['answer']>;
    if (plan.rtp.crypto) {
      keyed = this.opts.sdes?.answer(plan.rtp.crypto.lines);
      if (!keyed) {
        throw new VoxgateError('VG_SDP_PROFILE', 'None of the offered a=crypto lines is usable; offer AES_CM_128_HMAC_SHA1_80 or _32 with an inline key and no MKI (RFC 4568).');
      }
    }
    const pair = await this.pool.allocate();
    const localSdp = rtpSdp(plan, { ...this.#local(pair.port), crypto: keyed?.answerLine });
    return this.#open({ pair, remote: plan.rtp, signallingHost, direction: plan.audio.direction, srtp: keyed?.contexts, localSdp });
  }

  /**
   * A leg we offer (an INVITE without SDP, RFC 3261 §13.2.1): our offer on a port pair, and a
   * transport that sends nothing until the answer (in the ACK) says where, by update().
   */
  async offer(codecs: readonly CodecName[], signallingHost: string): Promise<RtpUdpTransport> {
    const pair = await this.pool.allocate();
    const localSdp = rtpOfferSdp(codecs, this.#local(pair.port));
    // Nowhere yet: c=0.0.0.0 sends nothing (RFC 3264 §8.4) until the answer arrives.
    const remote = { host: '0.0.0.0', port: 9, rtcpPort: 9, rtcpMux: false, held: true, ptime: undefined };
    return this.#open({ pair, remote, signallingHost, direction: 'sendrecv', srtp: undefined, localSdp });
  }

  #local(port: number): { address: string; port: number; sessionId: string; version: number } {
    return { address: this.opts.announcedAddress, port, sessionId: String(randomBytes(4).readUInt32BE(0)), version: 1 };
  }

  /** The leg on its pair, live until it closes (the pool then takes the pair back). */
  #open(o: Omit<RtpUdpTransportOptions, 'release'>): RtpUdpTransport {
    const transport = new RtpUdpTransport({
      ...o,
      release: (p) => {
        this.#live.delete(transport);
        this.pool.release(p);
      },
    });
    this.#live.add(transport);
    return transport;
  }

  close(): void {
    for (const t of [...this.#live]) t.close();
  }
}
