/**
 * BENCH_BRIDGE=1 npm run bench:trunk [-- 50 100 150 250]   (or: npm run bench:trunk -- bridge 50 100)
 *
 * Browsers call phones: N concurrent bridged calls, a browser on one side (node-datachannel:
 * ICE, DTLS-SRTP, 20 ms Opus) and a phone on the other (plain RTP/AVP over UDP), with the same
 * probe both ways (bench/trunk-bridge-probe.ts: a marker tone every 200 ms over a noise floor).
 * For each size, three runs on fresh processes, printed side by side:
 *
 *   transcode    voxgate as the B2BUA: each browser registers over SIP-over-WebSocket and sends
 *                INVITE sip:+1555765xxxx@bench.test with its offer; voxgate routes it by
 *                sip.outboundRoutes to the trunk `phones` (codecs opus, pcmu), whose phones
 *                (bench/trunk-bridge-sip.ts PhoneUas, in this process) answer PCMU: voxgate
 *                transcodes Opus <-> PCMU.
 *   passthrough  the same, the phones answer Opus (the offered payload type): voxgate forwards
 *                the packets, SRTP <-> RTP, without a codec.
 *   rtpengine    rtpengine (Debian rtpengine-daemon, userspace, loopback) bridging the same
 *                browsers to the same phones, transcoding Opus <-> PCMU, its SDP driven over the
 *                ng protocol instead of SIP (bench/trunk-bridge-rtpengine.ts).
 *
 * Each run: one call come and gone (the first call's one-off costs), the bridge's idle CPU and
 * RSS, N calls set up at BENCH_RAMP_CPS, a warm-up, a window of BENCH_SECONDS with the bridge
 * process's CPU (/proc/<pid>/stat, all threads) and RSS, loss and marker latency each way; then
 * every call hung up (voxgate: even calls by the browser's BYE, odd by the phone's, and each
 * BYE must reach the other side).
 *
 *   BENCH_CALLS=50,100,150,250    sizes (argv numbers win)
 *   BENCH_SECONDS=20              measured window per run
 *   BENCH_RAMP_CPS=10             calls set up per second
 *   BENCH_BRIDGE_RUNS=transcode,passthrough,rtpengine   which runs, in this order
 *   BENCH_SETUP_TIMEOUT_MS=15000  per call: INVITE to 200, then to the DTLS track open
 *   BENCH_GATEWAY=dist            voxgate from dist/ (see bench/trunk-gateway.ts)
 *   BENCH_RTPENGINE_LOGLEVEL=5    rtpengine's --log-level
 *   BENCH_NOISE_PEAK=60           the probe's noise floor (peak, of 32767); 0: digital silence between markers
 *   BENCH_BRIDGE_SDP=1            print call 0's SDP (browser offer and answer, phone offer and answer) each run
 */
import { availableParallelism, loadavg } from 'node:os';
import ndc from 'node-datachannel';
import { procStat, scrapeMetrics, startGateway, TRUNK_NUMBER, type GatewayProcess } from './trunk-gateway.js';
import { BrowserLeg, FramePacer, PhoneLeg, type LegCounts, type PhoneCodec } from './trunk-bridge-media.js';
import { calibrateOpus, checkPcmu, CYCLE_FRAMES, KnownOpusFrames, opusCycle, pcmuCycle, OPUS_BITRATE } from './trunk-bridge-probe.js';
import { startRtpengine, type Rtpengine } from './trunk-bridge-rtpengine.js';
import { BrowserSip } from './trunk-bridge-browser.js';
import { parseAudioOffer, phoneAnswer, PhoneUas, type PhoneDialog, type PhoneMode } from './trunk-bridge-sip.js';
import { FRAME_MS, MARKER_EVERY, MARKER_HZ } from './trunk-media.js';
import { block, fmt, machineBusy, pct, RUN_KINDS, RUN_LABEL, summary, verdicts, type Direction, type Row, type RunKind } from './trunk-bridge-report.js';

const env = (name: string, fallback: number) => {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(v) || v < 0) throw new Error(`${name} must be a number >= 0, got ${process.env[name]}`);
  return v;
};
const argSizes = process.argv.slice(2).map(Number).filter((n) => Number.isInteger(n) && n > 0);
const SIZES = argSizes.length ? argSizes : (process.env.BENCH_CALLS ?? '50,100,150,250').split(',').map(Number).filter((n) => Number.isInteger(n) && n > 0);
const SECONDS = env('BENCH_SECONDS', 20);
const RAMP_CPS = Math.max(0.5, env('BENCH_RAMP_CPS', 10));
const SETUP_TIMEOUT_MS = env('BENCH_SETUP_TIMEOUT_MS', 15_000);
const RUNS = (process.env.BENCH_BRIDGE_RUNS ?? RUN_KINDS.join(',')).split(',').map((s) => s.trim()).filter(Boolean) as RunKind[];
for (const r of RUNS) if (!RUN_KINDS.includes(r)) throw new Error(`BENCH_BRIDGE_RUNS: '${r}' is not one of ${RUN_KINDS.join(', ')}`);
const WARMUP_MS = 3000;
/** BENCH_BRIDGE_SDP=1: call 0's SDP on both sides, to stderr, each run. */
const SHOW_SDP = process.env.BENCH_BRIDGE_SDP === '1';
/** After the window, time for markers still in flight to come back. */
const TAIL_MS = 1000;
const DOMAIN = 'bench.test';
const PASSWORD = 'bench-password';
/** The phones' numbers: +1555765 and four digits, the call's index (a retry keeps its number). */
const phoneNumber = (i: number) => `+1555765${String(i % 10_000).padStart(4, '0')}`;
const MB = 1024 * 1024;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));
const sleepUntil = (t: number) => sleep(t - performance.now());
const withTimeout = <T>(p: Promise<T>, ms: number, what: string) =>
  new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout: ${what} within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });

interface Probe {
  opus: Buffer[];
  pcmu: Buffer[];
  /** The Opus cycle's own codec delay (see calibrateOpus), subtracted from markers sent as Opus. */
  opusDelayMs: number;
  known: KnownOpusFrames;
}

/** One bridged call: its two media ends and whatever signalling carried it. */
interface BridgedCall {
  index: number;
  number: string;
  browser: BrowserLeg;
  phone: PhoneLeg | undefined;
  sip: BrowserSip | undefined;
  phoneDialog: PhoneDialog | undefined;
  /** rtpengine's call (ng call-id). */
  ngCallId: string | undefined;
  inviteToOkMs: number;
  setupMs: number;
}

/**
 * The phones' media side: for an RTP/AVP offer to a number, a PhoneLeg on a fresh port pair
 * answering PCMU or Opus, sending to the offer's address. Used by the SIP UAS (voxgate runs) and
 * directly (rtpengine runs).
 */
class Phones {
  readonly expected = new Map<string, BridgedCall>();
  constructor(
    readonly mode: PhoneMode,
    readonly probe: Probe,
  ) {}

  async answer(number: string, offerSdp: string): Promise<{ sdp: string } | { status: number; reason: string }> {
    const call = this.expected.get(number) ?? this.expected.get(`+${number.replace(/\D/g, '')}`);
    if (!call) return { status: 404, reason: `Not Found (no bench call dials ${number})` };
    const offer = parseAudioOffer(offerSdp);
    if (!offer) return { status: 488, reason: 'Not Acceptable Here (no audio stream)' };
    if (offer.proto !== 'RTP/AVP') return { status: 488, reason: `Not Acceptable Here (${offer.proto}: the phones take RTP/AVP)` };
    call.phone?.close();
    const chosen = phoneAnswer(offer, this.mode, 0);
    if (!chosen) return { status: 488, reason: `Not Acceptable Here (no ${this.mode} in ${offer.formats.map((f) => `${f.pt}:${f.name}`).join(' ')})` };
    const codec: PhoneCodec = this.mode === 'pcmu' ? { name: 'pcmu', pt: 0 } : { name: 'opus', pt: chosen.pt };
    const frames = this.mode === 'pcmu' ? this.probe.pcmu : this.probe.opus;
    const leg = await PhoneLeg.open({ codec, frames, codecDelayMs: this.mode === 'pcmu' ? 0 : this.probe.opusDelayMs, far: call.browser.log, offset: (call.index * 7 + 3) % CYCLE_FRAMES, known: this.probe.known });
    const answer = phoneAnswer(offer, this.mode, leg.port)!.sdp;
    if (SHOW_SDP && call.index === 0) process.stderr.write(`--- offer to the phone ${number}\n${offerSdp}--- the phone's answer\n${answer}`);
    call.phone = leg;
    await leg.start(offer.host, offer.port);
    return { sdp: answer };
  }
}

/** What a run's bridge does: set a call up, take it down, and say what it left behind. */
interface Bridge {
  pid: number;
  connect(call: BridgedCall): Promise<void>;
  /** Ends a call; a measured one (it was up) must show its BYE reaching the far side. */
  hangUp(call: BridgedCall, measured: boolean): Promise<void>;
  /** Lines for the notes once every call is gone (sessions left, log problems). */
  leftovers(): Promise<string[]>;
  notes(): string[];
  stop(): Promise<void>;
}

async function voxgateBridge(phones: Phones, users: number): Promise<Bridge> {
  const uas = await PhoneUas.open();
  uas.onInvite = (number, offer, dialog) =>
    phones.answer(number, offer).then((r) => {
      const call = phones.expected.get(number);
      if (call && 'sdp' in r) call.phoneDialog = dialog;
      return r;
    });
  let gw: GatewayProcess;
  try {
    gw = await startGateway({
      domain: DOMAIN,
      users: Array.from({ length: users }, (_, i) => ({ user: `bench${i}`, password: PASSWORD, trunks: ['phones'] })),
      outboundRoutes: [{ prefix: '+1', trunk: 'phones' }],
      trunks: [{ name: 'phones', codecs: ['opus', 'pcmu'], outbound: { address: `127.0.0.1:${uas.port}`, transport: 'udp', numbers: [TRUNK_NUMBER] } }],
    });
  } catch (err) {
    uas.close();
    throw err;
  }
  const byes = new Map<string, number>();
  const count = (k: string) => byes.set(k, (byes.get(k) ?? 0) + 1);
  return {
    pid: gw.pid,
    async connect(call) {
      call.sip = await BrowserSip.register(gw.url, `bench${call.index}`, PASSWORD, DOMAIN);
      const offer = await call.browser.offer();
      const t0 = performance.now();
      const out = await call.sip.invite(call.number, offer, SETUP_TIMEOUT_MS);
      if (!out.ok) throw new Error(`INVITE ${call.number}: ${out.why}`);
      call.inviteToOkMs = out.inviteToOkMs;
      if (!call.phone || !call.phoneDialog) throw new Error(`200 OK for ${call.number} without the phone having answered an INVITE`);
      if (SHOW_SDP && call.index === 0) process.stderr.write(`--- the browser's offer\n${offer}--- voxgate's answer to the browser\n${out.answerSdp}`);
      call.browser.answer(out.answerSdp, call.phone.log);
      await withTimeout(call.browser.opened, Math.max(1000, SETUP_TIMEOUT_MS - (performance.now() - t0)), 'the browser track open (ICE + DTLS with voxgate)');
    },
    async hangUp(call, measured) {
      if (!call.sip) return;
      if (!measured) {
        await call.sip.bye(2000);
        return call.sip.close();
      }
      const fromBrowser = call.index % 2 === 0;
      let status: number;
      let reached: () => boolean;
      if (fromBrowser) {
        status = await call.sip.bye();
        reached = () => call.phoneDialog?.endedByGateway === true;
      } else {
        status = call.phoneDialog ? await uas.bye(call.phoneDialog) : -1;
        reached = () => call.sip!.endedByGateway;
      }
      const until = performance.now() + 3000;
      while (!reached() && performance.now() < until) await sleep(50);
      const k = `${fromBrowser ? 'browser' : 'phone'} BYE ${status || 'timeout'}, ${reached() ? 'reached the other side' : 'NOT passed to the other side'}`;
      count(k);
      await call.sip.close();
    },
    async leftovers() {
      await sleep(500);
      const m = await scrapeMetrics(gw.url);
      const left = ['voxgate_sessions_active', 'voxgate_sip_dialogs', 'voxgate_rtp_ports_in_use'].map((k) => `${k} ${m.get(k) ?? '?'}`);
      return [`hang-up: ${[...byes].map(([k, n]) => `${n}x ${k}`).join('; ') || 'none'}; then ${left.join(', ')}`];
    },
    notes() {
      const c = uas.counters;
      return [
        `phones' SIP: ${c.invites} INVITEs (${c.inviteRetransmits} retransmitted), 200 resent ${c.okRetransmits}, never ACKed ${c.noAck}, BYEs from voxgate ${c.byesFromGateway}, other requests ${c.otherRequests}, stray responses ${c.strays}` +
          (c.refused.size ? `, refused: ${[...c.refused].map(([k, n]) => `${n}x ${k}`).join('; ')}` : ''),
      ];
    },
    async stop() {
      uas.close();
      const err = gw.stderr();
      await gw.stop();
      if (/error|fatal/i.test(err)) process.stderr.write(`bench:trunk bridge: voxgate stderr (tail):\n${err}\n`);
    },
  };
}

async function rtpengineBridge(phones: Phones): Promise<Bridge> {
  const rtpe: Rtpengine = await startRtpengine();
  let problems: string[] = [];
  return {
    pid: rtpe.pid,
    async connect(call) {
      call.ngCallId = `bench-${call.index}-${Math.random().toString(36).slice(2)}`;
      const offer = await call.browser.offer();
      const t0 = performance.now();
      const toPhone = await rtpe.offer(call.ngCallId, `browser${call.index}`, offer);
      const r = await phones.answer(call.number, toPhone);
      if ('status' in r) throw new Error(`the phone refused rtpengine's offer: ${r.status} ${r.reason}`);
      const toBrowser = await rtpe.answer(call.ngCallId, `browser${call.index}`, `phone${call.index}`, r.sdp);
      call.inviteToOkMs = performance.now() - t0;
      if (SHOW_SDP && call.index === 0) process.stderr.write(`--- the browser's offer\n${offer}--- rtpengine's answer to the browser\n${toBrowser}`);
      call.browser.answer(toBrowser, call.phone!.log);
      await withTimeout(call.browser.opened, SETUP_TIMEOUT_MS, 'the browser track open (ICE + DTLS with rtpengine)');
    },
    async hangUp(call) {
      if (call.ngCallId) await rtpe.delete(call.ngCallId, `browser${call.index}`);
    },
    async leftovers() {
      problems = rtpe.logProblems();
      return [];
    },
    notes: () => (problems.length ? [`rtpengine log: ${problems.length} ERR/CRIT/WARNING lines, last: ${problems.slice(-2).join(' | ').slice(0, 300)}`] : ['rtpengine log: no ERR/CRIT/WARNING lines']),
    stop: () => rtpe.stop(),
  };
}

function direction(calls: BridgedCall[], before: Map<BridgedCall, { b: LegCounts; p: LegCounts }>, after: Map<BridgedCall, { b: LegCounts; p: LegCounts }>, way: 'b2p' | 'p2b'): Direction {
  const d: Direction = { sent: 0, received: 0, seqGaps: 0, markersSent: 0, markersLost: 0, markerWorst: 0, latencies: [] };
  for (const c of calls) {
    const x = before.get(c)!;
    const y = after.get(c)!;
    const [from0, from1, to0, to1] = way === 'b2p' ? [x.b, y.b, x.p, y.p] : [x.p, y.p, x.b, y.b];
    d.sent += from1.sent - from0.sent;
    d.received += to1.received - to0.received;
    d.seqGaps += to1.seqGaps - to0.seqGaps;
    const log = way === 'b2p' ? c.browser.log : c.phone!.log;
    let lost = 0;
    for (let m = from0.markers; m < from1.markers; m++) {
      const l = log.latency[m]!;
      if (Number.isNaN(l)) lost++;
      else d.latencies.push(l);
    }
    const ms = from1.markers - from0.markers;
    d.markersSent += ms;
    d.markersLost += lost;
    if (ms > 0) d.markerWorst = Math.max(d.markerWorst, lost / ms);
  }
  return d;
}

async function run(kind: RunKind, n: number, probe: Probe, users: number): Promise<Row> {
  const phones = new Phones(kind === 'passthrough' ? 'opus' : 'pcmu', probe);
  const bridge = kind === 'rtpengine' ? await rtpengineBridge(phones) : await voxgateBridge(phones, users);
  const pacer = new FramePacer();
  const calls: BridgedCall[] = [];
  const failures = new Map<string, number>();
  let retries = 0;
  const row: Row = {
    kind, calls: n, up: 0, error: undefined, cpuMsPerCallS: NaN, cores: NaN, idleCores: NaN, rssPerCallMb: NaN, rss: NaN, pps: NaN,
    b2p: direction([], new Map(), new Map(), 'b2p'), p2b: direction([], new Map(), new Map(), 'p2b'),
    setupP50: NaN, setupP99: NaN, inviteP50: NaN, genCores: NaN, genLateP99: NaN, otherCores: NaN, notes: [],
  };
  let hangUpErrors = 0;
  const teardown = async (c: BridgedCall, measured = false) => {
    pacer.delete(c.browser);
    if (c.phone) pacer.delete(c.phone);
    c.phone?.stop();
    await bridge.hangUp(c, measured).catch(() => hangUpErrors++);
    c.browser.close();
    c.phone?.close();
    if (phones.expected.get(c.number) === c) phones.expected.delete(c.number);
  };
  /** One call, a second try with a fresh browser if the first fails (as the ndc helpers do). */
  const setUp = async (index: number): Promise<BridgedCall | undefined> => {
    for (let attempt = 1; ; attempt++) {
      const call: BridgedCall = {
        index, number: phoneNumber(index), phone: undefined, sip: undefined, phoneDialog: undefined, ngCallId: undefined, inviteToOkMs: NaN, setupMs: NaN,
        browser: new BrowserLeg({ name: `b${index}-${attempt}`, frames: probe.opus, codecDelayMs: probe.opusDelayMs, offset: (index * 3) % CYCLE_FRAMES, known: probe.known }),
      };
      phones.expected.set(call.number, call);
      const t0 = performance.now();
      try {
        await bridge.connect(call);
        call.setupMs = performance.now() - t0;
        // The phone a half frame after its browser.
        pacer.add(call.browser, index);
        pacer.add(call.phone!, index + 5);
        return call;
      } catch (err) {
        await teardown(call);
        const why = (err as Error).message;
        if (attempt === 2 || /^INVITE .*: [3-6]\d\d /.test(why)) {
          failures.set(why, (failures.get(why) ?? 0) + 1);
          return undefined;
        }
        retries++;
      }
    }
  };
  try {
    pacer.start();
    // One call come and gone before "idle" is read, so its one-off costs are not charged to the N.
    const warm = await setUp(n);
    if (!warm) {
      row.error = `the warm-up call failed: ${[...failures.keys()].join('; ')}`;
      return row;
    }
    await sleep(1000);
    await teardown(warm);
    failures.clear();
    retries = 0;
    await sleep(1000);
    const idle = procStat(bridge.pid);
    await sleep(2000);
    row.idleCores = (procStat(bridge.pid).cpu - idle.cpu) / 2;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        await sleepUntil(t0 + (i * 1000) / RAMP_CPS);
        const c = await setUp(i);
        if (c) calls.push(c);
      }),
    );
    const rampS = (performance.now() - t0) / 1000;
    await sleep(WARMUP_MS);
    const snap = () => new Map(calls.map((c) => [c, { b: c.browser.counts(), p: c.phone!.counts() }]));
    const before = snap();
    const g0 = procStat(bridge.pid);
    const c0 = process.cpuUsage();
    const m0 = machineBusy();
    const w0 = performance.now();
    pacer.lateness = [];
    const skipped0 = pacer.skipped;
    // The bridge's cores second by second: an overload shows as a plateau, a stall as a dip.
    const timeline: number[] = [];
    for (let s = 1, prev = g0.cpu; s <= SECONDS; s++) {
      await sleepUntil(w0 + s * 1000);
      const now = procStat(bridge.pid).cpu;
      timeline.push(now - prev);
      prev = now;
    }
    await sleepUntil(w0 + SECONDS * 1000);
    const g1 = procStat(bridge.pid);
    const c1 = process.cpuUsage(c0);
    const m1 = machineBusy();
    const w1 = performance.now();
    const after = snap();
    const late = [...pacer.lateness];
    await sleep(TAIL_MS);
    const window = (w1 - w0) / 1000;
    row.up = calls.length;
    row.b2p = direction(calls, before, after, 'b2p');
    row.p2b = direction(calls, before, after, 'p2b');
    const cpu = g1.cpu - g0.cpu;
    row.cpuMsPerCallS = (1000 * cpu) / Math.max(1, calls.length) / window;
    row.cores = cpu / window;
    row.rss = g1.rss;
    row.rssPerCallMb = (g1.rss - idle.rss) / Math.max(1, calls.length) / MB;
    row.pps = (row.b2p.received + row.p2b.received) / window;
    row.setupP50 = pct(calls.map((c) => c.setupMs), 50);
    row.setupP99 = pct(calls.map((c) => c.setupMs), 99);
    row.inviteP50 = pct(calls.map((c) => c.inviteToOkMs), 50);
    row.genCores = (c1.user + c1.system) / 1e6 / window;
    row.genLateP99 = pct(late, 99);
    row.otherCores = Math.max(0, (m1 - m0 - cpu - (c1.user + c1.system) / 1e6) / window);
    const notes = row.notes;
    if (failures.size) notes.push(`setup failures: ${[...failures].map(([why, k]) => `${k}x ${why}`).join('; ')}`);
    notes.push(`set up in ${fmt(rampS, 1)} s (${retries} retried with a fresh browser); setup (offer -> track open) p50/p99 ${fmt(row.setupP50, 0)}/${fmt(row.setupP99, 0)} ms, ${kind === 'rtpengine' ? 'ng offer -> ng answer' : 'INVITE -> 200'} p50 ${fmt(row.inviteP50, 1)} ms`);
    notes.push(`bridge idle ${fmt(row.idleCores, 3)} cores, RSS idle ${fmt(idle.rss / MB, 0)} MB, with the calls ${fmt(g1.rss / MB, 0)} MB; cores each second of the window: ${timeline.map((c) => c.toFixed(2)).join(' ')}`);
    const seq = `sequence gaps at the receiver browser→phone ${row.b2p.seqGaps}, phone→browser ${row.p2b.seqGaps}`;
    notes.push(`packets browser→phone ${row.b2p.received}/${row.b2p.sent}, phone→browser ${row.p2b.received}/${row.p2b.sent} (received/sent in the window); ${seq}`);
    const sum = (f: (c: BridgedCall) => number) => calls.reduce((k, c) => k + f(c), 0);
    notes.push(
      `markers browser→phone ${row.b2p.markersSent} sent, ${row.b2p.markersLost} lost (worst call ${fmt(100 * row.b2p.markerWorst, 1)} %); phone→browser ${row.p2b.markersSent} sent, ${row.p2b.markersLost} lost (worst call ${fmt(100 * row.p2b.markerWorst, 1)} %); ` +
        `mangled at the phones ${sum((c) => c.phone!.detector.garbled + c.phone!.detector.duplicates)}, at the browsers ${sum((c) => (c.browser.detector?.garbled ?? 0) + (c.browser.detector?.duplicates ?? 0))}; ` +
        `other payload types/SSRCs at the phones ${sum((c) => c.phone!.other)}, at the browsers ${sum((c) => c.browser.other)}; RTCP packets at the phones ${sum((c) => c.phone!.rtcpReceived)}; ` +
        `Opus frames arriving byte for byte as sent (passed through, not decoded) at the phones ${sum((c) => c.phone!.recognised)}, at the browsers ${sum((c) => c.browser.recognised)}`,
    );
    notes.push(`latency max browser→phone ${fmt(Math.max(...row.b2p.latencies), 1)} ms, phone→browser ${fmt(Math.max(...row.p2b.latencies), 1)} ms`);
    if (pacer.skipped > skipped0) notes.push(`generator skipped ${pacer.skipped - skipped0} slots of ${FRAME_MS / 10} ms (its timer stalled > ${5 * FRAME_MS} ms)`);
    const notConnected = calls.filter((c) => c.browser.state !== 'connected').length;
    if (notConnected) notes.push(`${notConnected} browsers not in state connected at the end of the window`);
    pacer.stop();
    for (const c of calls) c.phone!.stop();
    const hang = calls.splice(0);
    for (let i = 0; i < hang.length; i += 25) await Promise.all(hang.slice(i, i + 25).map((c) => teardown(c, true)));
    if (hangUpErrors) notes.push(`${hangUpErrors} hang-ups failed`);
    notes.push(...(await bridge.leftovers()), ...bridge.notes());
    return row;
  } catch (err) {
    row.error = (err as Error).message;
    return row;
  } finally {
    pacer.stop();
    for (const c of calls.splice(0)) await teardown(c);
    await bridge.stop();
  }
}

export async function runBridgeBench(): Promise<void> {
  const say = (s: string) => process.stderr.write(`${s}\n`);
  const opus = opusCycle();
  const pcmu = pcmuCycle();
  checkPcmu(pcmu);
  const calibration = calibrateOpus(opus);
  const probe: Probe = { opus, pcmu, opusDelayMs: calibration.delayMs, known: new KnownOpusFrames(opus, calibration) };
  // bench0..benchN-1 for the calls, benchN for the warm-up call.
  const users = Math.max(...SIZES, 0) + 1;
  say(`bench:trunk bridge: ${availableParallelism()} cores, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}, node ${process.version}; sizes ${SIZES.join(',')}, runs ${RUNS.join(',')}, ${SECONDS} s each`);
  const all: { n: number; rows: Row[] }[] = [];
  for (const n of SIZES) {
    const rows: Row[] = [];
    for (const kind of RUNS) {
      say(`bench:trunk bridge: ${n} calls, ${RUN_LABEL[kind]} (set up at ${RAMP_CPS}/s, ${WARMUP_MS / 1000} s warm-up, ${SECONDS} s measured)...`);
      const row = await run(kind, n, probe, users);
      if (row.error) say(`bench:trunk bridge:   ${RUN_LABEL[kind]} failed: ${row.error}`);
      else say(`bench:trunk bridge:   ${row.up}/${n} up, ${fmt(row.cpuMsPerCallS, 2)} ms CPU per call-second`);
      rows.push(row);
      await sleep(1000);
    }
    all.push({ n, rows });
  }
  try {
    ndc.cleanup();
  } catch {
    // Nothing left to clean.
  }
  const gwRuns = process.env.BENCH_GATEWAY === 'dist' ? 'dist/cli/main.js' : 'src/cli/main.ts via tsx';
  console.log(
    `\nBrowser <-> phone bridged calls: node-datachannel WebRTC (ICE, DTLS-SRTP, Opus 20 ms, ${OPUS_BITRATE / 1000} kbit/s mono) <-> plain RTP/AVP (PCMU 20 ms, or Opus when the phone answers it); ` +
      `voxgate (${gwRuns}) and rtpengine each in their own process, the browsers and phones in this one; loopback, ${availableParallelism()} cores`,
  );
  console.log('Targets (issue): CPU per transcoded call <= half of rtpengine\'s; passthrough <= one fifth of transcoding; 250 concurrent bridged calls with < 0.1 % loss.\n');
  for (const { n, rows } of all) {
    for (const l of block(n, rows)) console.log(l);
    for (const v of verdicts(n, rows)) console.log(`  => ${v}`);
    for (const r of rows) {
      if (r.error) console.log(`  ${RUN_LABEL[r.kind]}: ERROR ${r.error}`);
      for (const note of r.notes) console.log(`  ${RUN_LABEL[r.kind]}: ${note}`);
    }
    console.log('');
  }
  const slope = (k: RunKind) => {
    const rs = all.map((a) => a.rows.find((r) => r.kind === k && !r.error && r.up > 0)).filter((r): r is Row => r !== undefined);
    return rs.slice(1).map((r, i) => `${rs[i]!.up}->${r.up}: ${fmt((r.rss - rs[i]!.rss) / Math.max(1, r.up - rs[i]!.up) / MB, 3)}`);
  };
  for (const l of summary(all, RUNS)) console.log(l);
  console.log('');
  for (const k of RUNS) if (slope(k).length) console.log(`RSS per call from one size to the next, ${RUN_LABEL[k]} (MB/call): ${slope(k).join(', ')}`);
  console.log(`
CPU ms per call-second  the bridge process's CPU (all threads, user + system, /proc/<pid>/stat) in the window, in ms, / (calls up x window seconds)
bridge cores            its CPU seconds per wall second (this machine has ${availableParallelism()}, shared with the generator)
state                   ok: every call up, worst loss (packets or markers, either way) < 0.1 %; lossy: < 1 %; overloaded: more (its CPU per call-second then counts media it no longer carries)
packets/s bridged       RTP packets that reached either end in the window, per second (throughput); µs CPU per packet: the bridge's CPU per packet it delivered
RSS per call MB         (bridge VmRSS at the end of the window - VmRSS idle, after one call came and went) / calls up; voxgate's includes each browser's WebSocket and registration
packet loss %           1 - packets received / packets sent in the window, all calls, that way (the same instants on both ends: in-flight packets cancel)
audio loss %            markers (a 20 ms tone every ${MARKER_EVERY * FRAME_MS} ms per call, ${MARKER_HZ.join('/')} Hz in turn, over a -60 dBFS noise floor) sent in the window not found intact at the far end
added latency           marker onset sent -> the same onset found in the far end's decoded audio (8 kHz, to the sample), on this host's clock, less the Opus probe's own codec delay (${fmt(probe.opusDelayMs, 2)} ms, encode + 8 kHz decode) when it was sent as Opus; a transcoder's Opus encode (look-ahead) and any jitter buffer it keeps are in it
setup                   offer made -> DTLS track open at the browser (voxgate: WebSocket, REGISTER, INVITE, 200, ACK; rtpengine: ng offer, phone answer, ng answer)
generator               this process's CPU per wall second (browsers: node-datachannel, SRTP, Opus decode; phones: RTP, decode) and how late its send ticks ran (every 2 ms, each call in its slot of the 20 ms)
other processes         the machine's busy CPU (/proc/stat) less the bridge's and the generator's, per wall second: anything else running skews the run`);
}
