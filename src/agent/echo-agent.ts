import type { Agent, AgentSession } from './agent.js';

/** Plays back what it hears, at once: the round-trip probe. */
export class EchoAgent implements Agent {
  readonly name = 'echo';
  constructor(readonly sampleRate: 8000 | 16000 | 24000 | 48000 = 48000) {}

  attach(session: AgentSession): void {
    session.on('frame', (f) => session.play(f.samples));
    session.on('message', (m) => session.send({ type: 'echo', data: m }));
  }
}
