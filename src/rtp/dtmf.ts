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

/** The telephone-event code of a DTMF digit (RFC 4733 §3.2), undefined for anything else. */
export function eventOf(digit: string): number | undefined {
  const i = DIGITS.indexOf(digit.toUpperCase());
  return i < 0 || digit.length !== 1 ? undefined : i;
}

/** One telephone-event packet due this tick; all packets of an event share its start timestamp. */
export interface TelephoneEventPacket {
  payload: Buffer;
  /** RFC 4733 §2.5.1.3: set on the first packet of an event only. */
  marker: boolean;
  /** The first packet of an event: the RTP timestamp to hold for the whole event is the current one. */
  start: boolean;
}

/** -10 dBm0, the level RFC 4733 §2.5.2.2's examples use and carriers expect. */
const EVENT_VOLUME = 10;
/** Pause between queued digits, in frames: receivers tell two equal digits apart by it. */
const GAP_FRAMES = 3;
/** RFC 4733 §2.5.1.4: the end packet is sent three times. */
const END_REPEATS = 3;

/**
 * Generates RFC 4733 telephone-events, one packet per 20 ms frame: marker on the first, the
 * duration growing in timestamp units, the end bit on the last, repeated three times. The
 * endpoint sends these instead of audio while an event plays and keeps the RTP timestamp of
 * the event's start for all of them.
 */
export class DtmfSender {
  readonly #queue: { event: number; frames: number }[] = [];
  #current: { event: number; frames: number; sent: number } | undefined;
  #gap = 0;

  constructor(
    private readonly clockRate: number,
    private readonly frameMs = 20,
  ) {}

  get busy(): boolean {
    return this.#current !== undefined || this.#queue.length > 0 || this.#gap > 0;
  }

  /** Queues a digit; false when it is not a DTMF digit (0-9, *, #, A-D). */
  queue(digit: string, durationMs = 100): boolean {
    const event = eventOf(digit);
    if (event === undefined) return false;
    this.#queue.push({ event, frames: Math.max(2, Math.round(durationMs / this.frameMs)) });
    return true;
  }

  /** The packets due this frame: none (send audio), one, or the three end packets. */
  next(): TelephoneEventPacket[] {
    if (!this.#current) {
      if (this.#gap > 0) {
        this.#gap--;
        return [];
      }
      const q = this.#queue.shift();
      if (!q) return [];
      this.#current = { ...q, sent: 0 };
    }
    const c = this.#current;
    c.sent++;
    const duration = Math.min(0xffff, Math.round((c.sent * this.frameMs * this.clockRate) / 1000));
    const start = c.sent === 1;
    if (c.sent < c.frames) return [{ payload: eventPayload(c.event, false, duration), marker: start, start }];
    this.#current = undefined;
    this.#gap = GAP_FRAMES;
    const end = eventPayload(c.event, true, duration);
    return Array.from({ length: END_REPEATS }, (_, i) => ({ payload: end, marker: start && i === 0, start: start && i === 0 }));
  }
}

function eventPayload(event: number, end: boolean, duration: number): Buffer {
  return Buffer.from([event, (end ? 0x80 : 0) | EVENT_VOLUME, duration >> 8, duration & 0xff]);
}
