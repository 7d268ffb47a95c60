import { closeSync, openSync, writeSync } from 'node:fs';
import type { Call } from './call.js';
import type { PartyLeg } from './party-leg.js';
import { summaryOf, type CallTable } from './call-table.js';
import type { QualitySummary } from './session-events.js';

/** One ended call: what the console's recent-calls table shows and what the CDR file holds. */
export interface CallRecord {
  id: string;
  kind: string;
  node: string;
  source: string;
  sourceKind: string;
  reason: string;
  startedAt: string;
  connectedAt: string | null;
  endedAt: string;
  durationMs: number;
  /** From the request to connected; null when it never connected. */
  setupMs: number | null;
  codec: string | null;
  remoteAddress: string | null;
  sipCallId: string | null;
  trunk: { name: string; direction: string; from: string; to: string } | null;
  summary: QualitySummary;
}

export interface CallHistoryOptions {
  calls: CallTable;
  now: () => number;
  node: string;
  /** Records kept in memory, newest first (`admin.recentCalls`). */
  size: number;
  /** The call-detail record file (JSONL, appended), or undefined for none. */
  cdrPath: string | undefined;
  onError: (err: unknown) => void;
}

/**
 * Recently ended calls, newest first, bounded; and one call-detail record per call, appended to
 * a JSONL file beside the audit log as the call ends (a line per call: what billing and
 * troubleshooting read, while the audit log stays the tamper-evident trail of who did what).
 */
export class CallHistory {
  readonly #recent: CallRecord[] = [];
  #fd: number | undefined;

  constructor(private readonly opts: CallHistoryOptions) {
    // Opened now: a path that cannot be written stops start-up (the caller names the field).
    if (opts.cdrPath) this.#fd = openSync(opts.cdrPath, 'a');
    opts.calls.on('ended', (call, reason) => this.#ended(call, reason));
  }

  /** The newest `limit` records, newest first. */
  recent(limit = this.opts.size): CallRecord[] {
    return this.#recent.slice(0, limit);
  }

  get(id: string): CallRecord | undefined {
    return this.#recent.find((r) => r.id === id);
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  #ended(call: Call, reason: string): void {
    const at = this.opts.now();
    const caller = call.leg('caller') as PartyLeg | undefined;
    const rec: CallRecord = {
      id: call.id,
      kind: call.kind,
      node: this.opts.node,
      source: call.source.name,
      sourceKind: call.source.kind,
      reason,
      startedAt: new Date(call.createdAt).toISOString(),
      connectedAt: call.connectedAt === undefined ? null : new Date(call.connectedAt).toISOString(),
      endedAt: new Date(at).toISOString(),
      durationMs: at - call.createdAt,
      setupMs: call.connectedAt === undefined ? null : call.connectedAt - call.createdAt,
      codec: caller?.endpoint?.format.codec ?? null,
      remoteAddress: caller?.remoteAddress ?? null,
      sipCallId: call.sipCallId ?? null,
      trunk: call.trunk ? { name: call.trunk.name, direction: call.trunk.direction, from: call.trunk.from, to: call.trunk.to } : null,
      summary: summaryOf(call),
    };
    this.#recent.unshift(rec);
    if (this.#recent.length > this.opts.size) this.#recent.length = this.opts.size;
    if (this.#fd === undefined) return;
    try {
      writeSync(this.#fd, JSON.stringify(rec) + '\n');
    } catch (err) {
      this.opts.onError(err);
    }
  }
}
