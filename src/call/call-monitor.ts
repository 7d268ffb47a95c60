import type { Quality } from '../media/endpoint.js';
import type { ActivityEvent, MeteredLevels } from './call-activity.js';
import type { CallHistory, CallRecord } from './call-history.js';
import type { CallTable } from './call-table.js';
import type { Call } from './call.js';
import { describeCall, type CallView } from './describe-call.js';
import type { EventBus, SessionEvent } from './session-events.js';

/**
 * One point of a call's quality chart: seconds into the call, then the caller's stream as
 * measured; with a callee (a bridged person or phone), their stream's last measure too.
 */
export interface QualityPoint {
  t: number;
  mos: number;
  lossPercent: number;
  jitterMs: number;
  rttMs: number | null;
  jitterBufferMs: number;
  calleeMos?: number;
  calleeLossPercent?: number;
  calleeJitterMs?: number;
}

export interface TimelineEntry {
  at: string;
  event: ActivityEvent;
}

/** A live call as the console first sees it: what it is, its chart so far and its timeline so far. */
export interface WatchedCall {
  session: CallView;
  series: QualityPoint[];
  timeline: TimelineEntry[];
}

/** What a watcher is told, in order, after its snapshot. */
export type MonitorEvent =
  | { type: 'session'; session: CallView }
  | { type: 'quality'; id: string; point: QualityPoint }
  | { type: 'event'; id: string; entry: TimelineEntry }
  | { type: 'levels'; at: string; levels: Record<string, MeteredLevels> }
  | { type: 'ended'; id: string; call: CallRecord | { id: string; reason: string } }
  /** Another node's session began, connected or ended (the fleet's event bus). */
  | { type: 'fleet'; event: SessionEvent };

export interface CallMonitorOptions {
  calls: CallTable;
  /** Must have been made before the monitor: an ended call's record is read from it. */
  history: Pick<CallHistory, 'get'>;
  now: () => number;
  /** How often watchers get the levels of every call. */
  levelsEveryMs?: number;
  /** The fleet's session events: other nodes' are passed on. */
  events?: EventBus;
  node?: string;
  /** A watcher that threw (it is dropped; the calls go on). */
  onError?: (err: unknown) => void;
}

/** Points kept per call: at 5 s apart an hour; past it every other point goes, so the chart still spans the whole call. */
export const MAX_POINTS = 720;
/** Timeline entries kept per call (the oldest go first). */
export const MAX_ENTRIES = 200;

interface Watch {
  call: Call;
  series: QualityPoint[];
  timeline: TimelineEntry[];
  off: () => void;
}

/**
 * What the operator's console watches: for every live call its quality over its life, its
 * timeline (agent events, digits, transfers) and, while anyone watches, its levels; the moment
 * a call begins, changes or ends. Each watcher gets a snapshot, then every change in order.
 * Calls are followed from the start whether or not anyone watches (a chart opened mid-call
 * shows the call's whole life); levels are measured only while someone watches.
 */
export class CallMonitor {
  readonly #calls = new Map<string, Watch>();
  /** Each watcher, and what ends its stream when the monitor closes. */
  readonly #watchers = new Map<(ev: MonitorEvent) => void, () => void>();
  #levelsTimer: NodeJS.Timeout | undefined;
  readonly #unsubscribe: () => void;

  constructor(private readonly opts: CallMonitorOptions) {
    const onCreated = (call: Call) => this.#follow(call);
    const onEnded = (call: Call, reason: string) => {
      const w = this.#calls.get(call.id);
      if (!w) return;
      w.off();
      this.#calls.delete(call.id);
      this.#tell({ type: 'ended', id: call.id, call: opts.history.get(call.id) ?? { id: call.id, reason } });
    };
    opts.calls.on('created', onCreated);
    opts.calls.on('ended', onEnded);
    const node = opts.node ?? 'local';
    const unsubscribe = opts.events?.subscribe((event) => {
      const from = event.type === 'created' ? event.session.node : event.node;
      if (from !== node) this.#tell({ type: 'fleet', event });
    });
    this.#unsubscribe = () => {
      unsubscribe?.();
      opts.calls.off('created', onCreated);
      opts.calls.off('ended', onEnded);
    };
  }

  /** Live calls as they are now, with their charts and timelines so far. */
  snapshot(): WatchedCall[] {
    const now = this.opts.now();
    return [...this.#calls.values()].map((w) => ({ session: describeCall(w.call, now), series: [...w.series], timeline: [...w.timeline] }));
  }

  /**
   * Calls `fn` with every change from now on until the returned function is called; `onClose`
   * when the monitor closes (the gateway stops: a stream ends there, or it would hold the stop).
   */
  watch(fn: (ev: MonitorEvent) => void, onClose: () => void = () => undefined): () => void {
    this.#watchers.set(fn, onClose);
    if (this.#watchers.size === 1) this.#meter(true);
    return () => this.#unwatch(fn);
  }

  #unwatch(fn: (ev: MonitorEvent) => void): void {
    if (this.#watchers.delete(fn) && this.#watchers.size === 0) this.#meter(false);
  }

  get watchers(): number {
    return this.#watchers.size;
  }

  /** Stops following calls and ends every watcher's stream. */
  close(): void {
    this.#unsubscribe();
    const closing = [...this.#watchers.values()];
    this.#watchers.clear();
    this.#meter(false);
    for (const onClose of closing) onClose();
  }

  #follow(call: Call): void {
    const w: Watch = { call, series: [], timeline: [], off: () => undefined };
    const changed = () => this.#tell({ type: 'session', session: describeCall(call, this.opts.now()) });
    const onQuality = (q: Quality) => {
      // A callee's last measure (a bridged person or phone) comes with the caller's point.
      const c = call.leg('callee')?.endpoint?.quality;
      const point: QualityPoint = {
        t: Math.round((this.opts.now() - call.createdAt) / 100) / 10,
        mos: q.mos,
        lossPercent: q.lossPercent,
        jitterMs: q.jitterMs,
        rttMs: q.rttMs,
        jitterBufferMs: q.jitterBufferMs,
        ...(c ? { calleeMos: c.mos, calleeLossPercent: c.lossPercent, calleeJitterMs: c.jitterMs } : {}),
      };
      w.series.push(point);
      if (w.series.length > MAX_POINTS) w.series.splice(0, w.series.length, ...w.series.filter((_, i) => i % 2 === 0));
      this.#tell({ type: 'quality', id: call.id, point });
    };
    const record = (event: ActivityEvent, at: number) => {
      const entry = { at: new Date(at).toISOString(), event: bounded(event) };
      w.timeline.push(entry);
      if (w.timeline.length > MAX_ENTRIES) w.timeline.shift();
      this.#tell({ type: 'event', id: call.id, entry });
      // A transfer's outcome changes who the caller talks with (legs, codec): the row follows.
      if (event.type === 'transfer' && event.result) changed();
    };
    const onDtmf = (from: string, digit: string) => record({ type: 'dtmf', digit, from }, this.opts.now());
    const onFanout = (name: string) => {
      if (name === 'viewercount') changed();
    };
    call.on('state', changed);
    call.on('quality', onQuality);
    call.on('dtmf', onDtmf);
    call.activity.on('event', record);
    call.fanout.on('event', onFanout);
    w.off = () => {
      call.activity.off('event', record);
      call.activity.meter(false);
      call.fanout.off('event', onFanout);
      // The call's own listeners are dropped when it closes.
    };
    this.#calls.set(call.id, w);
    if (this.#watchers.size > 0) call.activity.meter(true);
    changed();
  }

  #meter(on: boolean): void {
    for (const w of this.#calls.values()) w.call.activity.meter(on);
    if (on && !this.#levelsTimer) {
      this.#levelsTimer = setInterval(() => this.#levels(), this.opts.levelsEveryMs ?? 500);
      this.#levelsTimer.unref();
    } else if (!on && this.#levelsTimer) {
      clearInterval(this.#levelsTimer);
      this.#levelsTimer = undefined;
    }
  }

  #levels(): void {
    if (this.#calls.size === 0) return;
    const levels: Record<string, MeteredLevels> = {};
    for (const [id, w] of this.#calls) levels[id] = w.call.activity.takeLevels();
    this.#tell({ type: 'levels', at: new Date(this.opts.now()).toISOString(), levels });
  }

  #tell(ev: MonitorEvent): void {
    for (const fn of [...this.#watchers.keys()]) {
      try {
        fn(ev);
      } catch (err) {
        this.#unwatch(fn);
        this.opts.onError?.(err);
      }
    }
  }
}

/** Bytes of JSON an entry may take: an agent's message is whatever it sent, and the call keeps MAX_ENTRIES of them. */
export const MAX_ENTRY_BYTES = 2048;

/** The event as it was when recorded (a copy), or its type alone, marked, when it is too big to keep. */
function bounded(event: ActivityEvent): ActivityEvent {
  let json: string | undefined;
  try {
    json = JSON.stringify(event);
  } catch {
    json = undefined; // a cycle, a BigInt: not data a console can show
  }
  if (json !== undefined && json.length <= MAX_ENTRY_BYTES) return JSON.parse(json) as ActivityEvent;
  return { type: String(event.type).slice(0, 64), truncated: true, ...(json ? { bytes: json.length } : {}) };
}
