/**
 * npm run bench:whip [-- 100 500 1000]
 *
 * For each count N: a fresh gateway process, a publisher process with N real WebRTC
 * publishers (node-datachannel) sending 20 ms Opus, then: POST→201 p50/p99, POST→first RTP
 * at voxgate p50/p99, packet loss, gateway CPU seconds per session-second, RSS per session.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const counts = process.argv.slice(2).map(Number).filter((n) => n > 0);
const COUNTS = counts.length ? counts : [100, 500, 1000];
const STEADY_SECONDS = Number(process.env.BENCH_STEADY_SECONDS ?? 10);
const TOKEN = 'bench-source-token-0123456789';
const ADMIN = 'bench-admin-token-0123456789';
const TSX = import.meta.resolve('tsx');
const CLI = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
const PUBLISHERS = fileURLToPath(new URL('./publishers.ts', import.meta.url));
const CLK_TCK = 100;
/** POSTs in flight while ramping up: 1 measures what one client sees. */
/** Extra environment for the gateway process, e.g. BENCH_GATEWAY_ENV='MALLOC_ARENA_MAX=2'. */
const GATEWAY_ENV = Object.fromEntries((process.env.BENCH_GATEWAY_ENV ?? '').split(' ').filter(Boolean).map((kv) => kv.split('=') as [string, string]));
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 1);

function pct(values: number[], p: number): number {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

function procStat(pid: number): { cpu: number; rss: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpu = (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
  return { cpu, rss: rssKb * 1024 };
}

function once<T>(child: ChildProcess, type: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${type}`)), timeoutMs);
    const on = (m: { type: string; message?: string }) => {
      if (m.type === 'error') process.stderr.write(`publisher: ${m.message}\n`);
      if (m.type !== type) return;
      clearTimeout(t);
      child.off('message', on);
      resolve(m as T);
    };
    child.on('message', on);
  });
}

async function waitHttp(url: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('gateway did not start');
}

async function run(n: number): Promise<Record<string, string | number>> {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-bench-'));
  const httpPort = 18000 + Math.floor(Math.random() * 1000);
  const udpPort = 52000 + Math.floor(Math.random() * 1000);
  const config = join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      http: { host: '127.0.0.1', port: httpPort },
      media: { udpPort },
      sources: [{ name: 'bench', kind: 'browser', token: TOKEN }],
      admin: { token: ADMIN },
      limits: { maxSessions: n + 100, requestsPerSecond: 1e6, requestBurst: 1e6 },
      idleTimeoutSeconds: 300,
      audit: { path: join(dir, 'audit.jsonl') },
      log: { level: 'warn' },
    }),
  );
  const gw = spawn(process.execPath, ['--import', TSX, CLI, 'serve', '--config', config], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...GATEWAY_ENV } });
  const url = `http://127.0.0.1:${httpPort}`;
  const pubs = fork(PUBLISHERS, [], { execArgv: ['--import', TSX], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    await waitHttp(url);
    await once(pubs, 'hello', 10_000);
    await new Promise((r) => setTimeout(r, 500));
    const base = procStat(gw.pid!);

    pubs.send({ cmd: 'start', url, token: TOKEN, n, concurrency: CONCURRENCY });
    const ready = await once<{ failures: number; publishers: { id: string; postStartedAt: number; postMs: number; connected: boolean }[] }>(pubs, 'ready', 300_000);
    // Steady state: every publisher sends 50 packets a second.
    await new Promise((r) => setTimeout(r, 2000));
    const s0 = procStat(gw.pid!);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, STEADY_SECONDS * 1000));
    const s1 = procStat(gw.pid!);
    const window = (performance.now() - t0) / 1000;

    pubs.send({ cmd: 'stop-rtp' });
    const { sent } = await once<{ sent: Record<string, number> }>(pubs, 'sent', 10_000);
    await new Promise((r) => setTimeout(r, 1000));
    const res = await fetch(`${url}/api/sessions`, { headers: { Authorization: `Bearer ${ADMIN}` } });
    const sessions = ((await res.json()) as { sessions: { id: string; packets: number; firstPacketAt: string | null }[] }).sessions;
    const byId = new Map(sessions.map((s) => [s.id, s]));

    let sentTotal = 0;
    let gotTotal = 0;
    const firstRtp: number[] = [];
    for (const p of ready.publishers) {
      const s = byId.get(p.id);
      sentTotal += sent[p.id] ?? 0;
      gotTotal += s?.packets ?? 0;
      if (s?.firstPacketAt) firstRtp.push(Date.parse(s.firstPacketAt) - p.postStartedAt);
    }
    const posts = ready.publishers.map((p) => p.postMs);
    const connected = ready.publishers.filter((p) => p.connected).length;
    return {
      publishers: n,
      'POSTs in flight': CONCURRENCY,
      connected,
      'client-side failures': ready.failures,
      'POST→201 p50 ms': pct(posts, 50).toFixed(1),
      'POST→201 p99 ms': pct(posts, 99).toFixed(1),
      'POST→first RTP p50 ms': pct(firstRtp, 50).toFixed(0),
      'POST→first RTP p99 ms': pct(firstRtp, 99).toFixed(0),
      'packets sent': sentTotal,
      'packet loss %': ((100 * (sentTotal - gotTotal)) / Math.max(1, sentTotal)).toFixed(3),
      'gateway CPU s per session-s': ((s1.cpu - s0.cpu) / (connected * window)).toExponential(2),
      'gateway cores used': ((s1.cpu - s0.cpu) / window).toFixed(2),
      'RSS per session KB': ((s1.rss - base.rss) / 1024 / connected).toFixed(0),
    };
  } finally {
    pubs.send({ cmd: 'exit' });
    await new Promise((r) => pubs.once('exit', r));
    gw.kill('SIGTERM');
    await new Promise((r) => gw.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows: Record<string, string | number>[] = [];
for (const n of COUNTS) {
  process.stderr.write(`bench:whip: ${n} publishers...\n`);
  rows.push(await run(n));
  console.log(JSON.stringify(rows[rows.length - 1]));
}
console.table(rows);
