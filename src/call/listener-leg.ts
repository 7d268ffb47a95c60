import type { CodecName } from '../core/config.js';
import { TypedEmitter } from '../core/events.js';
import type { FanoutListener, ListenTrack } from '../media/fan-out.js';
import { serializeRtp, type RtpPacket } from '../rtp/packet.js';
import type { MediaTransport } from '../transport/media-transport.js';
import type { EndReason, Leg, LegCounters } from './call.js';

export type { ListenTrack };

/**
 * A WHEP listener of a call. Its stream is its own: one SSRC, and sequence numbers and
 * timestamps that run on without jumps, whether packets are forwarded from the caller
 * (rewritten) or encoded by the call's egress hub.
 */
export class ListenerLeg extends TypedEmitter<{ closed: [] }> implements Leg, FanoutListener {
  readonly kind = 'listener';
  sentPackets = 0;
  sentBytes = 0;
  #seq = Math.floor(Math.random() * 0xffff);
  #ts = Math.floor(Math.random() * 0xffffffff);
  #lastSourceTs: number | undefined;
  #lastSourceSsrc = 0;
  #closed = false;

  constructor(
    readonly id: string,
    readonly name: string,
    readonly track: ListenTrack,
    readonly codec: CodecName,
    readonly payloadType: number,
    readonly clockRate: number,
    readonly ssrc: number,
    readonly transport: MediaTransport,
    /** Forward the caller's packets untouched but for the header (same codec). */
    public passthrough: boolean,
    private readonly onClose: (leg: ListenerLeg) => void,
  ) {
    super();
  }

  /** Forwards a caller packet, rewriting SSRC, sequence number and timestamp. */
  forward(p: RtpPacket): void {
    // Keep the sender's timestamp spacing (silence gaps, 10/20/40 ms packets) on our own base;
    // a new sender (the caller's leg was replaced) continues one frame on.
    if (this.#lastSourceTs !== undefined && p.ssrc === this.#lastSourceSsrc) this.#ts = (this.#ts + ((p.timestamp - this.#lastSourceTs) >>> 0)) >>> 0;
    else if (this.#lastSourceTs !== undefined) this.#ts = (this.#ts + this.#frameUnits) >>> 0;
    this.#lastSourceTs = p.timestamp;
    this.#lastSourceSsrc = p.ssrc;
    this.#send(p.payload, p.marker);
  }

  /** Sends one 20 ms encoded frame. */
  sendFrame(payload: Buffer): void {
    this.#lastSourceTs = undefined;
    this.#send(payload, false);
    this.#ts = (this.#ts + this.#frameUnits) >>> 0;
  }

  get #frameUnits(): number {
    return (this.clockRate * 20) / 1000;
  }

  #send(payload: Buffer, marker: boolean): void {
    if (this.#closed) return;
    const pkt = serializeRtp({ marker, payloadType: this.payloadType, sequenceNumber: this.#seq, timestamp: this.#ts, ssrc: this.ssrc, payload });
    this.#seq = (this.#seq + 1) & 0xffff;
    if (this.transport.sendRtp(pkt)) {
      this.sentPackets++;
      this.sentBytes += pkt.length;
    }
  }

  lastMediaAt(): number {
    return 0; // a listener only receives RTCP; it never keeps a call alive
  }

  counters(): LegCounters {
    return { packetsReceived: 0, bytesReceived: 0, packetsSent: this.sentPackets, bytesSent: this.sentBytes };
  }

  close(_reason: EndReason): void {
    if (this.#closed) return;
    this.#closed = true;
    this.transport.close();
    this.onClose(this);
    this.emit('closed');
  }
}
