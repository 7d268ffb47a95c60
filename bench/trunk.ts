/**
 * npm run bench:trunk [-- 100 250 500]
 *
 * Phones reach the agent: N concurrent calls from a carrier over voxgate's SIP trunk listener
 * (UDP) with plain-RTP legs, each sending 20 ms PCMU to the echo agent, and what comes back.
 * The gateway runs in its own process (bench/trunk-gateway.ts); the carrier side is here
 * (bench/trunk-sip.ts: a SIP UAC; bench/trunk-media.ts: RTP legs, the pacing timer and the
 * audio probe). For each size, on a fresh gateway: calls set up at BENCH_RAMP_CPS, a warm-up,
 * then a window of BENCH_SECONDS with the gateway's CPU and RSS, packet and audio loss and the
 * added latency, then every call hung up with BYE. With BENCH_SETUP=1, a setup-rate ramp too.
 *
 *   BENCH_CALLS=100,250,500   sizes (default 100; argv numbers win; 0: none, e.g. with BENCH_SETUP=1)
 *   BENCH_SECONDS=20          measured window per size
 *   BENCH_RAMP_CPS=50         how fast each size's calls are set up
 *   BENCH_SETUP=1             the ramp: BENCH_SETUP_START (10) calls/s, +BENCH_SETUP_INC (10) every
 *                             BENCH_SETUP_STEP_S (1 s), to the first failure or BENCH_SETUP_MAX_CPS (300)
 *                             or BENCH_SETUP_MAX_CALLS (2000); each call holds BENCH_SETUP_HOLD_S (2 s)
 *                             of media, then BYE (0: BYE right after the ACK, signalling alone).
 *                             A failure: a non-2xx, or no 200 in BENCH_SETUP_TIMEOUT_MS (5000).
 *   BENCH_GATEWAY=dist        run dist/cli/main.js (as npm start) instead of src/ through tsx
 *
 * BENCH_BRIDGE=1 (or the argv word `bridge`) runs the other trunk bench instead, browsers calling
 * phones through voxgate's outbound trunk: N WebRTC calls bridged to plain-RTP phones, voxgate
 * transcoding and passing Opus through, beside rtpengine bridging the same calls; its knobs
 * (BENCH_CALLS default 50,100,150,250, BENCH_SECONDS, BENCH_RAMP_CPS default 10,
 * BENCH_BRIDGE_RUNS, BENCH_SETUP_TIMEOUT_MS) are in bench/trunk-bridge.ts.
 */
import { availableParallelism, loadavg } from 'node:os';
import { Resampler } from '../src/audio/resampler.js';
import { FRAME_MS, FramePacer, MARKER_EVERY, MARKER_HZ, RtpLeg, type LegCounts } from './trunk-media.js';
import { ECHO_RATE, procStat, scrapeMetrics, startGateway, TRUNK_NUMBER, type GatewayProcess } from './trunk-gateway.js';
import { answerAddress, pcmuOffer, TrunkUac, type InviteOutcome, type UacDialog } from './trunk-sip.js';

const env = (name: string, fallback: number) => {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(v) || v < 0) throw new Error(`${name} must be a number >= 0, got ${process.env[name]}`);
  return v;
};
const argSizes = process.argv.slice(2).map(Number).filter((n) => Number.isInteger(n) && n > 0);
const SIZES = argSizes.length ? argSizes : (process.env.BENCH_CALLS ?? '100').split(',').map(Number).filter((n) => Number.isInteger(n) && n > 0);
const SECONDS = env('BENCH_SECONDS', 20);
const RAMP_CPS = Math.max(1, env('BENCH_RAMP_CPS', 50));
const WARMUP_MS = 2000;
/** After the window, time for markers still in flight to come back. */
const TAIL_MS = 1000;
const SETUP_TIMEOUT_MS = env('BENCH_SETUP_TIMEOUT_MS', 5000);
const SETUP = process.env.BENCH_SETUP === '1';
const SETUP_START = Math.max(1, env('BENCH_SETUP_START', 10));
const SETUP_INC = Math.max(1, env('BENCH_SETUP_INC', 10));
const SETUP_STEP_S = Math.max(0.2, env('BENCH_SETUP_STEP_S', 1));
const SETUP_MAX_CPS = env('BENCH_SETUP_MAX_CPS', 300);
const SETUP_MAX_CALLS = env('BENCH_SETUP_MAX_CALLS', 2000);
const SETUP_HOLD_S = env('BENCH_SETUP_HOLD_S', 2);
const MB = 1024 * 1024;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));
const sleepUntil = (t: number) => sleep(t - performance.now());

function pct(values: number[], p: number): number {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

const fmt = (x: number, digits: number) => (Number.isFinite(x) ? x.toFixed(digits) : '-');

/** A caller ID per call: +1555 and seven digits. */
const callerNumber = (i: number) => `+1555${String(2_000_000 + (i % 8_000_000)).padStart(7, '0')}`;

interface TrunkCall {
  leg: RtpLeg;
  dialog: UacDialog;
}

/** One call: an RTP leg, INVITE -> 200 -> ACK, then its media on the pacer. */
async function setUp(uac: TrunkUac, pacer: FramePacer, index: number): Promise<{ call: TrunkCall | undefined; outcome: InviteOutcome }> {
  const leg = await RtpLeg.open(index);
  const outcome = await uac.invite({ to: TRUNK_NUMBER, from: callerNumber(index), sdp: pcmuOffer(leg.port), timeoutMs: SETUP_TIMEOUT_MS });
  if (!outcome.ok) {
    leg.close();
    return { call: undefined, outcome };
  }
  const to = answerAddress(outcome.answerSdp);
  if (!to || to.payloadType !== 0) {
    await uac.bye(outcome.dialog);
    leg.close();
    return { call: undefined, outcome: { ok: false, why: `answer without a PCMU audio stream: ${JSON.stringify(outcome.answerSdp.slice(0, 200))}`, afterMs: outcome.inviteToOkMs } };
  }
  await leg.start(to.host, to.port);
  pacer.legs.add(leg);
  return { call: { leg, dialog: outcome.dialog }, outcome };
}

/** At most `width` at a time. */
async function inWaves<T>(items: T[], width: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

interface Row {
  calls: number;
  up: number;
  cpuPerCallS: number;
  cores: number;
  rssPerCallMb: number;
  /** Gateway RSS at the end of the window, bytes. */
  rss: number;
  pktLoss: number;
  pktLossWorst: number;
  audioLoss: number;
  audioLossWorst: number;
  p50: number;
  p99: number;
  genCores: number;
  genLateP99: number;
  notes: string[];
}

async function steady(n: number): Promise<Row> {
  const gw = await startGateway();
  const uac = await TrunkUac.open({ host: '127.0.0.1', port: gw.sipPort });
  const pacer = new FramePacer();
  const calls: TrunkCall[] = [];
  let endedByGateway = 0;
  uac.onGatewayBye = () => endedByGateway++;
  try {
    pacer.start();
    // One call come and gone before "idle" is read: the first call's one-off growth (code
    // compiled, pools and the codec thread's buffers) is not charged to the N calls.
    const warm = await setUp(uac, pacer, n + 1);
    await sleep(1000);
    if (warm.call) {
      pacer.legs.delete(warm.call.leg);
      await uac.bye(warm.call.dialog);
      warm.call.leg.close();
    }
    await sleep(1000);
    const idle = procStat(gw.pid);
    await sleep(2000);
    const idleCores = (procStat(gw.pid).cpu - idle.cpu) / 2;
    const failures = new Map<string, number>();
    const setupMs: number[] = [];
    const t0 = performance.now();
    await Promise.all(Array.from({ length: n }, async (_, i) => {
      await sleepUntil(t0 + (i * 1000) / RAMP_CPS);
      const { call, outcome } = await setUp(uac, pacer, i);
      if (call && outcome.ok) {
        calls.push(call);
        setupMs.push(outcome.inviteToOkMs);
      } else if (!outcome.ok) failures.set(outcome.why, (failures.get(outcome.why) ?? 0) + 1);
    }));
    await sleep(WARMUP_MS);
    const m0 = await scrapeMetrics(gw.url);
    const before = new Map<RtpLeg, LegCounts>(calls.map((c) => [c.leg, c.leg.counts()]));
    const g0 = procStat(gw.pid);
    const c0 = process.cpuUsage();
    const w0 = performance.now();
    pacer.lateness = [];
    const skipped0 = pacer.skipped;
    await sleep(SECONDS * 1000);
    const g1 = procStat(gw.pid);
    const c1 = process.cpuUsage(c0);
    const w1 = performance.now();
    const after = new Map<RtpLeg, LegCounts>(calls.map((c) => [c.leg, c.leg.counts()]));
    const late = [...pacer.lateness];
    const m1 = await scrapeMetrics(gw.url);
    await sleep(TAIL_MS);
    const window = (w1 - w0) / 1000;
    const delta = (name: string) => (m1.get(name) ?? 0) - (m0.get(name) ?? 0);

    let sent = 0;
    let received = 0;
    let seqGaps = 0;
    let pktWorst = 0;
    // Forward (to the gateway): its RTCP reports about our stream. Back: the gateway's 20 ms
    // stream as it arrived, against the time between the window's first and last arrivals.
    let fwdExpected = 0;
    let fwdLost = 0;
    let fwdReported = 0;
    let backExpected = 0;
    let backMissing = 0;
    let markersSent = 0;
    let markersLost = 0;
    let audioWorst = 0;
    const latencies: number[] = [];
    for (const { leg } of calls) {
      const b = before.get(leg)!;
      const a = after.get(leg)!;
      const s = a.sent - b.sent;
      const r = a.received - b.received;
      sent += s;
      received += r;
      seqGaps += a.seqGaps - b.seqGaps;
      const end = leg.report;
      const start = b.report ?? { cumulativeLost: 0, highestSeq: leg.firstSeq - 1 };
      let fe = 0;
      let fl = 0;
      if (end && end !== b.report) {
        fwdReported++;
        fe = end.highestSeq - start.highestSeq;
        fl = end.cumulativeLost - start.cumulativeLost;
      }
      const be = Math.round((a.lastArrival - b.lastArrival) / FRAME_MS);
      const bm = Math.max(0, be - r);
      fwdExpected += fe;
      fwdLost += fl;
      backExpected += be;
      backMissing += bm;
      if (fe + be > 0) pktWorst = Math.max(pktWorst, (fl + bm) / (fe + be));
      let lost = 0;
      for (let m = b.markers; m < a.markers; m++) {
        const l = leg.markerLatency[m]!;
        if (Number.isNaN(l)) lost++;
        else latencies.push(l);
      }
      const ms = a.markers - b.markers;
      markersSent += ms;
      markersLost += lost;
      if (ms > 0) audioWorst = Math.max(audioWorst, lost / ms);
    }
    const gwCpu = g1.cpu - g0.cpu;
    const notes: string[] = [];
    if (failures.size) notes.push(`setup failures: ${[...failures].map(([why, k]) => `${k}x ${why}`).join('; ')}`);
    notes.push(`gateway idle (no calls, after the warm-up call) ${fmt(idleCores, 3)} cores; RSS idle ${fmt(idle.rss / MB, 0)} MB, with the calls ${fmt(g1.rss / MB, 0)} MB`);
    notes.push(`INVITE→200 at ${RAMP_CPS} calls/s p50/p99 ${fmt(pct(setupMs, 50), 1)}/${fmt(pct(setupMs, 99), 1)} ms`);
    notes.push(`RTP to the gateway: ${fwdLost} lost of ${fwdExpected} by its RTCP reports (${fwdReported}/${calls.length} calls reported in the window); back: ${backMissing} missing of ${backExpected} due by arrival times (${seqGaps} gaps in its sequence numbers)`);
    notes.push(`packets sent ${sent}, received ${received} in the window (a raw count: ±1 per call where the window cuts the two 20 ms clocks)`);
    notes.push(`markers sent ${markersSent}, lost ${markersLost}, latency max ${fmt(Math.max(...latencies), 1)} ms`);
    const garbled = calls.reduce((k, c) => k + c.leg.garbled, 0);
    const dups = calls.reduce((k, c) => k + c.leg.duplicates, 0);
    const other = calls.reduce((k, c) => k + c.leg.other, 0);
    const rtcp = calls.reduce((k, c) => k + c.leg.rtcpReceived, 0);
    notes.push(`markers mangled (their tone not told, or told as a marker already back: a concealed or repeated frame mixed in) ${garbled + dups}; non-PCMU/other-SSRC packets ${other}; RTCP packets received ${rtcp}`);
    const u = uac.counters;
    notes.push(`SIP: INVITE retransmits ${u.inviteRetransmits}, re-ACKs of repeated 200s ${u.reAcks}, requests from the gateway ${u.gatewayRequests}, stray responses ${u.strays}, calls the gateway ended ${endedByGateway}`);
    if (u.foreignContacts.length) notes.push(`200 Contact not naming the listener: ${u.foreignContacts.join(' | ')}`);
    notes.push(`gateway /metrics in the window: ${delta('voxgate_audio_frames_repaired_total{method="concealment"}')} frames concealed, ${delta('voxgate_audio_frames_shed_total')} shed (codec threads behind), ${delta('voxgate_audio_decode_errors_total')} decode errors (its jitter buffer's own drops, shed/late/overflow, are not exported: only the markers see them)`);
    if (pacer.skipped > skipped0) notes.push(`generator skipped ${pacer.skipped - skipped0} frames (its timer stalled > ${5 * FRAME_MS} ms)`);
    // Hang up, and check that the gateway let everything go.
    pacer.stop();
    for (const c of calls) c.leg.stop();
    const byes = new Map<number, number>();
    await inWaves(calls, 50, async (c) => {
      const status = await uac.bye(c.dialog);
      byes.set(status, (byes.get(status) ?? 0) + 1);
    });
    for (const c of calls) c.leg.close();
    await sleep(500);
    const m2 = await scrapeMetrics(gw.url);
    const left = ['voxgate_sessions_active', 'voxgate_sip_dialogs', 'voxgate_rtp_ports_in_use'].map((k) => `${k} ${m2.get(k) ?? '?'}`);
    notes.push(`after BYE (${[...byes].map(([st, k]) => `${k}x ${st || 'timeout'}`).join(', ')}): ${left.join(', ')}`);
    const row = {
      calls: n,
      up: calls.length,
      cpuPerCallS: gwCpu / Math.max(1, calls.length) / window,
      cores: gwCpu / window,
      rssPerCallMb: (g1.rss - idle.rss) / Math.max(1, calls.length) / MB,
      rss: g1.rss,
      pktLoss: fwdExpected + backExpected ? (fwdLost + backMissing) / (fwdExpected + backExpected) : NaN,
      pktLossWorst: pktWorst,
      audioLoss: markersSent ? markersLost / markersSent : NaN,
      audioLossWorst: audioWorst,
      p50: pct(latencies, 50),
      p99: pct(latencies, 99),
      genCores: (c1.user + c1.system) / 1e6 / window,
      genLateP99: pct(late, 99),
      notes,
    };
    calls.length = 0;
    return row;
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- voxgate stderr ---\n${gw.stderr()}`, { cause: err });
  } finally {
    pacer.stop();
    for (const c of calls) c.leg.stop();
    await inWaves(calls, 50, (c) => uac.bye(c.dialog));
    for (const c of calls) c.leg.close();
    uac.close();
    await gw.stop();
  }
}

interface SetupCall {
  rate: number;
  ok: boolean;
  ms: number;
  okAt: number;
  why: string;
}

async function setupRamp(): Promise<string[]> {
  const gw: GatewayProcess = await startGateway();
  const uac = await TrunkUac.open({ host: '127.0.0.1', port: gw.sipPort });
  const pacer = new FramePacer();
  const results: SetupCall[] = [];
  const inflight: Promise<void>[] = [];
  let failed: SetupCall | undefined;
  let live = 0;
  let peakLive = 0;
  let byeFailures = 0;
  const launchLag: number[] = [];
  try {
    await sleep(1000);
    pacer.start();
    const g0 = procStat(gw.pid);
    const c0 = process.cpuUsage();
    const w0 = performance.now();
    const one = async (index: number, rate: number) => {
      const t = performance.now();
      const { call, outcome } = await setUp(uac, pacer, index);
      const r: SetupCall = outcome.ok
        ? { rate, ok: !!call, ms: outcome.inviteToOkMs, okAt: t + outcome.inviteToOkMs - w0, why: '' }
        : { rate, ok: false, ms: outcome.afterMs, okAt: NaN, why: outcome.why };
      results.push(r);
      if (!r.ok) failed ??= r;
      if (!call) return;
      peakLive = Math.max(peakLive, ++live);
      await sleep(SETUP_HOLD_S * 1000);
      pacer.legs.delete(call.leg);
      if ((await uac.bye(call.dialog)) !== 200) byeFailures++;
      call.leg.close();
      live--;
    };
    let launched = 0;
    let lastRate = 0;
    for (let rate = SETUP_START; rate <= SETUP_MAX_CPS && launched < SETUP_MAX_CALLS && !failed; rate += SETUP_INC) {
      lastRate = rate;
      const stepStart = performance.now();
      const count = Math.round(rate * SETUP_STEP_S);
      for (let j = 0; j < count && launched < SETUP_MAX_CALLS && !failed; j++) {
        const due = stepStart + (j * 1000) / rate;
        await sleepUntil(due);
        launchLag.push(performance.now() - due);
        inflight.push(one(launched++, rate));
      }
      await sleepUntil(stepStart + SETUP_STEP_S * 1000);
    }
    await Promise.all(inflight);
    const g1 = procStat(gw.pid);
    const c1 = process.cpuUsage(c0);
    const wall = (performance.now() - w0) / 1000;
    const firstBad = results.filter((r) => !r.ok).reduce((lo, r) => Math.min(lo, r.rate), Infinity);
    const goodSteps = [...new Set(results.map((r) => r.rate))].filter((rate) => rate < firstBad).sort((a, b) => a - b);
    const sustained = goodSteps.at(-1);
    const okMs = results.filter((r) => r.ok).map((r) => r.ms);
    const buckets = new Map<number, number>();
    for (const r of results) if (r.ok) buckets.set(Math.floor(r.okAt / 1000), (buckets.get(Math.floor(r.okAt / 1000)) ?? 0) + 1);
    const atBest = results.filter((r) => r.ok && r.rate === sustained).map((r) => r.ms);
    const steps = [...new Set(results.map((r) => r.rate))].sort((a, b) => a - b).map((rate) => {
      const ms = results.filter((r) => r.rate === rate && r.ok).map((r) => r.ms);
      const bad = results.filter((r) => r.rate === rate && !r.ok).length;
      return `${rate}:${fmt(pct(ms, 50), 0)}/${fmt(pct(ms, 99), 0)}${bad ? `(${bad} failed)` : ''}`;
    });
    const why = failed ? `first failure at the ${failed.rate} calls/s step: ${failed.why} (after ${fmt(failed.ms, 0)} ms)` : `no failure up to the cap (${lastRate} calls/s step, ${results.length} calls)`;
    return [
      `setup rate: ${sustained ?? 0} calls/s sustained (highest step with every call answered), peak ${Math.max(0, ...buckets.values())} 200 OK in one second; ${why}`,
      `  INVITE→200 p50/p99 ${fmt(pct(okMs, 50), 1)}/${fmt(pct(okMs, 99), 1)} ms over ${okMs.length} calls; at the ${sustained ?? '-'} calls/s step ${fmt(pct(atBest, 50), 1)}/${fmt(pct(atBest, 99), 1)} ms`,
      `  per step (calls/s: INVITE→200 p50/p99 ms): ${steps.join(' ')}`,
      `  peak concurrent calls ${peakLive} (each held ${SETUP_HOLD_S} s with media), BYE failures ${byeFailures}; INVITE retransmits ${uac.counters.inviteRetransmits}, re-ACKs ${uac.counters.reAcks}`,
      `  gateway cores ${fmt((g1.cpu - g0.cpu) / wall, 2)}, generator cores ${fmt((c1.user + c1.system) / 1e6 / wall, 2)}, generator launch lag p99 ${fmt(pct(launchLag, 99), 1)} ms`,
    ];
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- voxgate stderr ---\n${gw.stderr()}`, { cause: err });
  } finally {
    pacer.stop();
    await Promise.allSettled(inflight);
    uac.close();
    await gw.stop();
  }
}

function table(rows: Row[]): string[] {
  const head = ['calls', 'up', 'CPU-s/call-s', 'gw cores', 'RSS/call MB', 'RTP loss % (worst)', 'audio loss % (worst)', 'latency p50/p99 ms', 'gen cores', 'gen late p99 ms'];
  const cells = rows.map((r) => [
    String(r.calls),
    String(r.up),
    fmt(r.cpuPerCallS, 5),
    fmt(r.cores, 2),
    fmt(r.rssPerCallMb, 3),
    `${fmt(100 * r.pktLoss, 3)} (${fmt(100 * r.pktLossWorst, 2)})`,
    `${fmt(100 * r.audioLoss, 3)} (${fmt(100 * r.audioLossWorst, 2)})`,
    `${fmt(r.p50, 1)}/${fmt(r.p99, 1)}`,
    fmt(r.genCores, 2),
    fmt(r.genLateP99, 1),
  ]);
  const width = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((x, i) => x.padStart(width[i]!)).join('  ');
  return [line(head), ...cells.map(line)];
}

async function main(): Promise<void> {
  const rate = ECHO_RATE ?? 8000;
  const up = rate === 8000 ? 0 : new Resampler(8000, rate).delaySamples / (rate / 1000);
  const down = rate === 8000 ? 0 : new Resampler(rate, 8000).delaySamples / 8;
  const say = (s: string) => process.stderr.write(`${s}\n`);
  say(`bench:trunk: ${availableParallelism()} cores, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}, node ${process.version}; sizes ${SIZES.join(',') || 'none'}, ${SECONDS} s each${SETUP ? ', then the setup ramp' : ''}`);
  const rows: Row[] = [];
  for (const n of SIZES) {
    say(`bench:trunk: ${n} calls (set up at ${RAMP_CPS}/s, ${WARMUP_MS / 1000} s warm-up, ${SECONDS} s measured)...`);
    const row = await steady(n);
    rows.push(row);
  }
  const setup = SETUP ? (say(`bench:trunk: setup ramp from ${SETUP_START} calls/s, +${SETUP_INC} every ${SETUP_STEP_S} s...`), await setupRamp()) : [];
  const gwRuns = process.env.BENCH_GATEWAY === 'dist' ? 'dist/cli/main.js' : 'src/cli/main.ts via tsx';
  console.log(`\nSIP trunk (UDP) + plain RTP, PCMU 20 ms, to the echo agent${ECHO_RATE ? ` at ${ECHO_RATE / 1000} kHz` : ' (at 8 kHz, the caller\'s rate)'}; gateway: ${gwRuns} in its own process; load generator: this process`);
  console.log('Target (issue "Phones reach the agent"): 500 concurrent PCMU calls with < 0.1 % loss; call setup >= 100 calls/s.\n');
  if (rows.length) for (const l of table(rows)) console.log(l);
  for (const r of rows) for (const note of r.notes) console.log(`  ${r.calls} calls: ${note}`);
  // RSS grows by more than the calls' own memory at first (V8's young generation grows to 3 x
  // --max-semi-space-size under allocation); between two sizes that part cancels.
  const slopes = rows.slice(1).map((r, i) => `${rows[i]!.up}->${r.up} calls: ${fmt((r.rss - rows[i]!.rss) / Math.max(1, r.up - rows[i]!.up) / MB, 3)} MB/call`);
  if (slopes.length) console.log(`RSS per call from one size to the next (gateway RSS difference / calls difference): ${slopes.join(', ')}`);
  for (const l of setup) console.log(l);
  console.log(`
calls         concurrent trunk calls asked for; up: set up (INVITE -> 180 -> 200 -> ACK) and held, 20 ms PCMU both ways
CPU-s/call-s  the gateway process's CPU seconds (all threads, user + system, /proc/<pid>/stat) in the window / (calls up x window seconds)
gw cores      the gateway's CPU seconds per wall second (this machine has ${availableParallelism()})
RSS/call MB   (gateway VmRSS at the end of the window - VmRSS idle, after one warm-up call came and went) / calls up; at small sizes V8's young generation growing under the media's allocation (up to 3 x --max-semi-space-size) dominates it: read the slope line between sizes
RTP loss %    packets lost both ways in the window, all calls (worst call): to the gateway, as its RTCP reports count them (cumulative lost / expected); back, the gateway's packets missing from its 20 ms stream (one per tick, audio or silence, whatever it hears) by arrival times: dropped on the way or ticks it skipped
audio loss %  markers (a 20 ms tone frame every ${MARKER_EVERY * FRAME_MS} ms per call, ${MARKER_HZ.join('/')} Hz in turn) sent in the window not found intact in the echoed audio: frames lost, late, shed, or with a concealed or repeated frame mixed in, anywhere RTP in -> agent -> RTP out (worst call)
latency       added latency: a marker's onset sent -> the same onset in the echoed audio, to the sample, on this host's clock; it includes the gateway's jitter buffer (20 ms target, plus 0-20 ms to its frame tick), PCMU decode (the echo runs at the caller's 8 kHz: nothing is resampled${ECHO_RATE ? `; here at ${ECHO_RATE / 1000} kHz, FIR ${up.toFixed(1)} + ${down.toFixed(1)} ms` : ''}), the echo's play() queued to the pacer and sent on the next 20 ms tick, encode, the codec-thread hops, loopback UDP and both event loops. A stall (GC, a busy core) that leaves a tick without the echo's frame adds 20 ms to the pacer queue; the echo sheds one frame a second while more than 40 ms is queued, as the jitter buffer sheds its own excess
gen cores     this process's CPU (SIP UAC, RTP send and receive, marker detection) per wall second, beside the gateway's on the same ${availableParallelism()} cores
gen late p99  how late the generator's 20 ms send tick ran (ms); beyond a few ms the generator, not the gateway, is what limits the run${SETUP ? `
setup rate    the highest ramp step (calls/s) in which every call was answered: INVITE -> 180 -> 200 then ACK, each call then holding ${SETUP_HOLD_S} s of media and ending with BYE; a failure is a final non-2xx or no 200 within ${SETUP_TIMEOUT_MS} ms; INVITE→200 runs from our INVITE sent to its 200 received, the echo agent's attach included` : ''}`);
  process.exit(0);
}

if (process.env.BENCH_BRIDGE === '1' || process.argv.slice(2).includes('bridge')) {
  const { runBridgeBench } = await import('./trunk-bridge.js');
  await runBridgeBench();
  process.exit(0);
} else await main();
