import { readFileSync } from 'node:fs';

/** bench/trunk-bridge.ts's rows and how they are printed: per size side by side, then a summary across sizes. */

export const RUN_KINDS = ['transcode', 'passthrough', 'rtpengine'] as const;
export type RunKind = (typeof RUN_KINDS)[number];
export const RUN_LABEL: Record<RunKind, string> = { transcode: 'voxgate transcode', passthrough: 'voxgate passthrough', rtpengine: 'rtpengine transcode' };


export function pct(values: number[], p: number): number {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}
export const fmt = (x: number, digits: number) => (Number.isFinite(x) ? x.toFixed(digits) : '-');

/** The whole machine's busy CPU seconds (/proc/stat: all but idle and iowait), to see what else ran in a window. */
export function machineBusy(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return (total - f[3]! - f[4]!) / 100;
}

/** The probe, encoded once for every run. */

export interface Direction {
  sent: number;
  received: number;
  seqGaps: number;
  markersSent: number;
  markersLost: number;
  markerWorst: number;
  latencies: number[];
}

export interface Row {
  kind: RunKind;
  calls: number;
  up: number;
  error: string | undefined;
  cpuMsPerCallS: number;
  cores: number;
  idleCores: number;
  rssPerCallMb: number;
  rss: number;
  pps: number;
  b2p: Direction;
  p2b: Direction;
  setupP50: number;
  setupP99: number;
  inviteP50: number;
  genCores: number;
  genLateP99: number;
  /** CPU of everything else on the machine in the window (cores): other work skews the run. */
  otherCores: number;
  notes: string[];
}

export function block(n: number, rows: Row[]): string[] {
  const dir = (d: Direction) => ({
    loss: d.sent ? `${fmt(100 * Math.max(0, 1 - d.received / d.sent), 3)}` : '-',
    audio: d.markersSent ? `${fmt((100 * d.markersLost) / d.markersSent, 3)}` : '-',
    lat: `${fmt(pct(d.latencies, 50), 1)}/${fmt(pct(d.latencies, 99), 1)}`,
  });
  const lines: [string, (r: Row) => string][] = [
    ['calls up', (r) => (r.error ? `ERROR` : `${r.up}`)],
    ['state', (r) => `${health(r)}${Number.isFinite(worstLoss(r)) ? ` (${fmt(100 * worstLoss(r), 2)} %)` : ''}`],
    ['CPU ms per call-second', (r) => fmt(r.cpuMsPerCallS, 2)],
    ['bridge cores', (r) => fmt(r.cores, 2)],
    ['packets/s bridged', (r) => fmt(r.pps, 0)],
    ['µs CPU per packet bridged', (r) => (r.pps > 0 ? fmt((1e6 * r.cores) / r.pps, 1) : '-')],
    ['RSS per call MB', (r) => fmt(r.rssPerCallMb, 3)],
    ['packet loss % browser→phone', (r) => dir(r.b2p).loss],
    ['packet loss % phone→browser', (r) => dir(r.p2b).loss],
    ['audio loss % browser→phone', (r) => dir(r.b2p).audio],
    ['audio loss % phone→browser', (r) => dir(r.p2b).audio],
    ['added latency ms browser→phone p50/p99', (r) => dir(r.b2p).lat],
    ['added latency ms phone→browser p50/p99', (r) => dir(r.p2b).lat],
    ['setup ms p50/p99', (r) => `${fmt(r.setupP50, 0)}/${fmt(r.setupP99, 0)}`],
    ['generator cores / late p99 ms', (r) => `${fmt(r.genCores, 2)} / ${fmt(r.genLateP99, 1)}`],
    ['other processes cores', (r) => fmt(r.otherCores, 2)],
  ];
  const head = [`${n} calls`, ...rows.map((r) => RUN_LABEL[r.kind])];
  const cells = lines.map(([name, f]) => [name, ...rows.map(f)]);
  const width = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((x, i) => (i === 0 ? x.padEnd(width[i]!) : x.padStart(width[i]!))).join('   ');
  return [line(head), ...cells.map(line)];
}

/** The worst of packet and audio loss, both ways (a fraction); NaN for a run that carried nothing. */
export function worstLoss(r: Row): number {
  if (r.error || r.up === 0) return NaN;
  const f = (a: number, b: number) => (b > 0 ? Math.max(0, a / b) : 1);
  return Math.max(f(r.b2p.sent - r.b2p.received, r.b2p.sent), f(r.p2b.sent - r.p2b.received, r.p2b.sent), f(r.b2p.markersLost, r.b2p.markersSent), f(r.p2b.markersLost, r.p2b.markersSent));
}

/** ok: every call up and under the target's 0.1 % loss; lossy: under 1 %; overloaded: the bridge is dropping calls' media, so its CPU per call-second counts media it no longer carries. */
export function health(r: Row): 'ok' | 'lossy' | 'overloaded' | 'failed' {
  const loss = worstLoss(r);
  if (!Number.isFinite(loss)) return 'failed';
  if (loss >= 0.01 || r.up < 0.95 * r.calls) return 'overloaded';
  return loss < 0.001 && r.up === r.calls ? 'ok' : 'lossy';
}

const comparable = (r: Row | undefined): r is Row => r !== undefined && (health(r) === 'ok' || health(r) === 'lossy');

export function verdicts(n: number, rows: Row[]): string[] {
  const by = (k: RunKind) => rows.find((r) => r.kind === k);
  const t = by('transcode');
  const p = by('passthrough');
  const e = by('rtpengine');
  const out: string[] = [];
  const why = (r: Row) => `${RUN_LABEL[r.kind]} ${health(r)}${Number.isFinite(worstLoss(r)) ? ` (${fmt(100 * worstLoss(r), 2)} % loss)` : ''}`;
  if (t && e) out.push(comparable(t) && comparable(e) ? `transcoding CPU voxgate/rtpengine ${fmt(t.cpuMsPerCallS / e.cpuMsPerCallS, 2)} (target <= 0.5)` : `transcoding CPU voxgate/rtpengine: not compared, ${[t, e].filter((r) => !comparable(r)).map(why).join(', ')}`);
  if (t && p) out.push(comparable(t) && comparable(p) ? `passthrough/transcoding CPU ${fmt(p.cpuMsPerCallS / t.cpuMsPerCallS, 2)} (target <= 0.2)` : `passthrough/transcoding CPU: not compared, ${[t, p].filter((r) => !comparable(r)).map(why).join(', ')}`);
  if (n >= 250) for (const r of rows) out.push(`${RUN_LABEL[r.kind]}: ${r.up}/${n} up, worst loss ${fmt(100 * worstLoss(r), 3)} % (target: 250 calls, < 0.1 %)`);
  return out;
}

/** Every size in one table: CPU per call-second of each run, marked by its health, and the two ratios. */
export function summary(all: { n: number; rows: Row[] }[], RUNS: readonly RunKind[]): string[] {
  const mark = { ok: '', lossy: ' ~', overloaded: ' !', failed: ' x' } as const;
  const cell = (r: Row | undefined) => (r ? `${r.error ? '-' : fmt(r.cpuMsPerCallS, 2)}${mark[health(r)]}` : '');
  const head = ['CPU ms per call-second', ...all.map((a) => `${a.n} calls`)];
  const rows: string[][] = RUNS.map((k) => [RUN_LABEL[k], ...all.map((a) => cell(a.rows.find((r) => r.kind === k)))]);
  const ratio = (a: RunKind, b: RunKind, label: string) => {
    if (!RUNS.includes(a) || !RUNS.includes(b)) return;
    rows.push([label, ...all.map(({ rows: rs }) => {
      const x = rs.find((r) => r.kind === a);
      const y = rs.find((r) => r.kind === b);
      return comparable(x) && comparable(y) ? fmt(x.cpuMsPerCallS / y.cpuMsPerCallS, 2) : '-';
    })]);
  };
  ratio('transcode', 'rtpengine', 'voxgate/rtpengine transcoding (<= 0.5)');
  ratio('passthrough', 'transcode', 'passthrough/transcoding (<= 0.2)');
  rows.push(['µs CPU per packet bridged', ...all.map(() => '')]);
  for (const k of RUNS) rows.push([`  ${RUN_LABEL[k]}`, ...all.map((a) => {
    const r = a.rows.find((x) => x.kind === k);
    return r && !r.error && r.pps > 0 ? fmt((1e6 * r.cores) / r.pps, 1) : '-';
  })]);
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((c) => (c[i] ?? '').length)));
  const line = (c: string[]) => c.map((x, i) => (i === 0 ? x.padEnd(width[i]!) : x.padStart(width[i]!))).join('   ');
  return [line(head), ...rows.map(line), '  (~: 0.1-1 % loss or a call not up; !: >= 1 % loss, the bridge overloaded: its CPU then counts media it no longer carried; x: failed)'];
}
