import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { connect, type ConnectionOptions, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { Resampler } from '../../audio/resampler.js';
import { FRAME_MS } from '../../audio/frame.js';
import { newSessionId } from '../../core/ids.js';
import { createLogger, type Logger } from '../../core/logger.js';
import { AgentSession, TransferError, type Agent, type AgentControl } from '../agent.js';
import type { MarkResult } from '../../audio/pacer.js';
import {
  AGENT_NAME,
  chunks,
  decode,
  encodeAgentAudio,
  NODE_SILENT_MS,
  offerSchema,
  RESERVATION_MS,
  subjects,
  WORKER_HEARTBEAT_MS,
  type Offer,
  type OfferAnswer,
  type ToAgent,
  type ToNode,
  type WorkerLoad,
} from './protocol.js';

export interface AgentWorkerOptions {
  /** A NATS connection, or how to make one (then the worker closes it when it stops). */
  nats: NatsConnection | ConnectionOptions;
  /** The agent name calls ask for (`{ "type": "worker", "name": ... }`). */
  name: string;
  agent: Agent;
  /** Calls at once (default 10); an offer past it is refused and goes to another worker. */
  maxCalls?: number;
  /** `cluster.nats.prefix` of the fleet (default `voxgate`). */
  prefix?: string;
  log?: Logger;
  /** Default: `<host>-<pid>-<random>`. */
  id?: string;
}

export interface AgentWorker {
  readonly id: string;
  /** Calls taken and not yet ended (places held for calls being answered included). */
  readonly calls: number;
  /** Takes no more calls; resolves when the last one has ended. */
  drain(): Promise<void>;
  /** Stops now: every call is hung up (its caller's call ends, `agent-disconnected`), the fleet is told, the connection closed if it was ours. */
  close(): Promise<void>;
}

/**
 * Runs an agent as a worker of the fleet (issue 17, build 4): it connects to NATS only (no
 * port of its own), reports its load, accepts offered calls while it has room, and gives each
 * one to `agent.attach` as an AgentSession, exactly as an in-process agent gets it.
 *
 * Differences an agent can notice: `sendDtmf` is true for any valid digits (whether the
 * caller's media carried them is the node's to log), and a refused `dial` is logged here
 * rather than thrown (the checks run on the node).
 */
export async function runAgentWorker(opts: AgentWorkerOptions): Promise<AgentWorker> {
  if (!AGENT_NAME.test(opts.name)) throw new Error(`runAgentWorker: name '${opts.name}' must be letters, digits, - and _`);
  const maxCalls = opts.maxCalls ?? 10;
  if (!Number.isInteger(maxCalls) || maxCalls < 1) throw new Error('runAgentWorker: maxCalls must be a whole number of at least 1');
  const ours = !('publish' in opts.nats);
  const nc = ours ? await connect({ name: `voxgate-worker-${opts.name}`, maxReconnectAttempts: -1, ...(opts.nats as ConnectionOptions) }) : (opts.nats as NatsConnection);
  const id = opts.id ?? `${hostname().replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40)}-${process.pid}-${randomBytes(3).toString('hex')}`;
  if (!AGENT_NAME.test(id)) throw new Error(`runAgentWorker: id '${id}' must be letters, digits, - and _`);
  const worker = new Worker(nc, ours, { ...opts, maxCalls, prefix: opts.prefix ?? 'voxgate', log: opts.log ?? createLogger('info'), id });
  try {
    await worker.start();
  } catch (err) {
    await worker.close();
    throw err;
  }
  return worker;
}

type Resolved = Required<Pick<AgentWorkerOptions, 'maxCalls' | 'prefix' | 'log' | 'id'>> & AgentWorkerOptions;

class Worker implements AgentWorker {
  readonly id: string;
  readonly #calls = new Map<string, WorkerCall>();
  readonly #subs: Subscription[] = [];
  #heartbeat: NodeJS.Timeout | undefined;
  #draining = false;
  #drained: (() => void)[] = [];
  readonly log: Logger;

  constructor(
    readonly nc: NatsConnection,
    private readonly ours: boolean,
    readonly opts: Resolved,
  ) {
    this.id = opts.id;
    this.log = opts.log.child({ worker: this.id, agent: opts.name });
  }

  get calls(): number {
    return this.#calls.size;
  }

  load(gone = false): WorkerLoad {
    return { v: 1, id: this.id, name: this.opts.name, calls: this.#calls.size, maxCalls: this.opts.maxCalls, sampleRate: this.opts.agent.sampleRate, draining: this.#draining, ...(gone ? { gone } : {}) };
  }

  report(gone = false): void {
    try {
      this.nc.publish(subjects.load(this.opts.prefix, this.opts.name), JSON.stringify(this.load(gone)));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'the load report could not be sent');
    }
  }

  async start(): Promise<void> {
    const { nc, opts } = this;
    this.#subs.push(
      nc.subscribe(subjects.offer(opts.prefix, this.id), {
        callback: (err, msg) => {
          // An offer without a reply subject could take a place nobody knows of: ignored.
          if (err || !msg.reply) return;
          // Nothing may throw out of a NATS callback: it would stop this connection's reader.
          try {
            const answer = (a: OfferAnswer) => void msg.respond(JSON.stringify(a));
            let parsed: ReturnType<typeof offerSchema.safeParse> | undefined;
            try {
              parsed = offerSchema.safeParse(msg.json());
            } catch {
              parsed = undefined;
            }
            if (!parsed?.success) {
              this.log.warn({ why: parsed?.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') ?? 'not JSON' }, 'an offer that is not ours; refused');
              return answer({ accept: false, reason: 'bad offer', load: this.load() });
            }
            this.#offered(parsed.data as Offer, answer);
          } catch (e) {
            this.log.error({ err: e }, 'an offer could not be handled');
          }
        },
      }),
    );
    this.#subs.push(nc.subscribe(subjects.hello(opts.prefix), { callback: () => this.report() }));
    await nc.flush();
    this.report();
    this.#heartbeat = setInterval(() => this.report(), WORKER_HEARTBEAT_MS);
    this.log.info({ maxCalls: opts.maxCalls, sampleRate: opts.agent.sampleRate }, 'agent worker ready');
  }

  #offered(offer: Offer, answer: (a: OfferAnswer) => void): void {
    const refuse = (reason: string) => answer({ accept: false, reason, load: this.load() });
    if (this.#draining) return refuse('draining');
    if (this.#calls.size >= this.opts.maxCalls) return refuse('full');
    if (offer.name !== this.opts.name || this.#calls.has(offer.callId)) return refuse('bad offer');
    const call = new WorkerCall(this, offer, () => {
      this.#calls.delete(offer.callId);
      this.report();
      if (this.#calls.size === 0) for (const d of this.#drained.splice(0)) d();
    });
    this.#calls.set(offer.callId, call);
    answer({ accept: true, workerId: this.id, load: this.load() });
    this.report();
  }

  drain(): Promise<void> {
    this.#draining = true;
    this.report();
    return this.#calls.size === 0 ? Promise.resolve() : new Promise((r) => this.#drained.push(r));
  }

  async close(): Promise<void> {
    this.#draining = true;
    clearInterval(this.#heartbeat);
    for (const s of this.#subs.splice(0)) s.unsubscribe();
    for (const c of [...this.#calls.values()]) c.stop('agent-disconnected');
    this.report(true);
    for (const d of this.#drained.splice(0)) d();
    if (this.ours) await this.nc.drain().catch(() => undefined);
    else await this.nc.flush().catch(() => undefined);
  }
}

/** One call on the worker: its subscription, its AgentSession, and the agent's requests on the wire. */
class WorkerCall {
  readonly #toNode: string;
  readonly #sub: Subscription;
  readonly log: Logger;
  #session: AgentSession | undefined;
  #ended = false;
  #heardAt = Date.now();
  readonly #watchdog: NodeJS.Timeout;
  /** Sequence of the agent's plays, clears and marks, as the node applies them in order. */
  #seq = 0;
  #clearedAt = 0;
  #reportedMs = 0;
  #reportAt = Date.now();
  /** Plays the node had not applied when it last reported: seq and ms. */
  readonly #inFlight: { seq: number; ms: number }[] = [];
  #nextId = 0;
  readonly #marks = new Map<number, (r: MarkResult) => void>();
  readonly #transfers = new Map<number, { resolve(): void; reject(e: Error): void }>();
  readonly #toAgentRate: Resampler | undefined;
  #toCallRate: Resampler | undefined;

  constructor(
    private readonly worker: Worker,
    readonly offer: Offer,
    private readonly onDone: () => void,
  ) {
    const { prefix, agent } = worker.opts;
    this.log = worker.log.child({ session: offer.callId, node: offer.node });
    this.#toNode = subjects.toNode(prefix, offer.callId, worker.id);
    if (agent.sampleRate !== offer.sampleRate) {
      this.#toAgentRate = new Resampler(offer.sampleRate, agent.sampleRate);
      this.#toCallRate = new Resampler(agent.sampleRate, offer.sampleRate);
    }
    this.#sub = worker.nc.subscribe(subjects.toAgent(prefix, offer.callId, worker.id), {
      callback: (err, msg) => {
        if (err) return;
        // Nothing may throw out of a NATS callback: it would stop this connection's reader.
        try {
          this.#received(msg.data);
        } catch (e) {
          this.log.warn({ err: e }, 'a message from the node could not be applied');
        }
      },
    });
    // A place held for a call that never starts (the node gave up, or is gone) is given back;
    // a started call whose node went silent (it keeps talking at least every second) ends.
    const reservedUntil = Date.now() + RESERVATION_MS;
    this.#watchdog = setInterval(() => {
      const now = Date.now();
      if (!this.#session) {
        if (now > reservedUntil) this.stop('setup-failed');
      } else if (now - this.#heardAt > NODE_SILENT_MS) {
        this.log.warn("the call's node went silent; ending the session");
        this.stop('node-lost');
      }
    }, 1000);
    this.#watchdog.unref();
  }

  #publish(m: ToNode | Buffer): void {
    try {
      this.worker.nc.publish(this.#toNode, Buffer.isBuffer(m) ? m : JSON.stringify(m));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'a message to the node could not be sent');
    }
  }

  #received(data: Uint8Array): void {
    this.#heardAt = Date.now();
    if (this.#ended) return;
    const d = decode<ToAgent>(data, 3);
    if ('bad' in d) return this.log.warn({ why: d.bad }, 'the node sent a message that is not ours; ignored');
    if ('audio' in d) {
      const [applied, queuedMs, timestampMs] = d.header as [number, number, number];
      this.#progress(applied, queuedMs);
      const s = this.#session;
      if (!s) return;
      const samples = this.#toAgentRate ? this.#toAgentRate.process(d.audio) : d.audio;
      s.deliverFrame({ samples, sampleRate: this.worker.opts.agent.sampleRate, timestampMs });
      return;
    }
    const m = d.json;
    try {
      switch (m.t) {
        case 'start':
          return this.#start();
        case 'cancel':
          // Only a place not yet started: once the call runs, its end comes as `ended`.
          if (!this.#session) this.stop('cancelled', false);
          return;
        case 'ka':
          if (Number.isFinite(m.applied) && Number.isFinite(m.queuedMs)) this.#progress(m.applied, m.queuedMs);
          return;
        case 'dtmf':
          return this.#session?.deliverDtmf(String(m.digit));
        case 'message':
          return this.#session?.deliverMessage(m.data);
        case 'transferred':
          return this.#session?.deliverTransferred(String(m.to));
        case 'ended':
          return this.stop(String(m.reason), false);
        case 'mark': {
          const resolve = this.#marks.get(m.id);
          this.#marks.delete(m.id);
          return resolve?.(m.result === 'played' ? 'played' : 'cleared');
        }
        case 'transfer': {
          const t = this.#transfers.get(m.id);
          this.#transfers.delete(m.id);
          if (m.ok) t?.resolve();
          else t?.reject(m.status !== undefined ? new TransferError(m.status, m.reason ?? '') : new Error(m.message ?? 'the transfer failed'));
          return;
        }
        case 'dial':
          if (!m.ok) this.log.warn({ call: m.id, why: m.message }, 'the call the agent placed was refused by the node');
          return;
        default:
          this.log.warn({ type: String((m as { t: unknown }).t).slice(0, 40) }, 'the node sent an unknown message; ignored');
      }
    } catch (err) {
      this.log.warn({ err }, 'a message from the node could not be applied');
    }
  }

  /** The node's pacer: it has applied everything up to `applied` and has `queuedMs` to play. */
  #progress(applied: number, queuedMs: number): void {
    if (applied < this.#clearedAt) return; // a report from before our clear: what it queued is gone
    this.#reportedMs = queuedMs;
    this.#reportAt = Date.now();
    while (this.#inFlight.length && this.#inFlight[0]!.seq <= applied) this.#inFlight.shift();
  }

  #start(): void {
    if (this.#session || this.#ended) return;
    const { offer } = this;
    const { agent } = this.worker.opts;
    const session = new AgentSession(offer.callId, offer.source, agent.sampleRate, this.#control(), offer.details ?? { customParameters: {} });
    this.#session = session;
    this.log.info({ source: offer.source.name }, 'call started');
    this.#publish({ t: 'started' });
    const failed = (err: unknown) => {
      this.log.error({ err }, 'the agent failed to start');
      this.#publish({ t: 'failed', message: (err as Error)?.message ?? String(err) });
      this.stop('agent-failed', false);
    };
    // At once, as in process: what arrives right after the start finds the agent listening.
    let attaching: void | Promise<void>;
    try {
      attaching = agent.attach(session);
    } catch (err) {
      return failed(err);
    }
    Promise.resolve(attaching).then(() => this.#ended || this.#publish({ t: 'attached' }), failed);
  }

  #control(): AgentControl {
    return {
      play: (samples) => {
        if (this.#ended) return;
        const pcm = this.#toCallRate ? this.#toCallRate.process(samples) : samples;
        for (const c of chunks(pcm)) {
          const seq = ++this.#seq;
          this.#inFlight.push({ seq, ms: (c.length / this.offer.sampleRate) * 1000 });
          this.#publish(encodeAgentAudio(c, seq));
        }
      },
      clear: () => {
        if (this.#ended) return;
        const seq = ++this.#seq;
        this.#clearedAt = seq;
        this.#inFlight.length = 0;
        this.#reportedMs = 0;
        // The filter's last few ms of the dropped audio must not open the next utterance.
        if (this.#toCallRate) this.#toCallRate = new Resampler(this.worker.opts.agent.sampleRate, this.offer.sampleRate);
        this.#publish({ t: 'clear', seq });
      },
      mark: (name) => {
        if (this.#ended) return Promise.resolve('cleared');
        const id = ++this.#nextId;
        const p = new Promise<MarkResult>((resolve) => this.#marks.set(id, resolve));
        this.#publish({ t: 'mark', id, seq: ++this.#seq, name });
        return p;
      },
      send: (data) => this.#publish({ t: 'send', data }),
      hangup: (reason) => this.#publish({ t: 'hangup', reason }),
      transfer: (target, opts) => {
        if (this.#ended) return Promise.reject(new Error('the session has ended'));
        const id = ++this.#nextId;
        const p = new Promise<void>((resolve, reject) => this.#transfers.set(id, { resolve, reject }));
        this.#publish({ t: 'transfer', id, target, ...(opts ? { opts } : {}) });
        return p;
      },
      sendDtmf: (digits) => {
        this.#publish({ t: 'dtmf', digits });
        return true;
      },
      dial: (req) => {
        const id = newSessionId();
        this.#publish({ t: 'dial', id, req });
        return { id, state: 'dialing' };
      },
      queuedMs: () => {
        const sinceReport = Date.now() - this.#reportAt;
        const pending = this.#inFlight.reduce((sum, p) => sum + p.ms, 0);
        // Between reports the node plays on: one frame per FRAME_MS.
        return Math.max(0, this.#reportedMs - Math.floor(sinceReport / FRAME_MS) * FRAME_MS) + pending;
      },
    };
  }

  /** Ends the call here; `tell`: the node is told to hang it up too (with `reason`). */
  stop(reason: string, tell = true): void {
    if (this.#ended) return;
    this.#ended = true;
    clearInterval(this.#watchdog);
    if (tell) this.#publish({ t: 'hangup', reason });
    this.#sub.unsubscribe();
    // The agent hears the end first; a mark or transfer it asks for from its `ended` listener is settled below too.
    this.#session?.end(reason);
    for (const resolve of this.#marks.values()) resolve('cleared');
    this.#marks.clear();
    // `transferred`: the caller is with the target, so a transfer waiting on that succeeded (its ok may still be on the way).
    for (const t of this.#transfers.values()) {
      if (reason === 'transferred') t.resolve();
      else t.reject(new Error('the session has ended'));
    }
    this.#transfers.clear();
    if (this.#session) this.log.info({ reason }, 'call ended');
    this.onDone();
  }
}
