import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CallTable } from '../call/call-table.js';
import type { Call } from '../call/call.js';

/** Prometheus metrics; one registry per gateway so several can live in one process. */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly httpResponses: Counter<'method' | 'status'>;
  readonly mos: Histogram;

  constructor(calls: CallTable) {
    const registry = this.registry;
    collectDefaultMetrics({ register: registry, prefix: 'voxgate_process_' });
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
    });
  }
}

function mediaOf(call: Call): { packets: number; bytes: number } {
  let packets = 0;
  let bytes = 0;
  for (const leg of call.legs.values()) {
    const m = leg.mediaReceived();
    packets += m.packets;
    bytes += m.bytes;
  }
  return { packets, bytes };
}
