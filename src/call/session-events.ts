import type { SessionRecord } from './session-directory.js';

/**
 * Session lifecycle events, cluster-wide (SSE, the console, webhooks, billing). DESIGN.md:
 * "EventBus (serialisable events only: no live objects cross it)", so each event is plain JSON
 * data; implementations (memory, NATS) are held to `src/cluster/contract/event-bus.ts`.
 */

/** A call's media quality when it ended; null where it was not measured (no RTCP, no packets). */
export interface QualitySummary {
  packetsReceived: number;
  bytesReceived: number;
  mos: number | null;
  lossPercent: number | null;
  jitterMs: number | null;
  rttMs: number | null;
}

/**
 * `kind` and `node` are the session's (as in its SessionRecord) on every event, so a subscriber
 * to one kind's subject sees its whole life; `summary` is null when the node holding the call
 * was lost (another node ended it, `node-lost`, and nobody measured its end).
 */
export type SessionEvent =
  | { type: 'created'; at: number; session: SessionRecord }
  | { type: 'connected'; at: number; id: string; kind: string; node: string; setupMs: number }
  | { type: 'ended'; at: number; id: string; kind: string; node: string; source: string; sourceKind: string; reason: string; durationMs: number; summary: QualitySummary | null };

export interface EventBus {
  /**
   * Resolves once the event is delivered to this node's subscribers (memory) or accepted by the
   * server (NATS). Rejects with a TypeError, delivering nothing, when the event would not survive
   * JSON unchanged.
   */
  publish(event: SessionEvent): Promise<void>;
  /** Every event published after this call, once each, in publish order; returns the unsubscribe function. */
  subscribe(handler: (event: SessionEvent) => void): () => void;
  close(): Promise<void>;
}
