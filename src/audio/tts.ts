import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { CODEC_THREAD_YOUNG_MB } from './codec-pool.js';
import { Resampler } from './resampler.js';

/**
 * The worker runs espeak-ng (WASM) off the media thread: its synthesis blocks for tens of
 * milliseconds. It is a few lines of plain JS, evaluated, importing espeak-ng by absolute URL,
 * so it runs the same from src/ (tsx) and dist/.
 */
function workerSource(): string {
  const espeak = pathToFileURL(createRequire(import.meta.url).resolve('espeak-ng')).href;
  return `
const { parentPort } = require('node:worker_threads');
parentPort.on('message', async (msg) => {
  try {
    const { default: ESpeakNg } = await import(${JSON.stringify(espeak)});
    const espeak = await ESpeakNg({ arguments: ['-v', msg.voice, '-s', '165', '-w', 'out.wav', msg.text] });
    parentPort.postMessage({ id: msg.id, wav: espeak.FS.readFile('out.wav') });
  } catch (err) {
    parentPort.postMessage({ id: msg.id, error: String(err) });
  }
});`;
}

/** Reads a PCM16 mono WAV (as espeak-ng writes it). */
export function parseWav(wav: Buffer): { rate: number; samples: Int16Array } {
  if (wav.toString('ascii', 0, 4) !== 'RIFF' || wav.toString('ascii', 8, 12) !== 'WAVE') throw new Error('not a WAV file');
  let off = 12;
  let rate = 0;
  while (off + 8 <= wav.length) {
    const id = wav.toString('ascii', off, off + 4);
    let size = wav.readUInt32LE(off + 4);
    if (id === 'fmt ') rate = wav.readUInt32LE(off + 12);
    if (id === 'data') {
      // espeak-ng streams to the file and may leave the size field at its maximum.
      if (off + 8 + size > wav.length || size === 0xffffffff || size === 0) size = wav.length - off - 8;
      const data = wav.subarray(off + 8, off + 8 + (size & ~1));
      return { rate, samples: new Int16Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)) };
    }
    off += 8 + size + (size & 1);
  }
  throw new Error('WAV without a data chunk');
}

/**
 * Offline speech synthesis: espeak-ng compiled to WASM (npm `espeak-ng`) in a worker thread,
 * resampled to the agent's rate. Phrases are cached.
 */
/**
 * espeak-ng is a fresh WebAssembly instance per utterance (its build exports no callMain to run
 * again), and the worker's collector let those instances pile up: about 4 MB per new sentence,
 * 2.2 GB after 100 demo calls. So a worker is retired after this many sentences, once idle, and
 * all its memory goes with it; the next sentence starts a new one (about 100 ms, once in a while).
 */
const SENTENCES_PER_WORKER = 16;

interface SynthWorker {
  worker: Worker;
  pending: Map<number, { resolve: (wav: Buffer) => void; reject: (err: Error) => void }>;
  /** Sentences given to it. */
  taken: number;
}

export class SpeechSynthesizer {
  #worker: SynthWorker | undefined;
  #next = 1;
  readonly #cache = new Map<string, Int16Array>();

  constructor(private readonly voice = 'en-us') {}

  async speak(text: string, rate: number): Promise<Int16Array> {
    const key = `${rate}:${text}`;
    const hit = this.#cache.get(key);
    if (hit) return hit;
    const { rate: wavRate, samples } = parseWav(await this.#synthesize(text));
    const out = wavRate === rate ? samples : new Resampler(wavRate, rate).process(samples);
    if (this.#cache.size > 200) this.#cache.clear();
    this.#cache.set(key, out);
    return out;
  }

  close(): void {
    void this.#worker?.worker.terminate();
    this.#worker = undefined;
  }

  #synthesize(text: string): Promise<Buffer> {
    if (!this.#worker) this.#worker = this.#startWorker();
    const w = this.#worker;
    // Past its quota the worker takes no more sentences; it goes once its last one is back.
    if (++w.taken >= SENTENCES_PER_WORKER) this.#worker = undefined;
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      w.pending.set(id, { resolve, reject });
      w.worker.postMessage({ id, text: text.replace(/["\n]/g, ' '), voice: this.voice });
    });
  }

  #startWorker(): SynthWorker {
    // Its memory is the WASM instance's; a young generation as large as the main thread's
    // would only hold garbage longer.
    const w: SynthWorker = { worker: new Worker(workerSource(), { eval: true, resourceLimits: { maxYoungGenerationSizeMb: CODEC_THREAD_YOUNG_MB } }), pending: new Map(), taken: 0 };
    w.worker.unref();
    const retireIfDone = () => {
      if (this.#worker !== w && w.pending.size === 0) void w.worker.terminate();
    };
    w.worker.on('message', (m: { id: number; wav?: Uint8Array; error?: string }) => {
      const p = w.pending.get(m.id);
      w.pending.delete(m.id);
      if (m.error || !m.wav) p?.reject(new Error(m.error ?? 'no audio'));
      else p?.resolve(Buffer.from(m.wav));
      retireIfDone();
    });
    w.worker.on('error', (err) => {
      for (const p of w.pending.values()) p.reject(err);
      w.pending.clear();
      if (this.#worker === w) this.#worker = undefined;
    });
    return w;
  }
}
