import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { z } from 'zod';
import { decodeG711, encodeG711 } from '../audio/g711.js';
import type { Logger } from '../core/logger.js';
import type { Agent, AgentSession, CallDetails } from './agent.js';

export const twilioStreamSpecSchema = z
  .object({
    type: z.literal('twilio-stream'),
    url: z.string().regex(/^wss?:\/\/\S+$/, "use a ws:// or wss:// URL"),
    /** Passed through as start.customParameters. */
    customParameters: z.record(z.string(), z.string()).optional(),
    /** How long the agent's socket may take to open. */
    connectTimeoutMs: z.number().int().positive().optional(),
  })
  .strict();

export type TwilioStreamSpec = z.infer<typeof twilioStreamSpecSchema>;

function sid(prefix: string): string {
  return prefix + randomBytes(16).toString('hex');
}

/**
 * Speaks Twilio Media Streams (agent-protocols.md) to an agent's ws/wss URL, so agents written
 * for Twilio (Pipecat, the OpenAI realtime samples, ...) take voxgate calls unchanged.
 * A socket that cannot be opened fails the call at once; one that closes later hangs it up:
 * the caller is never left in silence.
 */
export class TwilioStreamAgent implements Agent {
  readonly name = 'twilio-stream';
  readonly sampleRate = 8000 as const;

  constructor(
    private readonly spec: TwilioStreamSpec,
    private readonly log: Logger,
    private readonly accountSid: string = sid('AC'),
  ) {}

  async attach(session: AgentSession): Promise<void> {
    const streamSid = sid('MZ');
    const callSid = sid('CA');
    const log = this.log.child({ agent: 'twilio-stream', streamSid, session: session.callId });
    const ws = new WebSocket(this.spec.url, { handshakeTimeout: this.spec.connectTimeoutMs ?? 5000, maxPayload: 1 << 20 });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', (err) => reject(new Error(`agent socket ${this.spec.url}: ${err.message}`)));
    });
    if (session.ended) {
      // The call ended while the socket was opening: its 'ended' came before we listened, so
      // the agent is told here, or the socket would stay open with nothing on it.
      ws.send(JSON.stringify({ event: 'stop', sequenceNumber: '1', streamSid, stop: { accountSid: this.accountSid, callSid } }));
      ws.close(1000, 'call ended');
      return;
    }
    let seq = 0;
    let chunk = 0;
    let ending = false;
    const started = Date.now();
    const send = (msg: Record<string, unknown>) => {
      if (ws.readyState !== WebSocket.OPEN) return;
      // Every message but `connected` carries sequenceNumber, a string counting from "1".
      ws.send(JSON.stringify(msg.event === 'connected' ? msg : { ...msg, sequenceNumber: String(++seq) }));
    };
    send({ event: 'connected', protocol: 'Call', version: '1.0.0' });
    send({
      event: 'start',
      streamSid,
      start: {
        accountSid: this.accountSid,
        callSid,
        streamSid,
        tracks: ['inbound'],
        customParameters: { source: session.source.name, sourceKind: session.source.kind, session: session.callId, ...phoneParameters(session.details), ...session.details.customParameters, ...this.spec.customParameters },
        mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
      },
    });

    session.on('frame', (f) => {
      chunk++;
      send({
        event: 'media',
        streamSid,
        media: { track: 'inbound', chunk: String(chunk), timestamp: String(Date.now() - started), payload: encodeG711(f.samples, 'pcmu').toString('base64') },
      });
    });
    session.on('dtmf', (digit) => send({ event: 'dtmf', streamSid, dtmf: { track: 'inbound_track', digit } }));
    session.on('ended', () => {
      ending = true;
      send({ event: 'stop', streamSid, stop: { accountSid: this.accountSid, callSid } });
      ws.close(1000, 'call ended');
    });

    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        log.warn('agent sent a binary frame; Media Streams messages are JSON text');
        return;
      }
      let msg: { event?: unknown; media?: { payload?: unknown }; mark?: { name?: unknown } };
      try {
        msg = JSON.parse(data.toString()) as typeof msg;
      } catch {
        log.warn({ sample: data.toString().slice(0, 80) }, 'agent sent a message that is not JSON; ignored');
        return;
      }
      switch (msg.event) {
        case 'media': {
          const payload = typeof msg.media?.payload === 'string' ? Buffer.from(msg.media.payload, 'base64') : undefined;
          if (payload?.length) session.play(decodeG711(payload, 'pcmu'));
          else log.warn('agent media message without a base64 payload; ignored');
          break;
        }
        case 'mark': {
          const name = msg.mark?.name;
          if (typeof name !== 'string') {
            log.warn('agent mark without a name; ignored');
            break;
          }
          // Echoed when the audio before it has been played, or dropped by a clear.
          void session.mark(name).then(() => send({ event: 'mark', streamSid, mark: { name } }));
          break;
        }
        case 'clear':
          session.clear();
          break;
        default:
          log.warn({ event: String(msg.event).slice(0, 40) }, 'agent sent an unknown event; ignored');
      }
    });
    ws.on('close', (code, reason) => {
      if (ending) return;
      log.warn({ code, reason: reason.toString() }, 'agent socket closed; ending the call');
      session.hangup('agent-disconnected');
    });
    ws.on('error', (err) => log.warn({ err: err.message }, 'agent socket error'));
  }
}

/** A phone call's numbers as Twilio's own Media Streams name them (`from`, `to`), when the call has them. */
function phoneParameters(d: CallDetails): Record<string, string> {
  const out: Record<string, string> = {};
  if (d.from !== undefined) out.from = d.from;
  if (d.to !== undefined) out.to = d.to;
  if (d.trunk !== undefined) out.trunk = d.trunk;
  return out;
}
