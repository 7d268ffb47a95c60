/**
 * Where registrar bindings live (RFC 3261 §10.3 "location service"): memory for one process,
 * JetStream KV when scaled out (DESIGN.md: "LocationStore (async)"). Both are held to
 * `src/cluster/contract/location-store.ts`.
 */

/**
 * RFC 3261 §10.3 registrar bindings, each tied to the WebSocket flow it came on (RFC 5626:
 * `+sip.instance` with `reg-id` names a binding, so a REGISTER from a reconnected client
 * replaces it instead of adding a second one). A closed flow drops its bindings at once.
 */
export interface Binding {
  aor: string;
  /** The Contact URI as registered: requests to this user are addressed to it. */
  contact: string;
  flowId: string;
  remote: string;
  instance: string | undefined;
  regId: string | undefined;
  callId: string;
  cseq: number;
  expiresAt: number;
  userAgent: string | undefined;
  /** In a fleet: the node holding the flow (other nodes reach the user through it). */
  node?: string;
}

export interface LocationStore {
  /** The bindings of an address of record as stored (expired ones too: the registrar filters); [] when none. */
  get(aor: string): Promise<Binding[]>;
  /**
   * Atomically replaces aor's bindings with change(current) and returns what was stored. `change`
   * must be pure: an implementation with optimistic concurrency (KV revision check) may run it
   * again on a conflict. An empty list removes the aor. A `change` that throws rejects the update
   * and stores nothing.
   */
  update(aor: string, change: (current: Binding[]) => Binding[]): Promise<Binding[]>;
  /** Every stored binding of every aor, in no particular order. */
  all(): Promise<Binding[]>;
  close(): Promise<void>;
}
