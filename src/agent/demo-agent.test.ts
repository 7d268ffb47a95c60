import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from '../core/logger.js';
import { SpeechSynthesizer } from '../audio/tts.js';
import { AgentSession, type AgentControl } from './agent.js';
import { DemoAgent, MAX_TURN_MS } from './demo-agent.js';

type Sent = { type: string; index?: number; cut?: boolean; label?: string; name?: string; result?: string };

/** A session whose marks resolve once the audio queued before them has "played" (20 ms per delivered frame), or on clear(). */
function harness() {
  const sent: Sent[] = [];
  let queuedMs = 0;
  let clears = 0;
  const marks: { atMs: number; resolve: (r: 'played' | 'cleared') => void }[] = [];
  const control: AgentControl = {
    play: (s) => void (queuedMs += (s.length / 16000) * 1000),
    clear: () => {
      clears++;
      queuedMs = 0;
      for (const m of marks.splice(0)) m.resolve('cleared');
    },
    mark: () => new Promise((resolve) => marks.push({ atMs: queuedMs, resolve })),
    send: (d) => void sent.push(d as Sent),
    hangup: () => undefined,
    transfer: () => Promise.resolve(),
    sendDtmf: () => true,
    dial: () => assert.fail('the demo agent places no calls'),
    queuedMs: () => queuedMs,
  };
  const session = new AgentSession('call', { name: 'test', kind: 'test' }, 16000, control);
  let t = 0;
  /** Delivers `samples` (16 kHz) as 20 ms frames; each frame plays 20 ms of what the agent queued. */
  const feed = async (samples: Int16Array) => {
    for (let at = 0; at + 320 <= samples.length; at += 320) {
      session.deliverFrame({ samples: samples.subarray(at, at + 320), sampleRate: 16000, timestampMs: (t += 20) });
      queuedMs = Math.max(0, queuedMs - 20);
      for (const m of marks.filter((x) => x.atMs <= 0 || queuedMs === 0)) {
        marks.splice(marks.indexOf(m), 1);
        m.resolve('played');
      }
      for (const m of marks) m.atMs -= 20;
      if (at % 3200 === 0) await new Promise((r) => setTimeout(r, 1)); // let the VAD's inference run
    }
  };
  return { session, sent, feed, clears: () => clears };
}

const tts = new SpeechSynthesizer();
const silence = (ms: number) => new Int16Array((16000 * ms) / 1000);
const settle = () => new Promise((r) => setTimeout(r, 300));
async function greeted(sent: Sent[]): Promise<void> {
  for (let i = 0; i < 200 && !sent.some((e) => e.type === 'agent-text' && e.label === 'greeting'); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(sent.some((e) => e.type === 'agent-text' && e.label === 'greeting'), 'the greeting is synthesised and queued');
}

test('the demo agent: a click during the greeting does not cut it; speech past GREETING_BARGE_MS (600 ms) does', { timeout: 60_000 }, async () => {
  const speech = await tts.speak('Excuse me, I would like to talk to someone about my booking please.', 16000);
  const h = harness();
  const attached = new DemoAgent(tts, createLogger('silent')).attach(h.session);
  await greeted(h.sent);
  // 400 ms of a voice, then quiet: enough to start a turn, less than a real interruption.
  await h.feed(speech.subarray(4800, 4800 + 6400));
  await h.feed(silence(1000));
  await settle();
  assert.ok(h.sent.some((e) => e.type === 'turn-start'), 'the sound was heard as the start of a turn');
  assert.equal(h.clears(), 0, 'a short sound does not barge in on the greeting');
  // Now the caller really talks over it.
  await h.feed(speech);
  await settle();
  assert.equal(h.clears(), 1, 'talking over the greeting stops it');
  assert.ok(h.sent.some((e) => e.type === 'barge-in'));
  await h.feed(silence(2000));
  await attached;
});

test('the demo agent answers a caller who never pauses after MAX_TURN_MS', { timeout: 120_000 }, async () => {
  const sentence = await tts.speak('and then we went on talking and talking without ever stopping for breath', 16000);
  const h = harness();
  const attached = new DemoAgent(tts, createLogger('silent')).attach(h.session);
  await greeted(h.sent);
  await h.feed(silence(8000)); // the greeting plays out
  await attached;
  // Sentences back to back: no pause as long as the turn detector's hangover.
  const seconds = MAX_TURN_MS / 1000 + 5;
  const talk = new Int16Array(16000 * seconds);
  for (let at = 0; at < talk.length; at += sentence.length) talk.set(sentence.subarray(0, Math.min(sentence.length, talk.length - at)), at);
  await h.feed(talk);
  await settle();
  const turns = h.sent.filter((e) => e.type === 'turn');
  assert.ok(turns.length >= 1, `a turn ended while the caller was still talking: ${JSON.stringify(h.sent.map((e) => e.type))}`);
  assert.equal(turns[0]!.cut, true, 'ended by the maximum, not by a pause');
  for (let i = 0; i < 200 && !h.sent.some((e) => e.type === 'agent-text' && e.label === 'reply-1'); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(h.sent.some((e) => e.type === 'agent-text' && e.label === 'reply-1'), 'and answered');
  tts.close();
});
