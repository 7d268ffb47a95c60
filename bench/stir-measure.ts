/**
 * What bench/stir.ts's parts share: one measured row per (operation, requests in flight), the
 * closed-loop runner that fills it, percentiles, pinning a process to one CPU (taskset) so
 * "on one core" means one core with the load generator on another, and the signer and
 * verifier built from a config as the gateway builds them.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Config } from '../src/core/config.js';
import { loadStirShaken, type StirSigner, type StirVerifier } from '../src/sip/identity/stir.js';

export const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** One operation measured at one concurrency. */
export interface Row {
  /** Who did the work: `voxgate`, `secsipidx`, `voxgate (http)`. */
  impl: string;
  op: string;
  inflight: number;
  ops: number;
  wallS: number;
  /** CPU of the process doing the work over the window (all its threads), µs. */
  cpuUs: number;
  /** Per-operation latency as its caller saw it (queueing included when inflight > 1), µs. */
  p50Us: number;
  p99Us: number;
  failures: number;
  firstFailure?: string;
  /** CPU of the load generator (HTTP and spawn rows only), µs. */
  clientCpuUs?: number;
}

export const opsPerS = (r: Row) => r.ops / r.wallS;
export const cpuUsPerOp = (r: Row) => r.cpuUs / Math.max(1, r.ops);
export const coresUsed = (r: Row) => r.cpuUs / 1e6 / r.wallS;

export function pct(values: ArrayLike<number>, p: number): number {
  if (!values.length) return NaN;
  const s = Float64Array.from(values).sort();
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

export const fmt = (x: number | undefined, digits: number) => (x !== undefined && Number.isFinite(x) ? x.toFixed(digits) : '-');

export function envNumber(name: string, fallback: number): number {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(v) || v < 0) throw new Error(`${name} must be a number >= 0, got ${process.env[name]}`);
  return v;
}

export function envList(name: string, fallback: string): number[] {
  return (process.env[name] ?? fallback)
    .split(',')
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0);
}

/** CPU seconds (user + system, all threads) of a process from /proc/<pid>/stat; 0 once it has gone. */
export function procCpuS(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** CPU seconds of this process's children that have exited and been waited for (cutime + cstime). */
export function reapedChildrenCpuS(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) / CLK_TCK;
}

const HAS_TASKSET = spawnSync('taskset', ['-V']).status === 0;

/**
 * The CPU measured work is pinned to (BENCH_PIN, default 1 on a machine with two or more), or
 * undefined (BENCH_PIN=none, or no taskset). The load generator then goes to another CPU.
 */
export function measuredCpu(cpus: number): number | undefined {
  const v = process.env.BENCH_PIN ?? (cpus >= 2 ? '1' : 'none');
  if (v === 'none' || !HAS_TASKSET) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n >= cpus) throw new Error(`BENCH_PIN must be a CPU number below ${cpus} or none, got ${v}`);
  return n;
}

/** `cmd args` run on one CPU (taskset execs it: the child's pid is the command's). */
export function onCpu(cpu: number | undefined, cmd: string, args: string[]): [string, string[]] {
  return cpu === undefined ? [cmd, args] : ['taskset', ['-c', String(cpu), cmd, ...args]];
}

/**
 * Moves every thread of this process to these CPUs (`0`, `0-1`); threads made later, and children
 * spawned without taskset, inherit it from the main thread.
 */
export function pinSelf(cpus: string): void {
  spawnSync('taskset', ['-a', '-p', '-c', cpus, String(process.pid)], { stdio: 'ignore' });
}

/**
 * A closed loop: `inflight` callers, each awaiting `op` and calling again, until `seconds` have
 * passed. `op(i)` returns undefined when it did its work, else why not (counted as a failure).
 * `cpu()` is read before and after the window (µs).
 */
export async function closedLoop(opts: { seconds: number; inflight: number; cpu: () => number; op: (i: number) => Promise<string | undefined> }): Promise<Omit<Row, 'impl' | 'op' | 'inflight'>> {
  let next = 0;
  let failures = 0;
  let firstFailure: string | undefined;
  const latencies: number[] = [];
  const c0 = opts.cpu();
  const t0 = performance.now();
  const end = t0 + opts.seconds * 1000;
  await Promise.all(
    Array.from({ length: opts.inflight }, async () => {
      while (performance.now() < end) {
        const s = performance.now();
        const why = await opts.op(next++);
        latencies.push((performance.now() - s) * 1000);
        if (why !== undefined) {
          failures++;
          firstFailure ??= why;
        }
      }
    }),
  );
  const wallS = (performance.now() - t0) / 1000;
  const cpuUs = opts.cpu() - c0;
  return { ops: latencies.length, wallS, cpuUs, p50Us: pct(latencies, 50), p99Us: pct(latencies, 99), failures, ...(firstFailure ? { firstFailure } : {}) };
}

/** This process's CPU, µs (process.cpuUsage covers every thread: the libuv pool's WebCrypto jobs too). */
export const selfCpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/** The input of bench/stir-worker.ts (JSON in STIR_BENCH). */
export interface WorkerInput {
  x5u: string;
  signerKey: string;
  signerCert: string;
  stiRoot: string;
  webCa: string;
  seconds: number;
  inflight: number[];
  /** The freshness window both verifiers are given, seconds. */
  maxAgeSeconds: number;
}

export const CALLED = '+15550000001';
/** A caller ID per index: +1555 and seven digits. */
export const callerNumber = (i: number) => `+1555${String(2_000_000 + (i % 8_000_000)).padStart(7, '0')}`;

/** The signer and verifier the gateway would build from this config (observe mode, the lab's root and web CA). */
export function stirFor(input: WorkerInput): { signer: StirSigner; verifier: StirVerifier } {
  const cfg: NonNullable<Config['stirShaken']> = {
    sign: { privateKey: input.signerKey, certificateUrl: input.x5u, attestation: { default: 'A', numbers: {} } },
    verify: {
      trustAnchors: [input.stiRoot],
      fetchCa: [input.webCa],
      mode: 'observe',
      maxAgeSeconds: input.maxAgeSeconds,
      certificateCache: { ttlSeconds: 3600, maxBytes: 65_536, timeoutMs: 5000 },
      allowPrivateAddresses: true,
    },
  };
  const { signer, verifier } = loadStirShaken(cfg);
  return { signer: signer!, verifier: verifier! };
}

export const identityOf = (headers: { name: string; value: string }[]) => headers.find((h) => h.name === 'Identity')!.value;
