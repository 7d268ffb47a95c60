import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { CodecName } from '../core/config.js';
import { CodecState, DECODE_OPS, type CodecJob, type CodecResult } from './codec-job.js';

/**
 * Codec work off the media thread. Decoding and encoding are most of a session's CPU (Opus:
 * ~20-30 µs to decode and ~50 µs to encode a 20 ms frame here), while node-datachannel hands
 * every packet to the main thread. So each session's codec state lives in one codec thread,
 * and each thread gets one message per 20 ms tick carrying every job of that tick (packed into
 * one transferred buffer) and answers with one. With `threads: 0` the same work runs inline.
 */
export class CodecPool {
  readonly #threads: CodecThread[] = [];
  #nextChannel = 1;

  /** `report`: a codec thread that died (its sessions go on inline), or a result handler that threw. */
  constructor(threads: number, report: (err: unknown, what: string) => void = () => undefined) {
    for (let i = 0; i < threads; i++) this.#threads.push(new CodecThread(i, report));
  }

  /** Codec threads still running (0: inline). */
  get threads(): number {
    return this.#threads.filter((t) => t.alive).length;
  }

  /** The threads' workers (diagnostics; tests end one to see its sessions carry on). */
  get workers(): readonly Worker[] {
    return this.#threads.map((t) => t.worker);
  }

  /** Frames of work sent to threads and not answered yet, over all threads (a lag gauge). */
  get inflightBatches(): number {
    return this.#threads.reduce((n, t) => n + t.inflight, 0);
  }

  /** Each live thread's own heap and external memory (ArrayBuffers, native), as it last reported them. */
  get memory(): { thread: number; heapUsed: number; external: number }[] {
    return this.#threads.filter((t) => t.alive && t.memory).map((t) => ({ thread: t.index, ...t.memory! }));
  }

  /** A session's codec channel, on the least loaded live thread (or inline when there is none). */
  open(codec: CodecName, rate: number, encode: boolean): CodecChannel {
    let best: CodecThread | undefined;
    for (const t of this.#threads) if (t.alive && (!best || t.channels.size < best.channels.size)) best = t;
    return new CodecChannel(this.#nextChannel++, { codec, rate, encode }, best);
  }

  async stop(): Promise<void> {
    await Promise.all(this.#threads.map((t) => t.stop()));
  }
}

interface ChannelSpec {
  codec: CodecName;
  rate: number;
  encode: boolean;
}

/** One session's decoder and encoder, wherever they run; results come back in tick order. */
export class CodecChannel {
  #inline: CodecState | undefined;
  #closed = false;

  constructor(
    readonly id: number,
    readonly spec: ChannelSpec,
    private thread: CodecThread | undefined,
  ) {
    if (thread) thread.attach(this);
    else this.#inline = new CodecState(spec.codec, spec.rate, spec.encode);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Where this channel's codec runs, for describe(). */
  get where(): string {
    return this.thread ? `codec thread ${this.thread.index}` : 'inline';
  }

  /** Runs `job`; `done` is called once, later (codec thread) or at once (inline), never after close(). */
  run(job: CodecJob, done: (r: CodecResult) => void): void {
    if (this.#closed) return;
    if (this.#inline) done(this.#inline.run(job));
    else this.thread!.submit(this, job, done);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.thread?.detach(this);
    this.thread = undefined;
    this.#inline?.close();
    this.#inline = undefined;
  }

  /** Its thread died: the session carries on inline with fresh codec state. */
  fallBackInline(): void {
    if (this.#closed) return;
    this.thread = undefined;
    this.#inline = new CodecState(this.spec.codec, this.spec.rate, this.spec.encode);
  }
}

/** Main → codec thread, once per tick. `jobs` holds JOB_INTS int32 per job. */
export interface BatchMessage {
  open: [channel: number, codec: CodecName, rate: number, encode: boolean][];
  close: number[];
  jobs: Int32Array;
  data: ArrayBuffer;
}
/** channel, decode op, payload offset, payload bytes, encode offset (bytes), encode samples (-1: none). */
export const JOB_INTS = 6;

/** Codec thread → main, once per batch. `meta` holds RESULT_INTS int32 per job, in job order. */
export interface ReplyMessage {
  meta: Int32Array;
  data: ArrayBuffer;
  /** The thread's isolate, about once a second: V8 heap in use and external memory, in bytes. */
  memory?: ThreadMemory;
}
export interface ThreadMemory {
  heapUsed: number;
  external: number;
}
/** decode error (0/1), samples offset (bytes), samples (-1: none), encoded offset, encoded bytes (-1: none). */
export const RESULT_INTS = 5;

/**
 * Ticks a codec thread may owe before new work is shed: 4 × 20 ms. Past that an overloaded
 * machine would otherwise build an ever longer queue (seconds of delay); shedding turns
 * overload into counted, concealed loss at a bounded delay.
 */
export const MAX_BATCHES_BEHIND = 4;
const SHED: CodecResult = { samples: undefined, decodeError: false, encoded: undefined, shed: true };

interface Pending {
  channel: CodecChannel;
  job: CodecJob;
  done: (r: CodecResult) => void;
}

class CodecThread {
  readonly channels = new Set<CodecChannel>();
  alive = true;
  readonly worker: Worker;
  memory: ThreadMemory | undefined;
  #pending: Pending[] = [];
  #opened: CodecChannel[] = [];
  #closed: number[] = [];
  #flushQueued = false;
  /** Batches posted and not yet answered, oldest first. */
  readonly #inflight: Pending[][] = [];
  #stopping = false;

  constructor(
    readonly index: number,
    private readonly report: (err: unknown, what: string) => void,
  ) {
    this.worker = startCodecThread(index);
    this.worker.unref();
    this.worker.on('message', (m: ReplyMessage) => this.#onReply(m));
    let failure: Error | undefined;
    this.worker.on('error', (err) => (failure = err));
    this.worker.on('exit', (code) => {
      this.alive = false;
      if (this.#stopping) return;
      report(failure ?? new Error(`exit code ${code}`), `codec thread ${index} died; its sessions go on inline`);
      this.#inflight.length = 0;
      this.#pending = [];
      for (const c of this.channels) c.fallBackInline();
      this.channels.clear();
    });
  }

  get inflight(): number {
    return this.#inflight.length;
  }

  attach(c: CodecChannel): void {
    this.channels.add(c);
    this.#opened.push(c);
  }

  detach(c: CodecChannel): void {
    if (!this.channels.delete(c)) return;
    this.#closed.push(c.id);
    this.#queueFlush();
  }

  submit(channel: CodecChannel, job: CodecJob, done: (r: CodecResult) => void): void {
    if (this.#inflight.length >= MAX_BATCHES_BEHIND) {
      done(SHED);
      return;
    }
    this.#pending.push({ channel, job, done });
    this.#queueFlush();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.worker.ref(); // an unreferenced worker's exit would not keep the loop alive for this await
    await this.worker.terminate();
  }

  // Every session's tick runs in one FrameClock callback: a microtask flushes them as one batch.
  #queueFlush(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => this.#flush());
  }

  #flush(): void {
    this.#flushQueued = false;
    if (!this.alive) return;
    const batch = this.#pending;
    this.#pending = [];
    let bytes = 0;
    for (const { job } of batch) bytes += even(job.payload?.byteLength ?? 0) + (job.encode?.byteLength ?? 0);
    const data = new ArrayBuffer(bytes);
    const u8 = new Uint8Array(data);
    const jobs = new Int32Array(batch.length * JOB_INTS);
    let off = 0;
    batch.forEach(({ channel, job }, i) => {
      const j = i * JOB_INTS;
      jobs[j] = channel.id;
      jobs[j + 1] = DECODE_OPS.indexOf(job.decode);
      jobs[j + 2] = off;
      jobs[j + 3] = job.payload?.byteLength ?? 0;
      if (job.payload) u8.set(job.payload, off);
      off += even(job.payload?.byteLength ?? 0);
      jobs[j + 4] = off;
      jobs[j + 5] = job.encode ? job.encode.length : -1;
      if (job.encode) {
        u8.set(new Uint8Array(job.encode.buffer, job.encode.byteOffset, job.encode.byteLength), off);
        off += job.encode.byteLength;
      }
    });
    const msg: BatchMessage = {
      open: this.#opened.map((c) => [c.id, c.spec.codec, c.spec.rate, c.spec.encode]),
      close: this.#closed,
      jobs,
      data,
    };
    this.#opened = [];
    this.#closed = [];
    // Referenced only while it owes an answer: an idle pool never keeps the process alive.
    if (this.#inflight.length === 0) this.worker.ref();
    this.#inflight.push(batch);
    this.worker.postMessage(msg, [jobs.buffer, data]);
  }

  #onReply(m: ReplyMessage): void {
    if (m.memory) this.memory = m.memory;
    const batch = this.#inflight.shift();
    if (!batch) return;
    if (this.#inflight.length === 0 && !this.#stopping) this.worker.unref();
    batch.forEach(({ channel, done }, i) => {
      if (channel.closed) return;
      const r = i * RESULT_INTS;
      const sLen = m.meta[r + 2]!;
      const eLen = m.meta[r + 4]!;
      // Copies: an agent may keep a frame, and must not pin the whole batch's buffer.
      const result = {
        decodeError: m.meta[r] === 1,
        samples: sLen < 0 ? undefined : new Int16Array(m.data.slice(m.meta[r + 1]!, m.meta[r + 1]! + sLen * 2)),
        encoded: eLen < 0 ? undefined : Buffer.from(m.data.slice(m.meta[r + 3]!, m.meta[r + 3]! + eLen)),
      };
      try {
        done(result);
      } catch (err) {
        // One session's failure must not cost the others in the batch their frame.
        this.report(err, 'media tick failed');
      }
    });
  }
}

/**
 * A codec (or speech) thread's young generation, in MB (V8: two semi-spaces and as much again for large
 * objects, so 4 MB semi-spaces). The thread allocates little on its own heap, so with a young
 * generation as large as the main thread's it would be scavenged only every few minutes, and
 * each batch's transferred buffers would wait that long to be freed (bench:soak: 27-35 MB of
 * them at 32 MB semi-spaces, 5-7 MB at this size). A --max/min-semi-space-size flag overrides
 * this in every isolate: the start script sets none for that reason.
 */
export const CODEC_THREAD_YOUNG_MB = 12;

/**
 * From dist/ the thread runs codec-thread.js. From src/ (tests, benches under tsx) it runs the
 * .ts file; Node 20 does not apply the parent's `--import tsx` hooks to a worker's entry
 * module, so a two-line bootstrap registers tsx first.
 */
function startCodecThread(index: number): Worker {
  const name = `voxgate-codec-${index}`;
  const resourceLimits = { maxYoungGenerationSizeMb: CODEC_THREAD_YOUNG_MB };
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./codec-thread.js', import.meta.url), { name, resourceLimits });
  const tsx = createRequire(import.meta.url).resolve('tsx/cjs/api');
  const entry = fileURLToPath(new URL('./codec-thread.ts', import.meta.url));
  const boot = `require(${JSON.stringify(tsx)}).register(); require(${JSON.stringify(entry)});`;
  return new Worker(boot, { eval: true, name, execArgv: [], resourceLimits });
}

export function even(n: number): number {
  return n + (n & 1);
}
