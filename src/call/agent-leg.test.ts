import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Agent, AgentSession } from '../agent/agent.js';
import type { MarkResult } from '../audio/pacer.js';
import { rms, toneSnrDb } from '../audio/test-signals.js';
import { FakeClock } from '../core/clock.js';
import { decodeSent, formatOf, parsed, testEndpoint, testRuntime, toneFrames } from '../media/testing.js';
import { AgentLeg, type AgentLegControl } from './agent-leg.js';

const RATE = 16000;
const FRAME = 320;

/** An agent that keeps its session and what reached it. */
class ProbeAgent implements Agent {
  readonly name = 'probe';
  readonly sampleRate = RATE;
  session: AgentSession | undefined;
  readonly seen: string[] = [];
  constructor(private readonly fail = false) {}
  async attach(session: AgentSession): Promise<void> {
    if (this.fail) throw new Error('model not loaded');
    this.session = session;
    session.on('frame', (f) => this.seen.push(`frame:${f.samples.length}@${f.timestampMs}`));
    session.on('dtmf', (d) => this.seen.push(`dtmf:${d}`));
    session.on('message', (m) => this.seen.push(`message:${JSON.stringify(m)}`));
    session.on('ended', (r) => this.seen.push(`ended:${r}`));
  }
}

interface Control extends AgentLegControl {
  sent: unknown[];
  marks: [string, MarkResult][];
  hangups: string[];
  transfers: string[];
}

function control(clock: FakeClock): Control {
  const c: Control = {
    clock,
    sendDtmf: () => true,
    dial: (req) => ({ id: `dialled-${req.to}`, state: 'dialing' }),
    sent: [],
    marks: [],
    marked: (name, result) => c.marks.push([name, result]),
    hangups: [],
    transfers: [],
    send: (data) => c.sent.push(data),
    hangup: (reason) => c.hangups.push(reason),
    transfer: async (target) => {
      c.transfers.push(String(target));
      if (target === 'busy') throw new Error('486 Busy Here');
    },
  };
  return c;
}

async function started(clock = new FakeClock()): Promise<{ leg: AgentLeg; probe: ProbeAgent; ctl: Control; session: AgentSession }> {
  const probe = new ProbeAgent();
  const ctl = control(clock);
  const leg = new AgentLeg(probe, 'call-1', { name: 'studio', kind: 'whip' }, ctl);
  await leg.start();
  return { leg, probe, ctl, session: probe.session! };
}

test('play() of any length is handed out one 20 ms frame per next(); a remainder waits for more audio', async () => {
  const { leg, session } = await started();
  assert.equal(leg.next(), undefined, 'nothing queued: silence');
  session.play(new Int16Array(2 * FRAME + 100).fill(7));
  assert.equal(leg.next()?.length, FRAME);
  assert.equal(leg.next()?.length, FRAME);
  assert.equal(leg.next(), undefined, 'the 100-sample remainder is held');
  session.play(new Int16Array(FRAME - 100).fill(9));
  const f = leg.next()!;
  assert.deepEqual([f[0], f[99], f[100], f[FRAME - 1]], [7, 7, 9, 9]);
  assert.equal(leg.describe(), 'Agent(probe@16k)');
});

test('through the caller\'s endpoint: the agent\'s 100 ms tone goes out as exactly five packets, then silence', async () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('g722'), { pcmRate: RATE });
  const { leg, session } = await started(rt.clock);
  endpoint.source = leg;
  session.play(toneFrames(1000, RATE, 5).reduce((a, b) => Int16Array.from([...a, ...b])));
  rt.clock.advance(200);
  const sent = parsed(transport.rtp);
  assert.equal(sent.length, 10, 'one packet per tick');
  const pcm = decodeSent('g722', RATE, transport.rtp, 9);
  const frame = (i: number) => pcm.subarray(i * FRAME, (i + 1) * FRAME);
  assert.ok(toneSnrDb(pcm.subarray(FRAME, 5 * FRAME), 1000, RATE) > 25, 'the tone in the first five');
  assert.ok(
    [6, 7, 8, 9].every((i) => rms(frame(i)) < 100),
    'silence after',
  );
  endpoint.close();
});

test('a mark resolves "played" once the audio queued before it has been sent, "cleared" when a barge-in drops it', async () => {
  const rt = testRuntime();
  const { endpoint } = testEndpoint(rt, formatOf('pcmu'), { pcmRate: RATE });
  const { leg, session, ctl } = await started(rt.clock);
  endpoint.source = leg;
  const results: [string, MarkResult][] = [];
  assert.equal(await session.mark('nothing-queued'), 'played');
  session.play(new Int16Array(3 * FRAME).fill(1000));
  void session.mark('after-3').then((r) => results.push(['after-3', r]));
  session.play(new Int16Array(10 * FRAME).fill(1000));
  void session.mark('after-13').then((r) => results.push(['after-13', r]));
  rt.clock.advance(40);
  await Promise.resolve();
  assert.deepEqual(results, [], 'two of three frames sent');
  rt.clock.advance(20);
  await Promise.resolve();
  assert.deepEqual(results, [['after-3', 'played']]);
  session.clear();
  await Promise.resolve();
  assert.deepEqual(results, [
    ['after-3', 'played'],
    ['after-13', 'cleared'],
  ]);
  // The call's timeline hears of every mark as it resolves, whether or not the agent tells anyone.
  assert.deepEqual(ctl.marks, [['nothing-queued', 'played'], ...results]);
  endpoint.close();
});

test('voided(): frames taken before a clear() are void, frames taken after are not', async () => {
  const { leg, session } = await started();
  session.play(new Int16Array(4 * FRAME));
  const before = leg.next()!;
  assert.equal(leg.voided(before), false);
  session.clear();
  assert.equal(leg.voided(before), true, 'taken before the barge-in: must not go out');
  session.play(new Int16Array(FRAME));
  const after = leg.next()!;
  assert.equal(leg.voided(after), false);
  assert.equal(leg.voided(new Int16Array(FRAME)), true, 'a frame it never handed out is not its to send');
});

test('playToSendMs: from play() into an idle pacer to its first frame on the wire, on the fake clock', async () => {
  const rt = testRuntime();
  const { endpoint } = testEndpoint(rt, formatOf('pcmu'), { pcmRate: RATE });
  const { leg, session } = await started(rt.clock);
  endpoint.source = leg;
  rt.clock.advance(7); // ticks run at +20, +40, ...
  session.play(new Int16Array(2 * FRAME).fill(500));
  rt.clock.advance(3);
  session.play(new Int16Array(FRAME).fill(500)); // into a pacer that is not idle: not a new measurement
  rt.clock.advance(90);
  rt.clock.advance(5);
  session.play(new Int16Array(FRAME).fill(500));
  rt.clock.advance(40);
  assert.deepEqual(leg.playToSendMs, [13, 15]);
  endpoint.close();
});

test('playToSendMs after a barge-in counts from the play() that is heard, not one cleared before it went out', async () => {
  const rt = testRuntime();
  const { endpoint } = testEndpoint(rt, formatOf('pcmu'), { pcmRate: RATE });
  const { leg, session } = await started(rt.clock);
  endpoint.source = leg;
  rt.clock.advance(7);
  session.play(new Int16Array(FRAME).fill(500));
  session.clear(); // before its first frame was sent
  rt.clock.advance(100);
  session.play(new Int16Array(FRAME).fill(500));
  rt.clock.advance(20);
  assert.deepEqual(leg.playToSendMs, [13]);
  endpoint.close();
});

test('clearToSilenceMs and the "cleared" message: from clear() to the first silent frame sent, with the agent frames sent meanwhile', async () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'), { pcmRate: RATE });
  const { leg, session, ctl } = await started(rt.clock);
  endpoint.source = leg;
  session.play(new Int16Array(50 * FRAME).fill(3000));
  rt.clock.advance(45);
  session.clear();
  rt.clock.advance(15);
  assert.deepEqual(leg.clearToSilenceMs, [15]);
  assert.deepEqual(ctl.sent, [{ type: 'cleared', silenceAfterMs: 15, framesBeforeSilence: 0 }]);
  // The agent starts a new answer right after its clear(): two frames go out before the first silence.
  session.play(new Int16Array(10 * FRAME).fill(3000));
  rt.clock.advance(25);
  session.clear();
  session.play(new Int16Array(2 * FRAME).fill(3000));
  rt.clock.advance(60);
  assert.deepEqual(ctl.sent.at(-1), { type: 'cleared', silenceAfterMs: 55, framesBeforeSilence: 2 });
  assert.deepEqual(leg.clearToSilenceMs, [15, 55]);
  assert.ok(transport.rtp.length > 0, 'the endpoint sent all along');
  endpoint.close();
});

test('the measurement histories stay bounded', async () => {
  const clock = new FakeClock();
  const { leg, session } = await started(clock);
  for (let i = 0; i < 3001; i++) {
    session.play(new Int16Array(FRAME));
    leg.sent(leg.next());
    session.clear();
    leg.sent(undefined);
  }
  assert.equal(leg.playToSendMs.length, 2001);
  assert.equal(leg.clearToSilenceMs.length, 2001);
});

test('frames, digits and messages from the call reach the agent session; hangup, transfer and send go to the control', async () => {
  const { leg, probe, ctl, session } = await started();
  leg.writeFrame({ samples: new Int16Array(FRAME), sampleRate: RATE, timestampMs: 40 });
  leg.deliverDtmf('#');
  leg.deliverMessage({ hello: 1 });
  assert.deepEqual(probe.seen, ['frame:320@40', 'dtmf:#', 'message:{"hello":1}']);
  session.send({ type: 'turn' });
  session.hangup('done');
  await session.transfer('sip:alice@example.com');
  await assert.rejects(session.transfer('busy'), /486/);
  assert.deepEqual(ctl.sent, [{ type: 'turn' }]);
  assert.deepEqual(ctl.hangups, ['done']);
  assert.deepEqual(ctl.transfers, ['sip:alice@example.com', 'busy']);
  assert.equal(leg.kind, 'agent');
  assert.equal(leg.lastMediaAt(), 0, 'agent audio never keeps a call alive');
  assert.deepEqual(leg.counters(), { packetsReceived: 0, bytesReceived: 0, packetsSent: 0, bytesSent: 0 });
});

test('close() ends the session once with the reason, drops queued audio and resolves its marks "cleared"', async () => {
  const { leg, probe, session } = await started();
  session.play(new Int16Array(10 * FRAME));
  const mark = session.mark('end');
  leg.close('transferred');
  leg.close('deleted');
  assert.equal(await mark, 'cleared');
  assert.deepEqual(probe.seen, ['ended:transferred']);
  assert.equal(session.ended, true);
  assert.equal(leg.next(), undefined, 'nothing left to send');
  session.play(new Int16Array(FRAME));
  assert.equal(leg.next(), undefined, 'an ended session plays nothing');
  leg.writeFrame({ samples: new Int16Array(FRAME), sampleRate: RATE, timestampMs: 0 });
  assert.deepEqual(probe.seen, ['ended:transferred']);
});

test('start() fails when the agent cannot attach', async () => {
  const leg = new AgentLeg(new ProbeAgent(true), 'call-1', { name: 'studio', kind: 'whip' }, control(new FakeClock()));
  await assert.rejects(leg.start(), /model not loaded/);
});
