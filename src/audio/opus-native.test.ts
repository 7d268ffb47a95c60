import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OPUS_AUTO, opusNative } from './opus-native.js';

const frame = (rate: number) => Int16Array.from({ length: rate / 50 }, (_, i) => Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)));

test('the binding encodes and decodes one 20 ms frame at every Opus rate', () => {
  for (const rate of [8000, 12000, 16000, 24000, 48000]) {
    const enc = opusNative.createEncoder(rate, 32000, 5);
    const dec = opusNative.createDecoder(rate);
    const out = new Int16Array(rate / 50);
    let n = 0;
    for (let i = 0; i < 5; i++) n = opusNative.decode(dec, opusNative.encode(enc, frame(rate)), false, out);
    assert.equal(n, rate / 50, `${rate} Hz: one frame back`);
    assert.ok(out.some((s) => Math.abs(s) > 1000), `${rate} Hz: the tone, not silence`);
    opusNative.destroy(enc);
    opusNative.destroy(dec);
  }
});

test('destroy frees at once, is idempotent, and a destroyed handle refuses work instead of crashing', () => {
  const enc = opusNative.createEncoder(48000, OPUS_AUTO, 10);
  const dec = opusNative.createDecoder(48000);
  opusNative.destroy(enc);
  opusNative.destroy(enc);
  opusNative.destroy(dec);
  assert.throws(() => opusNative.encode(enc, frame(48000)), /the encoder was destroyed/);
  assert.throws(() => opusNative.decode(dec, null, false, new Int16Array(960)), /the decoder was destroyed/);
  assert.throws(() => opusNative.ctl(enc, 4002, 24000), /needs a live encoder/);
});

test('ctl takes OPUS_SET_* requests of one integer; GET requests, reset and bad values are refused', () => {
  const enc = opusNative.createEncoder(16000, 24000, 5);
  opusNative.ctl(enc, 4012, 1); // OPUS_SET_INBAND_FEC
  opusNative.ctl(enc, 4014, 10); // OPUS_SET_PACKET_LOSS_PERC
  assert.throws(() => opusNative.ctl(enc, 4003, 0), /only OPUS_SET_\* requests/, 'OPUS_GET_BITRATE takes a pointer');
  assert.throws(() => opusNative.ctl(enc, 4028, 0), /only OPUS_SET_\* requests/, 'OPUS_RESET_STATE takes nothing');
  assert.throws(() => opusNative.ctl(enc, 4010, 42), /invalid argument/, 'complexity 42');
  assert.throws(() => opusNative.createDecoder(44100), /invalid argument/, '44.1 kHz is not an Opus rate');
  assert.throws(() => opusNative.encode(enc, new Int16Array(100)), /invalid argument/, 'not a frame length');
  opusNative.destroy(enc);
});

test('a session\'s codec state is freed when it closes: 4,000 Opus sessions (decoder and encoder) made and closed grow RSS by far less than they hold', async () => {
  const { CodecState } = await import('./codec-job.js');
  const pcm = new Int16Array(960);
  const rss0 = process.memoryUsage().rss;
  for (let i = 0; i < 4000; i++) {
    const s = new CodecState('opus', 48000, true);
    s.run({ decode: 'conceal', encode: pcm });
    s.close();
    if (i === 0) assert.throws(() => s.run({ decode: 'conceal' }), /destroyed/, 'closed means freed');
  }
  // Measured: ~275 MB left to finalizers without close() (the thread rarely collects), ~30 MB with it.
  const grown = (process.memoryUsage().rss - rss0) / 1e6;
  assert.ok(grown < 120, `RSS grew ${grown.toFixed(0)} MB over 4,000 sessions`);
});

test('live() counts the codec state not yet freed, in handles and bytes, and destroy gives it back', () => {
  const [handles0, bytes0] = opusNative.live();
  const handles = Array.from({ length: 200 }, () => [opusNative.createEncoder(48000, 32000, 5), opusNative.createDecoder(48000)]).flat();
  const [handles1, bytes1] = opusNative.live();
  assert.equal(handles1 - handles0, 400);
  // libopus at 48 kHz mono: an encoder is about 30 KB, a decoder about 26 KB.
  assert.ok(bytes1 - bytes0 > 200 * 40_000, `${((bytes1 - bytes0) / 1e6).toFixed(1)} MB counted for 200 pairs`);
  for (const h of handles) opusNative.destroy(h);
  for (const h of handles) opusNative.destroy(h); // idempotent: counted once
  assert.deepEqual(opusNative.live(), [handles0, bytes0]);
});

test('live() is one count for the whole process: a codec thread\'s state shows on the main thread', async () => {
  const { Worker } = await import('node:worker_threads');
  const [handles0] = opusNative.live();
  const path = new URL('../../native/opus/build/Release/voxgate_opus.node', import.meta.url).pathname;
  const w = new Worker(
    `const { parentPort } = require('node:worker_threads');
     const o = require(${JSON.stringify(path)});
     const hs = Array.from({ length: 10 }, () => o.createDecoder(48000));
     parentPort.postMessage('made');
     parentPort.once('message', () => { for (const h of hs) o.destroy(h); parentPort.postMessage('freed'); });`,
    { eval: true },
  );
  const next = () => new Promise((resolve) => w.once('message', resolve));
  assert.equal(await next(), 'made');
  assert.equal(opusNative.live()[0] - handles0, 10);
  w.postMessage('free');
  assert.equal(await next(), 'freed');
  assert.equal(opusNative.live()[0], handles0);
  await w.terminate();
});
