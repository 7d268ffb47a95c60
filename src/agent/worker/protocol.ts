import { endianness } from 'node:os';
import { z } from 'zod';
import type { CallDetails, DialRequest, TransferOptions, TransferTarget } from '../agent.js';
import type { MarkResult } from '../../audio/pacer.js';

/**
 * The wire between a voxgate node and its agent workers (issue 17, build 4), on NATS core
 * subjects under the cluster's prefix P:
 *
 * - `P.workers.<name>.load`: each worker's load, every 400 ms and at once on a change
 *   (WorkerLoad); nodes keep the table, pick by it, and judge a worker lost after 1.3 s of silence.
 * - `P.workers.hello`: a node that starts asks every worker to report now.
 * - `P.worker.<workerId>.offer`: request/reply, node → worker: the call offered (Offer);
 *   the answer takes a place (Accept) or says why not.
 * - `P.call.<callId>.<workerId>.agent`: node → worker, for the call's life: the caller's audio
 *   and events. Addressed to the one worker that took it: a worker whose acceptance came too
 *   late is sent a `cancel` there and hears nothing else.
 * - `P.call.<callId>.<workerId>.node`: worker → node: the agent's audio and requests.
 *
 * A message on a call subject is either audio, `0x01` then a header then 16-bit little-endian
 * PCM at the call's rate, or a JSON object (its first byte `{`). Node → worker audio carries
 * the node's pacer state (what has been applied and how much is queued), so the worker can
 * answer `queuedMs` without a round trip; worker → node audio carries its sequence number.
 */

export const WORKER_HEARTBEAT_MS = 400;
/** A worker silent this long is gone: its calls end (agent-disconnected), well within 2 s. */
export const WORKER_LOST_MS = 1300;
/** How long the worker may take to say it has the call's start (then the call ends agent-failed). */
export const START_ACK_MS = 5000;
/** A call's node that sent nothing for this long is gone (the worker ends its session). */
export const NODE_SILENT_MS = 10_000;
/** The node says it is there when it has sent nothing else for this long. */
export const NODE_KEEPALIVE_MS = 1000;
/** How long an accepted offer holds a worker's place for the call's start. */
export const RESERVATION_MS = 30_000;
/** The most PCM one audio message carries (bytes); longer plays are split. */
export const MAX_PCM_BYTES = 60_000;

export const subjects = {
  load: (p: string, name: string) => `${p}.workers.${name}.load`,
  allLoads: (p: string) => `${p}.workers.*.load`,
  hello: (p: string) => `${p}.workers.hello`,
  offer: (p: string, workerId: string) => `${p}.worker.${workerId}.offer`,
  toAgent: (p: string, callId: string, workerId: string) => `${p}.call.${callId}.${workerId}.agent`,
  toNode: (p: string, callId: string, workerId: string) => `${p}.call.${callId}.${workerId}.node`,
};

/** Agent names, worker ids and call ids are subject tokens: letters, digits, `-` and `_`. */
export const AGENT_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const token = z.string().regex(AGENT_NAME);

export interface WorkerLoad {
  v: 1;
  id: string;
  name: string;
  calls: number;
  maxCalls: number;
  /** The worker's agent's own rate: a node with no `sampleRate` in the spec uses it. */
  sampleRate: number;
  /** Stopping: no more offers; its calls go on. */
  draining: boolean;
  /** Gone (a clean stop): its calls have ended. */
  gone?: boolean;
}

export interface Offer {
  v: 1;
  callId: string;
  node: string;
  name: string;
  sampleRate: number;
  source: { name: string; kind: string };
  details: CallDetails;
}

/** What a worker checks of an offer before it takes a place: every field it will use. */
export const offerSchema = z.object({
  v: z.literal(1),
  callId: token,
  node: token,
  name: token,
  sampleRate: z.union([z.literal(8000), z.literal(16000), z.literal(24000), z.literal(48000)]),
  source: z.object({ name: z.string().max(200), kind: z.string().max(40) }),
  details: z.object({ customParameters: z.record(z.string(), z.string()) }).passthrough(),
});

export type OfferAnswer = { accept: true; workerId: string; load: WorkerLoad } | { accept: false; reason: string; load: WorkerLoad };

/** Node → worker (JSON). */
export type ToAgent =
  | { t: 'start' }
  | { t: 'cancel' }
  | { t: 'dtmf'; digit: string }
  | { t: 'message'; data: unknown }
  | { t: 'transferred'; to: string }
  | { t: 'ended'; reason: string }
  | { t: 'mark'; id: number; result: MarkResult }
  | { t: 'transfer'; id: number; ok: boolean; status?: number; reason?: string; message?: string }
  | { t: 'dial'; id: string; ok: boolean; message?: string }
  | { t: 'ka'; applied: number; queuedMs: number };

/** Worker → node (JSON). */
export type ToNode =
  | { t: 'started' }
  | { t: 'attached' }
  | { t: 'failed'; message: string }
  | { t: 'clear'; seq: number }
  | { t: 'mark'; id: number; seq: number; name: string }
  | { t: 'send'; data: unknown }
  | { t: 'hangup'; reason: string }
  | { t: 'transfer'; id: number; target: TransferTarget; opts?: TransferOptions }
  | { t: 'dtmf'; digits: string }
  | { t: 'dial'; id: string; req: DialRequest };

const AUDIO = 0x01;
const BIG_ENDIAN = endianness() === 'BE';

function pcmBytes(samples: Int16Array): Buffer {
  const b = Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength);
  return BIG_ENDIAN ? Buffer.from(b).swap16() : b;
}

const u32 = (x: number) => Math.min(0xffffffff, Math.max(0, Math.round(x))) >>> 0;

/** Node → worker audio: 0x01, the last worker sequence number applied, ms queued, the frame's timestampMs, PCM. */
export function encodeCallerAudio(samples: Int16Array, applied: number, queuedMs: number, timestampMs: number): Buffer {
  const out = Buffer.allocUnsafe(13 + samples.byteLength);
  out[0] = AUDIO;
  out.writeUInt32BE(applied >>> 0, 1);
  out.writeUInt32BE(u32(queuedMs), 5);
  out.writeUInt32BE(u32(timestampMs), 9);
  pcmBytes(samples).copy(out, 13);
  return out;
}

/** Worker → node audio: 0x01, its sequence number, PCM. */
export function encodeAgentAudio(samples: Int16Array, seq: number): Buffer {
  const out = Buffer.allocUnsafe(5 + samples.byteLength);
  out[0] = AUDIO;
  out.writeUInt32BE(seq >>> 0, 1);
  pcmBytes(samples).copy(out, 5);
  return out;
}

function pcmOf(data: Uint8Array, offset: number): Int16Array {
  const n = (data.byteLength - offset) >> 1;
  const out = new Int16Array(n);
  Buffer.from(out.buffer).set(data.subarray(offset, offset + n * 2));
  if (BIG_ENDIAN) Buffer.from(out.buffer).swap16();
  return out;
}

export type Decoded<T> = { audio: Int16Array; header: number[] } | { json: T } | { bad: string };

/** Audio (with its header's `words` 32-bit numbers) or JSON; anything else is `bad`, with why. */
export function decode<T>(data: Uint8Array, words: 1 | 3): Decoded<T> {
  if (data.byteLength === 0) return { bad: 'an empty message' };
  if (data[0] === AUDIO) {
    if (data.byteLength < 1 + 4 * words) return { bad: 'an audio message shorter than its header' };
    const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const header = Array.from({ length: words }, (_, i) => v.getUint32(1 + 4 * i));
    return { audio: pcmOf(data, 1 + 4 * words), header };
  }
  try {
    const json = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8')) as unknown;
    if (json === null || typeof json !== 'object' || typeof (json as { t?: unknown }).t !== 'string') return { bad: 'a JSON message without a type (t)' };
    return { json: json as T };
  } catch {
    return { bad: 'neither audio nor JSON' };
  }
}

/** Splits a play into messages of at most MAX_PCM_BYTES. */
export function* chunks(samples: Int16Array): Generator<Int16Array> {
  const step = MAX_PCM_BYTES / 2;
  for (let i = 0; i < samples.length; i += step) yield samples.subarray(i, Math.min(samples.length, i + step));
}
