import type { Clock } from '../core/clock.js';
import { RtpCounter } from '../rtp/rtp-counter.js';
import type { WebRtcPeer } from '../webrtc/peer.js';
import type { EndReason, Leg } from './call.js';

/** A call's WebRTC peer (a WHIP publisher, later a SIP-WS browser): counts what it receives. */
export class WebRtcLeg implements Leg {
  readonly kind = 'webrtc';
  readonly received: RtpCounter;
  remoteAddress: string | undefined;

  constructor(
    readonly peer: WebRtcPeer,
    clock: Clock,
  ) {
    this.received = new RtpCounter(() => clock.now());
    peer.rtpSink = this.received;
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
