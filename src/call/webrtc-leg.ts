import type { Clock } from '../core/clock.js';
import { RtpCounter } from '../rtp/rtp-counter.js';
import type { WebRtcPeer } from '../webrtc/peer.js';
import type { EndReason, Leg } from './call.js';

/** A call's WebRTC peer (a WHIP publisher, later a SIP-WS browser): counts what it receives. */
export class WebRtcLeg implements Leg {
  readonly kind = 'webrtc';
  readonly received: RtpCounter;
  #remoteAddress: string | undefined;

  constructor(
    readonly peer: WebRtcPeer,
    clock: Clock,
  ) {
    this.received = new RtpCounter(() => clock.now());
    peer.rtpSink = this.received;
  }

  /** The media peer's address as ICE selected it (asked once connected, then remembered). */
  get remoteAddress(): string | undefined {
    this.#remoteAddress ??= this.peer.state === 'connected' ? this.peer.remoteAddress() : undefined;
    return this.#remoteAddress;
  }

  lastMediaAt(): number {
    return this.received.lastArrival;
  }

  mediaReceived(): { packets: number; bytes: number } {
    return { packets: this.received.packets, bytes: this.received.bytes };
  }

  close(_reason: EndReason): void {
    this.peer.close();
  }
}
