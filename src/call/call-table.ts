import type { DialAuthority, DialRequest, OutboundCallsApi, OutboundCallView } from './outbound-types.js';
import type { SourceIdentity } from '../auth/source-auth.js';
import { TypedEmitter } from '../core/events.js';
import { VoxgateError } from '../core/errors.js';
import type { Call, EndReason } from './call.js';
import type { SessionDirectory, SessionRecord } from './session-directory.js';
import type { EventBus, QualitySummary } from './session-events.js';

export interface CallTableEvents extends Record<string, unknown[]> {
  created: [call: Call];
  connected: [call: Call];
  ended: [call: Call, reason: EndReason];
}

export interface CallTableOptions {
  maxSessions: number;
  retryAfterSeconds: number;
  /** This node's name in the directory. */
  node?: string;
  /** Where every call is claimed, so any node (and WHEP) can find it by id. */
  directory?: SessionDirectory;
  /** Where created / connected / ended go as serialisable events. */
  events?: EventBus;
  now?: () => number;
  /** A directory or event-bus operation failed (it never fails the call). */
  onError?: (err: unknown, what: string) => void;
  /**
   * A session's `created` event waits for an audit record naming it (`recorded(id)`, fed from
   * the audit log: events go out after the record is in the file), at most RECORD_WAIT_MS.
   */
  eventsAfterAudit?: boolean;
}

/** How long a `created` event waits for its audit record before it goes anyway. */
const RECORD_WAIT_MS = 2000;
/** Ids recorded before their call was added (a placed call's INVITE): remembered at most this many. */
const MAX_EARLY_RECORDS = 10_000;

/**
 * Every live call of this node, with the limits that protect it: total sessions
 * (503 + Retry-After) and sessions per source (429). Each call is claimed in the session
 * directory and its life published on the event bus.
 */
export class CallTable extends TypedEmitter<CallTableEvents> {
  readonly #calls = new Map<string, Call>();
  readonly #perSource = new Map<string, number>();

  /** What places calls (`dial`): set by the gateway once SIP is built. */
  dialer: OutboundCallsApi | undefined;

  constructor(private readonly opts: CallTableOptions) {
    super();
  }

  /**
   * Places a call (the TypeScript form of `POST /api/calls`): a phone number through a trunk or
   * a registered user, the agent attached when they answer. Returns at once, state `dialing`;
   * `dialer.get(id)` follows it. Throws VoxgateError for a bad request (see OutboundCallsApi).
   * Without `by` it has the admin's authority (the application's own code).
   */
  dial(req: DialRequest, by: DialAuthority = {}): OutboundCallView {
    if (!this.dialer) throw new Error('this gateway places no calls (no SIP)');
    return this.dialer.dial(req, by);
  }

  get size(): number {
    return this.#calls.size;
  }

  get(id: string): Call | undefined {
    return this.#calls.get(id);
  }

  values(): IterableIterator<Call> {
    return this.#calls.values();
  }

  countFor(source: string): number {
    return this.#perSource.get(source) ?? 0;
  }

  /** Throws unless one more call for this source fits. */
  checkAdmission(source: SourceIdentity): void {
    if (this.#calls.size >= this.opts.maxSessions) {
      throw new VoxgateError('VG_CAPACITY', `This node holds its maximum of ${this.opts.maxSessions} sessions; retry later or elsewhere.`, {
        headers: { 'Retry-After': String(this.opts.retryAfterSeconds) },
      });
    }
    if (source.maxSessions !== undefined && this.countFor(source.name) >= source.maxSessions) {
      throw new VoxgateError(
        'VG_SOURCE_SESSION_LIMIT',
        `Source '${source.name}' already has its maximum of ${source.maxSessions} sessions; end one first.`,
        { headers: { 'Retry-After': String(this.opts.retryAfterSeconds) } },
      );
    }
  }

  readonly #unrecorded = new Map<string, () => void>();
  readonly #early = new Set<string>();

  /** An audit record naming session `id` is in the file (the gateway taps the log). */
  recorded(id: string): void {
    const go = this.#unrecorded.get(id);
    if (go) return go();
    if (!this.opts.eventsAfterAudit) return;
    this.#early.add(id);
    if (this.#early.size > MAX_EARLY_RECORDS) this.#early.delete(this.#early.values().next().value!);
  }

  /** Resolves once the call's first audit record is written (or at once without eventsAfterAudit). */
  #afterRecord(id: string): Promise<void> {
    if (!this.opts.eventsAfterAudit || this.#early.delete(id)) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(go, RECORD_WAIT_MS);
      timer.unref();
      const table = this.#unrecorded;
      function go(): void {
        clearTimeout(timer);
        table.delete(id);
        resolve();
      }
      table.set(id, go);
    });
  }

  add(call: Call): void {
    this.checkAdmission(call.source);
    this.#calls.set(call.id, call);
    this.#perSource.set(call.source.name, this.countFor(call.source.name) + 1);
    const record: SessionRecord = {
      id: call.id,
      kind: call.kind,
      node: this.opts.node ?? 'local',
      source: call.source.name,
      sourceKind: call.source.kind,
      state: 'connecting',
      createdAt: call.createdAt,
    };
    // One chain per call: its directory operations happen in order, whatever the store's latency.
    const audited = this.#afterRecord(call.id);
    let chain: Promise<unknown> = this.#track(this.#op('claim', async () => {
      if (this.opts.directory && !(await this.opts.directory.claim(record))) throw new Error(`session id ${call.id} was already claimed`);
      await audited;
      await this.opts.events?.publish({ type: 'created', at: call.createdAt, session: record });
    }));
    const then = (what: string, op: () => Promise<unknown>) => (chain = this.#track(chain.then(() => this.#op(what, op))));
    call.on('state', (s) => {
      if (s !== 'connected') return;
      this.emit('connected', call);
      const at = call.connectedAt ?? call.createdAt;
      then('connected', async () => {
        await this.opts.directory?.update(call.id, { state: 'connected', connectedAt: at });
        await this.opts.events?.publish({ type: 'connected', at, id: call.id, kind: record.kind, node: record.node, setupMs: at - call.createdAt });
      });
    });
    call.on('ended', (reason) => {
      this.#unrecorded.get(call.id)?.(); // a call refused before its record: its events go now
      this.#calls.delete(call.id);
      const n = this.countFor(call.source.name) - 1;
      if (n > 0) this.#perSource.set(call.source.name, n);
      else this.#perSource.delete(call.source.name);
      const at = this.opts.now?.() ?? Date.now();
      const summary = summaryOf(call);
      this.emit('ended', call, reason);
      then('ended', async () => {
        await this.opts.directory?.release(call.id, reason, at);
        await this.opts.events?.publish({ type: 'ended', at, id: call.id, kind: record.kind, node: record.node, source: call.source.name, sourceKind: call.source.kind, reason, durationMs: at - call.createdAt, summary });
      });
    });
    this.emit('created', call);
  }

  closeAll(reason: EndReason): void {
    for (const call of [...this.#calls.values()]) call.close(reason);
  }

  readonly #pending = new Set<Promise<unknown>>();

  #track<T>(p: Promise<T>): Promise<T> {
    this.#pending.add(p);
    void p.finally(() => this.#pending.delete(p));
    return p;
  }

  /** Every directory and event-bus operation begun so far has finished (a stop waits, then closes them). */
  async settled(): Promise<void> {
    while (this.#pending.size) await Promise.allSettled([...this.#pending]);
  }

  async #op(what: string, op: () => Promise<unknown>): Promise<void> {
    try {
      await op();
    } catch (err) {
      this.opts.onError?.(err, `session ${what}`);
    }
  }
}

/** What the call's media was like, for the 'ended' event (the caller's stream). */
export function summaryOf(call: Call): QualitySummary {
  const t = call.totals();
  const q = call.leg('caller')?.endpoint?.quality;
  return { packetsReceived: t.packetsReceived, bytesReceived: t.bytesReceived, mos: q?.mos ?? null, lossPercent: q?.lossPercent ?? null, jitterMs: q?.jitterMs ?? null, rttMs: q?.rttMs ?? null };
}
