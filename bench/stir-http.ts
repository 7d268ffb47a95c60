/**
 * secsipidx (asipto, 1.2.0) beside voxgate for bench/stir.ts, doing the same work over the same
 * interface. secsipidx signs and checks in a long-running process only as an HTTP server
 * (`-H addr`; main.go's two handlers): POST /v1/check, the Identity header value as the body,
 * 200 "OK" or 500 "FAILED", checked with the public key of `-fpubkey` (read from the file and
 * parsed again on every request: it has no key cache) within `-expire` seconds; POST
 * /v1/sign-csv, the body `orig,dest,attest,origid,x5u`, the Identity header value back, signed
 * with the key of `-fprvkey` (also read and parsed per request) and iat now. It neither checks
 * orig/dest against a call nor verifies the certificate chain (`-cert-verify` 0, the default).
 *
 * The load is a closed loop of keep-alive HTTP/1.1 connections, one request outstanding on each,
 * written and read raw (no node:http client), so the generator's own cost stays small; it reports
 * its CPU beside the server's, read from /proc/<pid>/stat. Per-process operation (`secsipidx -c`,
 * `-S`) is measured too, labelled as what it is: process start-up with a little crypto.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createConnection, createServer, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { closedLoop, onCpu, pct, procCpuS, reapedChildrenCpuS, selfCpuUs, type Row, type WorkerInput } from './stir-measure.js';

const WARMUP_S = 0.5;

interface Pending {
  resolve: (r: { status: number; body: string }) => void;
  reject: (err: Error) => void;
}

/** One keep-alive HTTP/1.1 connection with at most one request outstanding. */
class RawHttpConnection {
  #buf: Buffer = Buffer.alloc(0);
  #pending: Pending | undefined;

  private constructor(private readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.#onData(d));
    socket.on('error', (err) => this.#fail(err));
    socket.on('close', () => this.#fail(new Error('connection closed')));
  }

  static open(port: number): Promise<RawHttpConnection> {
    return new Promise((resolve, reject) => {
      const s = createConnection({ host: '127.0.0.1', port }, () => {
        s.off('error', reject);
        resolve(new RawHttpConnection(s));
      });
      s.once('error', reject);
    });
  }

  post(path: string, body: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      this.#pending = { resolve, reject };
      this.socket.write(`POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  #fail(err: Error): void {
    const p = this.#pending;
    this.#pending = undefined;
    p?.reject(err);
  }

  #onData(d: Buffer): void {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, d]) : d;
    const end = this.#buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = this.#buf.subarray(0, end).toString('latin1');
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (!length) return this.#fail(new Error(`a response without Content-Length: ${head.slice(0, 200)}`));
    const total = end + 4 + Number(length[1]);
    if (this.#buf.length < total) return;
    const body = this.#buf.subarray(end + 4, total).toString('utf8');
    this.#buf = this.#buf.subarray(total);
    const p = this.#pending;
    this.#pending = undefined;
    p?.resolve({ status: Number(head.slice(9, 12)), body });
  }
}

/**
 * `inflight` connections to a server, each POSTing `bodies` in turn for `seconds` (after a
 * warm-up); `accept` says why a response is not the work done (undefined: it is).
 */
export async function httpLoad(opts: {
  impl: string;
  op: string;
  port: number;
  pid: number;
  path: string;
  /** Made again after the warm-up, so the PASSporTs are fresh for the window. */
  bodies: () => Promise<string[]>;
  inflight: number;
  seconds: number;
  accept: (status: number, body: string, sent: string) => string | undefined;
}): Promise<Row> {
  const idle = await Promise.all(Array.from({ length: opts.inflight }, () => RawHttpConnection.open(opts.port)));
  const all = [...idle];
  try {
    const run = (bodies: string[]) => async (i: number) => {
      const conn = idle.pop()!;
      try {
        const sent = bodies[i % bodies.length]!;
        const r = await conn.post(opts.path, sent);
        return opts.accept(r.status, r.body, sent);
      } catch (err) {
        return (err as Error).message;
      } finally {
        idle.push(conn);
      }
    };
    await closedLoop({ seconds: WARMUP_S, inflight: opts.inflight, cpu: () => 0, op: run(await opts.bodies()) });
    const bodies = await opts.bodies();
    const c0 = selfCpuUs();
    const row = await closedLoop({ seconds: opts.seconds, inflight: opts.inflight, cpu: () => procCpuS(opts.pid) * 1e6, op: run(bodies) });
    return { impl: opts.impl, op: opts.op, inflight: opts.inflight, ...row, clientCpuUs: selfCpuUs() - c0 };
  } finally {
    for (const c of all) c.close();
  }
}

function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitForListener(port: number, child: ChildProcess, what: string): Promise<void> {
  const until = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode}) before listening`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = createConnection({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`${what} did not listen on ${port} within 10 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface ServerProcess {
  pid: number;
  port: number;
  stop(): Promise<void>;
}

function stopper(child: ChildProcess): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  };
}

/** secsipidx's HTTP server with the lab's keys (its per-request log lines go to /dev/null). */
export async function startSecsipidx(o: { cpu: number | undefined; key: string; pub: string; x5u: string; expireS: number }): Promise<ServerProcess> {
  const port = await freeTcpPort();
  const [cmd, args] = onCpu(o.cpu, 'secsipidx', ['-H', `127.0.0.1:${port}`, '-fprvkey', o.key, '-fpubkey', o.pub, '-x5u', o.x5u, '-expire', String(o.expireS)]);
  const child = spawn(cmd, args, { stdio: 'ignore' });
  await waitForListener(port, child, 'secsipidx');
  return { pid: child.pid!, port, stop: stopper(child) };
}

/** bench/stir-worker.ts serve: voxgate's signer and verifier behind the same API. */
export async function startVoxgateServer(cpu: number | undefined, input: WorkerInput): Promise<ServerProcess> {
  const worker = fileURLToPath(new URL('./stir-worker.ts', import.meta.url));
  const [cmd, args] = onCpu(cpu, process.execPath, ['--import', 'tsx', worker, 'serve']);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, STIR_BENCH: JSON.stringify(input) } });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = /^\{.*\}$/m.exec(out);
      if (line) resolve((JSON.parse(line[0]) as { port: number }).port);
    });
    child.once('exit', (code) => reject(new Error(`stir-worker serve exited (${code}) before listening`)));
  });
  child.stdout!.resume();
  return { pid: child.pid!, port, stop: stopper(child) };
}

/**
 * `n` runs of secsipidx, one after another, each one operation: wall time per run, and CPU from
 * this process's reaped-children counters (every thread of each run, start-up included).
 */
export function spawnPerOp(o: { op: string; n: number; gomaxprocs1: boolean; args: (i: number) => string[]; accept: (status: number | null, stdout: string, i: number) => string | undefined }): Row {
  const latencies: number[] = [];
  let failures = 0;
  let firstFailure: string | undefined;
  const env = o.gomaxprocs1 ? { ...process.env, GOMAXPROCS: '1' } : process.env;
  const c0 = reapedChildrenCpuS();
  const t0 = performance.now();
  for (let i = 0; i < o.n; i++) {
    const s = performance.now();
    const r = spawnSync('secsipidx', o.args(i), { encoding: 'utf8', env });
    latencies.push((performance.now() - s) * 1000);
    const why = r.error ? r.error.message : o.accept(r.status, r.stdout, i);
    if (why !== undefined) {
      failures++;
      firstFailure ??= why;
    }
  }
  const wallS = (performance.now() - t0) / 1000;
  return { impl: 'secsipidx (process per op)', op: o.op, inflight: 1, ops: o.n, wallS, cpuUs: (reapedChildrenCpuS() - c0) * 1e6, p50Us: pct(latencies, 50), p99Us: pct(latencies, 99), failures, ...(firstFailure ? { firstFailure } : {}) };
}
