import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../core/clock.js';
import { FrameClock } from './frame-clock.js';
import { Pacer } from './pacer.js';

test('play() of any length comes out as 20 ms frames; a remainder waits for more audio', () => {
  const p = new Pacer(16000);
  p.play(new Int16Array(320 * 2 + 100).fill(1));
  assert.equal(p.next()?.length, 320);
  assert.equal(p.next()?.length, 320);
  assert.equal(p.next(), undefined, 'the 100-sample remainder is held');
  p.play(new Int16Array(220).fill(2));
  const f = p.next()!;
  assert.deepEqual([f[0], f[99], f[100], f[319]], [1, 1, 2, 2]);
});

test('a mark resolves "played" when the audio before it has gone out, and at once when nothing is queued', async () => {
  const p = new Pacer(8000);
  assert.equal(await p.mark('empty'), 'played');
  p.play(new Int16Array(160 * 3));
  let result: string | undefined;
  void p.mark('after-3').then((r) => (result = r));
  p.next();
  p.next();
  await Promise.resolve();
  assert.equal(result, undefined);
  p.next();
  await Promise.resolve();
  assert.equal(result, 'played');
});

test('clear() drops queued audio at once; pending marks resolve "cleared"; a partial frame is padded for a mark', async () => {
  const p = new Pacer(8000);
  p.play(new Int16Array(160 * 50 + 30));
  const m = p.mark('m');
  assert.equal(p.queuedMs, 1020);
  assert.equal(p.clear(), 51);
  assert.equal(await m, 'cleared');
  assert.equal(p.next(), undefined);
  assert.equal(p.queuedMs, 0);
});

test('the frame clock ticks every 20 ms on ideal times, one timer for all subscribers, none when idle', () => {
  const clock = new FakeClock(0);
  const fc = new FrameClock(clock, () => undefined);
  const a: number[] = [];
  const b: number[] = [];
  const offA = fc.subscribe((t) => a.push(t));
  clock.advance(10);
  const offB = fc.subscribe((t) => b.push(t));
  clock.advance(50);
  assert.deepEqual(a, [20, 40, 60]);
  assert.deepEqual(b, [20, 40, 60]);
  assert.equal(clock.pending, 1);
  offA();
  offB();
  assert.equal(clock.pending, 0);
});

test('a subscriber that throws is reported and does not stop the others', () => {
  const clock = new FakeClock(0);
  const errors: unknown[] = [];
  const fc = new FrameClock(clock, (e) => errors.push(e));
  const ticks: number[] = [];
  fc.subscribe(() => {
    throw new Error('agent bug');
  });
  fc.subscribe((t) => ticks.push(t));
  clock.advance(40);
  assert.equal(errors.length, 2);
  assert.deepEqual(ticks, [20, 40]);
});
