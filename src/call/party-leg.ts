import type { MediaEndpoint } from '../media/endpoint.js';
import type { MediaTransport } from '../transport/media-transport.js';
import type { EndReason, Leg, LegCounters } from './call.js';

/**
 * A person's leg of a call, whatever reached us (a WHIP publisher, a SIP browser, later a
 * phone on a trunk): its transport and the media endpoint on it. Closing it closes both.
 */
export class PartyLeg implements Leg {
  #remoteAddress: string | undefined;

  constructor(
    /** How this party reached us: `whip`, `sip-ws`, `sip-uac` (a call voxgate placed). */
    readonly kind: string,
    readonly endpoint: MediaEndpoint,
  ) {}

  get transport(): MediaTransport {
    return this.endpoint.transport;
  }

  /** The media peer's address as its transport selected it (asked once connected, then remembered). */
  get remoteAddress(): string | undefined {
    this.#remoteAddress ??= this.transport.state === 'connected' ? this.transport.remoteAddress() : undefined;
    return this.#remoteAddress;
  }

  lastMediaAt(): number {
    return this.endpoint.lastMediaAt();
  }

  counters(): LegCounters {
    const { received, rtp } = this.endpoint;
    return { packetsReceived: received.packets, bytesReceived: received.bytes, packetsSent: rtp.packetsSent, bytesSent: rtp.octetsSent };
  }

  close(_reason: EndReason): void {
    this.endpoint.close();
    this.transport.close();
  }
}
