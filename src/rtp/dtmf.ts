/** RFC 4733 §2.3: telephone-event payload. */
export interface TelephoneEvent {
  event: number;
  end: boolean;
  volume: number;
  duration: number;
}

const DIGITS = '0123456789*#ABCD';

export function parseTelephoneEvent(payload: Buffer): TelephoneEvent | undefined {
  if (payload.length < 4) return undefined;
  return { event: payload[0]!, end: (payload[1]! & 0x80) !== 0, volume: payload[1]! & 0x3f, duration: payload.readUInt16BE(2) };
}

export function digitOf(event: number): string | undefined {
  return DIGITS[event];
}

/**
 * Turns telephone-event packets into digits, once per event: all packets of one event share
 * its RTP timestamp (RFC 4733 §2.5.1.1), and the end packet is sent three times.
 */
export class DtmfDetector {
  #lastTimestamp: number | undefined;

  /** Returns the digit when this packet starts a new event. */
  push(timestamp: number, payload: Buffer): string | undefined {
    const ev = parseTelephoneEvent(payload);
    if (!ev || timestamp === this.#lastTimestamp) return undefined;
    this.#lastTimestamp = timestamp;
    return digitOf(ev.event);
  }
}
