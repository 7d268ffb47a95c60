/**
 * npm run bench:whep [-- 100 250 500]
 *
 * One publisher (20 ms Opus) -> N WHEP listeners of its caller track (forwarded, no
 * transcoding). The gateway runs in this process; the publisher and the listeners are real
 * node-datachannel peers in two child processes. Reports forwarded packets per gateway
 * CPU-second, loss at the listeners, and the time one caller packet takes to reach every
 * listener's send call (added forwarding latency, p50/p99).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { Gateway } from '../src/gateway.js';

const counts = process.argv.slice(2).map(Number).filter((n) => n > 0);
const COUNTS = counts.length ? counts : [100, 250, 500];
const STEADY_SECONDS = Number(process.env.BENCH_STEADY_SECONDS ?? 10);
const TOKEN = 'bench-source-token-0123456789';
const LISTENER = 'bench-listener-token-012345';
const TSX = import.meta.resolve('tsx');

function pct(values: number[], p: number): number {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

function child(file: string): ChildProcess {
  return fork(fileURLToPath(new URL(file, import.meta.url)), [], { execArgv: ['--import', TSX], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

function once<T>(c: ChildProcess, type: string, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${type}`)), ms);
    const on = (m: { type: string; message?: string }) => {
      if (m.type === 'error') process.stderr.write(`peer: ${m.message}\n`);
      if (m.type !== type) return;
      clearTimeout(t);
      c.off('message', on);
      resolve(m as T);
    };
    c.on('message', on);
  });
}

async function run(n: number): Promise<Record<string, string | number>> {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-bench-whep-'));
  const config = parseConfig({
    http: { host: '127.0.0.1', port: 0 },
    media: { udpPort: 54000 + Math.floor(Math.random() * 1000) },
    sources: [{ name: 'bench', kind: 'browser', token: TOKEN, agent: 'echo' }],
    listeners: [{ name: 'wall', token: LISTENER }],
    limits: { maxSessions: 10, requestsPerSecond: 1e6, requestBurst: 1e6 },
    idleTimeoutSeconds: 300,
    audit: { path: join(dir, 'audit.jsonl') },
    log: { level: 'warn' },
  });
  const gw = await Gateway.start(config, { log: createLogger('warn') });
  const pub = child('./publishers.ts');
  const lis = child('./listeners.ts');
  try {
    await Promise.all([once(pub, 'hello', 10_000), once(lis, 'hello', 10_000)]);
    pub.send({ cmd: 'start', url: gw.url, token: TOKEN, n: 1, concurrency: 1 });
    const ready = await once<{ publishers: { id: string; connected: boolean }[] }>(pub, 'ready', 60_000);
    const sid = ready.publishers[0]!.id;
    lis.send({ cmd: 'start', url: `${gw.url}/whep/${sid}?track=caller`, token: LISTENER, n });
    const { connected } = await once<{ connected: number }>(lis, 'ready', 300_000);
    await new Promise((r) => setTimeout(r, 2000));
    const hub = gw.calls.get(sid)!.fanout;
    hub.fanoutMs.length = 0;
    lis.send({ cmd: 'count' });
    const c0 = (await once<{ received: number[] }>(lis, 'count', 10_000)).received;
    const sent0 = gw.calls.get(sid)!.listeners().reduce((a, l) => a + l.counters().packetsSent, 0);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, STEADY_SECONDS * 1000));
    const cpu = process.cpuUsage(cpu0);
    const wall = (performance.now() - t0) / 1000;
    const sent1 = gw.calls.get(sid)!.listeners().reduce((a, l) => a + l.counters().packetsSent, 0);
    await new Promise((r) => setTimeout(r, 500)); // let in-flight packets land
    lis.send({ cmd: 'count' });
    const c1 = (await once<{ received: number[] }>(lis, 'count', 10_000)).received;
    const received = c1.reduce((a, x, i) => a + x - (c0[i] ?? 0), 0);
    const forwarded = sent1 - sent0;
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    return {
      listeners: n,
      connected,
      'packets forwarded': forwarded,
      'forwarded per CPU-second': Math.round(forwarded / cpuSeconds),
      'gateway cores': (cpuSeconds / wall).toFixed(2),
      'loss %': Math.max(0, (100 * (forwarded - received)) / Math.max(1, forwarded)).toFixed(3),
      'fan-out to all p50 ms': pct(hub.fanoutMs, 50).toFixed(2),
      'fan-out to all p99 ms': pct(hub.fanoutMs, 99).toFixed(2),
    };
  } finally {
    lis.send({ cmd: 'exit' });
    pub.send({ cmd: 'exit' });
    await Promise.all([new Promise((r) => lis.once('exit', r)), new Promise((r) => pub.once('exit', r))]);
    await gw.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows: Record<string, string | number>[] = [];
for (const n of COUNTS) {
  process.stderr.write(`bench:whep: 1 publisher, ${n} listeners...\n`);
  rows.push(await run(n));
  console.log(JSON.stringify(rows[rows.length - 1]));
}
console.table(rows);
process.exit(0);
