/**
 * npm run bench:agent [-- 100 500 1000]
 *
 * The gateway in this process (so the calls' own records can be read), N real WebRTC
 * publishers (node-datachannel, sendrecv, 20 ms Opus) in a child process, each connected to a
 * probe agent at 16 kHz that answers every 50th frame with 200 ms of audio and clears it
 * 100 ms later. Reports: RTP arrival -> frame at the agent, play() -> RTP sent, clear() ->
 * silence (p50/p99), frames concealed (loss), the CPU of the gateway process (all its threads) and of the publishers and event-loop delay.
 *
 * Then bridged two-party calls (BENCH_BRIDGED pairs, default 100; 0 skips them): two WebRTC
 * publishers per call, the second one's leg handed to the first one's call as its callee, the
 * agent gone, as after a transfer to a person. `forward`: both Opus, packets forwarded; and
 * `transcode`: Opus caller, PCMU callee, each side decoded once and encoded once for the other.
 * Reports the gateway's CPU-seconds per call-second and the packets each leg received per second.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { Agent } from '../src/agent/agent.js';
import type { AgentLeg } from '../src/call/agent-leg.js';
import { parseConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { Gateway } from '../src/gateway.js';
import { nextMessage } from './stats.js';

const counts = process.argv.slice(2).map(Number).filter((n) => n > 0);
const BRIDGED = Number(process.env.BENCH_BRIDGED ?? 100);
const COUNTS = counts.length ? counts : [100, 500, 1000];
const STEADY_SECONDS = Number(process.env.BENCH_STEADY_SECONDS ?? 10);
/** SendRecv: the probe agent answers (encode + send path); SendOnly: decode capacity alone. */
const DIRECTION = process.env.BENCH_DIRECTION === 'sendonly' ? 'SendOnly' : 'SendRecv';
const TOKEN = 'bench-source-token-0123456789';
const TSX = import.meta.resolve('tsx');
const PUBLISHERS = fileURLToPath(new URL('./publishers.ts', import.meta.url));

function pct(values: number[], p: number): number {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** The child process of WebRTC publishers, and a wait for its next message of a type. */
function publishers(): { pubs: ChildProcess; once<T>(type: string, ms: number): Promise<T> } {
  const pubs = fork(PUBLISHERS, [], { execArgv: ['--import', TSX], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const once = <T>(type: string, ms: number) => nextMessage<T>(pubs, type, ms);
  return { pubs, once };
}

/** Answers every 50th frame with 200 ms of a tone, and clears it after 100 ms (a barge-in). */
const probe: Agent = {
  name: 'probe',
  sampleRate: 16000,
  attach(session) {
    let n = 0;
    const speech = new Int16Array(3200).map((_, i) => Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / 16000)));
    session.on('frame', () => {
      n++;
      if (n % 50 === 0) session.play(speech);
      if (n % 50 === 5) session.clear();
    });
  },
};

async function run(n: number): Promise<Record<string, string | number>> {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-bench-agent-'));
  const udpPort = 53000 + Math.floor(Math.random() * 1000);
  const config = parseConfig({
    http: { host: '127.0.0.1', port: 0 },
    media: { udpPort, ...(process.env.BENCH_CODEC_THREADS ? { codecThreads: Number(process.env.BENCH_CODEC_THREADS) } : {}) },
    sources: [{ name: 'bench', kind: 'browser', token: TOKEN, agent: 'probe' }],
    limits: { maxSessions: n + 100, requestsPerSecond: 1e6, requestBurst: 1e6 },
    idleTimeoutSeconds: 300,
    audit: { path: join(dir, 'audit.jsonl') },
    log: { level: 'error' }, // 'call quality is poor' for each of 1000 sessions drowns the figures
  });
  const gw = await Gateway.start(config, { log: createLogger('error'), agents: { probe: () => probe } });
  const { pubs, once } = publishers();
  try {
    await once('hello', 10_000);
    pubs.send({ cmd: 'start', url: gw.url, token: TOKEN, n, concurrency: 1, direction: DIRECTION });
    const ready = await once<{ publishers: { connected: boolean }[] }>('ready', 300_000);
    await new Promise((r) => setTimeout(r, 2000));
    // Each call's caller endpoint (decoding, the jitter buffer) and its agent leg (pacer, barge-in).
    const bridges = [...gw.calls.values()].flatMap((c) => {
      const ep = c.leg('caller')?.endpoint;
      const agent = c.leg('agent') as AgentLeg | undefined;
      return ep && agent ? [{ ep, agent }] : [];
    });
    for (const { ep, agent } of bridges) {
      ep.ingressLatencies.length = 0;
      agent.playToSendMs.length = 0;
      agent.clearToSilenceMs.length = 0;
    }
    const before = bridges.map(({ ep }) => ({ ...ep.jitter.stats, shed: ep.repairs.shed }));
    const loop = monitorEventLoopDelay({ resolution: 5 });
    loop.enable();
    pubs.send({ cmd: 'cpu' });
    const pubCpu0 = (await once<{ usage: NodeJS.CpuUsage }>('cpu', 10_000)).usage;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const lag: number[] = [];
    const sampler = setInterval(() => lag.push(gw.codecs.inflightBatches), 50);
    await new Promise((r) => setTimeout(r, STEADY_SECONDS * 1000));
    clearInterval(sampler);
    const cpu = process.cpuUsage(cpu0);
    const wall = (performance.now() - t0) / 1000;
    pubs.send({ cmd: 'cpu' });
    const pubCpu = (await once<{ usage: NodeJS.CpuUsage }>('cpu', 10_000)).usage;
    loop.disable();
    const ingress = bridges.flatMap((b) => b.ep.ingressLatencies);
    const play = bridges.flatMap((b) => b.agent.playToSendMs);
    const clear = bridges.flatMap((b) => b.agent.clearToSilenceMs);
    let delivered = 0;
    let concealed = 0;
    let shed = 0;
    bridges.forEach(({ ep }, i) => {
      const s = ep.jitter.stats;
      const s0 = before[i]!;
      delivered += s.pushed - s0.pushed;
      concealed += s.lost - s0.lost + (s.late - s0.late) + (s.overflow - s0.overflow);
      shed += ep.repairs.shed - s0.shed;
    });
    return {
      sessions: n,
      direction: DIRECTION,
      'codec threads': gw.codecs.threads,
      connected: ready.publishers.filter((p) => p.connected).length,
      'ingress→agent p50 ms': pct(ingress, 50).toFixed(0),
      'ingress→agent p99 ms': pct(ingress, 99).toFixed(0),
      'play()→RTP p50 ms': pct(play, 50).toFixed(0),
      'play()→RTP p99 ms': pct(play, 99).toFixed(0),
      'clear→silence p99 ms': pct(clear, 99).toFixed(0),
      'frames decoded': delivered,
      'lost+late+overflow %': ((100 * concealed) / Math.max(1, delivered + concealed)).toFixed(3),
      'shed (codec overload) %': ((100 * shed) / Math.max(1, delivered)).toFixed(3),
      'gateway cores': ((cpu.user + cpu.system) / 1e6 / wall).toFixed(2),
      'CPU-s per call-s': ((cpu.user + cpu.system) / 1e6 / wall / Math.max(1, bridges.length)).toFixed(5),
      'publisher cores': ((pubCpu.user + pubCpu.system - pubCpu0.user - pubCpu0.system) / 1e6 / wall).toFixed(2),
      'codec batches in flight p50/max': `${pct(lag, 50)}/${Math.max(...lag, 0)}`,
      'event-loop delay p99 ms': (loop.percentile(99) / 1e6).toFixed(1),
    };
  } finally {
    pubs.send({ cmd: 'exit' });
    await new Promise((r) => pubs.once('exit', r));
    await gw.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** An agent that does nothing: the bridged calls' agents leave as soon as the callee joins. */
const quiet: Agent = { name: 'quiet', sampleRate: 16000, attach: () => undefined };

async function bridged(pairs: number, mode: 'forward' | 'transcode'): Promise<Record<string, string | number>> {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-bench-bridge-'));
  const udpPort = 53000 + Math.floor(Math.random() * 1000);
  const config = parseConfig({
    http: { host: '127.0.0.1', port: 0 },
    media: { udpPort, ...(process.env.BENCH_CODEC_THREADS ? { codecThreads: Number(process.env.BENCH_CODEC_THREADS) } : {}) },
    sources: [
      { name: 'bench', kind: 'browser', token: TOKEN, agent: 'quiet' },
      { name: 'bench-pcmu', kind: 'phone', token: `${TOKEN}-pcmu`, agent: 'quiet', codecs: ['pcmu'] },
    ],
    limits: { maxSessions: 2 * pairs + 100, requestsPerSecond: 1e6, requestBurst: 1e6 },
    idleTimeoutSeconds: 300,
    audit: { path: join(dir, 'audit.jsonl') },
    log: { level: 'error' },
  });
  const gw = await Gateway.start(config, { log: createLogger('error'), agents: { quiet: () => quiet } });
  const { pubs, once } = publishers();
  try {
    await once('hello', 10_000);
    type Ready = { publishers: { id: string; connected: boolean }[] };
    pubs.send({ cmd: 'start', url: gw.url, token: TOKEN, n: pairs, concurrency: 1, direction: 'SendRecv', codec: 'opus' });
    const callers = (await once<Ready>('ready', 300_000)).publishers.filter((p) => p.connected);
    const second = mode === 'transcode' ? { token: `${TOKEN}-pcmu`, codec: 'pcmu' } : { token: TOKEN, codec: 'opus' };
    pubs.send({ cmd: 'start', url: gw.url, n: pairs, concurrency: 1, direction: 'SendRecv', ...second });
    const callees = (await once<Ready>('ready', 300_000)).publishers.filter((p) => p.connected);
    // The callee's leg leaves its own call open and joins the caller's; the caller's agent leaves.
    let made = 0;
    for (let i = 0; i < Math.min(callers.length, callees.length); i++) {
      const a = gw.calls.get(callers[i]!.id);
      const b = gw.calls.get(callees[i]!.id);
      const leg = b?.takeLeg('caller');
      if (!a || !b || !leg) continue;
      a.addLeg('callee', leg);
      a.removeLeg('agent', 'transferred');
      b.close('transferred');
      if (a.mode !== mode) throw new Error(`call ${a.id} is bridged in mode ${a.mode}, not ${mode}`);
      made++;
    }
    await new Promise((r) => setTimeout(r, 2000));
    type Counts = { received: Record<string, number>; sent: Record<string, number> };
    pubs.send({ cmd: 'received' });
    const c0 = await once<Counts>('received', 10_000);
    pubs.send({ cmd: 'cpu' });
    const pubCpu0 = (await once<{ usage: NodeJS.CpuUsage }>('cpu', 10_000)).usage;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const loop = monitorEventLoopDelay({ resolution: 5 });
    loop.enable();
    await new Promise((r) => setTimeout(r, STEADY_SECONDS * 1000));
    const cpu = process.cpuUsage(cpu0);
    const wall = (performance.now() - t0) / 1000;
    loop.disable();
    pubs.send({ cmd: 'received' });
    const c1 = await once<Counts>('received', 10_000);
    pubs.send({ cmd: 'cpu' });
    const pubCpu = (await once<{ usage: NodeJS.CpuUsage }>('cpu', 10_000)).usage;
    const legs = [...callers, ...callees].map((p) => p.id).filter((id) => c1.received[id] !== undefined);
    const rate = (c: 'received' | 'sent') => legs.map((id) => (c1[c][id]! - (c0[c][id] ?? 0)) / wall).sort((x, y) => x - y);
    const pps = rate('received');
    const sentPps = rate('sent');
    const cores = (cpu.user + cpu.system) / 1e6 / wall;
    return {
      sessions: `${made} bridged calls`,
      direction: mode,
      'codec threads': gw.codecs.threads,
      connected: callers.length + callees.length,
      'gateway cores': cores.toFixed(2),
      'CPU-s per call-s': (cores / Math.max(1, made)).toFixed(5),
      // Forwarded legs get what the other side sent (the publishers' 20 ms timer runs late under load).
      'packets/s each leg got p1/p50 (sent p50)': `${pct(pps, 1).toFixed(1)}/${pct(pps, 50).toFixed(1)} (${pct(sentPps, 50).toFixed(1)})`,
      'publisher cores': ((pubCpu.user + pubCpu.system - pubCpu0.user - pubCpu0.system) / 1e6 / wall).toFixed(2),
      'event-loop delay p99 ms': (loop.percentile(99) / 1e6).toFixed(1),
    };
  } finally {
    pubs.send({ cmd: 'exit' });
    await new Promise((r) => pubs.once('exit', r));
    await gw.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows: Record<string, string | number>[] = [];
for (const n of COUNTS) {
  process.stderr.write(`bench:agent: ${n} sessions...\n`);
  rows.push(await run(n));
  console.log(JSON.stringify(rows[rows.length - 1]));
}
for (const mode of BRIDGED > 0 ? (['forward', 'transcode'] as const) : []) {
  process.stderr.write(`bench:agent: ${BRIDGED} bridged calls (${mode})...\n`);
  rows.push(await bridged(BRIDGED, mode));
  console.log(JSON.stringify(rows[rows.length - 1]));
}
console.table(rows);
process.exit(0);
