/**
 * npm run bench:cluster (third part): WHIP sessions through a fleet of three voxgate nodes in
 * this process, on one nats-server -js started here (loopback, the same 2 cores):
 *
 * - create + delete per second: POST /whip to node i % 3 (an offer answered, claimed in the KV
 *   directory), then DELETE — half of them sent to another node (carried to the holder over
 *   NATS), half to the holder itself — one after another;
 * - the DELETE's latency direct and forwarded (p50/p99), and what forwarding adds;
 * - CPU per session life: this process (three nodes) and nats-server.
 *
 *   BENCH_NODE_LIVES=300
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { Gateway } from '../src/gateway.js';
import { natsServer } from '../src/testing/nats.js';
import { envInt, pct, procCpu } from './stats.js';
import { offerSdp } from '../test/helpers/offers.js';
import { freeUdpPort } from '../test/helpers/gateway.js';

const LIVES = envInt('BENCH_NODE_LIVES', 300);
const TOKEN = 'bench-cluster-token-0123456789';


async function main(): Promise<void> {
  const server = await natsServer();
  const serverPid = Number(/\[(\d+)\]/.exec(server.log())?.[1]);
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-bench-nodes-'));
  const nodes: Gateway[] = [];
  try {
    for (const id of ['node-a', 'node-b', 'node-c']) {
      const config = parseConfig({
        http: { host: '127.0.0.1', port: 0 },
        media: { udpPort: await freeUdpPort() },
        sources: [{ name: 'bench', kind: 'browser', token: TOKEN, codecs: ['opus'] }],
        audit: { path: join(dir, `${id}.jsonl`) },
        limits: { requestsPerSecond: 100_000, requestBurst: 100_000, maxSessions: 10_000 },
        log: { level: 'silent' },
        cluster: { nodeId: id, nats: { servers: [server.url] }, publicUrl: `http://${id}.invalid` },
      });
      nodes.push(await Gateway.start(config, { log: createLogger('silent') }));
    }
    while (nodes.some((n) => n.fleet!.nodes.live().length < 3)) await new Promise((r) => setTimeout(r, 100));
    const offer = offerSdp();
    const auth = { Authorization: `Bearer ${TOKEN}` };
    const create: number[] = [];
    const direct: number[] = [];
    const forwarded: number[] = [];
    const cpu0 = process.cpuUsage();
    const srv0 = procCpu(serverPid);
    const t0 = performance.now();
    for (let i = 0; i < LIVES; i++) {
      const holder = nodes[i % 3]!;
      let t = performance.now();
      const res = await fetch(`${holder.url}/whip`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/sdp' }, body: offer });
      await res.text();
      create.push(performance.now() - t);
      if (res.status !== 201) throw new Error(`POST answered ${res.status}`);
      const id = res.headers.get('location')!.split('/').pop()!;
      // The other nodes know of it once its claim is in the directory (the POST's answer does not wait for that).
      const via = i % 2 ? nodes[(i + 1) % 3]! : holder;
      if (via !== holder) while ((await via.directory.lookup(id))?.node !== holder.fleet!.cluster.nodeId) await new Promise((r) => setImmediate(r));
      t = performance.now();
      const del = await fetch(`${via.url}/whip/${id}`, { method: 'DELETE', headers: auth });
      await del.text();
      (via === holder ? direct : forwarded).push(performance.now() - t);
      if (del.status !== 200) throw new Error(`DELETE (${via === holder ? 'direct' : 'forwarded'}) answered ${del.status}`);
    }
    const wallS = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const srvCpu = procCpu(serverPid) - srv0;
    const ms = (x: number) => x.toFixed(2);
    console.log(`\nthree nodes, ${LIVES} WHIP sessions created and deleted one after another (half the DELETEs sent to another node):`);
    console.log(`  ${(LIVES / wallS).toFixed(0)} lives/s; POST p50/p99 ${ms(pct(create, 50))}/${ms(pct(create, 99))} ms`);
    console.log(`  DELETE direct p50/p99 ${ms(pct(direct, 50))}/${ms(pct(direct, 99))} ms, forwarded ${ms(pct(forwarded, 50))}/${ms(pct(forwarded, 99))} ms: added ${ms(pct(forwarded, 50) - pct(direct, 50))}/${ms(pct(forwarded, 99) - pct(direct, 99))} ms`);
    console.log(`  CPU-µs per life: this process (three nodes) ${(((cpu.user + cpu.system) / LIVES)).toFixed(0)}, nats-server ${((srvCpu * 1e6) / LIVES).toFixed(0)}`);
    console.log(JSON.stringify({ bench: 'cluster-nodes', lives: LIVES, livesPerS: LIVES / wallS, postMs: { p50: pct(create, 50), p99: pct(create, 99) }, deleteDirectMs: { p50: pct(direct, 50), p99: pct(direct, 99) }, deleteForwardedMs: { p50: pct(forwarded, 50), p99: pct(forwarded, 99) }, cpuUsPerLife: (cpu.user + cpu.system) / LIVES, natsServerCpuUsPerLife: (srvCpu * 1e6) / LIVES }));
  } finally {
    for (const n of nodes) await n.stop();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
