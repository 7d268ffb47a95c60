import type { AudioFrame } from '../audio/frame.js';
import type { SpeechSynthesizer } from '../audio/tts.js';
import { SileroVad, TurnDetector } from '../audio/vad.js';
import type { Logger } from '../core/logger.js';
import type { Agent, AgentSession } from './agent.js';

const PRE_ROLL_FRAMES = 15; // 300 ms before the VAD fired: the start of the first word
/** A caller who never pauses is answered after this much of one turn. */
export const MAX_TURN_MS = 15_000;
const MAX_TURN_FRAMES = MAX_TURN_MS / 20 + PRE_ROLL_FRAMES;
/** Talking over the greeting stops it only after this much speech: a click or the first noise of a microphone does not. */
export const GREETING_BARGE_MS = 600;

/**
 * The default agent: greets the caller, detects turns with Silero VAD, answers each turn by
 * playing the caller's words back and saying how long they spoke, and stops talking at once
 * when the caller talks over it (barge-in). Its events go to the caller's data channel.
 */
export class DemoAgent implements Agent {
  readonly name = 'demo';
  readonly sampleRate = 16000 as const;

  constructor(
    private readonly tts: SpeechSynthesizer,
    private readonly log: Logger,
  ) {}

  async attach(session: AgentSession): Promise<void> {
    const log = this.log.child({ agent: 'demo', session: session.callId });
    const vad = await SileroVad.create();
    const turns = new TurnDetector();
    const recent: Int16Array[] = [];
    let recording: Int16Array[] | undefined;
    let turn = 0;
    let speaking = 0; // replies queued and not yet played or cleared

    const say = async (parts: (string | Int16Array[])[], label: string) => {
      const audio: Int16Array[] = [];
      for (const p of parts) audio.push(...(typeof p === 'string' ? [await this.tts.speak(p, this.sampleRate)] : p));
      if (session.ended) return;
      // The caller's own words are audio: the text says where they play.
      const text = parts.map((p) => (typeof p === 'string' ? p : '[your words, played back]')).join(' ');
      session.send({ type: 'agent-text', text, label });
      speaking++;
      for (const a of audio) session.play(a);
      const result = await session.mark(label);
      speaking--;
      session.send({ type: 'mark', name: label, result });
    };

    let greeting = true; // the greeting is playing
    let pendingBarge = false;
    const bargeIn = () => {
      pendingBarge = false;
      // Barge-in: the caller talks over us; everything queued is dropped now.
      session.clear();
      session.send({ type: 'barge-in', index: turn + 1 });
      log.info('barge-in');
    };
    const endTurn = (speechMs: number, cut: boolean) => {
      pendingBarge = false;
      turn++;
      const words = recording ?? [];
      recording = undefined;
      const seconds = (speechMs / 1000).toFixed(1);
      session.send({ type: 'turn', index: turn, speechMs: Math.round(speechMs), ...(cut ? { cut: true } : {}) });
      log.info({ turn, speechMs: Math.round(speechMs), cut }, 'turn');
      say(['You said:', words, `You spoke for ${seconds} seconds.`], `reply-${turn}`).catch((err: unknown) => log.warn({ err }, 'reply failed'));
    };

    session.on('frame', (f: AudioFrame) => {
      recent.push(f.samples);
      if (recent.length > PRE_ROLL_FRAMES) recent.shift();
      if (recording && recording.length < MAX_TURN_FRAMES) recording.push(f.samples);
      vad.push(f.samples, (p) => {
        const e = turns.push(p);
        if (e?.event === 'start') {
          recording = [...recent];
          session.send({ type: 'turn-start', index: turn + 1 });
          if (speaking > 0 && greeting) pendingBarge = true; // decided once the caller has really spoken
          else if (speaking > 0) bargeIn();
        } else if (e?.event === 'end') endTurn(e.speechMs, false);
        else if (turns.speaking) {
          if (pendingBarge && greeting && speaking > 0 && turns.speechMs >= GREETING_BARGE_MS) bargeIn();
          if (turns.turnMs >= MAX_TURN_MS) endTurn(turns.forceEnd()!.speechMs, true);
        }
      });
    });
    session.on('dtmf', (digit) => {
      say([`You pressed ${digit === '*' ? 'star' : digit === '#' ? 'pound' : digit}.`], `dtmf-${digit}`).catch(() => undefined);
    });
    session.on('message', (m) => {
      const msg = m as { type?: unknown; text?: unknown };
      if (msg?.type === 'say' && typeof msg.text === 'string') say([msg.text.slice(0, 500)], 'say').catch(() => undefined);
    });
    await say(['Hello! This is the voxgate demo. Say something, and I will play it back to you.'], 'greeting');
    greeting = false;
  }
}
