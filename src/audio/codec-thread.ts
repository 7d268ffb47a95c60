import { getHeapStatistics } from 'node:v8';
import { parentPort } from 'node:worker_threads';
import { CodecState, DECODE_OPS, type CodecResult } from './codec-job.js';
import { even, JOB_INTS, RESULT_INTS, type BatchMessage, type ReplyMessage } from './codec-pool.js';

/** A codec thread (see CodecPool): keeps each channel's codec state and answers each batch once. */
const states = new Map<number, CodecState>();
const NONE: CodecResult = { samples: undefined, decodeError: false, encoded: undefined };
/** Batches between reports of this thread's heap: one a second at a 20 ms tick. */
const MEMORY_EVERY = 50;
let batches = 0;

parentPort!.on('message', (m: BatchMessage) => {
  for (const [id, codec, rate, encode] of m.open) states.set(id, new CodecState(codec, rate, encode));
  const n = m.jobs.length / JOB_INTS;
  const results: CodecResult[] = [];
  for (let i = 0; i < n; i++) {
    const j = i * JOB_INTS;
    const state = states.get(m.jobs[j]!);
    const payloadLen = m.jobs[j + 3]!;
    const samples = m.jobs[j + 5]!;
    let r = NONE;
    try {
      r =
        state?.run({
          decode: DECODE_OPS[m.jobs[j + 1]!]!,
          payload: payloadLen > 0 ? new Uint8Array(m.data, m.jobs[j + 2]!, payloadLen) : undefined,
          encode: samples >= 0 ? new Int16Array(m.data, m.jobs[j + 4]!, samples) : undefined,
        }) ?? NONE;
    } catch {
      r = { ...NONE, decodeError: true };
    }
    results.push(r);
  }
  for (const id of m.close) {
    states.get(id)?.close();
    states.delete(id);
  }
  let bytes = 0;
  for (const r of results) bytes += (r.samples?.byteLength ?? 0) + even(r.encoded?.byteLength ?? 0);
  const data = new ArrayBuffer(bytes);
  const u8 = new Uint8Array(data);
  const meta = new Int32Array(n * RESULT_INTS);
  let off = 0;
  results.forEach((r, i) => {
    const k = i * RESULT_INTS;
    meta[k] = r.decodeError ? 1 : 0;
    meta[k + 1] = off;
    meta[k + 2] = r.samples ? r.samples.length : -1;
    if (r.samples) {
      u8.set(new Uint8Array(r.samples.buffer, r.samples.byteOffset, r.samples.byteLength), off);
      off += r.samples.byteLength;
    }
    meta[k + 3] = off;
    meta[k + 4] = r.encoded ? r.encoded.byteLength : -1;
    if (r.encoded) {
      u8.set(r.encoded, off);
      off += even(r.encoded.byteLength);
    }
  });
  const reply: ReplyMessage = { meta, data };
  if (batches++ % MEMORY_EVERY === 0) {
    const h = getHeapStatistics();
    reply.memory = { heapUsed: h.used_heap_size, external: h.external_memory };
  }
  parentPort!.postMessage(reply, [meta.buffer, data]);
});
