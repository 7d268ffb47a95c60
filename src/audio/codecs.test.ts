import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeG711, encodeG711, linearToUlaw, ulawToLinear } from './g711.js';
import { Resampler } from './resampler.js';
import { rms, tone, toneSnrDb } from './test-signals.js';

const RATES = [8000, 16000, 24000, 48000];

/** Feeds a signal through in 20 ms frames, as the media path does, and skips the filter's settling. */
function resampleStream(r: Resampler, x: Int16Array): Int16Array {
  const frame = r.inRate / 50;
  const parts: Int16Array[] = [];
  for (let i = 0; i < x.length; i += frame) parts.push(r.process(x.subarray(i, i + frame)));
  const all = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  return all;
}

for (const from of RATES) {
  for (const to of RATES) {
    if (from === to) continue;
    test(`resampler ${from / 1000}k -> ${to / 1000}k keeps a 1 kHz tone at SNR >= 60 dB, frame by frame`, () => {
      const r = new Resampler(from, to);
      const y = resampleStream(r, tone(1000, from, from)); // one second
      assert.equal(y.length, to, 'exactly one second out');
      const steady = y.subarray(r.delaySamples + to / 50, to - to / 50);
      const snr = toneSnrDb(steady, 1000, to);
      assert.ok(snr >= 60, `SNR ${snr.toFixed(1)} dB`);
      assert.ok(Math.abs(rms(steady) / rms(tone(1000, to, to)) - 1) < 0.01, 'unity gain');
    });
  }
}

test('downsampling: a tone above the new Nyquist does not fold back (< -60 dB)', () => {
  for (const [from, to, hz] of [[48000, 16000, 12000], [48000, 8000, 5000], [16000, 8000, 6000], [48000, 24000, 15000]] as const) {
    const r = new Resampler(from, to);
    const y = resampleStream(r, tone(hz, from, from));
    const level = 20 * Math.log10(rms(y.subarray(r.delaySamples + 200)) / rms(tone(hz, from, from)));
    assert.ok(level < -60, `${hz} Hz ${from}->${to}: ${level.toFixed(1)} dB`);
  }
});

test('upsampling puts no image above the old Nyquist (< -60 dB)', () => {
  const r = new Resampler(8000, 48000);
  const y = resampleStream(r, tone(1000, 8000, 8000));
  // The image of 1 kHz at 8 kHz sampling sits at 7 kHz; measure it in the 48 kHz output.
  const steady = y.subarray(r.delaySamples + 960);
  const image = toneSnrDb(steady, 7000, 48000);
  const level = 10 * Math.log10(1 / (1 + 10 ** (-image / 10)));
  assert.ok(image < -60 || level < -60, `image at 7 kHz: ${image.toFixed(1)} dB`);
});

test('G.711 μ-law and A-law keep a 1 kHz tone at the codec limit (SNR >= 35 dB) and round-trip every code', () => {
  for (const law of ['pcmu', 'pcma'] as const) {
    const x = tone(1000, 8000, 8000, 16000);
    const y = decodeG711(encodeG711(x, law), law);
    const snr = toneSnrDb(y, 1000, 8000);
    assert.ok(snr >= 35, `${law} SNR ${snr.toFixed(1)} dB`);
    for (let code = 0; code < 256; code++) {
      const lin = decodeG711(Buffer.from([code]), law)[0]!;
      const back = encodeG711(Int16Array.of(lin), law)[0]!;
      assert.equal(decodeG711(Buffer.from([back]), law)[0], lin, `${law} code ${code}`);
    }
  }
  // ITU-T G.711 reference points.
  assert.equal(linearToUlaw(0), 0xff);
  assert.equal(ulawToLinear(0x00), -32124);
  assert.equal(ulawToLinear(0x80), 32124);
});
