import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { z } from 'zod';
import { VoxgateError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { TransferError, type Agent, type AgentSampleRate, type AgentSession, type CallDetails } from '../agent.js';
import type { WorkerPool } from './pool.js';
import { AGENT_NAME, decode, encodeCallerAudio, NODE_KEEPALIVE_MS, subjects, type Offer, type ToAgent, type ToNode } from './protocol.js';

export const workerSpecSchema = z
  .object({
    type: z.literal('worker'),
    /** The name the workers run under (`runAgentWorker({ name })`, `voxgate worker --name`). */
    name: z.string().regex(AGENT_NAME, 'letters, digits, - and _ (a NATS subject token)'),
    /** The rate the call's audio crosses at; default: the workers' agent's own, else 16000. */
    sampleRate: z.union([z.literal(8000), z.literal(16000), z.literal(24000), z.literal(48000)]).optional(),
    /** How long a call waits for a worker to accept it before it is refused (SIP 480, WHIP 503). */
    ringTimeoutSeconds: z.number().positive().max(300).default(10),
  })
  .strict();

export type WorkerSpec = z.infer<typeof workerSpecSchema>;

export interface WorkerAgentDeps {
  nc: NatsConnection;
  prefix: string;
  nodeId: string;
  pool: WorkerPool;
  log: Logger;
}

/**
 * An agent served by a worker process on NATS (issue 17, build 4), as the call sees it: the
 * same Agent as an in-process one. reserve() offers the call to the workers before it is
 * answered; attach() starts the agent there and carries the session both ways: the caller's
 * frames, DTMF, messages and end to the worker; its audio, marks, clears, messages, hang-up,
 * transfers, digits and dials back. The worker gone (1.3 s without its report) ends the call
 * with `agent-disconnected`.
 */
export class WorkerAgent implements Agent {
  readonly name: string;
  readonly sampleRate: AgentSampleRate;
  #callId: string | undefined;
  #workerId: string | undefined;
  #sub: Subscription | undefined;
  #attached = false;
  #done = false;
  #onMessage: ((data: Uint8Array) => void) | undefined;
  readonly #early: Uint8Array[] = [];

  constructor(
    readonly spec: WorkerSpec,
    private readonly deps: WorkerAgentDeps,
  ) {
    this.name = `worker:${spec.name}`;
    const rate = spec.sampleRate ?? deps.pool.rateOf(spec.name) ?? 16000;
    this.sampleRate = (rate === 8000 || rate === 24000 || rate === 48000 ? rate : 16000) as AgentSampleRate;
  }

  /** The worker that took the call, once one has. */
  get workerId(): string | undefined {
    return this.#workerId;
  }

  /** Offers the call; rejects with VG_AGENT_NOT_READY when no worker accepts within the ring time. */
  async reserve(call: { id: string; source: { name: string; kind: string }; details?: CallDetails }): Promise<void> {
    if (this.#workerId) return;
    const { nc, prefix, nodeId, pool } = this.deps;
    this.#callId = call.id;
    // Listening before the offer: nothing the worker sends once it has accepted is missed.
    this.#sub = nc.subscribe(subjects.toNode(prefix, call.id), {
      callback: (err, msg) => {
        if (err) return;
        if (this.#onMessage) this.#onMessage(msg.data);
        else if (this.#early.length < 64) this.#early.push(msg.data);
      },
    });
    const offer: Offer = { v: 1, callId: call.id, node: nodeId, name: this.spec.name, sampleRate: this.sampleRate, source: { name: call.source.name, kind: call.source.kind }, details: call.details ?? { customParameters: {} } };
    const seconds = this.spec.ringTimeoutSeconds;
    const workerId = await pool.offer(offer, Date.now() + seconds * 1000, () => this.#done);
    if (!workerId) {
      this.#finish();
      const known = pool.workersOf(this.spec.name).length;
      throw new VoxgateError('VG_AGENT_NOT_READY', `Temporarily Unavailable (no worker for agent '${this.spec.name}' accepted the call within ${seconds} s; ${known} known)`);
    }
    this.#workerId = workerId;
  }

  /** The call will not happen after all: the worker's place is given back (once attached, its end does that). */
  unreserve(): void {
    if (this.#attached || this.#done) return;
    if (this.#workerId && this.#callId) this.#publish({ t: 'cancel' });
    this.#finish();
  }

  async attach(session: AgentSession): Promise<void> {
    if (!this.#workerId) await this.reserve({ id: session.callId, source: session.source, details: session.details });
    if (this.#done) return;
    this.#attached = true;
    const log = this.deps.log.child({ agent: this.name, worker: this.#workerId, session: session.callId });
    let applied = 0;
    let lastSent = Date.now();
    const send = (m: ToAgent | Buffer) => {
      lastSent = Date.now();
      this.#publish(m);
    };
    let settle: { resolve(): void; reject(err: Error): void } | undefined;
    const attached = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    const unwatch = this.deps.pool.watch(this.#workerId!, () => {
      settle?.reject(new Error(`worker ${this.#workerId} is gone`));
      session.hangup('agent-disconnected');
    });
    const keepalive = setInterval(() => {
      if (Date.now() - lastSent >= NODE_KEEPALIVE_MS) send({ t: 'ka', applied, queuedMs: session.queuedMs });
    }, NODE_KEEPALIVE_MS);
    keepalive.unref();

    session.on('frame', (f) => send(encodeCallerAudio(f.samples, applied, session.queuedMs)));
    session.on('dtmf', (digit) => send({ t: 'dtmf', digit }));
    session.on('message', (data) => send({ t: 'message', data }));
    session.on('transferred', (to) => send({ t: 'transferred', to }));
    session.on('ended', (reason) => {
      clearInterval(keepalive);
      unwatch();
      send({ t: 'ended', reason });
      settle?.resolve();
      this.#finish();
    });

    const handle = (m: ToNode) => {
      switch (m.t) {
        case 'attached':
          return settle?.resolve();
        case 'failed':
          return settle?.reject(new Error(`the agent failed to start on worker ${this.#workerId}: ${String(m.message).slice(0, 200)}`));
        case 'clear':
          applied = m.seq;
          return session.clear();
        case 'mark':
          applied = m.seq;
          return void session.mark(String(m.name)).then((result) => send({ t: 'mark', id: m.id, result }));
        case 'send':
          return session.send(m.data);
        case 'hangup':
          return session.hangup(typeof m.reason === 'string' ? m.reason : 'agent-hangup');
        case 'dtmf':
          if (!session.sendDtmf(String(m.digits))) log.info({ digits: String(m.digits).slice(0, 40) }, 'the worker\'s digits could not be sent to the caller');
          return;
        case 'transfer':
          return void session.transfer(m.target, m.opts).then(
            () => send({ t: 'transfer', id: m.id, ok: true }),
            (err: unknown) => send(err instanceof TransferError ? { t: 'transfer', id: m.id, ok: false, status: err.status, reason: err.reason } : { t: 'transfer', id: m.id, ok: false, message: (err as Error).message }),
          );
        case 'dial':
          try {
            if (typeof m.id !== 'string' || !/^[A-Za-z0-9_-]{22}$/.test(m.id)) throw new Error('the call id must be 22 base64url characters');
            session.placeCall(m.req, m.id);
            return send({ t: 'dial', id: m.id, ok: true });
          } catch (err) {
            return send({ t: 'dial', id: m.id, ok: false, message: (err as Error).message });
          }
        default:
          log.warn({ type: String((m as { t: unknown }).t).slice(0, 40) }, 'the worker sent an unknown message; ignored');
      }
    };
    this.#onMessage = (data) => {
      const d = decode<ToNode>(data, 4);
      if ('audio' in d) {
        applied = d.a;
        session.play(d.audio);
      } else if ('json' in d) {
        try {
          handle(d.json);
        } catch (err) {
          log.warn({ err }, 'a message from the worker could not be applied');
        }
      } else log.warn({ why: d.bad }, 'the worker sent a message that is not ours; ignored');
    };
    for (const data of this.#early.splice(0)) this.#onMessage(data);
    send({ t: 'start' });
    await attached;
    settle = undefined;
  }

  #publish(m: ToAgent | Buffer): void {
    try {
      this.deps.nc.publish(subjects.toAgent(this.deps.prefix, this.#callId!), Buffer.isBuffer(m) ? m : JSON.stringify(m));
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message, session: this.#callId }, 'a message to the worker could not be sent');
    }
  }

  #finish(): void {
    this.#done = true;
    this.#sub?.unsubscribe();
    this.#sub = undefined;
    this.#onMessage = undefined;
  }
}
