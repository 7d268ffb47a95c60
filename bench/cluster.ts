/**
 * npm run bench:cluster
 *
 * The fleet's shared state on NATS JetStream against a single node's memory, in the same run
 * (issue 17's "compare the directory's latency with a single node's in-memory map"), on a
 * nats-server -js started here on loopback (Debian 2.9):
 *
 * 1. The session directory: a session's life (claim, update to connected, release) one after
 *    another, MemorySessionDirectory and NatsSessionDirectory; p50/p99 per operation, lives/s,
 *    and this process's and the server's CPU per life.
 * 2. The hop a request for a session on another node takes (forward.ts, NATS request/reply to
 *    the holder's handler and back), against calling the handler in process: p50/p99.
 *
 * The agent workers' figures (offer → accept, agent audio over NATS, 200 calls across two
 * workers) are bench/cluster-workers.ts, the second part of `npm run bench:cluster`; WHIP
 * sessions through three gateway nodes (create+delete/s, forwarded DELETE) bench/cluster-nodes.ts.
 *
 *   BENCH_LIVES=2000     session lives per directory
 *   BENCH_HOPS=5000      forwarded requests
 */
import { connect } from '@nats-io/transport-node';
import type { SessionDirectory, SessionRecord } from '../src/call/session-directory.js';
import { MemorySessionDirectory } from '../src/cluster/memory/session-directory.js';
import { forward, serveForwarded } from '../src/cluster/nats/forward.js';
import { NatsSessionDirectory } from '../src/cluster/nats/session-directory.js';
import { createLogger } from '../src/core/logger.js';
import { natsServer } from '../src/testing/nats.js';
import { envInt as env, pct, procCpu } from './stats.js';
import type { EndpointRequest } from '../src/wish/resource.js';

const LIVES = env('BENCH_LIVES', 2000);
const HOPS = env('BENCH_HOPS', 5000);

const ms = (x: number) => x.toFixed(3);

async function lives(dir: SessionDirectory, label: string, serverPid: number | undefined) {
  const t: Record<'claim' | 'update' | 'release', number[]> = { claim: [], update: [], release: [] };
  const cpu0 = process.cpuUsage();
  const srv0 = serverPid ? procCpu(serverPid) : 0;
  const start = performance.now();
  for (let i = 0; i < LIVES; i++) {
    const rec: SessionRecord = { id: `${label}-${i}`, kind: 'whip', node: 'node-a', source: 'bench', sourceKind: 'browser', state: 'connecting', createdAt: Date.now() };
    let t0 = performance.now();
    if (!(await dir.claim(rec))) throw new Error(`claim of ${rec.id} lost`);
    t.claim.push(performance.now() - t0);
    t0 = performance.now();
    if (!(await dir.update(rec.id, { state: 'connected', connectedAt: Date.now() }))) throw new Error(`update of ${rec.id} refused`);
    t.update.push(performance.now() - t0);
    t0 = performance.now();
    await dir.release(rec.id, 'deleted', Date.now());
    t.release.push(performance.now() - t0);
  }
  const wallS = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const row = (op: keyof typeof t) => `${op} ${ms(pct(t[op], 50))}/${ms(pct(t[op], 99))}`;
  const serverCpuUs = serverPid ? ((procCpu(serverPid) - srv0) * 1e6) / LIVES : 0;
  console.log(`${label.padEnd(8)} ${(LIVES / wallS).toFixed(0).padStart(7)} lives/s   p50/p99 ms: ${row('claim')}  ${row('update')}  ${row('release')}   CPU-µs/life: this process ${(((cpu.user + cpu.system) / LIVES)).toFixed(0)}${serverPid ? `, nats-server ${serverCpuUs.toFixed(0)}` : ''}`);
  return { livesPerS: LIVES / wallS, claim: [pct(t.claim, 50), pct(t.claim, 99)], update: [pct(t.update, 50), pct(t.update, 99)], release: [pct(t.release, 50), pct(t.release, 99)], cpuUsPerLife: (cpu.user + cpu.system) / LIVES, serverCpuUsPerLife: serverCpuUs };
}

async function main(): Promise<void> {
  const server = await natsServer();
  const pid = Number(/\[(\d+)\]/.exec(server.log())?.[1]);
  const nc = await connect({ servers: server.url });
  const peer = await connect({ servers: server.url });
  const log = createLogger('silent');
  try {
    console.log(`session directory, ${LIVES} lives (claim, update, release) one after another; nats-server 2.9 on loopback, 2 cores shared`);
    const memory = await lives(new MemorySessionDirectory({ now: () => Date.now() }), 'memory', undefined);
    const nats = await lives(await NatsSessionDirectory.open({ nc, bucket: 'bench_sessions', tombstoneMs: 600_000 }), 'nats-kv', pid);

    // The hop: node B's request for node A's session, to A's handler and back.
    const handler = (id: string, _req: EndpointRequest) => ({ status: 204, headers: { ETag: `"${id}"` } });
    serveForwarded(peer, 'bench', 'node-a', { 'whip.patch': handler, 'whip.delete': handler }, log);
    await peer.flush();
    const req: EndpointRequest = { headers: { 'content-type': 'application/trickle-ice-sdpfrag', 'if-match': '"x"' }, body: Buffer.from('a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef0123\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=end-of-candidates\r\n'), remote: '127.0.0.1:5000', baseUrl: 'http://127.0.0.1:8080' };
    const hop: number[] = [];
    const local: number[] = [];
    for (let i = 0; i < HOPS; i++) {
      let t0 = performance.now();
      const r = await forward(nc, 'bench', 'node-a', 'whip.patch', `s${i}`, req);
      hop.push(performance.now() - t0);
      if (r.status !== 204) throw new Error(`forwarded PATCH answered ${r.status}`);
      t0 = performance.now();
      await Promise.resolve(handler(`s${i}`, req));
      local.push(performance.now() - t0);
    }
    const added = [pct(hop, 50) - pct(local, 50), pct(hop, 99) - pct(local, 99)];
    console.log(`\nforwarded request (PATCH to the node holding the session), ${HOPS} one after another: p50/p99 ${ms(pct(hop, 50))}/${ms(pct(hop, 99))} ms; in process ${ms(pct(local, 50))}/${ms(pct(local, 99))} ms; added ${ms(added[0]!)}/${ms(added[1]!)} ms`);
    console.log(`\nnats-kv / memory: lives/s ${(nats.livesPerS / memory.livesPerS).toFixed(3)}x; claim p50 ${ms(nats.claim[0]!)} vs ${ms(memory.claim[0]!)} ms`);
    console.log(JSON.stringify({ bench: 'cluster', lives: LIVES, hops: HOPS, memory, nats, forwardMs: { p50: pct(hop, 50), p99: pct(hop, 99) }, addedMs: { p50: added[0], p99: added[1] } }));
  } finally {
    await nc.drain();
    await peer.drain();
    await server.stop();
  }
}

await main();
