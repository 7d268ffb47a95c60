import type { KV } from '@nats-io/kv';
import { kvKeys } from './kv-keys.js';
import type { Logger } from '../../core/logger.js';

/**
 * The fleet's nodes in a JetStream KV bucket (issue 17, build 1): each node heartbeats its load
 * into its own key; every node reads the others', so any node can pick the least-loaded one
 * (WHIP redirect) or name where a session lives; and a node whose heartbeat stopped is reaped by
 * the survivors: exactly one of them wins the reap (a revision-checked update marks the entry
 * `lost`), and ends that node's sessions (`onLost`, which releases them with reason `node-lost`).
 * nats-server 2.9 has no per-key TTL, so freshness is `at` in the entry, read on our clock
 * (DESIGN.md: "carry expiresAt in entries and sweep"); the nodes' clocks are assumed in step
 * (NTP) to well within lostAfterMs.
 */

export interface NodeInfo {
  nodeId: string;
  /** Where clients reach it (redirects). */
  publicUrl: string;
  /** Live sessions it holds. */
  sessions: number;
  startedAt: number;
  /** Its last heartbeat, epoch ms on its clock. */
  at: number;
  /** Set by the survivor that reaped it. */
  lost?: { by: string; at: number };
}

export interface NatsNodesOptions {
  kv: KV;
  self: { nodeId: string; publicUrl: string };
  /** This node's live session count, read at each heartbeat. */
  load: () => number;
  /** Ends a lost node's sessions; runs on the one survivor that won its reap. */
  onLost: (nodeId: string) => Promise<void>;
  now?: () => number;
  /** Heartbeat and reap check period (default 2 s). */
  heartbeatMs?: number;
  /** A node silent this long is lost (default 8 s: with a 2 s period, reaped within 10 s). */
  lostAfterMs?: number;
  log?: Logger;
}

const keyOf = (nodeId: string) => `node.${nodeId}`;

export class NatsNodes {
  readonly #o: Required<Omit<NatsNodesOptions, 'log'>> & { log: Logger | undefined };
  readonly #startedAt: number;
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
  #closed = false;
  /** The live nodes as the last tick read them, for a choice that cannot wait for the server. */
  #snapshot: NodeInfo[] = [];

  constructor(opts: NatsNodesOptions) {
    this.#o = { now: () => Date.now(), heartbeatMs: 2000, lostAfterMs: 8000, ...opts, log: opts.log };
    this.#startedAt = this.#o.now();
  }

  /** The first heartbeat now (a node is in the fleet once started), then one every heartbeatMs. */
  async start(): Promise<void> {
    await this.tick();
    this.#timer = setInterval(() => {
      if (this.#ticking) return; // a slow server: skip a beat rather than pile them up
      this.#ticking = this.tick()
        .catch((err: unknown) => this.#o.log?.warn({ err }, 'cluster heartbeat failed'))
        .finally(() => (this.#ticking = undefined));
    }, this.#o.heartbeatMs);
    this.#timer.unref();
  }

  /** One heartbeat and one look for lost nodes (tests call it on a fake clock). */
  async tick(): Promise<void> {
    const { kv, self } = this.#o;
    const info: NodeInfo = { nodeId: self.nodeId, publicUrl: self.publicUrl, sessions: this.#o.load(), startedAt: this.#startedAt, at: this.#o.now() };
    await kv.put(keyOf(self.nodeId), JSON.stringify(info));
    const entries = await this.#entries();
    this.#snapshot = entries.map((e) => e.info).filter((n) => !n.lost && this.#o.now() - n.at <= this.#o.lostAfterMs);
    for (const { info: other, revision } of entries) {
      if (other.nodeId === self.nodeId || other.lost || this.#o.now() - other.at <= this.#o.lostAfterMs) continue;
      await this.#reap(other, revision);
    }
  }

  /**
   * The least-loaded node as of the last heartbeat, counted up at once so that a burst of
   * publishers between two heartbeats spreads over the nodes rather than all going to one.
   */
  pickLeastLoaded(): NodeInfo | undefined {
    const best = [...this.#snapshot].sort((a, b) => a.sessions - b.sessions || a.startedAt - b.startedAt)[0];
    if (best) best.sessions++;
    return best;
  }

  /** The nodes heard from within lostAfterMs (this one included once it has started). */
  async live(): Promise<NodeInfo[]> {
    return (await this.#entries()).map((e) => e.info).filter((n) => !n.lost && this.#o.now() - n.at <= this.#o.lostAfterMs);
  }

  /** The least-loaded live node (fewest sessions; ties to the longest-running), for WHIP redirects. */
  async leastLoaded(): Promise<NodeInfo | undefined> {
    return (await this.live()).sort((a, b) => a.sessions - b.sessions || a.startedAt - b.startedAt)[0];
  }

  /** Leaves the fleet: the heartbeat stops and the entry goes (a clean stop is not a loss). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#ticking;
    await this.#o.kv.delete(keyOf(this.#o.self.nodeId)).catch((err: unknown) => this.#o.log?.warn({ err }, 'cluster: could not remove this node\'s entry'));
  }

  async #reap(lost: NodeInfo, revision: number): Promise<void> {
    const { kv, self } = this.#o;
    const marked: NodeInfo = { ...lost, lost: { by: self.nodeId, at: this.#o.now() } };
    try {
      // Revision-checked: of all the survivors that noticed, exactly one marks it and reaps.
      await kv.update(keyOf(lost.nodeId), JSON.stringify(marked), revision);
    } catch {
      return; // another survivor won, or the node came back (a new heartbeat)
    }
    this.#o.log?.warn({ node: lost.nodeId, silentMs: this.#o.now() - lost.at }, 'cluster: a node stopped heartbeating; its sessions are ended (node-lost)');
    await this.#o.onLost(lost.nodeId);
    // A node that comes back later writes a fresh entry (put) and is live again.
  }

  async #entries(): Promise<{ info: NodeInfo; revision: number }[]> {
    const out: { info: NodeInfo; revision: number }[] = [];
    for (const key of await kvKeys(this.#o.kv, 'node.*')) {
      const e = await this.#o.kv.get(key);
      if (!e || e.operation !== 'PUT') continue;
      try {
        out.push({ info: JSON.parse(e.string()) as NodeInfo, revision: e.revision });
      } catch {
        // Not ours to judge: an entry that does not parse is skipped.
      }
    }
    return out;
  }
}
