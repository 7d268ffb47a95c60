/**
 * npm run bench:sip-pipeline
 *
 * The CPU a registration costs the SIP layer itself, without sockets: a SipService (real
 * parser, digest, registrar, audit log on /dev/shm, metrics) is fed REGISTER -> 401 ->
 * REGISTER -> 200 by BENCH_SIP_CLIENTS (default 50) in-process clients, one message each per
 * event-loop turn, BENCH_PIPELINE_COUNT registrations (default 60000) per round,
 * BENCH_PIPELINE_ROUNDS rounds (default 5). Prints µs of process CPU per registration, and the
 * same with the clients' own share (building requests, computing the digest) taken out.
 *
 * bench:sip measures the whole gateway against Kamailio over loopback; this one isolates what
 * the SIP code costs, which on a shared machine moves by less than bench:sip's noise. The
 * minimum over rounds is the figure to compare between two trees.
 */
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { Registry } from 'prom-client';
import { AuditLog } from '../src/audit/audit-log.js';
import { SystemClock } from '../src/core/clock.js';
import { parseConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { SipMetrics } from '../src/sip/sip-metrics.js';
import { SipService } from '../src/sip/sip-service.js';
import { MemoryLocationStore } from '../src/cluster/memory/location-store.js';
import type { SipFlow, SipTransport } from '../src/sip/transport/transport.js';

const CLIENTS = Number(process.env.BENCH_SIP_CLIENTS ?? 50);
const COUNT = Number(process.env.BENCH_PIPELINE_COUNT ?? 60_000);
const ROUNDS = Number(process.env.BENCH_PIPELINE_ROUNDS ?? 5);
const DOMAIN = 'bench.test';
const PASSWORD = 'bench-password';

const md5 = (s: string) => createHash('md5').update(s).digest('hex');
const HA2 = md5(`REGISTER:sip:${DOMAIN}`);

interface Client {
  flow: SipFlow;
  request(auth?: string): Buffer;
  /** The next request, from the answer to the last one (counts a 200). */
  next(answer: string): Buffer;
}

/** The transport the clients' flows belong to: reliable, as the WebSocket one is. */
const WS: SipTransport = { protocol: 'WS', reliable: true, sentBy: 'bench.invalid', flows: new Map(), listen: () => undefined, sendTo: () => undefined, close: () => undefined };

function client(i: number, outbox: [Client, string][], counted: { done: number }, seq: { n: number }): Client {
  const user = `u${i}`;
  const ha1 = md5(`${user}:${DOMAIN}:${PASSWORD}`);
  const host = `c${i}.invalid`;
  let cseq = 1;
  const c: Client = {
    flow: {
      id: `flow-${i}`,
      remote: `127.0.0.1:${20000 + i}`,
      transport: WS,
      authenticatedUser: undefined,
      send: (text: string) => (outbox.push([c, text]), true),
      close: () => {},
    },
    request: (auth) =>
      Buffer.from(
        `REGISTER sip:${DOMAIN} SIP/2.0\r\nVia: SIP/2.0/WS ${host};branch=z9hG4bK${(++seq.n).toString(36)}x${i}\r\nMax-Forwards: 70\r\n` +
          `To: <sip:${user}@${DOMAIN}>\r\nFrom: <sip:${user}@${DOMAIN}>;tag=t${seq.n.toString(36)}\r\nCall-ID: call-${i}\r\nCSeq: ${cseq++} REGISTER\r\n` +
          `Contact: <sip:${user}@${host};transport=ws>;expires=600\r\n${auth ? `Authorization: ${auth}\r\n` : ''}Content-Length: 0\r\n\r\n`,
      ),
    next(answer) {
      if (answer.startsWith('SIP/2.0 401 ')) {
        const at = answer.lastIndexOf('nonce="') + 7;
        const nonce = answer.slice(at, answer.indexOf('"', at));
        const response = md5(`${ha1}:${nonce}:00000001:c:auth:${HA2}`);
        return c.request(`Digest username="${user}", realm="${DOMAIN}", nonce="${nonce}", uri="sip:${DOMAIN}", response="${response}", algorithm=MD5, qop=auth, cnonce="c", nc=00000001`);
      }
      if (!answer.startsWith('SIP/2.0 200 ')) throw new Error(`unexpected answer: ${answer.split('\r\n')[0]}`);
      counted.done++;
      return c.request();
    },
  };
  return c;
}

async function round(): Promise<{ total: number; clients: number }> {
  const users = Array.from({ length: Math.max(CLIENTS, 1) }, (_, i) => ({ user: `u${i}`, password: PASSWORD }));
  const config = parseConfig({ sip: { domain: DOMAIN, users } });
  const clock = new SystemClock();
  const auditPath = `/dev/shm/voxgate-bench-pipeline-${process.pid}.jsonl`;
  rmSync(auditPath, { force: true });
  const audit = new AuditLog(auditPath, clock);
  const service = new SipService({
    config: config.sip,
    locations: new MemoryLocationStore(),
    clock,
    log: createLogger('silent'),
    audit,
    metrics: new SipMetrics(new Registry(), { bindings: () => 0, flows: () => 0, dialogs: () => 0 }),
  });
  const outbox: [Client, string][] = [];
  const counted = { done: 0 };
  const seq = { n: 0 };
  const clients = Array.from({ length: CLIENTS }, (_, i) => client(i, outbox, counted, seq));

  // The clients' share: the same request building and hashing, with no service behind it.
  const c0 = process.cpuUsage();
  const probe = clients[0]!;
  for (let i = 0; i < 20_000; i++) {
    probe.request();
    md5(`${i}:00000001:c:auth:${HA2}`);
    probe.request('Digest x');
  }
  const c1 = process.cpuUsage(c0);
  const clientUs = (c1.user + c1.system) / 20_000;

  let pending = clients.map((c) => [c, c.request()] as const);
  const t0 = process.cpuUsage();
  while (counted.done < COUNT) {
    for (const [c, data] of pending) service.receive(c.flow, data);
    // The location store answers in a microtask, the audit log commits on setImmediate; the answers go out after it.
    await new Promise((resolve) => setImmediate(resolve));
    pending = outbox.splice(0).map(([c, text]) => [c, c.next(text)] as const);
  }
  const t1 = process.cpuUsage(t0);
  service.close();
  audit.close();
  rmSync(auditPath, { force: true });
  return { total: (t1.user + t1.system) / counted.done, clients: clientUs };
}

const rounds: { total: number; clients: number }[] = [];
for (let r = 0; r < ROUNDS; r++) rounds.push(await round());
const sip = rounds.map((r) => r.total - r.clients).sort((a, b) => a - b);
console.log(`SIP REGISTER pipeline in-process, ${CLIENTS} clients, ${COUNT} registrations x ${ROUNDS} rounds`);
console.log(`  µs of CPU per registration, all rounds: ${rounds.map((r) => r.total.toFixed(1)).join(' ')}`);
console.log(`  clients' own share, µs:                 ${rounds.map((r) => r.clients.toFixed(1)).join(' ')}`);
console.log(`  SIP layer, µs per registration:          min ${sip[0]!.toFixed(1)}, median ${sip[Math.floor(sip.length / 2)]!.toFixed(1)}`);
