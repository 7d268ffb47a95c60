import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CallTable } from '../call/call-table.js';
import type { Call } from '../call/call.js';
import type { AudioRepairs } from '../media/endpoint.js';
import type { CodecPool } from '../audio/codec-pool.js';
import { opusNative } from '../audio/opus-native.js';

/** Prometheus metrics; one registry per gateway so several can live in one process. */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly httpResponses: Counter<'method' | 'status'>;
  readonly mos: Histogram;

  constructor(calls: CallTable, codecs?: CodecPool) {
    const registry = this.registry;
    // prom-client's own names already start process_ / nodejs_: the prefix is just ours.
    collectDefaultMetrics({ register: registry, prefix: 'voxgate_' });
    new Gauge({
      name: 'voxgate_sessions_active',
      help: 'Sessions currently live',
      registers: [registry],
      collect() {
        this.set(calls.size);
      },
    });
    const created = new Counter({ name: 'voxgate_sessions_created_total', help: 'Sessions created', labelNames: ['source_kind'], registers: [registry] });
    const endedCalls = new Counter({ name: 'voxgate_sessions_ended_total', help: 'Sessions ended, by reason', labelNames: ['reason'], registers: [registry] });
    const setup = new Histogram({
      name: 'voxgate_session_setup_seconds',
      help: 'From the POST to ICE and DTLS connected',
      buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    // Totals are summed at scrape time: the packet path only bumps each leg's own counters.
    const total = (pick: (m: { packets: number; bytes: number }) => number) =>
      [...calls.values()].map(mediaOf).reduce((n, m) => n + pick(m), 0);
    // Media counted by calls that have ended, so totals never go down.
    const ended = { packets: 0, bytes: 0 };
    new Counter({
      name: 'voxgate_rtp_packets_received_total',
      help: 'RTP packets received from sources',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(ended.packets + total((m) => m.packets));
      },
    });
    new Counter({
      name: 'voxgate_rtp_bytes_received_total',
      help: 'RTP bytes received from sources',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(ended.bytes + total((m) => m.bytes));
      },
    });
    // Repaired frames: live calls' counts at scrape time, plus what ended calls left behind.
    const endedRepairs: AudioRepairs = { fecRecovered: 0, concealed: 0, decodeErrors: 0, shed: 0 };
    const repairs = (pick: keyof AudioRepairs) => [...calls.values()].reduce((n, c) => n + repairsOf(c)[pick], endedRepairs[pick]);
    new Counter({
      name: 'voxgate_audio_frames_repaired_total',
      help: 'Frames decoded for agents that did not arrive intact: rebuilt from in-band FEC, or concealed',
      labelNames: ['method'],
      registers: [registry],
      collect() {
        this.reset();
        this.inc({ method: 'fec' }, repairs('fecRecovered'));
        this.inc({ method: 'concealment' }, repairs('concealed'));
      },
    });
    new Counter({
      name: 'voxgate_audio_decode_errors_total',
      help: 'Packets whose payload the codec rejected (concealed instead)',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(repairs('decodeErrors'));
      },
    });
    new Counter({
      name: 'voxgate_audio_frames_shed_total',
      help: 'Frames dropped because the codec threads were more than 80 ms behind (CPU overload)',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(repairs('shed'));
      },
    });
    // Native Opus state not yet freed, counted by the binding across every thread: it follows the
    // live sessions (and their listeners' encoders) and comes back to zero when they have ended.
    new Gauge({
      name: 'voxgate_opus_native_states',
      help: 'Opus encoders and decoders alive in native memory (every thread)',
      registers: [registry],
      collect() {
        this.set(opusNative.live()[0]);
      },
    });
    new Gauge({
      name: 'voxgate_opus_native_bytes',
      help: 'Bytes of native memory held by live Opus encoders and decoders (every thread)',
      registers: [registry],
      collect() {
        this.set(opusNative.live()[1]);
      },
    });
    if (codecs) {
      new Gauge({
        name: 'voxgate_codec_threads',
        help: 'Threads decoding and encoding sessions\' audio (0: on the media thread)',
        registers: [registry],
        collect() {
          this.set(codecs.threads);
        },
      });
      // Each codec thread is its own V8 isolate with its own collector: process-wide figures hide it.
      new Gauge({
        name: 'voxgate_codec_thread_heap_bytes',
        help: 'V8 heap in use in each codec thread, as it last reported (about once a second)',
        labelNames: ['thread'],
        registers: [registry],
        collect() {
          this.reset();
          for (const m of codecs.memory) this.set({ thread: String(m.thread) }, m.heapUsed);
        },
      });
      new Gauge({
        name: 'voxgate_codec_thread_external_bytes',
        help: 'External memory (ArrayBuffers, native) of each codec thread, as it last reported',
        labelNames: ['thread'],
        registers: [registry],
        collect() {
          this.reset();
          for (const m of codecs.memory) this.set({ thread: String(m.thread) }, m.external);
        },
      });
      new Gauge({
        name: 'voxgate_codec_batches_inflight',
        help: 'Ticks of codec work sent to codec threads and not yet answered (above the thread count: they lag)',
        registers: [registry],
        collect() {
          this.set(codecs.inflightBatches);
        },
      });
    }
    this.httpResponses = new Counter({
      name: 'voxgate_http_responses_total',
      help: 'HTTP responses, by method and status',
      labelNames: ['method', 'status'],
      registers: [registry],
    });
    this.mos = new Histogram({
      name: 'voxgate_session_mos',
      help: 'E-model MOS of live sessions, sampled every 5 s',
      buckets: [1, 2, 2.5, 3, 3.5, 4, 4.2, 4.4, 4.5],
      registers: [registry],
    });
    calls.on('created', (call) => created.inc({ source_kind: call.source.kind }));
    calls.on('connected', (call) => setup.observe(((call.connectedAt ?? call.createdAt) - call.createdAt) / 1000));
    calls.on('ended', (call, reason) => {
      endedCalls.inc({ reason });
      const m = mediaOf(call);
      ended.packets += m.packets;
      ended.bytes += m.bytes;
      const r = repairsOf(call);
      endedRepairs.fecRecovered += r.fecRecovered;
      endedRepairs.concealed += r.concealed;
      endedRepairs.decodeErrors += r.decodeErrors;
      endedRepairs.shed += r.shed;
    });
  }
}

function repairsOf(call: Call): AudioRepairs {
  return call.repairs();
}

/** Everything the call's legs received, those that left it included (a transfer never lowers it). */
function mediaOf(call: Call): { packets: number; bytes: number } {
  const t = call.totals();
  return { packets: t.packetsReceived, bytes: t.bytesReceived };
}
