import type { SessionDirectory, SessionRecord } from '../../call/session-directory.js';

export interface MemorySessionDirectoryOptions {
  now: () => number;
  /** How long an ended session stays looked-up-able (WHEP 404 rather than 409). Default 10 min. */
  tombstoneMs?: number;
  /** Tombstones kept at most; the oldest go first, so a burst of short calls cannot grow memory. Default 10 000. */
  maxTombstones?: number;
}

interface Tombstone {
  record: SessionRecord;
  expiresAt: number;
}

/** Every field of a record is a primitive, so a spread is a full copy. */
const copy = (r: SessionRecord): SessionRecord => ({ ...r });

/** Drop the consumed head of the queue once it is most of the array (amortised O(1) per release). */
const COMPACT_AFTER = 1024;

/** One process's sessions. Every method finishes synchronously inside, so claims cannot race. */
export class MemorySessionDirectory implements SessionDirectory {
  readonly #now: () => number;
  readonly #tombstoneMs: number;
  readonly #maxTombstones: number;
  readonly #live = new Map<string, SessionRecord>();
  readonly #ended = new Map<string, Tombstone>();
  /**
   * The tombstones in release order, from #head on: with one tombstoneMs for all, that is also
   * expiry order, so a sweep looks only at the head (a Map iterated from its start on every
   * insert would walk the deleted entries again and again).
   */
  #queue: Tombstone[] = [];
  #head = 0;
  #closed = false;

  constructor(opts: MemorySessionDirectoryOptions) {
    this.#now = opts.now;
    this.#tombstoneMs = opts.tombstoneMs ?? 10 * 60_000;
    this.#maxTombstones = opts.maxTombstones ?? 10_000;
  }

  async claim(record: SessionRecord): Promise<boolean> {
    this.#open();
    this.#sweep();
    if (this.#live.has(record.id) || this.#ended.has(record.id)) return false;
    this.#live.set(record.id, copy(record));
    return true;
  }

  async update(id: string, patch: { state?: 'connecting' | 'connected'; connectedAt?: number }): Promise<boolean> {
    this.#open();
    const live = this.#live.get(id);
    if (live === undefined) return false;
    if (patch.state !== undefined) live.state = patch.state;
    if (patch.connectedAt !== undefined) live.connectedAt = patch.connectedAt;
    return true;
  }

  async lookup(id: string): Promise<SessionRecord | undefined> {
    this.#open();
    this.#sweep();
    const r = this.#live.get(id) ?? this.#ended.get(id)?.record;
    return r === undefined ? undefined : copy(r);
  }

  async release(id: string, reason: string, at: number): Promise<void> {
    this.#open();
    const live = this.#live.get(id);
    // Unknown or already ended: nothing to do, so a second release keeps the first reason.
    if (live === undefined) return;
    this.#live.delete(id);
    const t: Tombstone = { record: { ...live, state: 'ended', endedAt: at, endReason: reason }, expiresAt: this.#now() + this.#tombstoneMs };
    this.#ended.set(id, t);
    this.#queue.push(t);
    this.#sweep();
  }

  async list(filter?: { node?: string }): Promise<SessionRecord[]> {
    this.#open();
    const node = filter?.node;
    const out: SessionRecord[] = [];
    for (const r of this.#live.values()) if (node === undefined || r.node === node) out.push(copy(r));
    return out;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#live.clear();
    this.#ended.clear();
    this.#queue = [];
    this.#head = 0;
  }

  /** Forgets tombstones past their time or beyond the count bound, oldest first. */
  #sweep(): void {
    const now = this.#now();
    while (this.#head < this.#queue.length) {
      // Every queued tombstone is still in #ended: an id with a tombstone cannot be claimed, so
      // it cannot be released again until this sweep has forgotten it.
      const t = this.#queue[this.#head]!;
      // A clock that steps back leaves later tombstones behind the head a little longer; harmless.
      if (t.expiresAt > now && this.#ended.size <= this.#maxTombstones) break;
      this.#ended.delete(t.record.id);
      this.#head++;
    }
    if (this.#head > COMPACT_AFTER && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }

  #open(): void {
    if (this.#closed) throw new Error('the session directory is closed');
  }
}
