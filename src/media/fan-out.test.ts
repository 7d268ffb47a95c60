import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rms, tone } from '../audio/test-signals.js';
import { mix } from './fan-out.js';

test('mix: one side alone passes unchanged; two voices sum at -3 dB each; full-scale sums are limited, not clipped', () => {
  const a = tone(440, 16000, 320, 10000);
  const b = tone(1000, 16000, 320, 10000);
  assert.equal(mix(a, undefined), a);
  assert.equal(mix(undefined, b), b);
  assert.equal(mix(undefined, undefined), undefined);
  const m = mix(a, b)!;
  // Uncorrelated tones: power adds, each at -3 dB, so the mix has the level of one of them.
  assert.ok(Math.abs(rms(m) / rms(a) - 1) < 0.05, `mix level ${(rms(m) / rms(a)).toFixed(3)}`);
  const loud = mix(new Int16Array(320).fill(32767), new Int16Array(320).fill(32767))!;
  assert.ok(loud.every((x) => x > 29204 && x <= 32767), 'soft-limited below full scale');
  const quiet = mix(new Int16Array(320).fill(1000), new Int16Array(320).fill(1000))!;
  assert.equal(quiet[0], Math.round(2000 * Math.SQRT1_2), 'linear below the knee');
});
