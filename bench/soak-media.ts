/**
 * The media half of bench/soak.ts, in its own process: every peer that carries audio.
 * - WHIP publishers (node-datachannel, sendrecv, 20 ms Opus of a 440 Hz tone, to the echo
 *   agent): ramped to a target, then one DELETEd and one new every `churnMs`.
 * - WHEP listeners of live publishers' caller track, each held 10-30 s, then DELETEd (or left
 *   to the gateway when their publisher goes first: it must end them with the session).
 * - SIP calls over WebSocket to the echo agent from a registered user: INVITE with a
 *   node-datachannel offer, ACK, Opus for a few seconds, BYE.
 * Driven over IPC: start, stats, stop (everything ended, then the final stats), exit.
 * A publisher's or caller's packets are counted up to the moment it stops sending, which is
 * before its DELETE or BYE, so packets sent and packets the gateway received can be compared.
 */
import { randomBytes } from 'node:crypto';
import { callWithNdc, listenWithNdc, publishWithNdc, type NdcListener, type NdcPublisher } from '../test/helpers/ndc-publisher.js';
import { SipWsClient } from '../test/helpers/sip-ws-client.js';
import { header, headerList, parseSipMessage, type SipResponse } from '../src/sip/message.js';
import { OpusEncoder } from '../src/testing/opus.js';

export interface MediaStart {
  cmd: 'start';
  url: string;
  token: string;
  listenerToken: string;
  publishers: number;
  churnMs: number;
  listeners: number;
  sip: { domain: string; user: string; password: string; agent: string; callEveryMs: number; maxCalls: number };
}

/** What the parent reads every interval (cumulative since start, but the `live` counts). */
export interface MediaStats {
  type: 'stats' | 'stopped';
  /** RTP packets sent by publishers and callers. */
  sent: number;
  /** RTP packets the echo sent back to publishers and callers, and listeners heard. */
  echoed: number;
  heard: number;
  live: { publishers: number; listeners: number; calls: number };
  whip: { created: number; deleted: number };
  whep: { created: number; deleted: number; endedWithSession: number };
  calls: { answered: number; ended: number };
  /** Client-side failures by kind (`whip-post 503`, `whep-connect`, ...). */
  failures: Record<string, number>;
  /** HTTP and SIP 5xx answers these clients saw. */
  http5xx: number;
  sip5xx: number;
  /** Sum over sessions of their lifetime, from 201/200 to DELETE/BYE. */
  sessionSeconds: number;
}

type Msg = MediaStart | { cmd: 'stats' | 'stop' | 'exit' };

/** One second of a 440 Hz tone as 50 real Opus frames (as bench/publishers.ts sends). */
const OPUS: Buffer[] = (() => {
  const enc = new OpusEncoder(48000, 1);
  return Array.from({ length: 50 }, (_, f) => enc.encode(Int16Array.from({ length: 960 }, (_x, i) => Math.round(8000 * Math.sin((2 * Math.PI * 440 * (f * 960 + i)) / 48000)))));
})();

/** A peer that sends: its packets count up to `stopped`, then the helper's drop() swallows them. */
interface Sender {
  gate: { stopped: boolean };
  client: NdcPublisher;
  startedAt: number;
  sentAtStop: number;
}
interface Publisher extends Sender {
  id: string;
  location: string;
  listeners: Set<Listener>;
}
interface Listener {
  location: string;
  client: NdcListener;
  publisher: Publisher;
  until: number;
}
interface SipCall extends Sender {
  callId: string;
  ok: SipResponse;
  hangup?: NodeJS.Timeout;
}

let cfg: MediaStart;
let running = false;
const timers: NodeJS.Timeout[] = [];
const inFlight = new Set<Promise<void>>();
const publishers = new Map<string, Publisher>();
const listeners = new Set<Listener>();
const calls = new Map<string, SipCall>();
let caller: SipWsClient | undefined;
let creating = 0;
let listening = 0;
let dialling = 0;
const ended = { sent: 0, sessionMs: 0 };
const stats: Omit<MediaStats, 'type' | 'sent' | 'live' | 'sessionSeconds'> = {
  echoed: 0,
  heard: 0,
  whip: { created: 0, deleted: 0 },
  whep: { created: 0, deleted: 0, endedWithSession: 0 },
  calls: { answered: 0, ended: 0 },
  failures: {},
  http5xx: 0,
  sip5xx: 0,
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)]!;
const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

function fail(kind: string, detail: string): void {
  stats.failures[kind] = (stats.failures[kind] ?? 0) + 1;
  process.send!({ type: 'error', message: `${kind}: ${detail.slice(0, 200)}` });
}

function refused(what: string, status: number, body: string): void {
  if (status >= 500) stats.http5xx++;
  fail(`${what} ${status}`, body);
}

/** Runs `job` in the background, tracked so `stop` can wait for it. */
function spawnJob(job: () => Promise<void>): void {
  const p = job().catch((err: unknown) => fail('unexpected', (err as Error).stack ?? String(err)));
  inFlight.add(p);
  void p.finally(() => inFlight.delete(p));
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what} not within ${ms} ms`)), ms)))]).finally(() => clearTimeout(t));
}

/** Stops a sender's packets (and counts them), then lets the last ones land before it is ended. */
async function silence(s: Sender): Promise<void> {
  if (s.gate.stopped) return;
  s.gate.stopped = true;
  s.sentAtStop = s.client.sent();
  await sleep(100);
}

function retire(s: Sender): void {
  s.client.close();
  stats.echoed += s.client.received.length;
  ended.sent += s.sentAtStop;
  ended.sessionMs += Date.now() - s.startedAt;
}

async function publish(): Promise<void> {
  const gate = { stopped: false };
  const client = await publishWithNdc(`${cfg.url}/whip`, cfg.token, { direction: 'SendRecv', payloads: OPUS, drop: () => gate.stopped }).catch((err: unknown) => {
    fail('whip-client', (err as Error).message); // its session, if any, was DELETEd by the helper
    return undefined;
  });
  if (!client) return;
  if (!client.accepted || !client.location) {
    client.close();
    return refused('whip-post', client.status, client.answer);
  }
  const p: Publisher = { gate, client, startedAt: Date.now(), sentAtStop: 0, id: client.location.split('/').pop()!, location: client.location, listeners: new Set() };
  stats.whip.created++;
  publishers.set(p.id, p);
  try {
    await within(client.connected, 10_000, 'connected');
    client.startRtp(20);
  } catch (err) {
    fail('whip-connect', (err as Error).message);
    await unpublish(p);
  }
}

async function unpublish(p: Publisher): Promise<void> {
  if (!publishers.delete(p.id)) return;
  await silence(p);
  // Its listeners are left to the gateway, which must end them with the session.
  for (const l of p.listeners) {
    listeners.delete(l);
    stats.whep.endedWithSession++;
  }
  const res = await fetch(p.location, { method: 'DELETE', headers: auth(cfg.token) }).catch((err: unknown) => err as Error);
  if (res instanceof Error) fail('whip-delete', res.message);
  else if (res.status !== 200) refused('whip-delete', res.status, await res.text());
  else stats.whip.deleted++;
  for (const l of p.listeners) closeListener(l);
  retire(p);
}

async function listen(): Promise<void> {
  const ready = [...publishers.values()].filter((p) => p.client.sent() > 50 && !p.gate.stopped);
  if (!ready.length) return;
  const p = pick(ready);
  const client = await listenWithNdc(`${cfg.url}/whep/${p.id}?track=caller`, cfg.listenerToken).catch((err: unknown) => {
    fail('whep-client', (err as Error).message);
    return undefined;
  });
  if (!client) return;
  if (client.status !== 201 || !client.location) {
    client.close();
    // A publisher that went while the POST was on its way is a race, not a failure.
    if (client.status === 404 && !publishers.has(p.id)) return;
    return refused('whep-post', client.status, client.answer);
  }
  stats.whep.created++;
  const l: Listener = { location: client.location, client, publisher: p, until: Date.now() + 10_000 + Math.random() * 20_000 };
  if (!publishers.has(p.id)) return closeListener(l); // its session ended (and took the listener) meanwhile
  p.listeners.add(l);
  listeners.add(l);
  await within(client.connected, 10_000, 'connected').catch((err: unknown) => {
    fail('whep-connect', (err as Error).message);
    return unlisten(l);
  });
}

async function unlisten(l: Listener): Promise<void> {
  if (!listeners.delete(l)) return;
  l.publisher.listeners.delete(l);
  const res = await fetch(l.location, { method: 'DELETE', headers: auth(cfg.listenerToken) }).catch((err: unknown) => err as Error);
  if (res instanceof Error) fail('whep-delete', res.message);
  else if (res.status !== 200) refused('whep-delete', res.status, await res.text());
  else stats.whep.deleted++;
  closeListener(l);
}

function closeListener(l: Listener): void {
  stats.heard += l.client.received.length;
  l.client.received.length = 0;
  l.client.close();
}

/** A 200 OK to a request the gateway sent the caller (a BYE, an OPTIONS), echoing what RFC 3261 §8.2.6 says to. */
function answer(text: string): void {
  const req = parseSipMessage(text);
  if (req.kind !== 'request' || req.method === 'ACK') return;
  const to = header(req, 'To')!;
  caller!.send(
    ['SIP/2.0 200 OK', ...headerList(req, 'Via').map((v) => `Via: ${v}`), `From: ${header(req, 'From')}`, `To: ${to}${/;tag=/.test(to) ? '' : ';tag=soak'}`, `Call-ID: ${header(req, 'Call-ID')}`, `CSeq: ${header(req, 'CSeq')}`, 'Content-Length: 0', '', ''].join('\r\n'),
  );
  if (req.method === 'BYE') {
    const c = calls.get(header(req, 'Call-ID') ?? '');
    fail('sip-bye-from-gateway', `call ${header(req, 'Call-ID')} ended by the gateway: ${header(req, 'Reason') ?? 'no Reason'}`);
    if (c && calls.delete(c.callId)) {
      clearTimeout(c.hangup);
      void silence(c).then(() => retire(c));
    }
  }
}

async function connectCaller(): Promise<void> {
  caller = await SipWsClient.connect(cfg.url);
  caller.ws.on('message', (d) => {
    const text = d.toString();
    if (!text.startsWith('SIP/2.0 ')) answer(text);
  });
  await registerCaller();
}

async function registerCaller(): Promise<void> {
  const res = await caller!.register(cfg.sip.user, cfg.sip.password, cfg.sip.domain).catch((err: unknown) => err as Error);
  if (res instanceof Error) return fail('sip-register', res.message);
  if (res.status >= 500) stats.sip5xx++;
  if (res.status !== 200) fail(`sip-register ${res.status}`, res.reason);
}

async function call(): Promise<void> {
  const c = caller!;
  const gate = { stopped: false };
  const callId = `soak-${randomBytes(8).toString('hex')}`;
  let ok: SipResponse | undefined;
  const client = await callWithNdc(
    async (offer) => {
      ok = await c.request(c.inviteText({ from: cfg.sip.user, to: cfg.sip.agent, domain: cfg.sip.domain, callId, sdp: offer }));
      return { accepted: ok.status === 200, status: ok.status, headers: new Headers(), answer: ok.body.toString() };
    },
    { direction: 'SendRecv', payloads: OPUS, drop: () => gate.stopped },
  ).catch((err: unknown) => {
    fail('sip-invite', (err as Error).message);
    return undefined;
  });
  if (!client) return;
  if (!client.accepted || !ok) {
    client.close();
    if (client.status >= 500) stats.sip5xx++;
    return fail(`sip-invite ${client.status}`, ok?.reason ?? '');
  }
  c.send(c.inDialogText(ok, 'ACK', 1));
  stats.calls.answered++;
  const sc: SipCall = { gate, client, startedAt: Date.now(), sentAtStop: 0, callId, ok };
  calls.set(callId, sc);
  try {
    await within(client.connected, 10_000, 'connected');
    client.startRtp(20);
    sc.hangup = setTimeout(() => spawnJob(() => hangUp(sc)), 4000 + Math.random() * 6000);
  } catch (err) {
    fail('sip-connect', (err as Error).message);
    await hangUp(sc);
  }
}

async function hangUp(sc: SipCall): Promise<void> {
  if (!calls.delete(sc.callId)) return;
  clearTimeout(sc.hangup);
  await silence(sc);
  const res = await caller!.request(caller!.inDialogText(sc.ok, 'BYE', 2)).catch((err: unknown) => err as Error);
  if (res instanceof Error) fail('sip-bye', res.message);
  else if (res.status !== 200) {
    if (res.status >= 500) stats.sip5xx++;
    fail(`sip-bye ${res.status}`, res.reason);
  } else stats.calls.ended++;
  retire(sc);
}

function snapshot(type: MediaStats['type']): MediaStats {
  const senders: Sender[] = [...publishers.values(), ...calls.values()];
  const now = Date.now();
  const echoedLive = senders.reduce((n, s) => n + s.client.received.length, 0);
  return {
    type,
    ...stats,
    echoed: stats.echoed + echoedLive,
    sent: ended.sent + senders.reduce((n, s) => n + (s.gate.stopped ? s.sentAtStop : s.client.sent()), 0),
    live: { publishers: publishers.size, listeners: listeners.size, calls: calls.size },
    sessionSeconds: (ended.sessionMs + senders.reduce((n, s) => n + now - s.startedAt, 0)) / 1000,
  };
}

/** What peers received is counted and dropped every second, so a long soak holds no packets. */
function harvest(): void {
  for (const s of [...publishers.values(), ...calls.values()]) {
    stats.echoed += s.client.received.length;
    s.client.received.length = 0;
  }
  for (const l of listeners) {
    stats.heard += l.client.received.length;
    l.client.received.length = 0;
  }
  if (caller) caller.received.length = 0;
}

async function start(msg: MediaStart): Promise<void> {
  cfg = msg;
  running = true;
  await connectCaller();
  // Ramp: three POSTs in flight until the target is live.
  await Promise.all(Array.from({ length: 3 }, async () => {
    while (publishers.size + creating < cfg.publishers) {
      creating++;
      await publish().finally(() => creating--);
    }
  }));
  const every = (ms: number, fn: () => void) => timers.push(setInterval(() => running && fn(), ms));
  every(cfg.churnMs, () => {
    if (publishers.size >= cfg.publishers) spawnJob(() => unpublish(pick([...publishers.values()])));
    if (publishers.size + creating < cfg.publishers && creating < 3) {
      creating++;
      spawnJob(() => publish().finally(() => creating--));
    }
  });
  every(1000, () => {
    for (const l of listeners) if (Date.now() > l.until) spawnJob(() => unlisten(l));
    if (listeners.size + listening < cfg.listeners && listening < 2) {
      listening++;
      spawnJob(() => listen().finally(() => listening--));
    }
  });
  every(cfg.sip.callEveryMs, () => {
    if (calls.size + dialling < cfg.sip.maxCalls) {
      dialling++;
      spawnJob(() => call().finally(() => dialling--));
    }
  });
  every(60_000, () => spawnJob(registerCaller));
  every(1000, harvest);
}

async function stop(): Promise<void> {
  running = false;
  for (const t of timers) clearInterval(t);
  while (inFlight.size) await Promise.all([...inFlight]);
  // Everyone stops sending first, so the final count is what the gateway could have received.
  const senders: Sender[] = [...publishers.values(), ...calls.values()];
  for (const s of senders) {
    s.gate.stopped = true;
    s.sentAtStop = s.client.sent();
  }
  await sleep(300);
  await Promise.all([...listeners].map(unlisten));
  await Promise.all([...calls.values()].map(hangUp));
  await Promise.all([...publishers.values()].map(unpublish));
  harvest();
  await caller?.close();
}

process.on('message', (msg: Msg) => {
  if (msg.cmd === 'start') {
    start(msg).then(
      () => process.send!({ type: 'started', publishers: publishers.size }),
      (err: unknown) => process.send!({ type: 'fatal', message: (err as Error).stack ?? String(err) }),
    );
  } else if (msg.cmd === 'stats') {
    process.send!(snapshot('stats'));
  } else if (msg.cmd === 'stop') {
    stop().then(
      () => process.send!(snapshot('stopped')),
      (err: unknown) => process.send!({ type: 'fatal', message: (err as Error).stack ?? String(err) }),
    );
  } else if (msg.cmd === 'exit') {
    for (const s of [...publishers.values(), ...calls.values()]) s.client.close();
    for (const l of listeners) l.client.close();
    setTimeout(() => process.exit(0), 200);
  }
});
process.send!({ type: 'hello' });
