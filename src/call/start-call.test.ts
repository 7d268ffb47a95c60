import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import type { SourceIdentity } from '../auth/source-auth.js';
import { VoxgateError } from '../core/errors.js';
import { planAnswer } from '../sdp/codec-policy.js';
import { parseSdp } from '../sdp/sdp.js';
import { callWorld } from '../testing/calls.js';
import { browserOffer, TestAgent } from '../testing/sip-calls.js';
import { FakeTransportFactory } from '../transport/fake.js';
import { startCall } from './start-call.js';

/**
 * An agent that runs elsewhere (a worker) takes its place before the call is answered
 * (Agent.reserve) and gets it back when the call does not happen (Agent.unreserve): startCall
 * is where every kind of caller does that.
 */

const SOURCE: SourceIdentity = { name: 'web', kind: 'browser', agent: undefined, codecs: ['opus'], maxSessions: undefined, via: 'token' };
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

class ReservingAgent extends TestAgent {
  reserved: string[] = [];
  unreserved = 0;
  refuse: Error | undefined;
  hold: Promise<void> | undefined;
  reserve(call: { id: string }): Promise<void> {
    this.reserved.push(call.id);
    if (this.refuse) return Promise.reject(this.refuse);
    return this.hold ?? Promise.resolve();
  }
  unreserve(): void {
    this.unreserved++;
  }
}

function world(agent: ReservingAgent) {
  const w = callWorld({ name: 'start-call' });
  cleanups.push(() => w.close());
  const transports = new FakeTransportFactory();
  const sdp = browserOffer('opus');
  const plan = planAnswer(parseSdp(sdp), { codecs: ['opus'], allowSendRecv: true, role: 'ingest' });
  let opened = 0;
  const start = () =>
    startCall({ ...w.callDeps, resolveAgent: () => agent }, {
      source: SOURCE,
      kind: 'whip',
      plan,
      signalingRemote: '198.51.100.7:5000',
      open: (id, out) => {
        opened++;
        return transports.answer(id, sdp, plan, out);
      },
    });
  return { w, transports, start, opened: () => opened };
}

test('no agent taking the call: its refusal comes back (503 / 480), before any transport is opened, and nothing is left in the table', async () => {
  const agent = new ReservingAgent();
  agent.refuse = new VoxgateError('VG_AGENT_NOT_READY', 'no worker');
  const { w, start, opened } = world(agent);
  await assert.rejects(start(), (err: unknown) => err instanceof VoxgateError && err.status === 503 && err.sipStatus === 480);
  assert.equal(agent.reserved.length, 1);
  assert.equal(opened(), 0, 'no ICE agent or port spent on a call nobody takes');
  assert.equal(w.calls.size, 0);
});

test('a reserved place is given back when the call ends before its agent starts: its transport failed, or it was cancelled while the offer was out', async () => {
  const agent = new ReservingAgent();
  const { w, transports, start } = world(agent);
  transports.failNext = true;
  await assert.rejects(start(), /could not answer/);
  assert.equal(agent.unreserved, 1, 'transport failure');

  let release!: () => void;
  agent.hold = new Promise((r) => (release = r));
  const pending = start();
  await new Promise((r) => setImmediate(r));
  const call = [...w.calls.values()].at(-1)!;
  call.close('cancelled');
  release();
  await assert.rejects(pending, (err: unknown) => err instanceof VoxgateError && err.code === 'VG_SETUP_ABORTED');
  assert.equal(agent.unreserved, 2, 'cancelled during the offer');
  assert.equal(w.calls.size, 0);
});

test('a reserved call that is answered gets its agent attached (begin) as any other', async () => {
  const agent = new ReservingAgent();
  const { start } = world(agent);
  const started = await start();
  started.begin();
  await new Promise((r) => setImmediate(r));
  assert.equal(agent.sessions.length, 1);
  assert.equal(agent.reserved[0], started.call.id, 'the offer named the call');
  started.call.close('deleted');
  assert.equal(agent.last.ended, 'deleted');
});
