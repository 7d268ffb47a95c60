import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createDecoder, createEncoder } from '../audio/codec.js';
import { rms, tone } from '../audio/test-signals.js';
import { MIX_CEILING, Mixer } from './fan-out.js';

const RATE = 16000;
const FRAME = 320;

test('mix: below the ceiling one side passes unchanged and two voices sum at -3 dB each', () => {
  const mixer = new Mixer(RATE);
  const a = tone(440, RATE, FRAME, 10000);
  const b = tone(1000, RATE, FRAME, 10000);
  assert.deepEqual(mixer.mix(a, undefined), a);
  assert.deepEqual(mixer.mix(undefined, b), b);
  assert.equal(mixer.mix(undefined, undefined), undefined);
  const m = mixer.mix(a, b)!;
  // Uncorrelated tones: power adds, each at -3 dB, so the mix has the level of one of them.
  assert.ok(Math.abs(rms(m) / rms(a) - 1) < 0.05, `mix level ${(rms(m) / rms(a)).toFixed(3)}`);
  const quiet = mixer.mix(new Int16Array(FRAME).fill(1000), new Int16Array(FRAME).fill(1000))!;
  assert.equal(quiet[0], Math.round(2000 * Math.SQRT1_2), 'linear below the ceiling');
});

test('mix with loud input: a -2 dBFS caller and the echo agent never reach full scale, even after Opus at the listener', () => {
  // The echo agent plays the caller back 60 ms late: the two are correlated and add in phase.
  const seconds = 4.8;
  const frames = (seconds * 1000) / 20;
  const amplitude = Math.round(32767 * 10 ** (-2 / 20));
  const caller = tone(300, RATE, frames * FRAME + 960, amplitude);
  const mixer = new Mixer(RATE);
  const enc = createEncoder('opus', RATE);
  const dec = createDecoder('opus', RATE);
  let overCeiling = 0;
  let clippedAfterOpus = 0;
  let naiveClipped = 0;
  let peak = 0;
  for (let f = 0; f < frames; f++) {
    const a = caller.subarray(f * FRAME + 960, (f + 1) * FRAME + 960);
    const b = caller.subarray(f * FRAME, (f + 1) * FRAME); // 60 ms (960 samples) earlier
    for (let i = 0; i < FRAME; i++) if (Math.abs((a[i]! + b[i]!) * Math.SQRT1_2) >= 32767) naiveClipped++;
    const m = mixer.mix(a, b)!;
    for (const x of m) {
      if (Math.abs(x) > MIX_CEILING) overCeiling++;
      peak = Math.max(peak, Math.abs(x));
    }
    for (const x of dec.decode(enc.encode(m))) if (x >= 32767 || x <= -32768) clippedAfterOpus++;
  }
  assert.ok(naiveClipped > 1000, `the input is loud enough that a plain -3 dB sum clips (${naiveClipped} samples)`);
  assert.equal(overCeiling, 0, 'no mixed sample above -3 dBFS');
  assert.ok(peak > MIX_CEILING * 0.9, `the limiter holds the level near the ceiling, not far below (${peak})`);
  assert.equal(clippedAfterOpus, 0, 'no clipped sample after the listener decodes the Opus mix');
});

test('mix: after a loud passage the gain comes back within half a second', () => {
  const mixer = new Mixer(RATE);
  const loud = tone(300, RATE, FRAME, 32000);
  for (let f = 0; f < 50; f++) mixer.mix(loud, loud);
  const soft = tone(300, RATE, FRAME, 5000);
  let last: Int16Array | undefined;
  for (let f = 0; f < 25; f++) last = mixer.mix(soft, undefined);
  assert.ok(rms(last!) / rms(soft) > 0.99, `gain ${(rms(last!) / rms(soft)).toFixed(3)} after 500 ms`);
});
