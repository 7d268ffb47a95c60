/**
 * npm run bench:soak   (BENCH_SOAK_SECONDS=600, BENCH_SOAK_INTERVAL_SECONDS=60)
 *
 * A mixed soak for a bounded time: one gateway process (src/cli/main.ts, loopback, the echo
 * agent) under everything at once, from two load processes:
 * - bench/soak-media.ts: BENCH_SOAK_PUBLISHERS WHIP publishers (default 20, 20 ms Opus,
 *   sendrecv) with one DELETEd and one new every BENCH_SOAK_CHURN_MS (default 1500);
 *   BENCH_SOAK_LISTENERS WHEP listeners (default 5) of live sessions coming and going; short
 *   SIP-WS calls to the agent, up to 3 at once.
 * - bench/soak-signalling.ts: SIP-WS registrations every few seconds, and a few malformed HTTP
 *   requests and SIP messages a second.
 * Every interval one JSON line: live sessions, the gateway's RSS and fds (/proc), heap and
 * external memory (the main isolate's, and the codec threads' own), event-loop delay p99 (its
 * /metrics, 10 ms resolution), cumulative packet loss (sent by the clients, against
 * voxgate_rtp_packets_received_total), 5xx (the gateway's HTTP counter and the SIP 5xx the
 * clients saw) and client-side failures. Then the load stops, sessions drain, and a summary
 * says whether the targets were met: RSS and fd drift from warm-up (120 s) to the last sample under
 * 5 %, no 5xx, no session left. Exits non-zero only if the bench broke or the gateway died.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { envInt, nextMessage, procCpu, startFlags } from './stats.js';
import type { MediaStart, MediaStats } from './soak-media.js';
import type { SignallingStart, SignallingStats } from './soak-signalling.js';

const SECONDS = envInt('BENCH_SOAK_SECONDS', 600);
const INTERVAL = envInt('BENCH_SOAK_INTERVAL_SECONDS', 60);
const PUBLISHERS = envInt('BENCH_SOAK_PUBLISHERS', 20);
const LISTENERS = envInt('BENCH_SOAK_LISTENERS', 5);
const CHURN_MS = envInt('BENCH_SOAK_CHURN_MS', 1500);
/** Seconds of load before drift is measured from (BENCH_SOAK_WARMUP_SECONDS). */
const WARMUP = envInt('BENCH_SOAK_WARMUP_SECONDS', 120);
/** Extra environment for the gateway process, e.g. BENCH_GATEWAY_ENV='MALLOC_ARENA_MAX=2'. */
const GATEWAY_ENV = Object.fromEntries((process.env.BENCH_GATEWAY_ENV ?? '').split(' ').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
/** Node's flags for the gateway: the start script's (as npm start runs it), then BENCH_GATEWAY_NODE_ARGS. */
const NODE_ARGS = [...startFlags(), ...(process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean)];
const TOKEN = 'soak-source-token-0123456789';
const LISTENER = 'soak-listener-token-0123456789';
const ADMIN = 'soak-admin-token-0123456789';
const DOMAIN = 'soak.test';
const USERS = Array.from({ length: 4 }, (_, i) => ({ user: `u${i}`, password: `soak-password-${i}` }));
const TSX = import.meta.resolve('tsx');
const CLI = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
/** The targets of the issue: drift after warm-up, and none of these. */
const MAX_DRIFT_PCT = 5;

type Prom = Map<string, number>;
interface Sample {
  elapsed_s: number;
  sessions: number;
  listeners: number;
  sip_bindings: number;
  sip_dialogs: number;
  rss_mb: number;
  heap_used_mb: number;
  /** The main isolate's committed heap: what its young and old generations hold in RSS. */
  heap_total_mb: number;
  external_mb: number;
  /** Heap and external memory of the codec threads' own isolates (summed), as they last reported. */
  codec_heap_mb: number;
  codec_external_mb: number;
  fds: number;
  el_delay_p99_ms: number;
  cpu_cores: number;
  loss_pct: number;
  http_5xx: number;
  sip_5xx: number;
  client_failures: number;
  whip_created: number;
  calls_answered: number;
  registrations: number;
  malformed: number;
  malformed_unexpected: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

async function freePort(kind: 'tcp' | 'udp'): Promise<number> {
  if (kind === 'udp') {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    const { port } = s.address();
    s.close();
    return port;
  }
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

/** `name{labels} value` lines into a map keyed by everything before the value. */
function parseProm(text: string): Prom {
  const m: Prom = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

/** The sum of a metric over the series whose labels match `labels`. */
function metric(m: Prom, name: string, labels?: RegExp): number {
  let n = 0;
  for (const [k, v] of m) if ((k === name || k.startsWith(`${name}{`)) && (!labels || labels.test(k))) n += v;
  return n;
}

function child(file: string): ChildProcess {
  return fork(fileURLToPath(new URL(file, import.meta.url)), [], { execArgv: ['--import', TSX], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

/** Rejects when the soak cannot go on: the gateway or a load process died, or a load process broke. */
let abort: (why: Error) => void = () => undefined;
const aborted = new Promise<never>((_, reject) => (abort = reject));
aborted.catch(() => undefined);

/** Set once the load processes are told to exit: their exit is then no failure. */
let leaving = false;

/** Client-side errors are counted in the children; the first few of each kind are printed here. */
const printed = new Map<string, number>();
function watch(c: ChildProcess, name: string): void {
  c.once('exit', (code, signal) => leaving || abort(new Error(`the ${name} load process exited (code ${code}, signal ${signal})`)));
  c.on('message', (m: { type: string; message?: string }) => {
    if (m.type === 'fatal') abort(new Error(`the ${name} load process broke: ${m.message}`));
    if (m.type !== 'error') return;
    const kind = m.message!.split(':')[0]!;
    const n = (printed.get(kind) ?? 0) + 1;
    printed.set(kind, n);
    if (n <= 3) process.stderr.write(`bench:soak ${name}: ${m.message}${n === 3 ? ' (further ones counted, not printed)' : ''}\n`);
  });
}

function ask<T>(c: ChildProcess, cmd: object, type: string, ms: number): Promise<T> {
  return nextMessage<T>(c, type, ms, Object.keys(cmd).length ? cmd : undefined);
}

/** The gateway's stderr (pino JSON at warn): lines counted by level, messages by text. */
const gatewayLog = { warn: 0, error: 0, fatal: 0, other: 0, messages: new Map<string, number>(), tail: [] as string[] };
function readGatewayLog(gw: ChildProcess): void {
  createInterface({ input: gw.stderr! }).on('line', (line) => {
    gatewayLog.tail = [...gatewayLog.tail.slice(-19), line];
    let entry: { level?: number; msg?: string; err?: { message?: string } } | undefined;
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      gatewayLog.other++;
      return;
    }
    const level = entry!.level ?? 0;
    gatewayLog[level >= 60 ? 'fatal' : level >= 50 ? 'error' : level >= 40 ? 'warn' : 'other']++;
    const key = `${level >= 50 ? 'error' : 'warn'}: ${entry!.msg ?? ''}${entry!.err?.message ? ` (${entry!.err.message})` : ''}`.slice(0, 160);
    gatewayLog.messages.set(key, (gatewayLog.messages.get(key) ?? 0) + 1);
  });
}

function gatewayProc(pid: number): { rss: number; fds: number; cpu: number } {
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
  return { rss: rssKb * 1024, fds: readdirSync(`/proc/${pid}/fd`).length, cpu: procCpu(pid) };
}

/** The gateway's fds by what they are (socket, pipe, anon_inode:[eventfd], a file), to say what an fd drift is made of. */
function fdKinds(pid: number): Record<string, number> {
  const kinds: Record<string, number> = {};
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed while we looked
    }
    const kind = /^(socket|pipe):/.exec(target)?.[1] ?? (target.startsWith('anon_inode:') ? target : 'file');
    kinds[kind] = (kinds[kind] ?? 0) + 1;
  }
  return kinds;
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { headers: { Authorization: `Bearer ${ADMIN}` }, signal: AbortSignal.timeout(10_000) });
  if (res.status !== 200) throw new Error(`${url} answered ${res.status}`);
  return (await res.json()) as T;
}

async function scrape(url: string): Promise<Prom> {
  const res = await fetch(`${url}/metrics`, { headers: { Authorization: `Bearer ${ADMIN}` }, signal: AbortSignal.timeout(10_000) });
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return parseProm(await res.text());
}

interface Load {
  media: Omit<MediaStats, 'type'>;
  signalling: Omit<SignallingStats, 'type'>;
}

async function sample(url: string, pid: number, elapsed: number, load: Load | undefined, prevCpu: { cpu: number; at: number }): Promise<{ s: Sample; prom: Prom }> {
  // The clients' counts first, then the gateway's: what it received can only have grown since.
  const proc = gatewayProc(pid);
  const prom = await scrape(url);
  const { sessions } = await getJson<{ sessions: { listeners?: unknown[] }[] }>(`${url}/api/sessions`);
  const sent = load?.media.sent ?? 0;
  const received = metric(prom, 'voxgate_rtp_packets_received_total');
  const now = performance.now();
  const s: Sample = {
    elapsed_s: Math.round(elapsed),
    sessions: sessions.length,
    listeners: sessions.reduce((n, x) => n + (x.listeners?.length ?? 0), 0),
    sip_bindings: metric(prom, 'voxgate_sip_bindings'),
    sip_dialogs: metric(prom, 'voxgate_sip_dialogs'),
    rss_mb: round(proc.rss / 1048576),
    heap_used_mb: round(metric(prom, 'voxgate_nodejs_heap_size_used_bytes') / 1048576),
    heap_total_mb: round(metric(prom, 'voxgate_nodejs_heap_size_total_bytes') / 1048576),
    external_mb: round(metric(prom, 'voxgate_nodejs_external_memory_bytes') / 1048576),
    codec_heap_mb: round(metric(prom, 'voxgate_codec_thread_heap_bytes') / 1048576),
    codec_external_mb: round(metric(prom, 'voxgate_codec_thread_external_bytes') / 1048576),
    fds: proc.fds,
    // prom-client's histogram restarts at every scrape: this is the p99 since the last sample,
    // its 10 ms sampling resolution included (an idle loop reads about 10.3).
    el_delay_p99_ms: round(metric(prom, 'voxgate_nodejs_eventloop_lag_p99_seconds') * 1000, 2),
    cpu_cores: round((proc.cpu - prevCpu.cpu) / Math.max(1e-3, (now - prevCpu.at) / 1000), 2),
    // Within about ±0.1 % while the load runs (packets sent between the two reads); exact in the summary.
    loss_pct: sent ? round((100 * (sent - received)) / sent, 3) : 0,
    http_5xx: metric(prom, 'voxgate_http_responses_total', /status="5\d\d"/),
    sip_5xx: (load?.media.sip5xx ?? 0) + (load?.signalling.sip5xx ?? 0),
    client_failures: load ? sum(load.media.failures) + sum(load.signalling.failures) : 0,
    whip_created: load?.media.whip.created ?? 0,
    calls_answered: load?.media.calls.answered ?? 0,
    registrations: load?.signalling.registrations.ok ?? 0,
    malformed: load ? load.signalling.malformed.http + load.signalling.malformed.sip : 0,
    malformed_unexpected: load ? sum(load.signalling.unexpected) : 0,
  };
  prevCpu.cpu = proc.cpu;
  prevCpu.at = now;
  return { s, prom };
}

const pct = (from: number, to: number) => round((100 * (to - from)) / Math.max(1e-9, from), 2);

async function main(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-bench-soak-'));
  const httpPort = await freePort('tcp');
  const config = join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      http: { host: '127.0.0.1', port: httpPort },
      media: { udpPort: await freePort('udp') },
      sources: [{ name: 'soak', kind: 'browser', token: TOKEN, agent: 'echo', maxSessions: PUBLISHERS * 5 }],
      listeners: [{ name: 'soak-wall', token: LISTENER }],
      admin: { token: ADMIN },
      defaultAgent: 'echo',
      limits: { maxSessions: PUBLISHERS * 10, requestsPerSecond: 1e6, requestBurst: 1e6 },
      sip: { domain: DOMAIN, users: USERS, agents: { echo: 'echo' } },
      audit: { path: join(dir, 'audit.jsonl') },
      log: { level: 'warn' },
    }),
  );
  const gw = spawn(process.execPath, [...NODE_ARGS, '--import', TSX, CLI, 'serve', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...GATEWAY_ENV } });
  readGatewayLog(gw);
  let exited: string | undefined;
  const gwExit = new Promise<string>((resolve) => gw.once('exit', (code, signal) => resolve((exited = `code ${code}, signal ${signal}`))));
  void gwExit.then((how) => abort(new Error(`the gateway exited (${how})`)));
  const url = `http://127.0.0.1:${httpPort}`;
  const media = child('./soak-media.ts');
  const signalling = child('./soak-signalling.ts');
  watch(media, 'media');
  watch(signalling, 'signalling');
  const hellos = Promise.all([ask(media, {}, 'hello', 30_000), ask(signalling, {}, 'hello', 30_000)]);
  hellos.catch(() => undefined);
  /** Waits for `p`, unless the gateway or a load process dies first. */
  const unlessDead = <T>(p: Promise<T>) => Promise.race([p, aborted]);
  const endLoad = async () => {
    leaving = true; // they exit now, as asked
    for (const c of [media, signalling]) if (c.connected) c.send({ cmd: 'exit' });
    await Promise.all([media, signalling].map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));
  };
  const samples: Sample[] = [];
  const fdsAt = new Map<number, Record<string, number>>();
  try {
    for (let i = 0; ; i++) {
      if ((await fetch(`${url}/healthz`).catch(() => undefined))?.ok) break;
      if (i > 300 || exited) throw new Error(`the gateway did not start${exited ? ` (${exited})` : ''}:\n${gatewayLog.tail.join('\n')}`);
      await sleep(50);
    }
    await unlessDead(hellos);
    const pid = gw.pid!;
    const cpu = { cpu: procCpu(pid), at: performance.now() };
    const idle = await sample(url, pid, 0, undefined, cpu);
    samples.push(idle.s);
    console.log(JSON.stringify(idle.s));
    process.stderr.write(`bench:soak: ${SECONDS} s of load, a sample every ${INTERVAL} s: ${PUBLISHERS} WHIP publishers (churn ${CHURN_MS} ms), ${LISTENERS} WHEP listeners, SIP-WS calls and registrations, malformed traffic\n`);

    const t0 = performance.now();
    const cpu0 = procCpu(pid);
    const startMedia: MediaStart = { cmd: 'start', url, token: TOKEN, listenerToken: LISTENER, publishers: PUBLISHERS, churnMs: CHURN_MS, listeners: LISTENERS, sip: { domain: DOMAIN, ...USERS[0]!, agent: 'echo', callEveryMs: 3000, maxCalls: 3 } };
    const startSignalling: SignallingStart = { cmd: 'start', url, token: TOKEN, listenerToken: LISTENER, domain: DOMAIN, users: USERS.slice(1), registerEveryMs: 6000, malformedHttpEveryMs: 400, malformedSipEveryMs: 500 };
    await unlessDead(Promise.all([ask(media, startMedia, 'started', 120_000), ask(signalling, startSignalling, 'started', 30_000)]));

    const loadStats = async (): Promise<Load> => {
      const [m, s] = await Promise.all([ask<MediaStats>(media, { cmd: 'stats' }, 'stats', 10_000), ask<SignallingStats>(signalling, { cmd: 'stats' }, 'stats', 10_000)]);
      return { media: m, signalling: s };
    };
    for (let k = 1; k * INTERVAL <= SECONDS; k++) {
      await unlessDead(sleep(Math.max(0, t0 + k * INTERVAL * 1000 - performance.now())));
      const { s } = await unlessDead(loadStats().then((load) => sample(url, pid, (performance.now() - t0) / 1000, load, cpu)));
      samples.push(s);
      fdsAt.set(s.elapsed_s, fdKinds(pid));
      console.log(JSON.stringify(s));
    }
    const loadSeconds = (performance.now() - t0) / 1000;
    const cpuLoad = procCpu(pid) - cpu0;

    process.stderr.write('bench:soak: stopping the load, waiting for sessions to drain...\n');
    const [m, sig] = await unlessDead(Promise.all([ask<MediaStats>(media, { cmd: 'stop' }, 'stopped', 120_000), ask<SignallingStats>(signalling, { cmd: 'stop' }, 'stopped', 60_000)]));
    // The clients leave too (their keep-alive HTTP connections with them), so what is left after the drain is the gateway's own.
    await endLoad();
    const drainStart = performance.now();
    let left: { id: string; state: string; sessionKind?: string; ageSeconds?: number; listeners?: unknown[] }[] = [];
    let prom: Prom = new Map();
    for (;;) {
      left = (await unlessDead(getJson<{ sessions: typeof left }>(`${url}/api/sessions`))).sessions;
      prom = await unlessDead(scrape(url));
      if ((!left.length && !metric(prom, 'voxgate_sip_dialogs') && !metric(prom, 'voxgate_sip_bindings')) || performance.now() - drainStart > 30_000) break;
      await sleep(250);
    }
    const drainSeconds = (performance.now() - drainStart) / 1000;
    const after = gatewayProc(pid);
    const received = metric(prom, 'voxgate_rtp_packets_received_total');
    const http5xx = metric(prom, 'voxgate_http_responses_total', /status="5\d\d"/);
    const sip5xx = m.sip5xx + sig.sip5xx;
    // Warm-up: ramping up to the load overshoots RSS; drift is measured from the first sample at or past it.
    const warm = samples.find((x) => x.elapsed_s >= WARMUP && x !== samples.at(-1)) ?? samples[1] ?? samples[0]!;
    const last = samples.at(-1)!;
    const settled = samples.filter((x) => x.elapsed_s >= warm.elapsed_s);
    const failures = { ...m.failures };
    for (const [k, n] of Object.entries(sig.failures)) failures[k] = (failures[k] ?? 0) + n;
    const summary = {
      'load seconds': round(loadSeconds),
      'drift from': `${warm.elapsed_s} s to ${last.elapsed_s} s`,
      'RSS drift %': pct(warm.rss_mb, last.rss_mb),
      // The trend through every sample after warm-up (least squares): a leak shows as a steady slope.
      'RSS slope MB/min': round(slope(settled.map((x) => [x.elapsed_s / 60, x.rss_mb])), 2),
      'fd drift %': pct(warm.fds, last.fds),
      'heap drift %': pct(warm.heap_used_mb, last.heap_used_mb),
      'heap committed MB (warm, last)': `${warm.heap_total_mb}, ${last.heap_total_mb}`,
      'external drift %': pct(warm.external_mb, last.external_mb),
      'codec threads external MB (warm, last)': `${warm.codec_external_mb}, ${last.codec_external_mb}`,
      'HTTP 5xx (gateway)': http5xx,
      'SIP 5xx (clients)': sip5xx,
      'client-side 5xx': m.http5xx + sig.http5xx,
      'sessions left after the load': left.length,
      'listeners left': left.reduce((n, x) => n + (x.listeners?.length ?? 0), 0),
      'SIP dialogs left': metric(prom, 'voxgate_sip_dialogs'),
      'SIP bindings left': metric(prom, 'voxgate_sip_bindings'),
      'drain seconds': round(drainSeconds),
      'packets sent': m.sent,
      'packets received by voxgate': received,
      'packet loss %': round((100 * (m.sent - received)) / Math.max(1, m.sent), 3),
      'echo packets back': m.echoed,
      'WHEP packets heard': m.heard,
      'session-seconds': round(m.sessionSeconds),
      'gateway CPU s per session-s': (cpuLoad / Math.max(1, m.sessionSeconds)).toExponential(2),
      'gateway cores (avg)': round(cpuLoad / loadSeconds, 2),
      'WHIP created/deleted': `${m.whip.created}/${m.whip.deleted}`,
      'WHEP created/deleted/ended with session': `${m.whep.created}/${m.whep.deleted}/${m.whep.endedWithSession}`,
      'SIP calls answered/ended': `${m.calls.answered}/${m.calls.ended}`,
      'registrations ok/un-registered/reconnects': `${sig.registrations.ok}/${sig.registrations.unregistered}/${sig.registrations.reconnects}`,
      'malformed sent http/sip': `${sig.malformed.http}/${sig.malformed.sip}`,
      'malformed answered as expected': sig.malformed.asExpected,
      'malformed answered otherwise': sig.unexpected,
      'client-side failures': failures,
      'RSS after drain MB (idle at start)': `${round(after.rss / 1048576)} (${samples[0]!.rss_mb})`,
      'fds after drain (idle at start)': `${after.fds} (${samples[0]!.fds})`,
      'fds by kind': { [`at ${warm.elapsed_s} s`]: fdsAt.get(warm.elapsed_s), [`at ${last.elapsed_s} s`]: fdsAt.get(last.elapsed_s), 'after drain': fdKinds(pid) },
      'gateway log warn/error/fatal': `${gatewayLog.warn}/${gatewayLog.error}/${gatewayLog.fatal}`,
      'gateway log messages': Object.fromEntries([...gatewayLog.messages].sort((a, b) => b[1] - a[1]).slice(0, 10)),
    };
    const targets = {
      [`RSS drift < ${MAX_DRIFT_PCT} %`]: Math.abs(summary['RSS drift %']) < MAX_DRIFT_PCT,
      [`fd drift < ${MAX_DRIFT_PCT} %`]: Math.abs(summary['fd drift %']) < MAX_DRIFT_PCT,
      'zero 5xx': http5xx + sip5xx + summary['client-side 5xx'] === 0,
      'zero leaked sessions': left.length === 0 && summary['listeners left'] === 0 && summary['SIP dialogs left'] === 0,
    };
    if (left.length) process.stderr.write(`bench:soak: sessions left: ${JSON.stringify(left.map((s) => ({ id: s.id, state: s.state, kind: s.sessionKind, age: s.ageSeconds })))}\n`);
    console.log(JSON.stringify({ summary, targets }));
    console.table(samples);
    console.table(Object.entries(targets).map(([target, met]) => ({ target, result: met ? 'met' : 'NOT met' })));
    return 0;
  } catch (err) {
    if (exited) {
      process.stderr.write(`bench:soak: THE GATEWAY EXITED (${exited}) under load. Its last log lines:\n${gatewayLog.tail.join('\n')}\n`);
      if (samples.length) console.table(samples);
    }
    throw err;
  } finally {
    await endLoad();
    if (!exited) {
      gw.kill('SIGTERM');
      const t = setTimeout(() => gw.kill('SIGKILL'), 15_000);
      const how = await gwExit;
      clearTimeout(t);
      if (how !== 'code 0, signal null') process.stderr.write(`bench:soak: the gateway did not drain cleanly on SIGTERM (${how})\n`);
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

process.exit(await main());

/** Least-squares slope of y over x. */
function slope(points: [number, number][]): number {
  if (points.length < 2) return NaN;
  const n = points.length;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  const num = points.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0);
  const den = points.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  return den ? num / den : NaN;
}
