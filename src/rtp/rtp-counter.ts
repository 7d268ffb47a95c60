/** Where received RTP goes; the hot path is a direct call, not an event. */
export interface RtpSink {
  writeRtp(packet: Buffer): void;
}

/** Counts RTP packets and bytes as they arrive and passes them on unchanged. */
export class RtpCounter implements RtpSink {
  packets = 0;
  bytes = 0;
  /** Epoch ms of the last packet, 0 before the first. */
  lastArrival = 0;
  firstArrival = 0;

  constructor(
    private readonly now: () => number,
    public next: RtpSink | undefined = undefined,
  ) {}

  writeRtp(packet: Buffer): void {
    // RFC 3550 §5.1: version 2; anything else arriving on the track is not ours to count.
    if (packet.length < 12 || packet[0]! >> 6 !== 2) return;
    this.packets++;
    this.bytes += packet.length;
    this.lastArrival = this.now();
    if (this.firstArrival === 0) this.firstArrival = this.lastArrival;
    this.next?.writeRtp(packet);
  }

  toString(): string {
    return `RtpCounter${this.next ? ` -> ${String(this.next)}` : ''}`;
  }
}
