/**
 * voxgate for bench/trunk.ts in its own process (`voxgate serve --config FILE`), so its CPU and
 * memory are read apart from the load generator's, from /proc/<pid>/stat and /status.
 *
 * By default it runs this tree's sources through tsx (`node --import tsx src/cli/main.ts`), so
 * nothing is built; BENCH_GATEWAY=dist runs dist/cli/main.js as `npm start` does (build first).
 * Either way with the start script's Node flags.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ConfigInput } from '../src/core/config.js';
import { startFlags } from './stats.js';
import { freeUdpPort } from '../test/helpers/peers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const START_FLAGS = startFlags();
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
export const TRUNK_NUMBER = '+15550000000';

/** CPU seconds (all threads, user + system) and RSS bytes of a process; zeros once it has gone. */
export function procStat(pid: number): { cpu: number; rss: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
    return { cpu: (Number(f[11]) + Number(f[12])) / CLK_TCK, rss };
  } catch {
    return { cpu: 0, rss: 0 };
  }
}

export interface GatewayProcess {
  pid: number;
  sipPort: number;
  /** Its HTTP base URL (for /metrics). */
  url: string;
  /** What it ran: `src (tsx)` or `dist`. */
  runs: string;
  stop(): Promise<void>;
  /** The end of its stderr, for a failure report. */
  stderr(): string;
}

/** BENCH_ECHO_RATE=16000: the echo at a fixed rate, as a 16 kHz agent would run (PCMU is then resampled both ways). */
export const ECHO_RATE = ((r) => (r === 16000 || r === 24000 || r === 48000 ? r : undefined))(Number(process.env.BENCH_ECHO_RATE));

type SipInput = NonNullable<ConfigInput['sip']>;

/** More for the config: SIP-over-WebSocket users, their outbound routes, trunks beside `bench` (bench/trunk-bridge.ts); STIR/SHAKEN (bench/stir-calls.ts). */
export interface GatewayExtras {
  domain?: SipInput['domain'];
  users?: SipInput['users'];
  outboundRoutes?: SipInput['outboundRoutes'];
  trunks?: SipInput['trunks'];
  stirShaken?: ConfigInput['stirShaken'];
}

export async function startGateway(extras: GatewayExtras = {}): Promise<GatewayProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-bench-trunk-'));
  const sipPort = await freeUdpPort();
  const udpPort = await freeUdpPort();
  const config: ConfigInput = {
    http: { host: '127.0.0.1', port: 0 },
    media: { udpPort },
    limits: { maxSessions: 100_000, requestsPerSecond: 1e6, requestBurst: 1e6 },
    idleTimeoutSeconds: 120,
    sip: {
      listen: [{ transport: 'udp', host: '127.0.0.1', port: sipPort }],
      rtp: { portMin: 20000, portMax: 29999 },
      trunks: [{ name: 'bench', inbound: { numbers: [TRUNK_NUMBER], allowedAddresses: ['127.0.0.1/32'], agent: ECHO_RATE ? { type: 'echo', sampleRate: ECHO_RATE } : 'echo' }, codecs: ['pcmu'] }, ...(extras.trunks ?? [])],
      ...(extras.domain !== undefined ? { domain: extras.domain } : {}),
      ...(extras.users ? { users: extras.users } : {}),
      ...(extras.outboundRoutes ? { outboundRoutes: extras.outboundRoutes } : {}),
    },
    ...(extras.stirShaken ? { stirShaken: extras.stirShaken } : {}),
    audit: { path: join(dir, 'audit.jsonl') },
    log: { level: 'silent' },
  };
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(config));
  const dist = process.env.BENCH_GATEWAY === 'dist';
  const entry = dist ? [join(ROOT, 'dist/cli/main.js')] : ['--import', 'tsx', join(ROOT, 'src/cli/main.ts')];
  const extra = (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...START_FLAGS, ...extra, ...entry, 'serve', '--config', file], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`voxgate did not start within 60 s:\n${err.slice(-2000)}`)), 60_000);
    child.stderr!.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-20_000);
      // The CLI prints this once Gateway.start() resolved, after the SIP listeners are bound.
      if (/voxgate listening on \S+\s/.test(err)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`voxgate exited (${code}) before listening:\n${err.slice(-2000)}`));
    });
  });
  return {
    pid: child.pid!,
    sipPort,
    url: /voxgate listening on (\S+)\s/.exec(err)![1]!,
    runs: dist ? 'dist/cli/main.js' : 'src/cli/main.ts via tsx',
    stderr: () => err.slice(-2000),
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** /metrics as `name{labels}` -> value (Prometheus text format, comments skipped). */
export async function scrapeMetrics(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}
