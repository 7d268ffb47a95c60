/**
 * The signalling half of bench/soak.ts, in its own process, no media:
 * - SIP over WebSocket registrations: a few users, each re-registering every few seconds, and
 *   now and then un-registering and coming back on a new socket.
 * - A trickle of malformed HTTP (bad SDP, wrong or missing content type, an oversized body,
 *   bad tokens, unknown sessions, broken framing on a raw socket) and malformed SIP over a
 *   WebSocket that never registers (garbage, bad URIs, missing headers, unknown methods),
 *   each answer checked against the status the probe expects.
 * Driven over IPC like bench/soak-media.ts: start, stats, stop, exit.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { SipWsClient } from '../test/helpers/sip-ws-client.js';
import { offerSdp, VIDEO_ONLY_OFFER } from '../test/helpers/offers.js';

export interface SignallingStart {
  cmd: 'start';
  url: string;
  token: string;
  listenerToken: string;
  domain: string;
  users: { user: string; password: string }[];
  registerEveryMs: number;
  malformedHttpEveryMs: number;
  malformedSipEveryMs: number;
}

export interface SignallingStats {
  type: 'stats' | 'stopped';
  registrations: { ok: number; unregistered: number; reconnects: number };
  malformed: { http: number; sip: number; asExpected: number; unanswered: number };
  /** Probes answered other than expected, by `probe status` (a 2xx for garbage, a 500, ...). */
  unexpected: Record<string, number>;
  failures: Record<string, number>;
  http5xx: number;
  sip5xx: number;
}

type Msg = SignallingStart | { cmd: 'stats' | 'stop' | 'exit' };

/** A probe: what to send, and the statuses a correct gateway answers it with (none: no answer is possible). */
interface HttpProbe {
  name: string;
  send: () => Promise<number>;
  expect: number[];
}
interface SipProbe {
  name: string;
  text: (c: SipWsClient) => string | Buffer;
  expect: number[] | 'none';
}

let cfg: SignallingStart;
let running = false;
const timers: NodeJS.Timeout[] = [];
const inFlight = new Set<Promise<void>>();
const registrars: { user: string; password: string; client: SipWsClient; count: number }[] = [];
let abuser: SipWsClient | undefined;
let abuserSince = 0;
const stats: Omit<SignallingStats, 'type'> = {
  registrations: { ok: 0, unregistered: 0, reconnects: 0 },
  malformed: { http: 0, sip: 0, asExpected: 0, unanswered: 0 },
  unexpected: {},
  failures: {},
  http5xx: 0,
  sip5xx: 0,
};

function fail(kind: string, detail: string): void {
  stats.failures[kind] = (stats.failures[kind] ?? 0) + 1;
  process.send!({ type: 'error', message: `${kind}: ${detail.slice(0, 200)}` });
}

function spawnJob(job: () => Promise<void>): void {
  const p = job().catch((err: unknown) => fail('unexpected', (err as Error).stack ?? String(err)));
  inFlight.add(p);
  void p.finally(() => inFlight.delete(p));
}

function judge(kind: 'http' | 'sip', probe: string, status: number, expect: number[]): void {
  if (status >= 500 && !expect.includes(status)) stats[kind === 'http' ? 'http5xx' : 'sip5xx']++;
  if (expect.includes(status)) stats.malformed.asExpected++;
  else {
    const key = `${kind} ${probe} ${status}`;
    stats.unexpected[key] = (stats.unexpected[key] ?? 0) + 1;
    if (stats.unexpected[key] === 1) process.send!({ type: 'error', message: `unexpected answer: ${key} (expected ${expect.join(' or ')})` });
  }
}

// --- SIP registrations -------------------------------------------------------------------

async function register(r: (typeof registrars)[number]): Promise<void> {
  r.count++;
  // Every tenth time: un-REGISTER, leave, and come back on a new socket (a new flow).
  if (r.count % 10 === 0) {
    const gone = await r.client.register(r.user, r.password, cfg.domain, { expires: 0 }).catch((err: unknown) => err as Error);
    if (gone instanceof Error || gone.status !== 200) return sipFailure('sip-unregister', gone);
    stats.registrations.unregistered++;
    await r.client.close();
    r.client = await SipWsClient.connect(cfg.url);
    stats.registrations.reconnects++;
  }
  const res = await r.client.register(r.user, r.password, cfg.domain, { expires: 60 }).catch((err: unknown) => err as Error);
  if (res instanceof Error || res.status !== 200) return sipFailure('sip-register', res);
  stats.registrations.ok++;
  r.client.received.length = 0;
}

function sipFailure(what: string, res: Error | { status: number; reason: string }): void {
  if (res instanceof Error) return fail(what, res.message);
  if (res.status >= 500) stats.sip5xx++;
  fail(`${what} ${res.status}`, res.reason);
}

// --- malformed SIP -------------------------------------------------------------------------

/** A request from `c`, as test/sip-ws.test.ts builds them, with one header left out or a line changed. */
function sipRequest(c: SipWsClient, method: string, opts: { uri?: string; omit?: string; extra?: string[]; body?: string; length?: number; maxForwards?: number; toTag?: string } = {}): string {
  const body = opts.body ?? '';
  const lines = [
    `${method} ${opts.uri ?? `sip:agent@${cfg.domain}`} SIP/2.0`,
    `Via: SIP/2.0/WS ${c.host};branch=z9hG4bK${randomBytes(6).toString('hex')}`,
    `Max-Forwards: ${opts.maxForwards ?? 70}`,
    `To: <sip:agent@${cfg.domain}>${opts.toTag ? `;tag=${opts.toTag}` : ''}`,
    `From: <sip:mallory@${cfg.domain}>;tag=${randomBytes(4).toString('hex')}`,
    `Call-ID: soak-bad-${randomBytes(8).toString('hex')}`,
    `CSeq: ${c.cseq++} ${method}`,
    ...(opts.extra ?? []),
    `Content-Length: ${opts.length ?? Buffer.byteLength(body)}`,
    '',
    body,
  ];
  return lines.filter((l) => !opts.omit || !l.startsWith(`${opts.omit}:`)).join('\r\n');
}

const SIP_PROBES: SipProbe[] = [
  { name: 'garbage', text: () => 'this is not SIP at all\r\n\r\n', expect: 'none' },
  { name: 'binary', text: () => Buffer.concat([Buffer.from([0xff, 0x00, 0x13, 0x37]), randomBytes(60)]), expect: 'none' },
  { name: 'no-call-id', text: (c) => sipRequest(c, 'OPTIONS', { omit: 'Call-ID' }), expect: [400] },
  // §8.2.6.2: a response copies the request's CSeq; without one there is none to build, so it is dropped.
  { name: 'no-cseq', text: (c) => sipRequest(c, 'OPTIONS', { omit: 'CSeq' }), expect: 'none' },
  { name: 'no-from', text: (c) => sipRequest(c, 'OPTIONS', { omit: 'From' }), expect: [400] },
  { name: 'no-to', text: (c) => sipRequest(c, 'INVITE', { omit: 'To' }), expect: [400] },
  { name: 'no-via', text: (c) => sipRequest(c, 'OPTIONS', { omit: 'Via' }), expect: 'none' },
  { name: 'bad-uri', text: (c) => sipRequest(c, 'OPTIONS', { uri: 'not-a-uri' }), expect: [400, 416] },
  { name: 'bad-uri-invite', text: (c) => sipRequest(c, 'INVITE', { uri: 'sip:@' }), expect: [400, 404, 416] },
  { name: 'sips-over-ws', text: (c) => sipRequest(c, 'OPTIONS', { uri: `sips:agent@${cfg.domain}` }), expect: [416] },
  // RFC 3261 §8.2.1: an unknown method is answered 501, the one 5xx a correct gateway sends here.
  { name: 'unknown-method', text: (c) => sipRequest(c, 'FROBNICATE'), expect: [501] },
  { name: 'max-forwards-0', text: (c) => sipRequest(c, 'INVITE', { maxForwards: 0 }), expect: [483] },
  { name: 'bye-no-dialog', text: (c) => sipRequest(c, 'BYE', { toTag: 'nosuchtag' }), expect: [481] },
  { name: 'invite-unauthenticated', text: (c) => sipRequest(c, 'INVITE'), expect: [407] },
  { name: 'short-body', text: (c) => sipRequest(c, 'MESSAGE', { extra: ['Content-Type: text/plain'], body: 'hello', length: 500 }), expect: [400] },
  { name: 'oversized', text: (c) => sipRequest(c, 'MESSAGE', { extra: ['Content-Type: text/plain'], body: 'x'.repeat(100_000) }), expect: [413] },
  { name: 'wrong-password', text: (c) => c.registerText({ user: cfg.users[0]!.user, domain: cfg.domain, callId: `soak-bad-${randomBytes(6).toString('hex')}`, authorization: `Digest username="${cfg.users[0]!.user}", realm="${cfg.domain}", nonce="bogus", uri="sip:${cfg.domain}", response="00000000000000000000000000000000", algorithm=MD5` }), expect: [401, 403] },
];

async function sipProbe(probe: SipProbe): Promise<void> {
  // A fresh socket every 30 s: an unregistered one is closed by the gateway after setupTimeoutSeconds.
  if (!abuser || abuser.closed || Date.now() - abuserSince > 30_000) {
    await abuser?.close();
    abuser = await SipWsClient.connect(cfg.url);
    abuserSince = Date.now();
  }
  const c = abuser;
  const text = probe.text(c);
  stats.malformed.sip++;
  if (probe.expect === 'none') {
    c.send(text);
    return;
  }
  const branch = /branch=([^;\s]+)/.exec(text.toString())![1]!;
  const reply = c.next((t) => t.startsWith('SIP/2.0 ') && !/^SIP\/2\.0 1\d\d /.test(t) && t.includes(branch), 3000);
  c.send(text);
  const answer = await reply.catch(() => undefined);
  c.received.length = 0;
  if (!answer) {
    stats.malformed.unanswered++;
    const key = `sip ${probe.name} no answer`;
    stats.unexpected[key] = (stats.unexpected[key] ?? 0) + 1;
    return;
  }
  judge('sip', probe.name, Number(answer.slice(8, 11)), probe.expect);
}

// --- malformed HTTP ------------------------------------------------------------------------

async function post(path: string, headers: Record<string, string>, body: string): Promise<number> {
  const res = await fetch(`${cfg.url}${path}`, { method: 'POST', headers, body });
  await res.arrayBuffer();
  if (res.status === 201 && res.headers.get('location')) {
    // Accepted anyway: undone at once, so the probe leaves no session behind.
    await fetch(res.headers.get('location')!, { method: 'DELETE', headers: { Authorization: headers.Authorization ?? '' } });
  }
  return res.status;
}

/** Raw bytes on a socket; the status of the answer, or 0 when the server closed without one. */
function raw(bytes: string): Promise<number> {
  const { hostname, port } = new URL(cfg.url);
  return new Promise((resolve) => {
    const s = connect(Number(port), hostname, () => s.end(bytes));
    let got = '';
    s.on('data', (d) => (got += d.toString()));
    s.on('error', () => undefined);
    s.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0)));
    s.setTimeout(5000, () => s.destroy());
  });
}

const SDP = 'application/sdp';
const source = () => ({ Authorization: `Bearer ${cfg.token}` });
const HTTP_PROBES: HttpProbe[] = [
  { name: 'garbage-sdp', send: () => post('/whip', { ...source(), 'Content-Type': SDP }, 'this is not SDP\r\n'), expect: [400] },
  { name: 'truncated-sdp', send: () => post('/whip', { ...source(), 'Content-Type': SDP }, offerSdp().slice(0, 120)), expect: [400, 422] },
  { name: 'video-only', send: () => post('/whip', { ...source(), 'Content-Type': SDP }, VIDEO_ONLY_OFFER), expect: [422] },
  { name: 'wrong-type', send: () => post('/whip', { ...source(), 'Content-Type': 'text/plain' }, offerSdp()), expect: [415] },
  { name: 'no-type', send: () => fetch(`${cfg.url}/whip`, { method: 'POST', headers: source(), body: new Uint8Array(Buffer.from(offerSdp())) }).then(async (r) => (await r.arrayBuffer(), r.status)), expect: [415] },
  { name: 'oversized', send: () => post('/whip', { ...source(), 'Content-Type': SDP }, offerSdp() + `a=x:${'x'.repeat(1 << 20)}\r\n`).catch(() => 413), expect: [413] },
  { name: 'bad-token', send: () => post('/whip', { Authorization: 'Bearer not-a-valid-token-at-all', 'Content-Type': SDP }, offerSdp()), expect: [401] },
  { name: 'no-token', send: () => post('/whip', { 'Content-Type': SDP }, offerSdp()), expect: [401] },
  { name: 'patch-unknown', send: () => fetch(`${cfg.url}/whip/nosuchsession`, { method: 'PATCH', headers: { ...source(), 'Content-Type': 'application/trickle-ice-sdpfrag' }, body: 'a=end-of-candidates\r\n' }).then(async (r) => (await r.arrayBuffer(), r.status)), expect: [404] },
  { name: 'delete-unknown', send: () => fetch(`${cfg.url}/whip/nosuchsession`, { method: 'DELETE', headers: source() }).then(async (r) => (await r.arrayBuffer(), r.status)), expect: [404] },
  { name: 'whep-unknown', send: () => post('/whep/nosuchsession?track=caller', { Authorization: `Bearer ${cfg.listenerToken}`, 'Content-Type': SDP }, offerSdp()), expect: [404] },
  { name: 'whep-bad-token', send: () => post('/whep/nosuchsession?track=caller', { Authorization: 'Bearer nope', 'Content-Type': SDP }, offerSdp()), expect: [401, 404] },
  { name: 'admin-bad-token', send: () => fetch(`${cfg.url}/api/sessions`, { headers: { Authorization: 'Bearer nope-nope-nope-nope' } }).then(async (r) => (await r.arrayBuffer(), r.status)), expect: [401] },
  { name: 'broken-request-line', send: () => raw('GARBAGE\r\n\r\n'), expect: [400] },
  { name: 'left-mid-body', send: () => raw(`POST /whip HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${cfg.token}\r\nContent-Type: ${SDP}\r\nContent-Length: 4000\r\n\r\nv=0\r\n`), expect: [0, 400, 408] },
];

async function httpProbe(probe: HttpProbe): Promise<void> {
  stats.malformed.http++;
  const status = await probe.send().catch((err: unknown) => {
    fail(`http ${probe.name}`, (err as Error).message);
    return undefined;
  });
  if (status !== undefined) judge('http', probe.name, status, probe.expect);
}

// --- the process -----------------------------------------------------------------------------

async function start(msg: SignallingStart): Promise<void> {
  cfg = msg;
  running = true;
  for (const u of cfg.users) registrars.push({ ...u, client: await SipWsClient.connect(cfg.url), count: 0 });
  let r = 0;
  let h = 0;
  let s = 0;
  // Each job waits for its own previous one, so a slow answer slows the trickle instead of piling it up.
  const serial = (ms: number, job: () => Promise<void>) => {
    let busy = false;
    timers.push(
      setInterval(() => {
        if (!running || busy) return;
        busy = true;
        spawnJob(() => job().finally(() => (busy = false)));
      }, ms),
    );
  };
  serial(cfg.registerEveryMs / cfg.users.length, () => register(registrars[r++ % registrars.length]!));
  serial(cfg.malformedHttpEveryMs, () => httpProbe(HTTP_PROBES[h++ % HTTP_PROBES.length]!));
  serial(cfg.malformedSipEveryMs, () => sipProbe(SIP_PROBES[s++ % SIP_PROBES.length]!));
}

async function stop(): Promise<void> {
  running = false;
  for (const t of timers) clearInterval(t);
  while (inFlight.size) await Promise.all([...inFlight]);
  for (const r of registrars) {
    const gone = await r.client.register(r.user, r.password, cfg.domain, { expires: 0 }).catch((err: unknown) => err as Error);
    if (gone instanceof Error || gone.status !== 200) sipFailure('sip-unregister', gone);
    else stats.registrations.unregistered++;
    await r.client.close();
  }
  await abuser?.close();
}

process.on('message', (msg: Msg) => {
  if (msg.cmd === 'start') {
    start(msg).then(
      () => process.send!({ type: 'started' }),
      (err: unknown) => process.send!({ type: 'fatal', message: (err as Error).stack ?? String(err) }),
    );
  } else if (msg.cmd === 'stats') {
    process.send!({ type: 'stats', ...stats });
  } else if (msg.cmd === 'stop') {
    stop().then(
      () => process.send!({ type: 'stopped', ...stats }),
      (err: unknown) => process.send!({ type: 'fatal', message: (err as Error).stack ?? String(err) }),
    );
  } else if (msg.cmd === 'exit') {
    setTimeout(() => process.exit(0), 100);
  }
});
process.send!({ type: 'hello' });
