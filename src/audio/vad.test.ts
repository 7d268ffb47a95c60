import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SileroVad, TurnDetector } from './vad.js';
import { tone } from './test-signals.js';

test('turns: a start after 160 ms of speech, an end after 700 ms of quiet; short pauses stay inside the turn', () => {
  const td = new TurnDetector({ startThreshold: 0.5, endThreshold: 0.35, minSpeechMs: 160, hangoverMs: 700, windowMs: 32 });
  const events: string[] = [];
  const feed = (p: number, ms: number) => {
    for (let t = 0; t < ms; t += 32) {
      const e = td.push(p);
      if (e) events.push(e.event === 'end' ? `end:${e.speechMs}` : 'start');
    }
  };
  feed(0.1, 500);
  feed(0.9, 96); // a click: too short to be speech
  feed(0.1, 300);
  feed(0.9, 1600);
  feed(0.2, 400); // a pause inside the sentence
  feed(0.9, 960);
  feed(0.05, 1000);
  assert.deepEqual(events, ['start', `end:${32 * Math.ceil(1600 / 32) + 32 * Math.ceil(400 / 32) + 32 * Math.ceil(960 / 32)}`]);
});

test('Silero VAD: silence and a pure tone are not speech', async () => {
  const vad = await SileroVad.create();
  const probs: number[] = [];
  vad.push(new Int16Array(16000), (p) => probs.push(p));
  vad.push(tone(440, 16000, 16000, 8000), (p) => probs.push(p));
  await vad.idle();
  assert.equal(probs.length, 62);
  assert.ok(Math.max(...probs) < 0.5, `max speech probability ${Math.max(...probs).toFixed(2)}`);
});
