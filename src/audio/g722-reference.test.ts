/**
 * Our G.722 (ITU-T G.722 SB-ADPCM, 64 kbit/s, mode 1) against an implementation we did not write:
 * FFmpeg's native `g722` encoder and decoder (libavcodec/g722.c, g722enc.c, g722dec.c). Those descend
 * from the Bellcore/CMU/Steve Underwood (spandsp) code, restructured by FFmpeg, and its decoder states
 * that it passes the ITU test vectors; g722.ts shares no code with it.
 *
 * How the pinned values were produced (FFmpeg 5.1.9, Debian 12 package ffmpeg 7:5.1.9-0+deb12u1,
 * trellis left at its default of 0, i.e. plain ITU quantisation):
 *   1. referenceInput() below, written as raw s16le, is `in.raw` (32 000 bytes, SHA-256 INPUT_SHA256).
 *   2. ffmpeg -hide_banner -loglevel error -y -f s16le -ar 16000 -ac 1 -i in.raw -c:a g722 -f g722 out.g722
 *      The raw g722 muxer writes no header: out.g722 is exactly 8000 bytes, one per two input samples.
 *   3. base64 -w 76 out.g722 > src/audio/testdata/g722-reference-1s.g722.b64   (SHA-256 BITSTREAM_SHA256)
 *   4. ffmpeg -hide_banner -loglevel error -y -f g722 -i out.g722 -f s16le dec.raw; sha256sum dec.raw
 *      gives DECODED_SHA256 (32 000 bytes of s16le).
 * FFmpeg is not needed to run this test: everything it produced is pinned here and in the fixture.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { G722Decoder, G722Encoder } from './g722.js';

const INPUT_SHA256 = 'c219f0636698310158567321265a77e8209449475b9e1ee0bfcf1ac9b9103947';
const BITSTREAM_SHA256 = '89bf0d5101cc07b14d4bd4e4653de7d2be731bb4e82a343be2e3e4b5d379d74e';
const DECODED_SHA256 = '5f9fa9ef124e43b6a79b2e1bbd477933972e85e56066d054f9dc588d82528418';

const RATE = 16000;
const FRAME = RATE / 50; // 20 ms, as the media path feeds the codec

/**
 * One second of 16 kHz test input built from integer arithmetic only, so every runtime
 * produces the same samples: LCG noise, triangle and square waves, and a gliding triangle,
 * with near-full-scale passages and quiet ones (2048-sample sections, the last 1664 samples).
 * It drives the encoder into its limits (the a2 and a1 clamps of UPPOL2/UPPOL1, both ceilings and
 * the floor of the LOGSCL/LOGSCH scale factors, the top QUANTL level): removing any of those
 * limits from g722.ts makes the encoder test below fail.
 */
function referenceInput(): Int16Array {
  const rate = 16000;
  const out = new Int16Array(rate);
  let seed = 0x2545f491;
  // Numerical Recipes LCG in 32-bit arithmetic; returns a uniform integer in [-32768, 32767].
  const noise = (): number => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return (seed >>> 16) - 32768;
  };
  // Triangle of period `period` samples, peak `amp`, at sample n (integers only).
  const triangle = (n: number, period: number, amp: number): number => {
    const p = n % period;
    const half = period >> 1;
    const ramp = p < half ? p : period - p; // 0..half..0
    return Math.trunc(((2 * ramp - half) * amp) / half);
  };
  const square = (n: number, period: number, amp: number): number => (n % period < period >> 1 ? amp : -amp);
  const clip = (v: number): number => (v > 32767 ? 32767 : v < -32768 ? -32768 : v);
  // Gliding triangle: a 32-bit phase whose increment climbs from ~100 Hz to ~7.5 kHz.
  let phase = 0;
  for (let n = 0; n < rate; n++) {
    const section = n >> 11; // 2048-sample sections, the last one shorter
    let v: number;
    switch (section) {
      case 0: // quiet noise: the scale factors must fall to their floor
        v = noise() >> 9;
        break;
      case 1: // loud 444 Hz triangle plus a little noise
        v = triangle(n, 36, 24000) + (noise() >> 6);
        break;
      case 2: // near-full-scale 320 Hz square: steps the predictor cannot follow
        v = square(n, 50, 32000);
        break;
      case 3: {
        // gliding triangle, increment rises linearly (exact in doubles: < 2^33)
        const inc = 26_843_545 + (n - 3 * 2048) * 985_000;
        phase = (phase + inc) >>> 0;
        const p = phase >>> 16; // 0..65535
        v = 2 * ((p < 32768 ? p : 65535 - p) - 16384); // -32768..32766
        break;
      }
      case 4: // full-scale white noise
        v = noise();
        break;
      case 5: // near silence with tiny noise, then a single step
        v = (noise() >> 13) + (n - 5 * 2048 >= 1024 ? 200 : 0);
        break;
      case 6: {
        // mix of triangle, square and noise under a rising integer envelope, clipped
        const env = n - 6 * 2048; // 0..2047
        const mix = triangle(n, 29, 20000) + square(n, 7, 9000) + (noise() >> 2);
        v = Math.trunc((mix * env) / 1024) - 3000;
        break;
      }
      default: {
        // high band: a 4 kHz square plus a 7.27 kHz triangle, decaying linearly to silence
        const left = rate - n; // 1664..1
        v = Math.trunc(((square(n, 4, 12000) + triangle(10 * n, 22, 8000)) * left) / 1664);
      }
    }
    out[n] = clip(v);
  }
  return out;
}

function s16le(pcm: Int16Array): Buffer {
  const out = Buffer.alloc(pcm.length * 2);
  for (let i = 0; i < pcm.length; i++) out.writeInt16LE(pcm[i]!, 2 * i);
  return out;
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function ffmpegReference(): Buffer {
  const text = readFileSync(new URL('./testdata/g722-reference-1s.g722.b64', import.meta.url), 'utf8');
  const bytes = Buffer.from(text, 'base64');
  assert.equal(sha256(bytes), BITSTREAM_SHA256, 'the pinned fixture is intact');
  return bytes;
}

test('the reference input is the exact signal that was fed to ffmpeg', () => {
  const x = referenceInput();
  assert.equal(x.length, RATE);
  assert.equal(sha256(s16le(x)), INPUT_SHA256);
});

test('our G.722 encoder produces, byte for byte, the 8000 bytes ffmpeg encodes from 1 s of input', () => {
  const x = referenceInput();
  const expected = ffmpegReference();
  assert.equal(expected.length, RATE / 2);
  const enc = new G722Encoder();
  const parts: Buffer[] = [];
  for (let i = 0; i < x.length; i += FRAME) parts.push(enc.encode(x.subarray(i, i + FRAME)));
  const ours = Buffer.concat(parts);
  assert.equal(ours.length, expected.length);
  const at = ours.findIndex((b, i) => b !== expected[i]);
  assert.equal(
    at,
    -1,
    at < 0
      ? ''
      : `first differing byte ${at} (input samples ${2 * at}-${2 * at + 1}, ${((2 * at * 1000) / RATE).toFixed(2)} ms): ` +
          `ours 0x${ours[at]!.toString(16)} (ihigh ${ours[at]! >> 6}, ilow ${ours[at]! & 63}), ` +
          `ffmpeg 0x${expected[at]!.toString(16)} (ihigh ${expected[at]! >> 6}, ilow ${expected[at]! & 63})`,
  );
});

test('our G.722 decoder turns the ffmpeg bitstream into exactly the PCM ffmpeg decodes from it', () => {
  const bytes = ffmpegReference();
  const dec = new G722Decoder();
  const pcm = new Int16Array(RATE);
  for (let i = 0; i < bytes.length; i += FRAME / 2) pcm.set(dec.decode(bytes.subarray(i, i + FRAME / 2)), 2 * i);
  assert.equal(sha256(s16le(pcm)), DECODED_SHA256);
});
