import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { NatsConnection } from '@nats-io/transport-node';
import { createLogger } from '../../core/logger.js';
import { VoxgateError } from '../../core/errors.js';
import { natsForTestFile } from '../../testing/nats.js';
import { Waiter } from '../../testing/waiter.js';
import { AgentSession, TransferError, type Agent, type AgentControl, type AgentSampleRate, type DialRequest } from '../agent.js';
import type { MarkResult } from '../../audio/pacer.js';
import { WorkerPool } from './pool.js';
import { subjects } from './protocol.js';
import { runAgentWorker, type AgentWorker } from './run-worker.js';
import { WorkerAgent, workerSpecSchema } from './worker-agent.js';

const nats = natsForTestFile();
const log = createLogger('silent');
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

let prefixes = 0;
const waiter = new Waiter();
// The pool's table changes on NATS messages the test does not see: its conditions are re-checked every 20 ms too.
const ticker = setInterval(() => waiter.poke(), 20);
after(() => clearInterval(ticker));

/** A node's side: a pool on its own connection, under a prefix of the test's own. */
async function node(prefix = `wk${++prefixes}`) {
  const nc = await nats.connect('node');
  const pool = new WorkerPool({ nc, prefix, log });
  await pool.start();
  cleanups.push(() => pool.close());
  const agent = (spec: Record<string, unknown> = {}) => new WorkerAgent(workerSpecSchema.parse({ type: 'worker', name: 'support', ringTimeoutSeconds: 0.5, ...spec }), { nc, prefix, nodeId: 'node-a', pool, log });
  return { nc, prefix, pool, agent };
}

/** An agent on a worker that records what reaches it and lets the test act through its session. */
class ScriptedAgent implements Agent {
  readonly name = 'scripted';
  readonly sessions: AgentSession[] = [];
  readonly frames: Int16Array[] = [];
  readonly heard: unknown[] = [];
  ended: string[] = [];
  fail = false;
  constructor(readonly sampleRate: AgentSampleRate = 16000) {}
  attach(session: AgentSession): Promise<void> {
    if (this.fail) return Promise.reject(new Error('no model loaded'));
    this.sessions.push(session);
    session.on('frame', (f) => this.#got(this.frames, f.samples));
    session.on('dtmf', (d) => this.#got(this.heard, { dtmf: d }));
    session.on('message', (m) => this.#got(this.heard, { message: m }));
    session.on('transferred', (to) => this.#got(this.heard, { transferred: to }));
    session.on('ended', (r) => this.#got(this.ended, r));
    waiter.poke();
    return Promise.resolve();
  }
  #got<T>(list: T[], item: T): void {
    list.push(item);
    waiter.poke();
  }
}

async function worker(prefix: string, agent: Agent, opts: { maxCalls?: number; id?: string } = {}): Promise<{ w: AgentWorker; nc: NatsConnection }> {
  const nc = await nats.connect('worker');
  const w = await runAgentWorker({ nats: nc, name: 'support', agent, prefix, log, ...opts });
  cleanups.push(() => w.close());
  return { w, nc };
}

/** What voxgate does for the agent on the node, recorded. */
function nodeControl() {
  const c = {
    played: [] as Int16Array[],
    queued: 0,
    cleared: 0,
    marks: [] as string[],
    sent: [] as unknown[],
    hangups: [] as string[],
    digits: [] as string[],
    dials: [] as { req: DialRequest; id: string | undefined }[],
    transfers: [] as unknown[],
    markResult: 'played' as MarkResult,
  };
  const control: AgentControl = {
    play: (s) => void (c.played.push(s), (c.queued += (s.length / 16000) * 1000), waiter.poke()),
    clear: () => void (c.cleared++, (c.queued = 0), waiter.poke()),
    mark: (name) => (c.marks.push(name), waiter.poke(), Promise.resolve(c.markResult)),
    send: (d) => void (c.sent.push(d), waiter.poke()),
    hangup: (r) => void (c.hangups.push(r), waiter.poke()),
    transfer: (target) => (c.transfers.push(target), waiter.poke(), target === 'busy' ? Promise.reject(new TransferError(486, 'Busy Here')) : Promise.resolve()),
    sendDtmf: (d) => (c.digits.push(d), waiter.poke(), true),
    dial: (req, id) => (c.dials.push({ req, id }), waiter.poke(), { id: id ?? 'x', state: 'dialing' }),
    queuedMs: () => c.queued,
  };
  return { c, control };
}

async function reserved(agent: WorkerAgent, id: string) {
  await agent.reserve({ id, source: { name: 'web', kind: 'browser' }, details: { from: '+15550100', customParameters: { tier: 'gold' } } });
  return agent;
}

test('offers go to the least-loaded worker with room, as the workers report load; with every place taken the offer is refused within the ring time (VG_AGENT_NOT_READY: 503/480)', async () => {
  const n = await node();
  const a = await worker(n.prefix, new ScriptedAgent(), { maxCalls: 4, id: 'worker-a' });
  const b = await worker(n.prefix, new ScriptedAgent(), { maxCalls: 4, id: 'worker-b' });
  await waiter.until(() => n.pool.workersOf('support').length === 2, 'both workers known');
  const taken: string[] = [];
  for (let i = 0; i < 4; i++) taken.push((await reserved(n.agent(), `call-${i}`)).workerId!);
  assert.deepEqual(taken.slice().sort(), ['worker-a', 'worker-a', 'worker-b', 'worker-b'], 'two each (either could have taken all four)');
  for (let i = 4; i < 8; i++) await reserved(n.agent(), `call-${i}`);
  assert.deepEqual([a.w.calls, b.w.calls], [4, 4]);
  const started = Date.now();
  await assert.rejects(reserved(n.agent(), 'call-5'), (err: unknown) => err instanceof VoxgateError && err.code === 'VG_AGENT_NOT_READY' && err.status === 503 && err.sipStatus === 480 && /no worker for agent 'support' accepted the call within 0.5 s/.test(err.message));
  const waited = Date.now() - started;
  assert.ok(waited >= 450 && waited < 2000, `refused after the ring time (${waited} ms)`);
});

test('unreserve() gives the place back and the next call gets it (startCall calls it when a call ends before its agent starts: start-call.test.ts); an agent name no worker serves is refused', async () => {
  const n = await node();
  const a = await worker(n.prefix, new ScriptedAgent(), { maxCalls: 1 });
  await waiter.until(() => n.pool.workersOf('support').length === 1, 'the worker known');
  const agent = await reserved(n.agent(), 'call-given-back');
  assert.equal(a.w.calls, 1);
  agent.unreserve();
  await waiter.until(() => a.w.calls === 0 && n.pool.workersOf('support')[0]?.calls === 0, 'the place back, and reported');
  assert.equal((await reserved(n.agent(), 'call-after')).workerId, a.w.id, 'the next call gets it');
  await assert.rejects(reserved(n.agent({ name: 'sales' }), 'call-nobody'), /no worker for agent 'sales'/);
});

test('the session crosses both ways: caller frames, DTMF, messages and the end to the worker; audio, marks, clear, messages, digits, transfers, dials and hang-up back', async () => {
  const n = await node();
  const remote = new ScriptedAgent();
  await worker(n.prefix, remote);
  await waiter.until(() => n.pool.workersOf('support').length === 1, 'the worker known');
  const agent = await reserved(n.agent(), 'call-both-ways');
  const { c, control } = nodeControl();
  const local = new AgentSession('call-both-ways', { name: 'web', kind: 'browser' }, agent.sampleRate, control, { from: '+15550100', customParameters: { tier: 'gold' } });
  await agent.attach(local);
  const s = remote.sessions[0]!;
  assert.deepEqual([s.callId, s.source, s.details.from, s.details.customParameters, s.sampleRate], ['call-both-ways', { name: 'web', kind: 'browser' }, '+15550100', { tier: 'gold' }, 16000]);

  const frame = Int16Array.from({ length: 320 }, (_, i) => (i * 97) % 30000 - 15000);
  local.deliverFrame({ samples: frame, sampleRate: 16000, timestampMs: 0 });
  local.deliverDtmf('5');
  local.deliverMessage({ hello: 'agent' });
  await waiter.until(() => remote.frames.length === 1 && remote.heard.length === 2, 'the frame, digit and message at the worker');
  assert.deepEqual(remote.frames[0], frame, 'the samples as they were');
  assert.deepEqual(remote.heard, [{ dtmf: '5' }, { message: { hello: 'agent' } }]);

  const speech = Int16Array.from({ length: 16000 }, (_, i) => Math.round(8000 * Math.sin(i / 5)));
  s.play(speech);
  assert.ok(s.queuedMs >= 999, `the worker counts what it played as queued at once (${s.queuedMs} ms)`);
  const mark = s.mark('after-speech');
  await waiter.until(() => c.marks.length === 1, 'the mark at the node');
  assert.deepEqual(Int16Array.from(c.played.flatMap((p) => [...p])), speech, 'one second of audio, in order, split as it had to be');
  assert.equal(await mark, 'played');
  s.clear();
  s.send({ type: 'agent-text', text: 'hi' });
  assert.equal(s.sendDtmf('12#'), true);
  await waiter.until(() => c.cleared === 1 && c.sent.length === 1 && c.digits.length === 1, 'clear, send and digits at the node');
  assert.deepEqual([c.sent[0], c.digits[0]], [{ type: 'agent-text', text: 'hi' }, '12#']);

  await s.transfer('alice');
  await assert.rejects(s.transfer('busy'), (err: unknown) => err instanceof TransferError && err.status === 486 && err.reason === 'Busy Here');
  const dialed = s.dial({ to: '+15550199' });
  await waiter.until(() => c.dials.length === 1, 'the dial at the node');
  assert.deepEqual([c.dials[0]!.id, c.dials[0]!.req.to, dialed.state], [dialed.id, '+15550199', 'dialing'], 'the call placed under the id the worker handed out');

  local.deliverTransferred('sip:bob@example.com');
  await waiter.until(() => remote.heard.length === 3, 'transferred at the worker');
  s.hangup('agent-hangup');
  await waiter.until(() => c.hangups.length === 1, 'the hang-up at the node');
  assert.equal(c.hangups[0], 'agent-hangup');
  local.end('agent-hangup');
  await waiter.until(() => remote.ended.length === 1, 'ended at the worker');
  assert.equal(remote.ended[0], 'agent-hangup');
});

test('a worker that goes silent (its process killed) ends its call with agent-disconnected within 2 s; one whose agent fails to start fails the attach', async () => {
  const n = await node();
  const remote = new ScriptedAgent();
  const w = await worker(n.prefix, remote);
  await waiter.until(() => n.pool.workersOf('support').length === 1, 'the worker known');
  const agent = await reserved(n.agent(), 'call-lost-worker');
  const { c, control } = nodeControl();
  await agent.attach(new AgentSession('call-lost-worker', { name: 'web', kind: 'browser' }, 16000, control));
  // As a SIGKILL would: the connection goes, no goodbye.
  const killedAt = Date.now();
  await w.nc.close();
  await waiter.until(() => c.hangups.length === 1, 'the call hung up', 2500);
  const ms = Date.now() - killedAt;
  assert.equal(c.hangups[0], 'agent-disconnected');
  assert.ok(ms <= 2000, `within 2 s (${ms} ms)`);

  const failing = new ScriptedAgent();
  failing.fail = true;
  await worker(n.prefix, failing);
  await waiter.until(() => n.pool.workersOf('support').length === 1, 'the new worker known');
  const second = await reserved(n.agent(), 'call-failing-agent');
  await assert.rejects(second.attach(new AgentSession('call-failing-agent', { name: 'web', kind: 'browser' }, 16000, nodeControl().control)), /the agent failed to start on worker .*: no model loaded/);
});

test('a worker whose agent runs at another rate gets the call\'s audio resampled both ways; garbage on a call\'s subjects is ignored', async () => {
  const n = await node();
  const remote = new ScriptedAgent(8000);
  await worker(n.prefix, remote);
  await waiter.until(() => n.pool.workersOf('support').length === 1, 'the worker known');
  const agent = await reserved(n.agent({ sampleRate: 16000 }), 'call-resampled');
  const { c, control } = nodeControl();
  const local = new AgentSession('call-resampled', { name: 'web', kind: 'browser' }, 16000, control);
  await agent.attach(local);
  const wid = agent.workerId!;
  for (const junk of ['not json', '{"t":"ka","applied":"x","queuedMs":null}', '{"t":"mark","id":1}', '{"t":"cancel"}']) n.nc.publish(subjects.toAgent(n.prefix, 'call-resampled', wid), junk);
  n.nc.publish(subjects.toNode(n.prefix, 'call-resampled', wid), Buffer.from([1, 2]));
  n.nc.publish(subjects.toNode(n.prefix, 'call-resampled', wid), JSON.stringify({ t: 'mystery' }));
  n.nc.publish(subjects.toNode(n.prefix, 'call-resampled', wid), JSON.stringify({ t: 'dial', id: 'short', req: {} }));
  const s = remote.sessions[0]!;
  for (let i = 0; i < 3; i++) s.play(new Int16Array(160).fill(1000));
  for (let i = 0; i < 3; i++) local.deliverFrame({ samples: new Int16Array(320).fill(-1000), sampleRate: 16000, timestampMs: i * 20 });
  await waiter.until(() => c.played.length === 3 && remote.frames.length === 3, 'three frames each way');
  assert.deepEqual(c.played.map((p) => p.length), [320, 320, 320], '8 kHz frames arrive at 16 kHz');
  assert.deepEqual(remote.frames.map((f) => f.length), [160, 160, 160], 'and 16 kHz frames reach the agent at 8 kHz');
  assert.equal(remote.ended.length, 0, 'the garbage ended nothing (a cancel once started included)');
  assert.ok(Number.isFinite(s.queuedMs), 'and left the queue estimate a number');
});

test('offers that are not ours are refused and wedge nothing: bad ids, rates, missing fields, not JSON, no reply subject; junk load reports are ignored', async () => {
  const n = await node();
  const w = await worker(n.prefix, new ScriptedAgent(), { maxCalls: 1, id: 'sturdy' });
  await waiter.until(() => n.pool.workersOf('support').length === 1, 'the worker known');
  const good = { v: 1, callId: 'abc', node: 'node-a', name: 'support', sampleRate: 16000, source: { name: 'web', kind: 'browser' }, details: { customParameters: {} } };
  const bad = [{ ...good, callId: 'a b' }, { ...good, callId: '*' }, { ...good, sampleRate: 'x' }, { ...good, sampleRate: 11025 }, { ...good, source: undefined }, { ...good, details: undefined }, { ...good, v: 2 }];
  for (const offer of [...bad.map((o) => JSON.stringify(o)), 'not json']) {
    const res = await n.nc.request(subjects.offer(n.prefix, 'sturdy'), offer, { timeout: 1000 });
    assert.deepEqual([(res.json() as { accept: boolean; reason: string }).accept, (res.json() as { reason: string }).reason], [false, 'bad offer'], offer);
  }
  n.nc.publish(subjects.offer(n.prefix, 'sturdy'), JSON.stringify(good)); // no reply subject: no place taken
  for (const junk of ['{', '{"id":"x"}', '{"id":"y","name":"support","calls":"many","maxCalls":1}', 'null']) n.nc.publish(subjects.load(n.prefix, 'support'), junk);
  await n.nc.flush();
  assert.equal(w.w.calls, 0);
  assert.equal((await reserved(n.agent(), 'call-after-junk')).workerId, 'sturdy', 'the worker still takes calls');
  assert.deepEqual(n.pool.workersOf('support').map((l) => l.id), ['sturdy']);
});

test('a worker that answers an offer too late is told to let it go, and the call starts on the next one only', async (t) => {
  const n = await node();
  // A worker that reports room (the least loaded) but answers after the 1 s offer timeout.
  const slow = await nats.connect('slow');
  const heard: { subject: string; data: string }[] = [];
  slow.subscribe(subjects.offer(n.prefix, 'slow'), { callback: (_e, m) => void setTimeout(() => m.respond(JSON.stringify({ accept: true, workerId: 'slow', load: { v: 1, id: 'slow', name: 'support', calls: 1, maxCalls: 10, sampleRate: 16000, draining: false } })), 1100) });
  slow.subscribe(`${n.prefix}.call.*.slow.agent`, { callback: (_e, m) => void (heard.push({ subject: m.subject, data: m.string() }), waiter.poke()) });
  // A beat stops with its test: the file's connections are drained before the cleanups run, and a publish on a closed connection throws.
  const load = () => slow.isClosed() || slow.publish(subjects.load(n.prefix, 'support'), JSON.stringify({ v: 1, id: 'slow', name: 'support', calls: 0, maxCalls: 10, sampleRate: 16000, draining: false }));
  const beat = setInterval(load, 300);
  t.after(() => clearInterval(beat));
  load();
  const remote = new ScriptedAgent();
  const real = await worker(n.prefix, remote, { maxCalls: 10, id: 'real' });
  await waiter.until(() => n.pool.workersOf('support').length === 2, 'both known');
  await reserved(n.agent({ ringTimeoutSeconds: 3 }), 'warm-up'); // one call on the real worker: the slow one is now the least loaded
  assert.equal(real.w.calls, 1);
  const agent = await reserved(n.agent({ ringTimeoutSeconds: 3 }), 'call-late');
  assert.equal(agent.workerId, 'real');
  await agent.attach(new AgentSession('call-late', { name: 'web', kind: 'browser' }, 16000, nodeControl().control));
  const late = () => heard.filter((h) => h.subject === subjects.toAgent(n.prefix, 'call-late', 'slow'));
  await waiter.until(() => late().length >= 1, 'the cancel at the slow worker');
  assert.deepEqual(late().map((h) => h.data), ['{"t":"cancel"}'], 'a cancel and nothing else: no start');
  // The warm-up may have been offered to the slow worker first too (a tie at no calls): a cancel, never a start.
  assert.ok(heard.every((h) => h.data === '{"t":"cancel"}'), JSON.stringify(heard));
  assert.equal(remote.sessions.at(-1)?.callId, 'call-late');
});

test('a start the worker never takes (it let the place go, or is stuck) fails the attach within 5 s; the call does not wait on a silent agent', async (t) => {
  const n = await node();
  const mute = await nats.connect('mute');
  const load = { v: 1, id: 'mute', name: 'support', calls: 0, maxCalls: 10, sampleRate: 16000, draining: false };
  mute.subscribe(subjects.offer(n.prefix, 'mute'), { callback: (_e, m) => void m.respond(JSON.stringify({ accept: true, workerId: 'mute', load })) });
  const beat = setInterval(() => mute.isClosed() || mute.publish(subjects.load(n.prefix, 'support'), JSON.stringify(load)), 300);
  t.after(() => clearInterval(beat));
  await waiter.until(() => n.pool.workersOf('support').length === 1, 'the mute worker known');
  const agent = await reserved(n.agent(), 'call-mute');
  const t0 = Date.now();
  await assert.rejects(agent.attach(new AgentSession('call-mute', { name: 'web', kind: 'browser' }, 16000, nodeControl().control)), /did not take the call's start within 5 s/);
  assert.ok(Date.now() - t0 < 6000);
});

test('a transfer that hands the caller over ends the agent\'s part first, as in process: the worker\'s transfer() still resolves', async () => {
  const n = await node();
  const remote = new ScriptedAgent();
  await worker(n.prefix, remote);
  await waiter.until(() => n.pool.workersOf('support').length === 1, 'the worker known');
  const agent = await reserved(n.agent(), 'call-handed-over');
  const { control } = nodeControl();
  const local = new AgentSession('call-handed-over', { name: 'web', kind: 'browser' }, 16000, {
    ...control,
    // The bridge: the agent leg leaves (transferred), then the transfer resolves.
    transfer: () => {
      local.end('transferred');
      return Promise.resolve();
    },
  });
  await agent.attach(local);
  const s = remote.sessions[0]!;
  await s.transfer('alice');
  await waiter.until(() => remote.ended.length === 1, 'ended at the worker');
  assert.equal(remote.ended[0], 'transferred');
  assert.equal(await s.mark('after'), 'cleared', 'a mark after the end settles at once');
});
