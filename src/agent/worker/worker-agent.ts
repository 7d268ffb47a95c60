import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { z } from 'zod';
import { VoxgateError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { TransferError, type Agent, type AgentSampleRate, type AgentSession, type CallDetails } from '../agent.js';
import type { WorkerPool } from './pool.js';
import { AGENT_NAME, decode, encodeCallerAudio, NODE_KEEPALIVE_MS, START_ACK_MS, subjects, type Offer, type ToAgent, type ToNode } from './protocol.js';

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
    if (this.#workerId || this.#done) return;
    const { nc, prefix, nodeId, pool } = this.deps;
    this.#callId = call.id;
    const offer: Offer = { v: 1, callId: call.id, node: nodeId, name: this.spec.name, sampleRate: this.sampleRate, source: { name: call.source.name, kind: call.source.kind }, details: call.details ?? { customParameters: {} } };
    const seconds = this.spec.ringTimeoutSeconds;
    const workerId = await pool.offer(offer, Date.now() + seconds * 1000, () => this.#done);
    if (this.#done) throw new VoxgateError('VG_SETUP_ABORTED', 'The session ended while its agent was being found.');
    if (!workerId) {
      this.#finish();
      const known = pool.workersOf(this.spec.name).length;
      throw new VoxgateError('VG_AGENT_NOT_READY', `Temporarily Unavailable (no worker for agent '${this.spec.name}' accepted the call within ${seconds} s; ${known} known)`);
    }
    this.#workerId = workerId;
    // The worker sends nothing before our start: listening now misses nothing.
    this.#sub = nc.subscribe(subjects.toNode(prefix, call.id, workerId), {
      callback: (err, msg) => {
        if (err || !this.#onMessage) return;
        try {
          this.#onMessage(msg.data);
        } catch (e) {
          // Never out of a NATS callback: a throw there would stop this connection's reader.
          this.deps.log.warn({ err: e, session: call.id }, 'a message from the worker could not be applied');
        }
      },
    });
  }

  /** The call will not happen after all: the worker's place is given back (once attached, its end does that). */
  unreserve(): void {
    if (this.#attached || this.#done) return;
    if (this.#workerId) this.#publish({ t: 'cancel' });
    this.#finish();
  }

  async attach(session: AgentSession): Promise<void> {
    if (!this.#workerId) await this.reserve({ id: session.callId, source: session.source, details: session.details });
    if (this.#done || session.ended) return this.unreserve();
    this.#attached = true;
    const workerId = this.#workerId!;
    const log = this.deps.log.child({ agent: this.name, worker: workerId, session: session.callId });
    let applied = 0;
    let lastSent = Date.now();
    const send = (m: ToAgent | Buffer) => {
      lastSent = Date.now();
      this.#publish(m);
    };
    let settle: { resolve(): void; reject(err: Error): void } | undefined;
    const attached = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    const fail = (why: string) => {
      settle?.reject(new Error(why));
      settle = undefined;
    };
    const unwatch = this.deps.pool.watch(workerId, () => {
      fail(`worker ${workerId} is gone`);
      session.hangup('agent-disconnected');
    });
    // A start nobody acknowledges (the worker let the place go, or is stuck): the call does not wait on a silent agent.
    const startTimer = setTimeout(() => fail(`worker ${workerId} did not take the call's start within ${START_ACK_MS / 1000} s`), START_ACK_MS);
    const keepalive = setInterval(() => {
      if (Date.now() - lastSent >= NODE_KEEPALIVE_MS) send({ t: 'ka', applied, queuedMs: session.queuedMs });
    }, NODE_KEEPALIVE_MS);
    keepalive.unref();
    // Transfers asked for and not yet answered: their outcome goes before the end it may cause.
    const transfers = new Map<number, Promise<void>>();

    session.on('frame', (f) => send(encodeCallerAudio(f.samples, applied, session.queuedMs, f.timestampMs)));
    session.on('dtmf', (digit) => send({ t: 'dtmf', digit }));
    session.on('message', (data) => send({ t: 'message', data }));
    session.on('transferred', (to) => send({ t: 'transferred', to }));
    session.on('ended', (reason) => {
      clearInterval(keepalive);
      clearTimeout(startTimer);
      unwatch();
      settle?.resolve();
      const end = () => {
        send({ t: 'ended', reason });
        this.#finish();
      };
      // A transfer that succeeds ends the agent's part first (the caller is with the target): its result is sent, then the end.
      if (transfers.size) void Promise.race([Promise.allSettled(transfers.values()), new Promise((r) => setTimeout(r, 2000))]).then(end);
      else end();
    });

    const handle = (m: ToNode) => {
      switch (m.t) {
        case 'started':
          return clearTimeout(startTimer);
        case 'attached':
          clearTimeout(startTimer);
          return settle?.resolve();
        case 'failed':
          return fail(`the agent failed to start on worker ${workerId}: ${String(m.message).slice(0, 200)}`);
        case 'clear':
          if (Number.isFinite(m.seq)) applied = m.seq;
          return session.clear();
        case 'mark':
          if (Number.isFinite(m.seq)) applied = m.seq;
          return void session.mark(String(m.name)).then((result) => send({ t: 'mark', id: m.id, result }));
        case 'send':
          return session.send(m.data);
        case 'hangup':
          return session.hangup(typeof m.reason === 'string' ? m.reason : 'agent-hangup');
        case 'dtmf':
          if (!session.sendDtmf(String(m.digits))) log.info({ digits: String(m.digits).slice(0, 40) }, "the worker's digits could not be sent to the caller");
          return;
        case 'transfer': {
          const done = session.transfer(m.target, m.opts).then(
            () => send({ t: 'transfer', id: m.id, ok: true }),
            (err: unknown) => send(err instanceof TransferError ? { t: 'transfer', id: m.id, ok: false, status: err.status, reason: err.reason } : { t: 'transfer', id: m.id, ok: false, message: (err as Error).message }),
          );
          transfers.set(m.id, done);
          return void done.finally(() => transfers.delete(m.id));
        }
        case 'dial':
          try {
            if (typeof m.id !== 'string' || !/^[A-Za-z0-9_-]{22}$/.test(m.id)) throw new Error('the call id must be 22 base64url characters');
            session.placeCall(m.req, m.id);
            return send({ t: 'dial', id: m.id, ok: true });
          } catch (err) {
            return send({ t: 'dial', id: String(m.id), ok: false, message: (err as Error).message });
          }
        default:
          log.warn({ type: String((m as { t: unknown }).t).slice(0, 40) }, 'the worker sent an unknown message; ignored');
      }
    };
    this.#onMessage = (data) => {
      const d = decode<ToNode>(data, 1);
      if ('audio' in d) {
        applied = d.header[0]!;
        session.play(d.audio);
      } else if ('json' in d) handle(d.json);
      else log.warn({ why: d.bad }, 'the worker sent a message that is not ours; ignored');
    };
    send({ t: 'start' });
    try {
      await attached;
    } finally {
      clearTimeout(startTimer);
      settle = undefined;
    }
  }

  #publish(m: ToAgent | Buffer): void {
    try {
      this.deps.nc.publish(subjects.toAgent(this.deps.prefix, this.#callId!, this.#workerId!), Buffer.isBuffer(m) ? m : JSON.stringify(m));
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
