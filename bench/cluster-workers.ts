/**
 * npm run bench:cluster (second part): agents on worker processes over NATS (issue 17, build 4).
 *
 * A node's side in this process (the WorkerPool and one WorkerAgent per call, each with a real
 * AgentSession and pacer-less recording control), two `voxgate worker --agent echo` processes,
 * and a nats-server started here, all on loopback and the same 2 cores:
 *
 * 1. Offer → accept: reserve() for BENCH_OFFERS calls one after another (p50/p99 ms).
 * 2. BENCH_CALLS calls at once (default 200, 100 per worker), each fed a 20 ms frame at 16 kHz
 *    every 20 ms for BENCH_SECONDS, echoed by the worker: frames lost (sent and never back),
 *    the round trip node → worker → node per frame (the latency the agent's audio gains over
 *    an in-process agent, which gets and returns a frame in the same tick), and the CPU per
 *    call-second of nats-server, of this process (the node's share) and of the workers.
 *
 *   BENCH_OFFERS=500  BENCH_CALLS=200  BENCH_SECONDS=20
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { AgentSession, type AgentControl } from '../src/agent/agent.js';
import { WorkerPool } from '../src/agent/worker/pool.js';
import { WorkerAgent, workerSpecSchema } from '../src/agent/worker/worker-agent.js';
import { createLogger } from '../src/core/logger.js';
import { natsServer } from '../src/testing/nats.js';
import { envInt as env, pct, procCpu } from './stats.js';

const OFFERS = env('BENCH_OFFERS', 500);
const CALLS = env('BENCH_CALLS', 200);
const SECONDS = env('BENCH_SECONDS', 20);
const ROOT = fileURLToPath(new URL('..', import.meta.url));


async function startWorker(url: string, maxCalls: number): Promise<ChildProcess> {
  // Compiled by tsx as the tests run it; the worker's own CPU is measured from here on, not its start.
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'worker', '--agent', 'echo', '--nats', url, '--max-calls', String(maxCalls)], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, VOXGATE_LOG_LEVEL: 'warn' } });
  let err = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (/serving agent/.test(err)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`worker exited ${code}: ${err}`)));
  });
  return child;
}

async function main(): Promise<void> {
  const server = await natsServer();
  const serverPid = Number(/\[(\d+)\]/.exec(server.log())?.[1]);
  const nc = await connect({ servers: server.url });
  const log = createLogger('silent');
  const workers = [await startWorker(server.url, OFFERS), await startWorker(server.url, OFFERS)];
  const pool = new WorkerPool({ nc, prefix: 'voxgate', log });
  await pool.start();
  try {
    while (pool.workersOf('echo').length < 2) await new Promise((r) => setTimeout(r, 50));
    const agent = () => new WorkerAgent(workerSpecSchema.parse({ type: 'worker', name: 'echo' }), { nc, prefix: 'voxgate', nodeId: 'bench', pool, log });
    const source = { name: 'bench', kind: 'browser' };

    // 1. Offer → accept, one after another; each place given back at once.
    const offerMs: number[] = [];
    for (let i = 0; i < OFFERS; i++) {
      const a = agent();
      const t0 = performance.now();
      await a.reserve({ id: `offer-${i}`, source });
      offerMs.push(performance.now() - t0);
      a.unreserve();
    }
    console.log(`offer → worker accept, ${OFFERS} one after another: p50/p99 ${pct(offerMs, 50).toFixed(3)}/${pct(offerMs, 99).toFixed(3)} ms`);
    while (pool.workersOf('echo').some((w) => w.calls > 0)) await new Promise((r) => setTimeout(r, 50));

    // 2. CALLS calls at once, a frame each every 20 ms, echoed.
    const sentAt = new Map<number, number>();
    const rtt: number[] = [];
    let sent = 0;
    let back = 0;
    const sessions: AgentSession[] = [];
    for (let i = 0; i < CALLS; i++) {
      const a = agent();
      await a.reserve({ id: `call-${i}`, source });
      const control: AgentControl = {
        play: (s) => {
          back++;
          const key = (s[0]! & 0xffff) | ((s[1]! & 0xffff) << 16);
          const t = sentAt.get(key);
          if (t !== undefined) rtt.push(performance.now() - t);
        },
        clear: () => undefined,
        mark: () => Promise.resolve('played'),
        send: () => undefined,
        hangup: () => undefined,
        transfer: () => Promise.reject(new Error('no')),
        sendDtmf: () => false,
        dial: () => ({ id: 'x', state: 'dialing' }),
        queuedMs: () => 0,
      };
      const s = new AgentSession(`call-${i}`, source, 16000, control);
      await a.attach(s);
      sessions.push(s);
    }
    const perWorker = pool.workersOf('echo').map((w) => w.calls);
    const cpu0 = process.cpuUsage();
    const srv0 = procCpu(serverPid);
    const wk0 = workers.map((w) => procCpu(w.pid!));
    const t0 = performance.now();
    let frameNo = 0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        for (const s of sessions) {
          const n = ++frameNo;
          const samples = new Int16Array(320);
          samples[0] = n & 0xffff;
          samples[1] = (n >>> 16) & 0xffff;
          sentAt.set(n, performance.now());
          s.deliverFrame({ samples, sampleRate: 16000, timestampMs: 0 });
          sent++;
        }
        if (performance.now() - t0 >= SECONDS * 1000) {
          clearInterval(timer);
          resolve();
        }
      }, 20);
    });
    await new Promise((r) => setTimeout(r, 500)); // the last frames' way back
    const callSeconds = CALLS * ((performance.now() - t0 - 500) / 1000);
    const cpu = process.cpuUsage(cpu0);
    const srvCpu = procCpu(serverPid) - srv0;
    const wkCpu = workers.map((w, i) => procCpu(w.pid!) - wk0[i]!);
    const loss = (sent - back) / sent;
    for (const s of sessions) s.end('deleted');
    console.log(`${CALLS} calls at once (${perWorker.join(' + ')} per worker), ${SECONDS} s, a 20 ms frame each way every 20 ms:`);
    console.log(`  frames sent ${sent}, echoed back ${back}: loss ${(loss * 100).toFixed(4)} % (target < 0.1 %)`);
    console.log(`  round trip node → worker → node p50/p99 ${pct(rtt, 50).toFixed(2)}/${pct(rtt, 99).toFixed(2)} ms (an in-process agent: 0, same tick)`);
    console.log(`  CPU-ms per call-second: nats-server ${((srvCpu * 1000) / callSeconds).toFixed(3)}, node side (this process) ${(((cpu.user + cpu.system) / 1000) / callSeconds).toFixed(3)}, workers ${wkCpu.map((c) => ((c * 1000) / callSeconds).toFixed(3)).join(' + ')}`);
    console.log(JSON.stringify({ bench: 'cluster-workers', offers: OFFERS, offerMs: { p50: pct(offerMs, 50), p99: pct(offerMs, 99) }, calls: CALLS, seconds: SECONDS, perWorker, sent, back, lossPercent: loss * 100, rttMs: { p50: pct(rtt, 50), p99: pct(rtt, 99) }, cpuMsPerCallSecond: { natsServer: (srvCpu * 1000) / callSeconds, node: (cpu.user + cpu.system) / 1000 / callSeconds, workers: wkCpu.map((c) => (c * 1000) / callSeconds) } }));
  } finally {
    pool.close();
    for (const w of workers) w.kill('SIGKILL');
    await nc.drain();
    await server.stop();
  }
}

await main();
