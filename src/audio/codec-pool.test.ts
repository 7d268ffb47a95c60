import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { OpusEncoder } from '../testing/opus.js';
import type { CodecJob, CodecResult } from './codec-job.js';
import { CodecPool, MAX_BATCHES_BEHIND, type CodecChannel } from './codec-pool.js';
import { tone, toneSnrDb } from './test-signals.js';

/** 1 s of a 1 kHz tone as 20 ms Opus packets, with in-band FEC (as browsers send it). */
const packets: Buffer[] = (() => {
  const enc = new OpusEncoder(48000, 1);
  enc.applyEncoderCTL(4012, 1); // OPUS_SET_INBAND_FEC
  enc.applyEncoderCTL(4014, 10); // OPUS_SET_PACKET_LOSS_PERC
  const pcm = tone(1000, 48000, 48000, 12000);
  const out: Buffer[] = [];
  for (let i = 0; i < 50; i++) out.push(enc.encode(Buffer.from(pcm.buffer, i * 1920, 1920)));
  return out;
})();
const speech = tone(440, 16000, 320, 8000);

/** A tick sequence with every decode op, some frames to encode and some without. */
const script: CodecJob[] = packets.map((p, i) => {
  const decode = i % 10 === 3 ? 'recover' : i % 10 === 7 ? 'conceal' : i % 13 === 0 ? 'none' : 'packet';
  return { decode, payload: decode === 'recover' ? packets[i + 1] ?? p : decode === 'packet' ? p : undefined, encode: i % 4 === 0 ? undefined : speech };
});

function run(ch: CodecChannel, job: CodecJob): Promise<CodecResult> {
  return new Promise((resolve) => ch.run(job, resolve));
}

const pools: CodecPool[] = [];
after(() => Promise.all(pools.map((p) => p.stop())));
function pool(threads: number, report?: (err: unknown, what: string) => void): CodecPool {
  const p = new CodecPool(threads, report);
  pools.push(p);
  return p;
}

test('a codec thread gives exactly what inline codecs give, tick by tick, for every decode op and encode', async () => {
  const inline = pool(0).open('opus', 16000, true);
  const threaded = pool(1).open('opus', 16000, true);
  assert.equal(inline.where, 'inline');
  assert.equal(threaded.where, 'codec thread 0');
  const frames: (Int16Array | undefined)[] = [];
  for (const job of script) {
    const a = await run(inline, job);
    const b = await run(threaded, job);
    assert.deepEqual(b.samples, a.samples);
    assert.deepEqual(b.encoded, a.encoded);
    assert.equal(b.decodeError, a.decodeError);
    frames.push(b.samples);
    assert.equal(b.encoded !== undefined, job.encode !== undefined);
  }
  // And it is the tone, not equal garbage: two decoded packets in a row, past the decoder's start.
  assert.equal(script[21]!.decode, 'packet');
  assert.equal(script[22]!.decode, 'packet');
  const snr = toneSnrDb([...frames[21]!, ...frames[22]!], 1000, 16000);
  assert.ok(snr > 20, `SNR ${snr.toFixed(1)} dB`);
});

test('one tick of many sessions goes as one batch per thread, and each session gets its own result in order', async () => {
  const p = pool(2);
  const channels = Array.from({ length: 40 }, (_, i) => p.open(i % 2 ? 'opus' : 'pcmu', 16000, i % 3 === 0));
  assert.deepEqual(new Set(channels.map((c) => c.where)), new Set(['codec thread 0', 'codec thread 1']));
  const ulaw = Buffer.alloc(160, 0xff); // μ-law silence
  for (let tick = 0; tick < 5; tick++) {
    const results = channels.map((c, i) =>
      run(c, { decode: 'packet', payload: i % 2 ? packets[tick]! : ulaw, encode: i % 3 === 0 ? speech : undefined }),
    );
    await new Promise<void>((r) => queueMicrotask(r)); // after the pool's flush
    assert.equal(p.inflightBatches, 2, 'one batch per thread for the whole tick');
    const rs = await Promise.all(results);
    rs.forEach((r, i) => {
      assert.equal(r.samples?.length, 320, `session ${i}: a 20 ms frame at 16 kHz`);
      assert.equal(r.decodeError, false);
      assert.equal(r.encoded !== undefined, i % 3 === 0);
      if (i % 2 === 0) assert.ok(r.samples!.every((s) => s === 0), 'μ-law silence decodes to zeros');
    });
  }
});

test('an undecodable payload is concealed and flagged, and the session goes on', async () => {
  const ch = pool(1).open('opus', 16000, false);
  const bad = await run(ch, { decode: 'packet', payload: Buffer.from([0xff, 0xff, 0xff]) });
  assert.equal(bad.decodeError, true);
  assert.equal(bad.samples?.length, 320);
  const good = await run(ch, { decode: 'packet', payload: packets[0] });
  assert.equal(good.decodeError, false);
});

test('a closed channel never hears back, and its neighbours are unaffected', async () => {
  const p = pool(1);
  const a = p.open('opus', 16000, false);
  const b = p.open('opus', 16000, false);
  let heard = false;
  a.run({ decode: 'packet', payload: packets[0] }, () => (heard = true));
  a.close();
  const r = await run(b, { decode: 'packet', payload: packets[0] });
  assert.equal(r.samples?.length, 320);
  assert.equal(heard, false);
  a.run({ decode: 'conceal' }, () => (heard = true));
  assert.equal(heard, false);
});

test('when a codec thread dies its sessions carry on inline, and it is reported', async () => {
  const reports: string[] = [];
  const p = pool(1, (_err, what) => reports.push(what));
  const ch = p.open('opus', 16000, true);
  assert.equal((await run(ch, { decode: 'packet', payload: packets[0], encode: speech })).samples?.length, 320);
  await p.workers[0]!.terminate();
  assert.equal(p.threads, 0);
  assert.deepEqual(reports, ['codec thread 0 died; its sessions go on inline']);
  assert.equal(ch.where, 'inline');
  const r = await run(ch, { decode: 'packet', payload: packets[1], encode: speech });
  assert.equal(r.samples?.length, 320);
  assert.ok(r.encoded && r.encoded.length > 0);
  assert.equal(p.open('pcma', 8000, false).where, 'inline', 'new sessions too');
});

test(`a codec thread ${MAX_BATCHES_BEHIND} ticks behind sheds new work at once instead of queueing it`, async () => {
  const p = pool(1);
  const ch = p.open('opus', 16000, false);
  const results: Promise<CodecResult>[] = [];
  // Ticks without a turn of the event loop in between: no answer can come back meanwhile.
  for (let tick = 0; tick <= MAX_BATCHES_BEHIND; tick++) {
    results.push(run(ch, { decode: 'packet', payload: packets[tick] }));
    await new Promise<void>((r) => queueMicrotask(r));
  }
  assert.equal(p.inflightBatches, MAX_BATCHES_BEHIND);
  const rs = await Promise.all(results);
  assert.deepEqual(rs.map((r) => r.shed === true), [...Array<boolean>(MAX_BATCHES_BEHIND).fill(false), true]);
  assert.equal(rs[MAX_BATCHES_BEHIND]!.samples, undefined);
  // Caught up: work flows again.
  assert.equal((await run(ch, { decode: 'packet', payload: packets[9] })).samples?.length, 320);
});

test('each codec thread reports its own heap and external memory (its isolate collects on its own)', async () => {
  const p = pool(2);
  assert.equal(p.memory.length, 0, 'nothing is reported before a thread has worked');
  const chans = [p.open('opus', 48000, true), p.open('opus', 48000, true)];
  for (const job of script.slice(0, 5)) await Promise.all(chans.map((c) => run(c, job)));
  const m = p.memory;
  assert.deepEqual(m.map((x) => x.thread).sort(), [0, 1]);
  for (const x of m) {
    assert.ok(x.heapUsed > 100_000 && x.heapUsed < 200e6, `thread ${x.thread} heap ${x.heapUsed}`);
    // The native Opus state is malloc'd by the binding, not V8's: external is the ArrayBuffers in flight.
    assert.ok(x.external > 0 && x.external < 50e6, `thread ${x.thread} external ${x.external}`);
  }
  for (const c of chans) c.close();
});
