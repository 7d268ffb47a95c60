import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JitterBuffer, type JitterOutput } from './jitter-buffer.js';

const FRAME = 20;
const mk = () => new JitterBuffer({ clockRate: 48000, frameMs: FRAME, minDelayMs: 20, maxDelayMs: 200 });
const pkt = (seq: number, arrivalMs: number) => ({ seq, timestamp: seq * 960, payload: Buffer.from([seq & 0xff]), arrivalMs });

/** Drives a buffer with a scripted network: `arrivals[seq] = arrival time`, playout ticks every 20 ms. */
function play(jb: JitterBuffer, arrivals: [number, number][], untilMs: number): string[] {
  const out: string[] = [];
  const pending = [...arrivals].sort((a, b) => a[1] - b[1]);
  for (let now = 0; now <= untilMs; now += FRAME) {
    while (pending.length && pending[0]![1] <= now) {
      const [seq, at] = pending.shift()!;
      jb.push(pkt(seq, at));
    }
    const o: JitterOutput = jb.pop(now);
    out.push(o.kind === 'packet' ? String(o.packet.seq) : o.kind === 'lost' ? `L${o.seq}` : o.kind === 'underrun' ? 'U' : '-');
  }
  return out;
}

test('a clean network plays in order after the 20 ms minimum delay', () => {
  const jb = mk();
  const arrivals: [number, number][] = Array.from({ length: 10 }, (_, i) => [100 + i, i * FRAME]);
  const out = play(jb, arrivals, 220);
  assert.deepEqual(out.slice(0, 11), ['-', '100', '101', '102', '103', '104', '105', '106', '107', '108', '109']);
  assert.equal(jb.targetDelayMs, 20);
});

test('reordered and duplicated packets come out once, in order', () => {
  const jb = mk();
  const arrivals: [number, number][] = [[0, 0], [2, 20], [1, 21], [1, 22], [3, 60], [5, 80], [4, 81], [6, 120], [6, 121], [7, 140]];
  const out = play(jb, arrivals, 200).filter((s) => s !== '-' && s !== 'U');
  assert.deepEqual(out, ['0', '1', '2', '3', '4', '5', '6', '7']);
  assert.equal(jb.stats.duplicates, 2);
});

test('a lost packet is concealed in its slot and the stream continues', () => {
  const jb = mk();
  const arrivals: [number, number][] = [0, 1, 2, 4, 5, 6].map((s) => [s, s * FRAME]);
  const out = play(jb, arrivals, 160).filter((s) => s !== '-');
  assert.ok(out.includes('L3'), `loss of 3 is reported: ${out.join(' ')}`);
  assert.deepEqual(out.filter((s) => /^\d+$/.test(s)), ['0', '1', '2', '4', '5', '6']);
  assert.equal(jb.stats.lost, 1);
});

test('jitter grows the delay up to the cap; a packet later than its slot is dropped as late', () => {
  const jb = mk();
  // Every packet delayed by a random 0-60 ms; the buffer must settle on a deeper target.
  let seed = 1;
  const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  const arrivals: [number, number][] = Array.from({ length: 300 }, (_, s) => [s, s * FRAME + Math.floor(rand() * 60)]);
  play(jb, arrivals, 300 * FRAME + 200);
  assert.ok(jb.targetDelayMs >= 60 && jb.targetDelayMs <= 200, `target ${jb.targetDelayMs} ms`);
  assert.ok(jb.jitterMs > 10, `jitter ${jb.jitterMs.toFixed(1)} ms`);
  assert.ok(jb.stats.lost + jb.stats.late < 30, `few losses once adapted: lost ${jb.stats.lost}, late ${jb.stats.late}`);
});

test('sequence numbers across the 65535 wrap (already unwrapped) play straight through', () => {
  const jb = mk();
  const arrivals: [number, number][] = [65534, 65535, 65536, 65537].map((s, i) => [s, i * FRAME]);
  assert.deepEqual(play(jb, arrivals, 100).filter((s) => s !== '-' && s !== 'U'), ['65534', '65535', '65536', '65537']);
});

test('excess delay after a burst is shed, one frame at a time', () => {
  const jb = mk();
  // 10 packets arrive at once (a burst after a stall), then the stream runs clean.
  const arrivals: [number, number][] = Array.from({ length: 200 }, (_, s) => [s, s < 10 ? 0 : (s - 9) * FRAME]);
  play(jb, arrivals.filter(([, at]) => at <= 60), 60);
  const early = jb.delayMs;
  const jb2 = mk();
  play(jb2, arrivals, 200 * FRAME);
  assert.ok(early >= 120, `burst buffered ${early} ms`);
  assert.ok(jb2.stats.shed > 0, 'delay was shed');
  assert.ok(jb2.delayMs <= 60, `delay back to ${jb2.delayMs} ms`);
});

test('a consumer that falls behind never sees more than the cap: the oldest audio is dropped and counted', () => {
  const jb = mk();
  for (let s = 0; s < 3; s++) jb.push(pkt(s, s * FRAME));
  jb.pop(40);
  jb.pop(60);
  // No pops for 2 s while packets keep coming (a stalled process).
  for (let s = 3; s < 103; s++) jb.push(pkt(s, s * FRAME));
  assert.ok(jb.delayMs <= 200, `delay ${jb.delayMs} ms`);
  assert.ok(jb.stats.overflow > 80, `overflow ${jb.stats.overflow}`);
  const o = jb.pop(2100);
  assert.equal(o.kind, 'packet');
});
