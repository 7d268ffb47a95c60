import type { KV, KvEntry } from '@nats-io/kv';
import type { Logger } from '../../core/logger.js';

/**
 * A job exactly one node of the fleet does at a time (issue 17, build 5: a trunk's outbound
 * registration). The lease is a KV entry naming its holder: taken with `create` (two nodes
 * starting together: one wins), renewed every third of its term with a revision-checked
 * `update` (a holder that was replaced finds out on its next renewal and lets go), and taken
 * over by another node when the entry has not changed for a whole term while that node was
 * itself connected (no clock is compared across nodes), or at once when the holder is marked
 * lost. Every node runs the same loop; whoever holds it runs the job.
 */

interface Held {
  node: string;
  at: number;
}

export interface LeaseOptions {
  kv: KV;
  name: string;
  nodeId: string;
  /** The fleet has marked this node lost (explicitly: a node merely not seen yet may have just started). */
  lost(node: string): boolean;
  /** Called when this node takes the lease: start the job. */
  onAcquired(): void;
  /** Called when this node no longer holds it (replaced, or released): stop the job. */
  onReleased(): void;
  termMs?: number;
  log: Logger;
  monotonic?: () => number;
}

export class Lease {
  readonly #o: LeaseOptions & { termMs: number; monotonic: () => number };
  readonly #key: string;
  #revision: number | undefined;
  #holding = false;
  /** The entry as last seen and since when (this node's clock): a holder that stopped renewing leaves it unchanged. */
  #seen: { revision: number; since: number } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #busy: Promise<void> | undefined;
  #closed = false;
  /** When the last renewal succeeded (this node's clock): a holder cut off lets go before anyone may take over. */
  #renewedAt = 0;

  constructor(opts: LeaseOptions) {
    this.#o = { termMs: 15_000, monotonic: () => performance.now(), ...opts };
    this.#key = `lease.${Buffer.from(opts.name, 'utf8').toString('base64url')}`;
  }

  get name(): string {
    return this.#o.name;
  }

  get holding(): boolean {
    return this.#holding;
  }

  /** The node holding it, as last read (undefined: nobody yet). */
  holder: string | undefined;

  async start(): Promise<void> {
    await this.#guarded();
    this.#timer = setInterval(() => {
      if (!this.#busy) void this.#guarded();
    }, this.#o.termMs / 3);
    this.#timer.unref();
  }

  #guarded(): Promise<void> {
    this.#busy = this.tick()
      .catch((err: unknown) => {
        this.connectionChanged();
        this.#o.log.warn({ err, lease: this.#o.name }, 'lease check failed');
        // Renewals failing (cut off from NATS): let go two thirds into the term, before another node may take it.
        if (this.#holding && this.#o.monotonic() - this.#renewedAt > (this.#o.termMs * 2) / 3) this.#let('renewals failed for most of the term');
      })
      .finally(() => (this.#busy = undefined));
    return this.#busy;
  }

  /** The connection dropped or came back: a silence we did not watch proves nothing. */
  connectionChanged(): void {
    this.#seen = undefined;
  }

  /** One renewal or one look (tests call it by hand). */
  async tick(): Promise<void> {
    if (this.#closed) return;
    const { kv, nodeId } = this.#o;
    const value = () => JSON.stringify({ node: nodeId, at: Date.now() } satisfies Held);
    if (this.#holding) {
      try {
        this.#revision = await kv.update(this.#key, value(), this.#revision!);
        this.#renewedAt = this.#o.monotonic();
      } catch (err) {
        if (!/wrong last sequence/i.test((err as Error).message)) throw err;
        // A renewal that timed out but was stored moved the revision: still ours if it names us.
        const now = await kv.get(this.#key);
        const held = now?.operation === 'PUT' ? heldOf(now) : undefined;
        if (held?.node === nodeId) this.#revision = now!.revision;
        else this.#let('another node took it over');
      }
      return;
    }
    const entry = await kv.get(this.#key);
    const held = entry && entry.operation === 'PUT' ? heldOf(entry) : undefined;
    this.holder = held?.node;
    if (!entry || !held) {
      // Nobody holds it (never taken, or released): create, or write over the release marker.
      // kv.create writes over a DEL marker too (it checks the marker's revision).
      await this.#take(() => (entry?.operation === 'PUT' ? kv.update(this.#key, value(), entry.revision) : kv.create(this.#key, value())), 'it was free');
      return;
    }
    if (held.node === nodeId) {
      // Ours from a previous run (a restart under the same nodeId): take it back.
      await this.#take(() => kv.update(this.#key, value(), entry.revision), 'a previous run of this node held it');
      return;
    }
    const now = this.#o.monotonic();
    if (this.#seen?.revision !== entry.revision) this.#seen = { revision: entry.revision, since: now };
    const stale = now - this.#seen.since > this.#o.termMs;
    if (stale || this.#o.lost(held.node)) await this.#take(() => kv.update(this.#key, value(), entry.revision), stale ? `${held.node} stopped renewing it` : `${held.node} is lost`);
  }

  /** Stops; a lease held is released (deleted, revision-checked) so another node takes it at once. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#busy; // a take or renewal in flight lands first: its revision is the one to delete
    if (!this.#holding) return;
    const revision = this.#revision!;
    this.#let('this node is stopping');
    await this.#o.kv.delete(this.#key, { previousSeq: revision }).catch(() => undefined);
  }

  async #take(write: () => Promise<number>, why: string): Promise<void> {
    try {
      this.#revision = await write();
    } catch (err) {
      if (/wrong last sequence|key exists/i.test((err as Error).message)) return; // another node was quicker
      throw err;
    }
    this.#holding = true;
    this.#renewedAt = this.#o.monotonic();
    this.holder = this.#o.nodeId;
    if (this.#closed) return; // stopping: close() releases it without starting the job
    this.#o.log.info({ lease: this.#o.name, why }, 'lease taken');
    this.#o.onAcquired();
  }

  #let(why: string): void {
    this.#holding = false;
    this.#revision = undefined;
    this.#seen = undefined;
    this.#o.log.warn({ lease: this.#o.name, why }, 'lease let go');
    this.#o.onReleased();
  }
}

function heldOf(e: KvEntry): Held | undefined {
  try {
    const v = JSON.parse(e.string()) as Partial<Held>;
    return typeof v.node === 'string' ? { node: v.node, at: Number(v.at) } : undefined;
  } catch {
    return undefined;
  }
}
