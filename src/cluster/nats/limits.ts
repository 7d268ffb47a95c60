import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { Logger } from '../../core/logger.js';

/**
 * Limits counted across the fleet (issue 17, build 5): a source's `maxSessions`, a trunk's
 * `inbound.maxCalls`. One KV entry per limited name holds the ids counted against it, each with
 * its node and when it was taken; taking a place is one revision-checked write (two nodes
 * racing for the last place: one write wins, the other re-reads and finds it full). A node that
 * is gone leaves its ids behind: whoever next reads the entry drops those of nodes the fleet has
 * marked lost or no longer lists (after a grace period, so a node just started is not mistaken
 * for one that left), and a node drops its own ids of sessions it no longer has (a release
 * that could not be written).
 */

interface Held {
  node: string;
  at: number;
}

type Entry = Record<string, Held>;

const MAX_ATTEMPTS = 20;

/** Every attempt lost a race for the entry: the place is refused, never taken uncounted. */
export class LimitContention extends Error {
  override readonly name = 'LimitContention';
}
/** An id of a node not in the fleet's list is dropped only when older than this (a node just started is listed within a heartbeat). */
const GRACE_MS = 10_000;

export interface FleetLimitsDeps {
  kv: KV;
  nodeId: string;
  /** True for a node the fleet has marked lost, or no longer lists. */
  gone(node: string): boolean;
  /** Whether this node still has the session (an id of ours it does not have: a release that failed). */
  holds(id: string): boolean;
  now?: () => number;
  log: Logger;
}

export class FleetLimits {
  readonly #now: () => number;

  constructor(private readonly deps: FleetLimitsDeps) {
    this.#now = deps.now ?? Date.now;
  }

  /** Takes a place for `id` under `name` if fewer than `max` are taken; true when it has one. */
  async acquire(name: string, id: string, max: number): Promise<boolean> {
    let taken = false;
    await this.#update(name, (entry) => {
      taken = id in entry || Object.keys(entry).length < max;
      if (!taken || id in entry) return undefined;
      return { ...entry, [id]: { node: this.deps.nodeId, at: this.#now() } };
    });
    return taken;
  }

  /** Gives `id`'s place back. */
  async release(name: string, id: string): Promise<void> {
    await this.#update(name, (entry) => {
      if (!(id in entry)) return undefined;
      const next = { ...entry };
      delete next[id];
      return next;
    });
  }

  /** How many places are taken now (what the next acquire would see). */
  async count(name: string): Promise<number> {
    const { entry } = await this.#read(keyOf(name));
    return Object.keys(this.#live(entry)).length;
  }

  /** change(live entry) → the entry to write, or undefined for no write. Retries on a revision conflict. */
  async #update(name: string, change: (entry: Entry) => Entry | undefined): Promise<void> {
    const key = keyOf(name);
    for (let attempt = 1; ; attempt++) {
      const { entry, revision } = await this.#read(key);
      const live = this.#live(entry);
      const pruned = Object.keys(live).length !== Object.keys(entry).length;
      const next = change(live) ?? (pruned ? live : undefined);
      if (!next) return;
      try {
        await this.deps.kv.put(key, JSON.stringify(next), { previousSeq: revision });
        return;
      } catch (err) {
        if (!isRevisionConflict(err)) throw err;
        if (attempt >= MAX_ATTEMPTS) throw new LimitContention(`${name}: ${MAX_ATTEMPTS} writes in a row lost a race`);
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(2 ** attempt, 256)));
      }
    }
  }

  #live(entry: Entry): Entry {
    const now = this.#now();
    const out: Entry = {};
    for (const [id, held] of Object.entries(entry)) {
      const old = now - held.at > GRACE_MS;
      if (old && (held.node === this.deps.nodeId ? !this.deps.holds(id) : this.deps.gone(held.node))) continue;
      out[id] = held;
    }
    return out;
  }

  async #read(key: string): Promise<{ entry: Entry; revision: number }> {
    const e = await this.deps.kv.get(key);
    if (!e) return { entry: {}, revision: 0 };
    if (e.operation !== 'PUT') return { entry: {}, revision: e.revision };
    try {
      const v = JSON.parse(e.string()) as unknown;
      const entry: Entry = {};
      if (v && typeof v === 'object') {
        for (const [id, held] of Object.entries(v as Record<string, Partial<Held>>)) {
          if (typeof held?.node === 'string' && typeof held.at === 'number') entry[id] = { node: held.node, at: held.at };
        }
      }
      return { entry, revision: e.revision };
    } catch {
      this.deps.log.warn({ key }, 'a fleet limit entry that is not JSON; counted as empty');
      return { entry: {}, revision: e.revision };
    }
  }
}

/** `limit.` + base64url of the name (`source:web`, `trunk:carrier`): every character one KV keys allow. */
function keyOf(name: string): string {
  return `limit.${Buffer.from(name, 'utf8').toString('base64url')}`;
}

function isRevisionConflict(err: unknown): boolean {
  if (err instanceof JetStreamApiError) return err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown;
  return err instanceof Error && /wrong last sequence/i.test(err.message);
}
