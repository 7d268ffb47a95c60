import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AgentSession, type AgentControl } from './agent.js';
import { EchoAgent } from './echo-agent.js';

function session(queued: { ms: number }, played: number[]): AgentSession {
  const control: AgentControl = {
    play: (s) => played.push(s[0]!),
    clear: () => undefined,
    mark: () => Promise.resolve('played'),
    send: () => undefined,
    hangup: () => undefined,
    transfer: () => Promise.resolve(),
    sendDtmf: () => true,
    dial: () => assert.fail('the echo agent places no calls'),
    queuedMs: () => queued.ms,
  };
  return new AgentSession('call', { name: 'test', kind: 'test' }, 8000, control);
}

test('the echo plays every frame it hears while it keeps up, and sheds one frame a second while more than 40 ms is queued', () => {
  const queued = { ms: 0 };
  const played: number[] = [];
  const s = session(queued, played);
  void new EchoAgent(8000).attach(s);
  const frame = (n: number) => s.deliverFrame({ samples: Int16Array.of(n), sampleRate: 8000, timestampMs: n * 20 });
  for (let n = 0; n < 10; n++) frame(n);
  assert.deepEqual(played, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'all played: nothing is queued');
  queued.ms = 60; // a stall left three frames behind
  for (let n = 10; n < 110; n++) frame(n);
  assert.deepEqual(
    Array.from({ length: 100 }, (_, i) => 10 + i).filter((n) => !played.includes(n)),
    [10, 60],
    'one frame dropped per second of audio, no more',
  );
});
