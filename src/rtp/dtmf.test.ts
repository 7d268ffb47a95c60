import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DtmfDetector, parseTelephoneEvent } from './dtmf.js';

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
