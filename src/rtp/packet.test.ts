import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRtp, RtpParseError, serializeRtp, Unwrapper } from './packet.js';

test('parses a plain RTP packet and serializes it back', () => {
  const buf = serializeRtp({ marker: true, payloadType: 111, sequenceNumber: 65535, timestamp: 0xfffffc40, ssrc: 0xdeadbeef, payload: Buffer.from([1, 2, 3]) });
  const p = parseRtp(buf);
  assert.deepEqual([p.marker, p.payloadType, p.sequenceNumber, p.timestamp, p.ssrc, [...p.payload]], [true, 111, 65535, 0xfffffc40, 0xdeadbeef, [1, 2, 3]]);
});

test('CSRC list, one-byte header extension (RFC 8285) and padding are honoured', () => {
  const buf = Buffer.from([
    0xb2, 0x00, 0x00, 0x01, 0, 0, 0, 160, 0, 0, 0, 9, // V=2 P=1 X=1 CC=2
    0, 0, 0, 1, 0, 0, 0, 2, // CSRCs
    0xbe, 0xde, 0x00, 0x01, 0x10, 0x7f, 0x00, 0x00, // extension: audio level
    0xaa, 0xbb, // payload
    0x00, 0x00, 0x03, // padding, last octet counts 3
  ]);
  const p = parseRtp(buf);
  assert.deepEqual(p.csrcs, [1, 2]);
  assert.equal(p.extension?.profile, 0xbede);
  assert.deepEqual([...p.extension!.data], [0x10, 0x7f, 0, 0]);
  assert.deepEqual([...p.payload], [0xaa, 0xbb]);
});

test('malformed packets are typed errors', () => {
  assert.throws(() => parseRtp(Buffer.alloc(8)), RtpParseError);
  assert.throws(() => parseRtp(Buffer.from([0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])), /version 1/);
  assert.throws(() => parseRtp(Buffer.from([0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])), /CSRC/);
  assert.throws(() => parseRtp(Buffer.from([0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 9])), /extension/);
  assert.throws(() => parseRtp(Buffer.from([0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 20])), /padding/);
});

test('16-bit sequence numbers unwrap across 65535 -> 0, and reordering around the wrap', () => {
  const u = new Unwrapper(16);
  assert.deepEqual([65533, 65534, 65535, 0, 1, 65535, 2].map((s) => u.unwrap(s)), [65533, 65534, 65535, 65536, 65537, 65535, 65538]);
});

test('32-bit timestamps unwrap', () => {
  const u = new Unwrapper(32);
  assert.deepEqual([0xfffffc40, 0x00000280].map((t) => u.unwrap(t)), [0xfffffc40, 0x100000280]);
});
