import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CODEC_IMPAIRMENT, delayImpairment, mos, mosFromR, rFactor } from './emodel.js';

const close = (a: number, b: number, eps: number) => assert.ok(Math.abs(a - b) <= eps, `${a} vs ${b}`);

test('G.107 Annex B: MOS at the published R reference points', () => {
  close(mosFromR(93.2), 4.41, 0.005); // default parameters: R = 93.2, MOS 4.41
  close(mosFromR(90), 4.34, 0.005); // "very satisfied" boundary
  close(mosFromR(80), 4.03, 0.01); // G.109 rounds 4.024 up
  close(mosFromR(70), 3.6, 0.005);
  close(mosFromR(60), 3.1, 0.005);
  close(mosFromR(50), 2.58, 0.005);
  assert.equal(mosFromR(-5), 1);
  assert.equal(mosFromR(120), 4.5);
});

test('delay impairment: linear to 177.3 ms, steeper after', () => {
  close(delayImpairment(100), 2.4, 1e-9);
  close(delayImpairment(177.3), 4.2552, 1e-9);
  close(delayImpairment(300), 0.024 * 300 + 0.11 * (300 - 177.3), 1e-9);
});

test('loss: G.711 with PLC (Bpl 25.1) at 2 % loss loses 7.04 R points; MOS falls with loss and delay', () => {
  close(93.2 - rFactor(0, 2, CODEC_IMPAIRMENT.pcmu!), (95 * 2) / (2 + 25.1), 1e-9);
  assert.ok(mos(20, 0, CODEC_IMPAIRMENT.opus!) > 4.3);
  assert.ok(mos(20, 3, CODEC_IMPAIRMENT.opus!) < mos(20, 1, CODEC_IMPAIRMENT.opus!));
  assert.ok(mos(400, 0, CODEC_IMPAIRMENT.opus!) < 3.6);
});
