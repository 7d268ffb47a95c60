import type { KV, KvEntry } from '@nats-io/kv';
import type { Logger } from '../../core/logger.js';
import { kvKeys } from './kv-keys.js';

/**
 * The fleet's nodes in a JetStream KV bucket (issue 17, build 1): each node heartbeats its load
 * into its own key (`node.<id>`); every node reads the others', so any node can pick the
 * least-loaded one (WHIP redirect) or say where a node is reached; and a node whose heartbeat
 * stopped is reaped by the survivors: exactly one wins the reap (a revision-checked update marks
 * the entry `lost`) and ends that node's sessions (`onLost`: released as `node-lost`).
 *
 * Loss is judged by observation, not by comparing clocks: a node is lost when this node, while
 * it was itself connected and heartbeating, saw the other's entry not change for `lostAfterMs`.
 * Every disconnect or reconnect starts the observation over, so a NATS outage does not make the
 * nodes reap each other when it ends, and a node whose clock is off is judged like any other.
 * A node that was reaped while it was away (a network partition) finds out at its next
 * heartbeat, which is revision-checked against its own last write: it ends its local calls too
 * (`onReaped`; the fleet was told they ended) and joins again.
 */

export interface NodeInfo {
  nodeId: string;
  /** Where clients reach it (redirects). */
  publicUrl: string;
  /** Live sessions it holds. */
  sessions: number;
  startedAt: number;
  /** Its last heartbeat, epoch ms on its own clock (for people; loss is judged by observation). */
  at: number;
  /** It is draining: no new sessions should be sent to it. */
  draining?: boolean;
  /** Set by the survivor that reaped it. */
  lost?: { by: string; at: number };
}

export interface NatsNodesOptions {
  kv: KV;
  self: { nodeId: string; publicUrl: string };
  /** This node's live session count, read at each heartbeat. */
  load: () => number;
  /** Ends a lost node's sessions; runs on the one survivor that won its reap, outside the heartbeat. */
  onLost: (nodeId: string) => Promise<void>;
  /** This node was reaped while it could not heartbeat: its calls are ended fleet-wide, so end them here. */
  onReaped?: () => Promise<void> | void;
  /** Monotonic ms (default performance.now): observation times. */
  monotonic?: () => number;
  /** Epoch ms (default Date.now): `at` and `startedAt`. */
  now?: () => number;
  /** Heartbeat and reap check period (default 2 s). */
  heartbeatMs?: number;
  /** A node unchanged this long, to this node's eyes, is lost (default 8 s: reaped within ~10 s). */
  lostAfterMs?: number;
  log?: Logger;
}

interface Seen {
  revision: number;
  /** When this node saw that revision first (monotonic ms). */
  since: number;
  info: NodeInfo;
}

const keyOf = (nodeId: string) => `node.${nodeId}`;
const WRONG_LAST_SEQUENCE = /wrong last sequence/i;
/** An entry must parse as a NodeInfo whose nodeId is its key's. */
function infoOf(key: string, e: KvEntry): NodeInfo | undefined {
  try {
    const v = JSON.parse(e.string()) as Partial<NodeInfo>;
    return typeof v.nodeId === 'string' && key === keyOf(v.nodeId) && typeof v.publicUrl === 'string' && typeof v.sessions === 'number' ? (v as NodeInfo) : undefined;
  } catch {
    return undefined;
  }
}

export class NatsNodes {
  readonly #o: Required<Omit<NatsNodesOptions, 'log' | 'onReaped'>> & Pick<NatsNodesOptions, 'log' | 'onReaped'>;
  readonly #startedAt: number;
  readonly #seen = new Map<string, Seen>();
  #revision: number | undefined;
  #draining = false;
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
  readonly #reaping = new Set<Promise<void>>();
  #closed = false;
  /** The bucket has been read since start or the last reconnect: absence from #seen means something. */
  #looked = false;

  constructor(opts: NatsNodesOptions) {
    this.#o = { now: () => Date.now(), monotonic: () => performance.now(), heartbeatMs: 2000, lostAfterMs: 8000, ...opts };
    this.#startedAt = this.#o.now();
  }

  /** The first heartbeat now (a node is in the fleet once started), then one every heartbeatMs. */
  async start(): Promise<void> {
    await this.tick();
    this.#timer = setInterval(() => {
      if (this.#ticking) return; // a slow server: skip a beat rather than pile them up
      this.#ticking = this.tick()
        .catch((err: unknown) => {
          this.connectionChanged(); // a failed heartbeat: what we saw meanwhile proves nothing
          this.#o.log?.warn({ err }, 'cluster heartbeat failed');
        })
        .finally(() => (this.#ticking = undefined));
    }, this.#o.heartbeatMs);
    this.#timer.unref();
  }

  /** The connection dropped or came back: observations start over (nobody is judged on a gap of ours). */
  connectionChanged(): void {
    this.#seen.clear();
    this.#looked = false;
  }

  /** Says, from the next heartbeat on, that this node takes no new sessions. */
  draining(): void {
    this.#draining = true;
  }

  /** One heartbeat and one look for lost nodes (tests call it by hand). */
  async tick(): Promise<void> {
    await this.#heartbeat();
    const now = this.#o.monotonic();
    const present = new Set<string>();
    for (const { info, revision } of await this.#entries()) {
      present.add(info.nodeId);
      if (info.nodeId === this.#o.self.nodeId) continue;
      const seen = this.#seen.get(info.nodeId);
      if (!seen || seen.revision !== revision) {
        this.#seen.set(info.nodeId, { revision, since: now, info });
        continue;
      }
      if (!info.lost && now - seen.since > this.#o.lostAfterMs) this.#reap(info, revision);
    }
    for (const id of this.#seen.keys()) if (!present.has(id)) this.#seen.delete(id);
    this.#looked = true;
  }

  /**
   * A node the fleet has marked lost, or that its bucket no longer lists (it left): as of the
   * last heartbeat, and never while this node has not looked since its connection came back.
   */
  gone(nodeId: string): boolean {
    if (nodeId === this.#o.self.nodeId || !this.#looked) return false;
    const seen = this.#seen.get(nodeId);
    return !seen || seen.info.lost !== undefined;
  }

  /** A node whose entry the fleet has marked lost (a survivor reaped it), as of the last heartbeat. */
  markedLost(nodeId: string): boolean {
    return this.#seen.get(nodeId)?.info.lost !== undefined;
  }

  /** The nodes that are live to this node's eyes (itself included once started), as last seen. */
  live(): NodeInfo[] {
    const now = this.#o.monotonic();
    const others = [...this.#seen.values()].filter((s) => !s.info.lost && now - s.since <= this.#o.lostAfterMs).map((s) => s.info);
    return this.#revision === undefined ? others : [this.#selfInfo(), ...others];
  }

  /**
   * The least-loaded live node that takes sessions, as of the last heartbeat, counted up at once
   * so that a burst of publishers between two heartbeats spreads rather than all going to one.
   */
  pickLeastLoaded(): NodeInfo | undefined {
    const best = this.live()
      .filter((n) => !n.draining)
      .sort((a, b) => a.sessions - b.sessions || a.startedAt - b.startedAt)[0];
    if (best && best.nodeId !== this.#o.self.nodeId) best.sessions++;
    return best;
  }

  /** Leaves the fleet: the heartbeat stops and the entry goes (a clean stop is not a loss). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#ticking;
    await Promise.allSettled(this.#reaping);
    await this.#o.kv.delete(keyOf(this.#o.self.nodeId)).catch((err: unknown) => this.#o.log?.warn({ err }, 'cluster: could not remove this node\'s entry'));
  }

  #selfInfo(): NodeInfo {
    return { nodeId: this.#o.self.nodeId, publicUrl: this.#o.self.publicUrl, sessions: this.#o.load(), startedAt: this.#startedAt, at: this.#o.now(), ...(this.#draining ? { draining: true } : {}) };
  }

  /** Revision-checked against our own last write: a write by anyone else (a reap) is noticed. */
  async #heartbeat(): Promise<void> {
    const { kv, self } = this.#o;
    const value = JSON.stringify(this.#selfInfo());
    if (this.#revision === undefined) {
      this.#revision = await kv.put(keyOf(self.nodeId), value);
      return;
    }
    try {
      this.#revision = await kv.update(keyOf(self.nodeId), value, this.#revision);
    } catch (err) {
      if (!WRONG_LAST_SEQUENCE.test((err as Error).message)) throw err;
      const e = await kv.get(keyOf(self.nodeId));
      const info = e && e.operation === 'PUT' ? infoOf(keyOf(self.nodeId), e) : undefined;
      if (info?.lost) {
        this.#o.log?.error({ by: info.lost.by }, 'cluster: this node was reaped while it could not heartbeat; its calls were ended fleet-wide, so they end here too, and it joins again');
        await this.#o.onReaped?.();
      } else {
        this.#o.log?.error({ node: self.nodeId }, 'cluster: another process wrote this node\'s entry: is cluster.nodeId configured twice?');
      }
      this.connectionChanged();
      this.#revision = await kv.put(keyOf(self.nodeId), JSON.stringify(this.#selfInfo()));
    }
  }

  /** Revision-checked: of all the survivors that noticed, exactly one marks it, and that one ends its sessions. */
  #reap(lost: NodeInfo, revision: number): void {
    const { kv, self } = this.#o;
    const marked: NodeInfo = { ...lost, lost: { by: self.nodeId, at: this.#o.now() } };
    const p = (async () => {
      try {
        await kv.update(keyOf(lost.nodeId), JSON.stringify(marked), revision);
      } catch (err) {
        if (!WRONG_LAST_SEQUENCE.test((err as Error).message)) this.#o.log?.warn({ err, node: lost.nodeId }, 'cluster: could not mark a silent node lost (tried again next beat)');
        return; // another survivor won, or the node heartbeat meanwhile
      }
      this.#o.log?.warn({ node: lost.nodeId }, 'cluster: a node stopped heartbeating; its sessions are ended (node-lost)');
      // Outside the heartbeat: ending many sessions must not make this node look silent.
      await this.#o.onLost(lost.nodeId).catch((err: unknown) => this.#o.log?.error({ err, node: lost.nodeId }, 'cluster: ending a lost node\'s sessions failed'));
    })().finally(() => this.#reaping.delete(p));
    this.#reaping.add(p);
  }

  /** Reaps in progress (tests wait for them). */
  async settled(): Promise<void> {
    await Promise.allSettled(this.#reaping);
  }

  async #entries(): Promise<{ info: NodeInfo; revision: number }[]> {
    const out: { info: NodeInfo; revision: number }[] = [];
    const keys = await kvKeys(this.#o.kv, 'node.*');
    const entries = await Promise.all(keys.map(async (key) => ({ key, e: await this.#o.kv.get(key) })));
    for (const { key, e } of entries) {
      if (!e || e.operation !== 'PUT') continue;
      const info = infoOf(key, e);
      if (info) out.push({ info, revision: e.revision });
      else this.#o.log?.warn({ key }, 'cluster: a nodes-bucket entry that is not a node was skipped');
    }
    return out;
  }
}
