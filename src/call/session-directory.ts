/**
 * Which sessions exist, cluster-wide: every node claims the ids of the sessions it holds, so any
 * node can answer for any session (a WHEP request for a call on another node, an admin listing).
 * Only records cross it; the live Call stays on its node (DESIGN.md: "SessionDirectory (claim /
 * lookup / release any session by id)"). Implementations: memory (one process) and JetStream KV,
 * both held to `src/cluster/contract/session-directory.ts`.
 */

export type SessionState = 'connecting' | 'connected' | 'ended';

/** Serialisable: what any node may know of a session (a call or a listener), never a live object. */
export interface SessionRecord {
  id: string;
  /** 'whip' | 'sip-ws' | 'sip-trunk' | 'outbound' | 'whep' ... */
  kind: string;
  /** The node that holds the live session. */
  node: string;
  /** Source or listener name. */
  source: string;
  sourceKind: string;
  state: SessionState;
  /** Epoch ms. */
  createdAt: number;
  connectedAt?: number;
  endedAt?: number;
  endReason?: string;
  /** A listener session: the call it listens to. */
  parent?: string;
}

export interface SessionDirectory {
  /** Claims record.id (atomic create-if-absent, as JetStream KV `create`): false when the id is taken, live or ended. */
  claim(record: SessionRecord): Promise<boolean>;
  /** Changes `state`/`connectedAt` of a live session; false when it is unknown or already ended. */
  update(id: string, patch: { state?: 'connecting' | 'connected'; connectedAt?: number }): Promise<boolean>;
  lookup(id: string): Promise<SessionRecord | undefined>;
  /**
   * The session ended: it stays looked-up-able as ended (a tombstone) for a while, so WHEP can say
   * 404 (ended) rather than 409 (not yet). Idempotent: the first release's reason and `at` stand.
   * The tombstone's life runs from the call, by the directory's clock (not from `at`); once it is
   * forgotten the id is free to claim again.
   */
  release(id: string, reason: string, at: number): Promise<void>;
  /** Live (not ended) sessions, optionally of one node; in no particular order. */
  list(filter?: { node?: string }): Promise<SessionRecord[]>;
  close(): Promise<void>;
}
