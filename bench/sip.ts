/**
 * npm run bench:sip
 *
 * 1. Registrations per second: BENCH_SIP_CLIENTS WebSocket clients (default 50) each loop
 *    REGISTER -> 401 -> REGISTER (MD5 digest) -> 200 as fast as they can for
 *    BENCH_SIP_SECONDS (default 10), against voxgate and, in the same run with the same
 *    client, against Kamailio (Debian kamailio + kamailio-websocket-modules, a minimal
 *    in-memory registrar written here, loopback only), BENCH_SIP_ROUNDS times each (default
 *    3, alternating). Prints the median rates and their ratio. The gateway runs from dist/,
 *    rebuilt first, as `npm start` runs it. A third server takes the same rounds: the floor
 *    (bench/sip-floor-server.ts), Node and `ws` answering with canned text and no SIP work,
 *    which shows what the event loop and the loopback sockets cost before any SIP is done.
 *    Every row gives the server's CPU per registration.
 * 2. INVITE -> 200 OK latency for calls to an agent (the echo agent, so the agent's own cost
 *    is left out), one call at a time from node-datachannel offers, and the calls held:
 *    BENCH_SIP_CALLS (default 100) calls connected and sending 20 ms Opus at once, with the
 *    gateway's CPU and RSS.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OpusEncoder } from '../src/testing/opus.js';
import ndc from 'node-datachannel';
import WebSocket from 'ws';
import { startFlags } from './stats.js';

const CLIENTS = Number(process.env.BENCH_SIP_CLIENTS ?? 50);
const SECONDS = Number(process.env.BENCH_SIP_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_SIP_ROUNDS ?? 3);
const CALLS = Number(process.env.BENCH_SIP_CALLS ?? 100);
const KAMAILIO_CHILDREN = Number(process.env.BENCH_KAMAILIO_CHILDREN ?? 2);
const DOMAIN = 'bench.test';
const PASSWORD = 'bench-password';
const USERS = 1000;
const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The gateway runs as `npm start` runs it: the compiled dist/ (rebuilt first, so it is this tree). */
const CLI = join(ROOT, 'dist/cli/main.js');
const START_FLAGS = startFlags();
const CLK_TCK = 100;

const md5 = (s: string) => createHash('md5').update(s).digest('hex');

function pct(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

function procStat(pids: number[]): { cpu: number; rss: number } {
  let cpu = 0;
  let rss = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      cpu += (Number(f[11]) + Number(f[12])) / CLK_TCK;
      rss += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
    } catch {
      // a process that has gone
    }
  }
  return { cpu, rss };
}

/** One client: a WebSocket and a REGISTER loop with a fresh challenge every time (as JsSIP does). */
async function registerLoop(url: string, user: string, until: number, latencies: number[]): Promise<number> {
  const ws = new WebSocket(url, ['sip']);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const host = `${randomBytes(4).toString('hex')}.invalid`;
  const contact = `<sip:${randomBytes(4).toString('hex')}@${host};transport=ws>`;
  const callId = randomBytes(8).toString('hex');
  let cseq = 1;
  let pending: ((text: string) => void) | undefined;
  ws.on('message', (d) => pending?.(d.toString()));
  const send = (auth?: string) =>
    new Promise<string>((resolve) => {
      pending = resolve;
      ws.send(
        `REGISTER sip:${DOMAIN} SIP/2.0\r\nVia: SIP/2.0/WS ${host};branch=z9hG4bK${randomBytes(6).toString('hex')}\r\nMax-Forwards: 70\r\n` +
          `To: <sip:${user}@${DOMAIN}>\r\nFrom: <sip:${user}@${DOMAIN}>;tag=${randomBytes(4).toString('hex')}\r\nCall-ID: ${callId}\r\nCSeq: ${cseq++} REGISTER\r\n` +
          `Contact: ${contact};expires=600\r\n${auth ? `Authorization: ${auth}\r\n` : ''}Content-Length: 0\r\n\r\n`,
      );
    });
  let done = 0;
  while (performance.now() < until) {
    const t0 = performance.now();
    const challenge = await send();
    // The last WWW-Authenticate (MD5 on voxgate; Kamailio offers only MD5).
    const all = [...challenge.matchAll(/^WWW-Authenticate:\s*Digest (.*)$/gim)];
    const last = all.at(-1)?.[1];
    if (!/^SIP\/2\.0 401 /.test(challenge) || !last) throw new Error(`expected 401, got ${challenge.split('\r\n')[0]}`);
    const realm = /realm="([^"]+)"/.exec(last)![1]!;
    const nonce = /nonce="([^"]+)"/.exec(last)![1]!;
    const qop = /qop="?auth/.test(last);
    const uri = `sip:${DOMAIN}`;
    const ha1 = md5(`${user}:${realm}:${PASSWORD}`);
    const ha2 = md5(`REGISTER:${uri}`);
    const cnonce = randomBytes(4).toString('hex');
    const response = qop ? md5(`${ha1}:${nonce}:00000001:${cnonce}:auth:${ha2}`) : md5(`${ha1}:${nonce}:${ha2}`);
    const auth = `Digest username="${user}", realm="${realm}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5${qop ? `, qop=auth, cnonce="${cnonce}", nc=00000001` : ''}`;
    const ok = await send(auth);
    if (!/^SIP\/2\.0 200 /.test(ok)) throw new Error(`expected 200, got ${ok.split('\r\n')[0]}`);
    latencies.push(performance.now() - t0);
    done++;
  }
  ws.close();
  return done;
}

async function registrationRate(url: string, pids: number[]): Promise<{ perSecond: number; p50: number; p99: number; cores: number; clientCores: number }> {
  const latencies: number[] = [];
  const s0 = procStat(pids);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const until = t0 + SECONDS * 1000;
  const counts = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => registerLoop(url, `u${i % USERS}`, until, latencies)));
  const secs = (performance.now() - t0) / 1000;
  const s1 = procStat(pids);
  const c1 = process.cpuUsage(c0);
  return {
    perSecond: counts.reduce((a, b) => a + b, 0) / secs,
    p50: pct(latencies, 50),
    p99: pct(latencies, 99),
    cores: (s1.cpu - s0.cpu) / secs,
    clientCores: (c1.user + c1.system) / 1e6 / secs,
  };
}

function kamailioConfig(port: number): string {
  return `#!KAMAILIO
debug=0
log_stderror=yes
memdbg=5
memlog=5
children=1
tcp_children=${KAMAILIO_CHILDREN}
disable_tcp=no
tcp_accept_no_cl=yes
auto_aliases=no
listen=tcp:127.0.0.1:${port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xhttp.so"
loadmodule "websocket.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
modparam("usrloc", "db_mode", 0)
modparam("auth", "nonce_expire", 300)
modparam("websocket", "keepalive_mechanism", 0)

request_route {
  if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
  if (is_method("REGISTER")) {
    if (!pv_www_authenticate("$td", "${PASSWORD}", "0")) { www_challenge("$td", "1"); exit; }
    if (!save("location")) sl_reply_error();
    exit;
  }
  sl_send_reply("404", "Not Found");
}

event_route[xhttp:request] {
  if ($hdr(Upgrade) =~ "websocket" && $hdr(Connection) =~ "Upgrade" && $rm =~ "GET") {
    if (ws_handle_handshake()) exit;
  }
  xhttp_reply("404", "Not Found", "", "");
}
`;
}

async function waitFor(what: string, check: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function wsOpens(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, ['sip']);
    ws.once('open', () => {
      ws.close();
      resolve(true);
    });
    ws.once('error', () => resolve(false));
  });
}

function childPids(pid: number): number[] {
  const out = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).stdout.trim();
  return out ? out.split('\n').map(Number) : [];
}

/** INVITE -> 200 for calls to the echo agent, then all calls held with Opus flowing. */
async function agentCalls(wsUrl: string, gwPid: number): Promise<Record<string, string | number>> {
  const ws = new WebSocket(wsUrl, ['sip']);
  await new Promise<void>((r, j) => {
    ws.once('open', () => r());
    ws.once('error', j);
  });
  const host = `${randomBytes(4).toString('hex')}.invalid`;
  const waiters = new Map<string, (t: string) => void>();
  ws.on('message', (d) => {
    const t = d.toString();
    const branch = /branch=([^;\s]+)/.exec(t)?.[1];
    if (branch && /^SIP\/2\.0 [2-6]/.test(t)) waiters.get(branch)?.(t);
  });
  const request = (text: string) =>
    new Promise<string>((resolve) => {
      waiters.set(/branch=([^;\s]+)/.exec(text)![1]!, resolve);
      ws.send(text);
    });
  let cseq = 1;
  const callId = randomBytes(6).toString('hex');
  const reg = (auth?: string) =>
    `REGISTER sip:${DOMAIN} SIP/2.0\r\nVia: SIP/2.0/WS ${host};branch=z9hG4bK${randomBytes(6).toString('hex')}\r\nMax-Forwards: 70\r\nTo: <sip:u0@${DOMAIN}>\r\nFrom: <sip:u0@${DOMAIN}>;tag=a\r\nCall-ID: ${callId}\r\nCSeq: ${cseq++} REGISTER\r\nContact: <sip:x@${host};transport=ws>\r\n${auth ? `Authorization: ${auth}\r\n` : ''}Content-Length: 0\r\n\r\n`;
  const ch = await request(reg());
  const nonce = /nonce="([^"]+)"/.exec(ch.split(/\r\n/).filter((l) => l.startsWith('WWW-Authenticate')).at(-1)!)![1]!;
  const ha1 = md5(`u0:${DOMAIN}:${PASSWORD}`);
  const resp = md5(`${ha1}:${nonce}:00000001:abc:auth:${md5(`REGISTER:sip:${DOMAIN}`)}`);
  const ok = await request(reg(`Digest username="u0", realm="${DOMAIN}", nonce="${nonce}", uri="sip:${DOMAIN}", response="${resp}", algorithm=MD5, qop=auth, cnonce="abc", nc=00000001`));
  if (!ok.startsWith('SIP/2.0 200')) throw new Error(`register failed: ${ok.split('\r\n')[0]}`);

  const enc = new OpusEncoder(48000, 1);
  const pcm = Buffer.alloc(960 * 2);
  for (let i = 0; i < 960; i++) pcm.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / 48000)), i * 2);
  const frame = enc.encode(pcm);
  const peers: { pc: InstanceType<typeof ndc.PeerConnection>; track: ReturnType<InstanceType<typeof ndc.PeerConnection>['addTrack']>; ssrc: number; connected: boolean }[] = [];
  const inviteMs: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const pc = new ndc.PeerConnection(`c${i}`, { iceServers: [], bindAddress: '127.0.0.1', enableIceUdpMux: false });
    const audio = new ndc.Audio('0', 'SendRecv');
    audio.addOpusCodec(111);
    const ssrc = (Math.random() * 0xffffffff) >>> 0;
    audio.addSSRC(ssrc, 'bench');
    const track = pc.addTrack(audio);
    track.onClosed(() => undefined);
    track.onMessage(() => undefined);
    const entry = { pc, track, ssrc, connected: false };
    pc.onStateChange((s) => (entry.connected = s === 'connected'));
    const gathered = new Promise<void>((r) => pc.onGatheringStateChange((s) => s === 'complete' && r()));
    pc.setLocalDescription();
    await gathered;
    const sdp = pc.localDescription()!.sdp;
    const cid = randomBytes(8).toString('hex');
    const invite = `INVITE sip:echo@${DOMAIN} SIP/2.0\r\nVia: SIP/2.0/WS ${host};branch=z9hG4bK${randomBytes(6).toString('hex')}\r\nMax-Forwards: 70\r\nTo: <sip:echo@${DOMAIN}>\r\nFrom: <sip:u0@${DOMAIN}>;tag=t${i}\r\nCall-ID: ${cid}\r\nCSeq: 1 INVITE\r\nContact: <sip:x@${host};transport=ws>\r\nContent-Type: application/sdp\r\nContent-Length: ${Buffer.byteLength(sdp)}\r\n\r\n${sdp}`;
    const t0 = performance.now();
    const res = await request(invite);
    inviteMs.push(performance.now() - t0);
    if (!res.startsWith('SIP/2.0 200')) throw new Error(`INVITE failed: ${res.split('\r\n')[0]}`);
    const to = /^To: (.*)$/m.exec(res)![1]!;
    ws.send(`ACK sip:echo@${host};transport=ws SIP/2.0\r\nVia: SIP/2.0/WS ${host};branch=z9hG4bK${randomBytes(6).toString('hex')}\r\nMax-Forwards: 70\r\nTo: ${to}\r\nFrom: <sip:u0@${DOMAIN}>;tag=t${i}\r\nCall-ID: ${cid}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n`);
    pc.setRemoteDescription(res.slice(res.indexOf('\r\n\r\n') + 4), 'answer');
    peers.push(entry);
  }
  await waitFor('all calls connected', async () => peers.every((p) => p.connected), 30_000).catch(() => undefined);
  let seq = 0;
  let ts = 0;
  const ticker = setInterval(() => {
    seq = (seq + 1) & 0xffff;
    ts = (ts + 960) >>> 0;
    for (const p of peers) {
      if (!p.connected) continue;
      const h = Buffer.alloc(12);
      h[0] = 0x80;
      h[1] = 111;
      h.writeUInt16BE(seq, 2);
      h.writeUInt32BE(ts, 4);
      h.writeUInt32BE(p.ssrc, 8);
      p.track.sendMessageBinary(Buffer.concat([h, frame]));
    }
  }, 20);
  await new Promise((r) => setTimeout(r, 2000));
  const s0 = procStat([gwPid]);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const s1 = procStat([gwPid]);
  const secs = (performance.now() - t0) / 1000;
  clearInterval(ticker);
  for (const p of peers) p.pc.close();
  ws.close();
  return {
    'agent calls': CALLS,
    connected: peers.filter((p) => p.connected).length,
    'INVITE→200 p50 ms': pct(inviteMs, 50).toFixed(1),
    'INVITE→200 p99 ms': pct(inviteMs, 99).toFixed(1),
    'gateway cores with calls held': ((s1.cpu - s0.cpu) / secs).toFixed(2),
    'gateway RSS MB': (s1.rss / 1048576).toFixed(0),
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-bench-sip-'));
  const httpPort = 19000 + Math.floor(Math.random() * 500);
  const kamPort = 19600 + Math.floor(Math.random() * 300);
  const config = join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      http: { host: '127.0.0.1', port: httpPort },
      media: { udpPort: 53000 + Math.floor(Math.random() * 1000) },
      limits: { maxSessions: CALLS + 100, requestsPerSecond: 1e6, requestBurst: 1e6 },
      idleTimeoutSeconds: 300,
      sip: { domain: DOMAIN, users: Array.from({ length: USERS }, (_, i) => ({ user: `u${i}`, password: PASSWORD })), agents: { echo: 'echo' } },
      audit: { path: join(dir, 'audit.jsonl') },
      log: { level: 'warn' },
    }),
  );
  writeFileSync(join(dir, 'kamailio.cfg'), kamailioConfig(kamPort));
  const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'inherit' });
  if (build.status !== 0) throw new Error('npm run build failed');
  const gw = spawn(process.execPath, [...START_FLAGS, ...(process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean), CLI, 'serve', '--config', config], { stdio: ['ignore', 'ignore', 'inherit'] });
  let kam: ChildProcess | undefined;
  let floor: ChildProcess | undefined;
  const floorPort = kamPort + 300;
  const results: Record<string, Record<string, string | number>> = {};
  try {
    const voxUrl = `ws://127.0.0.1:${httpPort}/sip`;
    await waitFor('voxgate', () => wsOpens(voxUrl));
    type Rate = Awaited<ReturnType<typeof registrationRate>>;
    const row = (runs: Rate[]) => {
      const mid = [...runs].sort((a, b) => a.perSecond - b.perSecond)[Math.floor(runs.length / 2)]!;
      return {
        'registrations/s (median)': mid.perSecond.toFixed(0),
        rounds: runs.map((r) => r.perSecond.toFixed(0)).join(' '),
        ...(process.env.BENCH_SIP_DEBUG ? { cores: runs.map((r) => `${r.cores.toFixed(2)}+${r.clientCores.toFixed(2)}`).join(' ') } : {}),
        'p50 ms': mid.p50.toFixed(2),
        'p99 ms': mid.p99.toFixed(2),
        'server cores': mid.cores.toFixed(2),
        'client cores': mid.clientCores.toFixed(2),
        'server µs per registration': ((mid.cores / mid.perSecond) * 1e6).toFixed(1),
      };
    };
    const bin = spawnSync('sh', ['-c', 'command -v kamailio'], { encoding: 'utf8' }).stdout.trim();
    let kamUrl: string | undefined;
    if (bin) {
      kam = spawn(bin, ['-DD', '-E', '-f', join(dir, 'kamailio.cfg'), '-m', '256', '-M', '32', '-Y', join(dir, 'kamailio.ctl'), '-P', join(dir, 'kamailio.pid')], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      kam.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      kamUrl = `ws://127.0.0.1:${kamPort}/`;
      await waitFor('kamailio', () => wsOpens(kamUrl!)).catch((e: unknown) => {
        throw new Error(`${String(e)}\n${err.slice(-2000)}`);
      });
    } else {
      results.kamailio = { skipped: 'kamailio is not installed (apt-get install kamailio kamailio-websocket-modules)' };
    }
    floor = spawn(process.execPath, [...START_FLAGS, '--import', 'tsx', join(ROOT, 'bench/sip-floor-server.ts'), String(floorPort)], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
    const floorUrl = `ws://127.0.0.1:${floorPort}/`;
    await waitFor('the floor server', () => wsOpens(floorUrl));
    // Rounds alternate between the servers, so a noisy neighbour on this shared machine
    // lands on all of them; the medians are compared.
    const vox: Rate[] = [];
    const kamRuns: Rate[] = [];
    const floorRuns: Rate[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      vox.push(await registrationRate(voxUrl, [gw.pid!]));
      if (kamUrl) kamRuns.push(await registrationRate(kamUrl, [kam!.pid!, ...childPids(kam!.pid!)]));
      floorRuns.push(await registrationRate(floorUrl, [floor.pid!]));
    }
    floor.kill('SIGTERM');
    results.voxgate = row(vox);
    if (kamRuns.length) {
      results[`kamailio (tcp_children=${KAMAILIO_CHILDREN})`] = row(kamRuns);
      results.ratio = {
        'voxgate / kamailio (medians)': (Number(row(vox)['registrations/s (median)']) / Number(row(kamRuns)['registrations/s (median)'])).toFixed(2),
        'per round': vox.map((v, n) => (v.perSecond / kamRuns[n]!.perSecond).toFixed(2)).join(' '),
      };
    }
    results['floor: node+ws, no SIP'] = row(floorRuns);
    kam?.kill('SIGTERM');
    results['agent calls'] = await agentCalls(voxUrl, gw.pid!);
  } finally {
    kam?.kill('SIGKILL');
    floor?.kill('SIGKILL');
    gw.kill('SIGTERM');
    await new Promise((r) => gw.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`SIP over WebSocket, ${CLIENTS} clients, ${SECONDS} s each`);
  for (const [name, row] of Object.entries(results)) console.log(name.padEnd(28), JSON.stringify(row));
  process.exit(0);
}

await main();
