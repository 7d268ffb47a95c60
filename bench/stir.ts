/**
 * npm run bench:stir
 *
 * STIR/SHAKEN's cost (RFC 8224/8225/8588), on an STI lab made here (src/testing/stir.ts: an STI
 * root, an EC P-256 signer certificate, its chain served at x5u over HTTPS on 127.0.0.1):
 *
 * 1. voxgate in process, on one core (bench/stir-worker.ts, pinned with taskset): signs/s and
 *    verifications/s, StirSigner.headers and StirVerifier.verify with the certificate cached, and
 *    the raw signPassport / verifyIdentity with the key in hand (the cache's share is the gap),
 *    each with 1 and 16 in flight; every verification must be TN-Validation-Passed.
 * 2. secsipidx 1.2.0 doing the same in the same run (bench/stir-http.ts): its HTTP server on the
 *    same core with the same key, checking the Identity headers voxgate signed and signing for
 *    the same numbers; voxgate behind the same HTTP API beside it, like for like; and secsipidx
 *    one process per operation, which is mostly process start-up.
 * 3. INVITE -> 180 with verification on and off (bench/stir-calls.ts): one gateway, a trunk that
 *    verifies and one that does not, calls alternating, each with a fresh Identity header; the
 *    gateway and the caller are not pinned (a gateway as deployed).
 *
 * CPU is given per operation beside the throughput (the machine is shared with the load
 * generator): process.cpuUsage() in the worker, /proc/<pid>/stat utime+stime for servers, the
 * reaped-children counters for one-shot processes. Timings are printed, never asserted; the
 * run fails (exit 1) only when the work measured was not the work meant (a verification that
 * did not pass, a certificate fetched more than once, a call not verified).
 *
 *   BENCH_SECONDS=5        each measured window (after a 0.5 s warm-up)
 *   BENCH_INFLIGHT=1,16    operations in flight (closed loop)
 *   BENCH_CALLS=300        calls per trunk in part 3 (after 5 warm-up calls each)
 *   BENCH_CALL_GAP_MS=10   pause after each call's BYE is answered
 *   BENCH_SPAWN_OPS=100    one-shot secsipidx runs per operation
 *   BENCH_PIN=1            the CPU measured work runs on (the generator goes to another); none: unpinned
 *   BENCH_PARTS=crypto,http,spawn,calls   which parts to run
 *   BENCH_GATEWAY=dist     part 3 runs dist/cli/main.js instead of src/ through tsx
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { canonicalTn, verifyIdentity } from '../src/sip/identity/passport.js';
import { stiLab } from '../src/testing/stir.js';
import { measureCalls, type CallsResult, type CallTiming, type TrunkName } from './stir-calls.js';
import { httpLoad, spawnPerOp, startSecsipidx, startVoxgateServer, type ServerProcess } from './stir-http.js';
import { CALLED, callerNumber, coresUsed, cpuUsPerOp, envList, envNumber, fmt, identityOf, measuredCpu, onCpu, opsPerS, pct, pinSelf, stirFor, type Row, type WorkerInput } from './stir-measure.js';

const SECONDS = envNumber('BENCH_SECONDS', 5);
const INFLIGHT = envList('BENCH_INFLIGHT', '1,16');
const CALLS = Math.max(1, Math.floor(envNumber('BENCH_CALLS', 300)));
const GAP_MS = envNumber('BENCH_CALL_GAP_MS', 10);
const SPAWN_OPS = Math.max(1, Math.floor(envNumber('BENCH_SPAWN_OPS', 100)));
const PARTS = new Set((process.env.BENCH_PARTS ?? 'crypto,http,spawn,calls').split(',').map((s) => s.trim()));
const CPUS = availableParallelism();
const PIN = measuredCpu(CPUS);
const GENERATOR_CPU = PIN === undefined ? undefined : PIN === 0 ? 1 : 0;
/** Both verifiers' freshness window: 60 s, more only when a window is longer than that. */
const MAX_AGE_S = Math.min(3600, Math.max(60, Math.ceil(SECONDS) + 30));
const POOL = 256;
const HAS_SECSIPIDX = spawnSync('secsipidx', ['-version']).error === undefined;

const rows: Row[] = [];
const problems: string[] = [];
const notes: string[] = [];

if (GENERATOR_CPU !== undefined) pinSelf(String(GENERATOR_CPU));
const lab = await stiLab();
const dir = mkdtempSync(join(tmpdir(), 'voxgate-bench-stir-'));
const servers: ServerProcess[] = [];
let calls: CallsResult | undefined;
try {
  // secsipidx is given the public key as a PEM file, as its -fpubkey wants.
  const pub = join(dir, 'signer-pub.pem');
  writeFileSync(pub, execFileSync('openssl', ['x509', '-pubkey', '-noout', '-in', lab.signerCert], { encoding: 'utf8' }));
  const input: WorkerInput = { x5u: lab.x5u, signerKey: lab.signerKey, signerCert: lab.signerCert, stiRoot: lab.stiRoot, webCa: lab.webCa, seconds: SECONDS, inflight: INFLIGHT, maxAgeSeconds: MAX_AGE_S };
  const { signer } = stirFor(input);
  const certKey = new X509Certificate(readFileSync(lab.signerCert)).publicKey;

  if (PARTS.has('crypto')) {
    process.stderr.write(`part 1: voxgate in process, ${SECONDS} s per row...\n`);
    const worker = fileURLToPath(new URL('./stir-worker.ts', import.meta.url));
    const [cmd, args] = onCpu(PIN, process.execPath, ['--import', 'tsx', worker, 'loops']);
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, STIR_BENCH: JSON.stringify(input) } });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    const line = out.trim().split('\n').at(-1) ?? '';
    if (line.startsWith('{')) rows.push(...(JSON.parse(line) as { rows: Row[] }).rows);
    if (code !== 0) problems.push(`stir-worker loops exited ${code}: ${err.trim().slice(-1000)}`);
  }

  /** POOL Identity headers signed by voxgate now, each for its own caller ID. */
  const freshHeaders = async () => Promise.all(Array.from({ length: POOL }, async (_, i) => identityOf(await signer.headers(callerNumber(i), CALLED))));
  const csvBodies = () => Promise.resolve(Array.from({ length: POOL }, (_, i) => `${canonicalTn(callerNumber(i))},${canonicalTn(CALLED)},A,,${lab.x5u}`));
  /** A signed header from each signing run, checked here with voxgate's verifier: the same form, or not. */
  const crossCheck = async (impl: string, sample: { identity: string; orig: string; dest: string } | undefined) => {
    if (!sample) return problems.push(`${impl} signed nothing to check`);
    const v = await verifyIdentity({ identity: sample.identity, key: certKey, now: Math.floor(Date.now() / 1000), maxAgeSeconds: MAX_AGE_S, origTn: sample.orig, destTn: sample.dest });
    if (v.verstat !== 'TN-Validation-Passed') problems.push(`${impl}'s signed header does not verify with voxgate: ${v.reason ?? v.verstat}`);
  };

  if (PARTS.has('http')) {
    const impls: [string, () => Promise<ServerProcess>][] = [['voxgate (http)', () => startVoxgateServer(PIN, input)]];
    if (HAS_SECSIPIDX) impls.unshift(['secsipidx (http)', () => startSecsipidx({ cpu: PIN, key: lab.signerKey, pub, x5u: lab.x5u, expireS: MAX_AGE_S })]);
    else notes.push('secsipidx is not installed (apt-get install secsipidx): its rows are missing');
    for (const [impl, start] of impls) {
      process.stderr.write(`part 2: ${impl}...\n`);
      const server = await start();
      servers.push(server);
      for (const inflight of INFLIGHT) {
        const base = { impl, port: server.port, pid: server.pid, inflight, seconds: SECONDS };
        rows.push(await httpLoad({ ...base, op: 'verify: POST /v1/check', path: '/v1/check', bodies: freshHeaders, accept: (st, body) => (st === 200 && body.trim() === 'OK' ? undefined : `${st} ${body.trim()}`) }));
        let sample: { identity: string; orig: string; dest: string } | undefined;
        rows.push(
          await httpLoad({
            ...base,
            op: 'sign: POST /v1/sign-csv',
            path: '/v1/sign-csv',
            bodies: csvBodies,
            accept: (st, body, sent) => {
              if (st !== 200 || !body.includes(';info=<')) return `${st} ${body.trim().slice(0, 100)}`;
              const [orig = '', dest = ''] = sent.split(',');
              sample ??= { identity: body.trim(), orig, dest };
              return undefined;
            },
          }),
        );
        await crossCheck(impl, sample);
      }
      await server.stop();
    }
  }

  // One-shot processes and the gateway of part 3 run on every CPU, as deployed (and not on the generator's alone, by inheritance).
  if (GENERATOR_CPU !== undefined) pinSelf(`0-${CPUS - 1}`);

  if (PARTS.has('spawn') && HAS_SECSIPIDX) {
    process.stderr.write(`part 2: secsipidx, a process per operation, ${SPAWN_OPS} each...\n`);
    const headers = await freshHeaders();
    const gomaxprocs1 = PIN !== undefined;
    rows.push(spawnPerOp({ op: 'verify: secsipidx -c', n: SPAWN_OPS, gomaxprocs1, args: (i) => ['-c', '-fpubkey', pub, '-expire', String(MAX_AGE_S), '-identity', headers[i % POOL]!], accept: (st, out) => (st === 0 && /\bok\b/.test(out) ? undefined : `exit ${st}: ${out.trim()}`) }));
    let sample: { identity: string; orig: string; dest: string } | undefined;
    rows.push(
      spawnPerOp({
        op: 'sign: secsipidx -S',
        n: SPAWN_OPS,
        gomaxprocs1,
        args: (i) => ['-S', '-o', canonicalTn(callerNumber(i % POOL)), '-d', canonicalTn(CALLED), '-a', 'A', '-x5u', lab.x5u, '-fprvkey', lab.signerKey],
        accept: (st, out, i) => {
          if (st !== 0 || !out.includes(';info=<')) return `exit ${st}: ${out.trim()}`;
          sample ??= { identity: out.trim(), orig: callerNumber(i % POOL), dest: CALLED };
          return undefined;
        },
      }),
    );
    await crossCheck('secsipidx -S', sample);
  }

  if (PARTS.has('calls')) {
    process.stderr.write(`part 3: ${CALLS} calls per trunk, one at a time...\n`);
    calls = await measureCalls(lab, signer, CALLS, GAP_MS);
    problems.push(...calls.problems);
  }
} finally {
  for (const s of servers) await s.stop();
  await lab.close();
  rmSync(dir, { recursive: true, force: true });
}

for (const r of rows) if (r.failures) problems.push(`${r.impl} ${r.op} x${r.inflight}: ${r.failures} of ${r.ops} failed (first: ${r.firstFailure})`);

// ---- the report ----
const pad = (s: string, n: number) => s.padEnd(n);
const lpad = (s: string, n: number) => s.padStart(n);
if (rows.length) {
  console.log(`\nSTIR/SHAKEN sign and verify (ES256, P-256), ${SECONDS} s per row; measured work ${PIN === undefined ? 'not pinned' : `pinned to CPU ${PIN}, the generator to CPU ${GENERATOR_CPU}`}; ${CPUS} CPUs (${cpus()[0]?.model ?? '?'}), load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`${pad('impl', 28)}${pad('operation', 44)}${lpad('inflight', 8)}${lpad('ops/s', 10)}${lpad('CPU-µs/op', 11)}${lpad('cores', 7)}${lpad('p50 µs', 9)}${lpad('p99 µs', 9)}${lpad('gen µs/op', 11)}${lpad('fail', 6)}`);
  for (const r of rows) {
    console.log(
      `${pad(r.impl, 28)}${pad(r.op, 44)}${lpad(String(r.inflight), 8)}${lpad(fmt(opsPerS(r), 0), 10)}${lpad(fmt(cpuUsPerOp(r), 1), 11)}${lpad(fmt(coresUsed(r), 2), 7)}${lpad(fmt(r.p50Us, 0), 9)}${lpad(fmt(r.p99Us, 0), 9)}${lpad(r.clientCpuUs === undefined ? '-' : fmt(r.clientCpuUs / Math.max(1, r.ops), 1), 11)}${lpad(String(r.failures), 6)}`,
    );
  }
  console.log('  CPU-µs/op: the worker\'s process.cpuUsage() (every thread: WebCrypto runs on the libuv pool) or the server\'s /proc utime+stime, over its operations; cores: that CPU over the wall time.');
  console.log('  HTTP rows: the server alone (gen µs/op is the load generator\'s CPU); secsipidx reads and parses its key file on every request and checks neither orig/dest nor the chain; voxgate (http) does its cached-certificate verification with orig/dest.');
  console.log('  secsipidx (process per op): wall time per run and its CPU are mostly Go start-up, not crypto.');
}

const best = (impl: string, op: string) => rows.filter((r) => r.impl === impl && r.op.startsWith(op)).sort((a, b) => opsPerS(b) - opsPerS(a))[0];
const compare = (what: string, ours: Row | undefined, theirs: Row | undefined) => {
  if (!ours || !theirs) return;
  console.log(`  ${what}: voxgate ${fmt(opsPerS(ours), 0)}/s at ${fmt(cpuUsPerOp(ours), 1)} CPU-µs (${ours.op}, x${ours.inflight}) vs secsipidx ${fmt(opsPerS(theirs), 0)}/s at ${fmt(cpuUsPerOp(theirs), 1)} CPU-µs (x${theirs.inflight}): throughput ${fmt(opsPerS(ours) / opsPerS(theirs), 2)}x secsipidx's, CPU per op ${fmt(cpuUsPerOp(ours) / cpuUsPerOp(theirs), 2)}x secsipidx's`);
};
if (rows.some((r) => r.impl === 'secsipidx (http)')) {
  console.log('\nAgainst secsipidx (target: throughput >= secsipidx\'s):');
  compare('verify, in process vs its server', best('voxgate', 'verify: StirVerifier'), best('secsipidx (http)', 'verify'));
  compare('verify, both over HTTP        ', best('voxgate (http)', 'verify'), best('secsipidx (http)', 'verify'));
  compare('sign, in process vs its server  ', best('voxgate', 'sign: StirSigner'), best('secsipidx (http)', 'sign'));
  compare('sign, both over HTTP          ', best('voxgate (http)', 'sign'), best('secsipidx (http)', 'sign'));
}

interface Spread {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
}
const spread = (v: number[]): Spread => ({ n: v.length, p50: pct(v, 50), p90: pct(v, 90), p99: pct(v, 99), mean: v.reduce((a, b) => a + b, 0) / Math.max(1, v.length) });
let callsJson: Record<string, unknown> | undefined;
if (calls) {
  const of = (trunk: TrunkName) => calls!.timings.filter((t) => t.trunk === trunk);
  const firstStatuses = new Map<number, number>();
  for (const t of calls.timings) firstStatuses.set(t.firstStatus, (firstStatuses.get(t.firstStatus) ?? 0) + 1);
  // What is measured: INVITE -> 180 when every call's first response after 100 was a 180.
  const all180 = [...firstStatuses.keys()].every((s) => s === 180);
  const setup = (t: CallTiming) => (all180 ? t.ringingMs! : t.firstMs);
  const label = all180 ? 'INVITE→180' : 'INVITE→first non-100';
  const s = { verify: spread(of('verify').map(setup)), plain: spread(of('plain').map(setup)) };
  const ok = { verify: spread(of('verify').map((t) => t.finalMs)), plain: spread(of('plain').map((t) => t.finalMs)) };
  const trying = calls.timings.filter((t) => t.tryingMs !== undefined).length;
  console.log(`\nCall setup, ${CALLS} calls per trunk alternating, one at a time (ms); first response after 100: ${[...firstStatuses].map(([st, k]) => `${st} x${k}`).join(', ')}; 100 Trying seen on ${trying} of ${calls.timings.length}`);
  console.log(`${pad('trunk', 24)}${pad(label, 34)}${'INVITE→200 p50/p90/p99'}`);
  const line = (name: string, a: Spread, b: Spread) => console.log(`${pad(name, 24)}${pad(`${fmt(a.p50, 2)} / ${fmt(a.p90, 2)} / ${fmt(a.p99, 2)}`, 34)}${fmt(b.p50, 2)} / ${fmt(b.p90, 2)} / ${fmt(b.p99, 2)}`);
  line('verify (stirShaken on)', s.verify, ok.verify);
  line('plain (no stirShaken)', s.plain, ok.plain);
  const d = (k: keyof Spread) => s.verify[k] - s.plain[k];
  const dOk = (k: keyof Spread) => ok.verify[k] - ok.plain[k];
  console.log(`${pad('added by verification', 24)}${pad(`${fmt(d('p50'), 2)} / ${fmt(d('p90'), 2)} / ${fmt(d('p99'), 2)}`, 34)}${fmt(dOk('p50'), 2)} / ${fmt(dOk('p90'), 2)} / ${fmt(dOk('p99'), 2)}   (mean ${fmt(d('mean'), 3)} ms; target: < 1 ms at p99)`);
  console.log(`  verified: ${[...calls.verifications].map(([k, v]) => `voxgate_stir_verifications_total${k} +${v}`).join(', ') || 'none'}; certificate fetched ${calls.certificateFetches}x (the first warm-up call); UAC retransmissions ${calls.retransmits}`);
  callsJson = { label, firstStatuses: Object.fromEntries(firstStatuses), verify: s.verify, plain: s.plain, okVerify: ok.verify, okPlain: ok.plain, addedMs: { p50: d('p50'), p90: d('p90'), p99: d('p99'), mean: d('mean') }, verifications: Object.fromEntries(calls.verifications), certificateFetches: calls.certificateFetches };
}

for (const n of notes) console.log(`note: ${n}`);
for (const p of problems) console.log(`PROBLEM: ${p}`);
console.log(JSON.stringify({ bench: 'stir', seconds: SECONDS, pinnedCpu: PIN ?? null, cpus: CPUS, maxAgeSeconds: MAX_AGE_S, rows: rows.map((r) => ({ ...r, opsPerS: opsPerS(r), cpuUsPerOp: cpuUsPerOp(r) })), calls: callsJson ?? null, problems }));
if (problems.length) process.exitCode = 1;
