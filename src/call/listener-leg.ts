import type { CodecName } from '../core/config.js';
import { serializeRtp, type RtpPacket } from '../rtp/packet.js';
import type { WebRtcPeer } from '../webrtc/peer.js';
import { TypedEmitter } from '../core/events.js';
import type { EndReason, Leg } from './call.js';

export type ListenTrack = 'caller' | 'agent' | 'mix';

/**
 * A WHEP listener of a call. Its stream is its own: one SSRC, and sequence numbers and
 * timestamps that run on without jumps, whether packets are forwarded from the caller
 * (rewritten) or encoded by the call's egress hub.
 */
export class ListenerLeg extends TypedEmitter<{ closed: [] }> implements Leg {
  readonly kind = 'listener';
  sentPackets = 0;
  sentBytes = 0;
  #seq = Math.floor(Math.random() * 0xffff);
  #ts = Math.floor(Math.random() * 0xffffffff);
  #lastSourceTs: number | undefined;
  #closed = false;

  constructor(
    readonly id: string,
    readonly name: string,
    readonly track: ListenTrack,
    readonly codec: CodecName,
    readonly payloadType: number,
    readonly clockRate: number,
    readonly ssrc: number,
    readonly peer: WebRtcPeer,
    /** Forward the caller's packets untouched but for the header (same codec). */
    readonly passthrough: boolean,
    private readonly onClose: (leg: ListenerLeg) => void,
  ) {
    super();
  }

  /** Forwards a caller packet, rewriting SSRC, sequence number and timestamp. */
  forward(p: RtpPacket): void {
    // Keep the sender's timestamp spacing (silence gaps, 10/20/40 ms packets) on our own base.
    if (this.#lastSourceTs !== undefined) this.#ts = (this.#ts + ((p.timestamp - this.#lastSourceTs) >>> 0)) >>> 0;
    this.#lastSourceTs = p.timestamp;
    this.#send(p.payload, p.marker);
  }

  /** Sends one 20 ms encoded frame. */
  sendFrame(payload: Buffer): void {
    this.#send(payload, false);
    this.#ts = (this.#ts + (this.clockRate * 20) / 1000) >>> 0;
  }

  #send(payload: Buffer, marker: boolean): void {
    if (this.#closed) return;
    const pkt = serializeRtp({ marker, payloadType: this.payloadType, sequenceNumber: this.#seq, timestamp: this.#ts, ssrc: this.ssrc, payload });
    this.#seq = (this.#seq + 1) & 0xffff;
    if (this.peer.sendMedia(pkt)) {
      this.sentPackets++;
      this.sentBytes += pkt.length;
    }
  }

  lastMediaAt(): number {
    return 0; // a listener only receives RTCP; it never keeps a call alive
  }

  mediaReceived(): { packets: number; bytes: number } {
    return { packets: 0, bytes: 0 };
  }

  close(_reason: EndReason): void {
    if (this.#closed) return;
    this.#closed = true;
    this.peer.close();
    this.onClose(this);
    this.emit('closed');
  }
}
