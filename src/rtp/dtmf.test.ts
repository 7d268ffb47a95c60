import assert from 'node:assert/strict';
import { test } from 'node:test';
import { digitOf, DtmfDetector, DtmfSender, eventOf, parseTelephoneEvent, type TelephoneEventPacket } from './dtmf.js';

const ev = (event: number, end: boolean, duration: number) => Buffer.from([event, (end ? 0x80 : 0) | 10, duration >> 8, duration & 0xff]);

test('RFC 4733: one digit per event, however many packets and end retransmissions', () => {
  const d = new DtmfDetector();
  const digits = [
    d.push(1000, ev(5, false, 160)),
    d.push(1000, ev(5, false, 320)),
    d.push(1000, ev(5, true, 480)),
    d.push(1000, ev(5, true, 480)),
    d.push(1000, ev(5, true, 480)),
    d.push(2000, ev(11, false, 160)),
    d.push(3000, ev(10, true, 160)),
  ].filter(Boolean);
  assert.deepEqual(digits, ['5', '#', '*']);
  assert.deepEqual(parseTelephoneEvent(ev(12, true, 800)), { event: 12, end: true, volume: 10, duration: 800 });
});

test('RFC 4733 out: marker on the first packet, duration in timestamp units, end bit three times, a gap before the next digit', () => {
  const s = new DtmfSender(8000);
  assert.equal(s.queue('5', 100), true);
  assert.equal(s.queue('#', 60), true);
  assert.equal(s.queue('x'), false);
  const ticks: TelephoneEventPacket[][] = [];
  while (s.busy) ticks.push(s.next());
  const flat = ticks.map((t) => t.map((p) => ({ ...parseTelephoneEvent(p.payload)!, marker: p.marker, start: p.start })));
  // '5' for 100 ms = 5 frames: 4 packets, then the end packet three times at 800 units.
  assert.deepEqual(flat.slice(0, 5), [
    [{ event: 5, end: false, volume: 10, duration: 160, marker: true, start: true }],
    [{ event: 5, end: false, volume: 10, duration: 320, marker: false, start: false }],
    [{ event: 5, end: false, volume: 10, duration: 480, marker: false, start: false }],
    [{ event: 5, end: false, volume: 10, duration: 640, marker: false, start: false }],
    Array(3).fill({ event: 5, end: true, volume: 10, duration: 800, marker: false, start: false }),
  ]);
  assert.deepEqual(flat.slice(5, 8), [[], [], []], 'three silent frames between digits');
  assert.equal(flat[8]![0]!.event, 11);
  assert.equal(flat[8]![0]!.marker, true);
  assert.deepEqual(flat.filter((t) => t.length).at(-1)!.map((p) => [p.end, p.duration]), Array(3).fill([true, 480]));
  // The detector on the far side hears each digit once.
  const d = new DtmfDetector();
  let ts = 0;
  const heard = ticks.flatMap((t) => {
    if (t[0]?.start) ts += 10_000;
    return t.map((p) => d.push(ts, p.payload)).filter(Boolean);
  });
  assert.deepEqual(heard, ['5', '#']);
  assert.equal(eventOf('a'), 12);
  assert.equal(eventOf('*'), 10);
});

test('RFC 4733 in: a payload shorter than the 4-byte event is no event, and takes no digit', () => {
  assert.equal(parseTelephoneEvent(Buffer.from([5, 0x8a, 0])), undefined);
  const d = new DtmfDetector();
  assert.equal(d.push(1000, Buffer.from([5])), undefined);
  assert.equal(d.push(1000, ev(5, false, 160)), '5', 'the same event\'s first whole packet still counts');
  assert.equal(d.push(2000, ev(16, false, 160)), undefined, 'event 16 (flash) is not a DTMF digit');
  assert.equal(digitOf(15), 'D');
  assert.equal(eventOf('12'), undefined);
  assert.equal(eventOf(''), undefined);
  assert.equal(eventOf('x'), undefined);
});

test('RFC 4733 out: a short digit still lasts two frames; a long one caps its duration at 16 bits (§2.5.1.3)', () => {
  const short = new DtmfSender(8000);
  short.queue('1', 10);
  const s: TelephoneEventPacket[][] = [];
  while (short.busy) s.push(short.next());
  assert.deepEqual(
    s.filter((t) => t.length).map((t) => t.length),
    [1, 3],
    'one packet, then the end three times',
  );
  const long = new DtmfSender(48000, 20);
  long.queue('0', 2000);
  let last: TelephoneEventPacket[] = [];
  let packets = 0;
  while (long.busy) {
    const t = long.next();
    if (t.length) last = t;
    packets += t.length;
  }
  assert.equal(packets, 99 + 3);
  assert.deepEqual(
    last.map((p) => parseTelephoneEvent(p.payload)!.duration),
    [0xffff, 0xffff, 0xffff],
    '2 s at 48 kHz is 96000 units: capped',
  );
  assert.deepEqual(new DtmfSender(8000).next(), [], 'nothing queued: audio');
});
