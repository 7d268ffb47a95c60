import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from '../../core/logger.js';
import { subjects, WORKER_LOST_MS, type Offer, type OfferAnswer, type WorkerLoad } from './protocol.js';

interface Known {
  load: WorkerLoad;
  seenAt: number;
  /** Offers this node has out to it, not answered yet. */
  offering: number;
}

export interface WorkerPoolDeps {
  nc: NatsConnection;
  prefix: string;
  log: Logger;
  now?: () => number;
}

const CHECK_MS = 150;
const OFFER_TIMEOUT_MS = 1000;
const RETRY_MS = 100;

/**
 * A node's view of the agent workers (issue 17, build 4): their load, from the reports they
 * publish every 400 ms, and who is gone. An offer goes to the least-loaded worker of that
 * name that has room, by this table; the worker itself decides (it may have filled up since
 * it reported, or another node may have got there first) and a refusal moves the offer on to
 * the next. A plain queue group would hand the call to any member, full or not.
 */
export class WorkerPool {
  readonly #workers = new Map<string, Known>();
  readonly #watchers = new Map<string, Set<() => void>>();
  readonly #now: () => number;
  #sub: Subscription | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Loss is judged only when this node has itself been connected that long. */
  #connectedAt: number;
  #changed: (() => void)[] = [];

  constructor(private readonly deps: WorkerPoolDeps) {
    this.#now = deps.now ?? Date.now;
    this.#connectedAt = this.#now();
  }

  /** Listens to the workers' reports and asks every worker for one now. */
  async start(): Promise<void> {
    const { nc, prefix, log } = this.deps;
    this.#sub = nc.subscribe(subjects.allLoads(prefix), {
      callback: (err, msg) => {
        if (err) return log.warn({ err }, 'worker load subscription failed');
        try {
          this.#report(msg.json<WorkerLoad>());
        } catch {
          log.warn({ subject: msg.subject }, 'a worker load report that is not JSON; ignored');
        }
      },
    });
    nc.publish(subjects.hello(prefix));
    await nc.flush();
    this.#timer = setInterval(() => this.#sweep(), CHECK_MS);
    this.#timer.unref();
  }

  close(): void {
    clearInterval(this.#timer);
    this.#sub?.unsubscribe();
    this.#sub = undefined;
    for (const w of this.#changed.splice(0)) w();
  }

  /** The NATS connection went or came back: silences before now say nothing about the workers. */
  connectionChanged(): void {
    const now = this.#now();
    this.#connectedAt = now;
    for (const w of this.#workers.values()) w.seenAt = now;
  }

  /** The live workers of an agent, as last reported. */
  workersOf(name: string): WorkerLoad[] {
    return [...this.#workers.values()].filter((w) => w.load.name === name).map((w) => w.load);
  }

  /** The agent's own rate, as its workers report it (undefined when none is known). */
  rateOf(name: string): number | undefined {
    return this.workersOf(name)[0]?.sampleRate;
  }

  /** Calls `lost` once if the worker goes (silent 1.3 s, or a clean stop); returns the unwatch. */
  watch(workerId: string, lost: () => void): () => void {
    let set = this.#watchers.get(workerId);
    if (!set) this.#watchers.set(workerId, (set = new Set()));
    set.add(lost);
    if (!this.#workers.has(workerId)) queueMicrotask(() => this.#lose(workerId));
    return () => set.delete(lost);
  }

  /**
   * Offers a call until a worker accepts or `deadline` (ms, the pool's clock) passes; resolves
   * with the worker's id, or undefined when none took it in time. `aborted()` true stops it.
   * A worker that did not answer in time is sent a cancel: its acceptance, if it comes, is void.
   */
  async offer(offer: Offer, deadline: number, aborted: () => boolean): Promise<string | undefined> {
    const tried = new Set<string>();
    while (!aborted()) {
      const left = deadline - this.#now();
      if (left <= 0) return undefined;
      const w = this.#pick(offer.name, tried);
      if (!w) {
        // Everyone full or refusing: wait for a report (or a moment), then try them all again.
        tried.clear();
        await this.#nextChange(Math.min(left, RETRY_MS));
        continue;
      }
      tried.add(w.load.id);
      w.offering++;
      const id = w.load.id;
      const cancel = () => this.#cancel(offer.callId, id);
      let answer: OfferAnswer | undefined;
      try {
        // A round trip takes a millisecond; an offer is never cut shorter than 100 ms by the deadline.
        const res = await this.deps.nc.request(subjects.offer(this.deps.prefix, id), JSON.stringify(offer), { timeout: Math.max(RETRY_MS, Math.min(left, OFFER_TIMEOUT_MS)) });
        answer = res.json<OfferAnswer>();
      } catch (err) {
        this.deps.log.info({ worker: id, err: (err as Error).message }, 'a worker did not answer an offer in time; it is told to let it go');
        cancel();
      } finally {
        w.offering--;
      }
      if (answer?.load && answer.load.id === id) this.#report(answer.load);
      if (answer?.accept) {
        if (!aborted()) return id;
        cancel();
      }
    }
    return undefined;
  }

  #cancel(callId: string, workerId: string): void {
    try {
      this.deps.nc.publish(subjects.toAgent(this.deps.prefix, callId, workerId), JSON.stringify({ t: 'cancel' }));
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message, worker: workerId }, 'a cancel could not be sent');
    }
  }

  #pick(name: string, tried: Set<string>): Known | undefined {
    let best: Known | undefined;
    let bestScore = Infinity;
    for (const w of this.#workers.values()) {
      const l = w.load;
      if (l.name !== name || l.draining || tried.has(l.id)) continue;
      const busy = l.calls + w.offering;
      if (busy >= l.maxCalls) continue;
      // The share of its places taken, then the fewest calls; a random tie-break spreads a burst.
      const score = busy / l.maxCalls + busy * 1e-6 + Math.random() * 1e-9;
      if (score < bestScore) [best, bestScore] = [w, score];
    }
    return best;
  }

  #report(load: WorkerLoad): void {
    if (typeof load?.id !== 'string' || typeof load.name !== 'string' || !Number.isFinite(load.calls) || !Number.isFinite(load.maxCalls)) return;
    if (load.gone) {
      this.#lose(load.id);
      return;
    }
    const known = this.#workers.get(load.id);
    if (known) {
      known.load = load;
      known.seenAt = this.#now();
    } else {
      this.#workers.set(load.id, { load, seenAt: this.#now(), offering: 0 });
      this.deps.log.info({ worker: load.id, agent: load.name, maxCalls: load.maxCalls }, 'agent worker joined');
    }
    for (const w of this.#changed.splice(0)) w();
  }

  #sweep(): void {
    const now = this.#now();
    if (now - this.#connectedAt < WORKER_LOST_MS) return;
    for (const [id, w] of this.#workers) if (now - w.seenAt > WORKER_LOST_MS) this.#lose(id);
  }

  #lose(id: string): void {
    const known = this.#workers.get(id);
    this.#workers.delete(id);
    const watchers = this.#watchers.get(id);
    this.#watchers.delete(id);
    if (known || watchers?.size) this.deps.log.warn({ worker: id, calls: watchers?.size ?? 0 }, 'agent worker gone; its calls end');
    for (const lost of watchers ?? []) {
      try {
        lost();
      } catch (err) {
        this.deps.log.error({ err, worker: id }, 'ending a call of a lost worker failed');
      }
    }
  }

  #nextChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#changed.push(done);
    });
  }
}
