import type { Agent, AgentSession } from './agent.js';

/**
 * How much of the caller's audio the echo lets queue before it drops a frame: it plays exactly
 * one frame per frame heard, so a stall (a busy core, a GC) would otherwise leave its extra
 * delay in the queue for the rest of the call.
 */
const MAX_QUEUED_MS = 40;
/** At most one frame dropped per second, as the jitter buffer sheds: inaudible, and the delay drains. */
const SHED_INTERVAL_MS = 1000;

/** Plays back what it hears, at once: the round-trip probe. */
export class EchoAgent implements Agent {
  readonly name = 'echo';
  constructor(readonly sampleRate: 8000 | 16000 | 24000 | 48000 = 48000) {}

  attach(session: AgentSession): void {
    let shedAt = -Infinity;
    session.on('frame', (f) => {
      if (session.queuedMs > MAX_QUEUED_MS && f.timestampMs - shedAt >= SHED_INTERVAL_MS) {
        shedAt = f.timestampMs;
        return;
      }
      session.play(f.samples);
    });
    session.on('message', (m) => session.send({ type: 'echo', data: m }));
  }
}
