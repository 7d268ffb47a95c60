import type { SourceIdentity } from '../auth/source-auth.js';

/**
 * A call voxgate places (`POST /api/calls`, `gateway.calls.dial`, an agent's `session.dial`):
 * `dialing` (the INVITE is out), `ringing` (180), `early-media` (183 with SDP), `answered`
 * (2xx: the agent is on), `ended` (with the SIP status, the Q.850 cause and why).
 */
export type OutboundCallState = 'dialing' | 'ringing' | 'early-media' | 'answered' | 'ended';

/** What to call, from where, and who talks to them. */
export type { DialRequest } from '../agent/agent.js';
import type { DialRequest } from '../agent/agent.js';

/** Who asks: the admin token, or a source whose token may place calls (`sources[].outbound`). */
export interface DialAuthority {
  source?: SourceIdentity;
  /** The session id the call is to have: an agent on a worker chose it (its dial() returns at once). */
  id?: string;
}

/** An outbound call as `GET /api/calls/{id}` shows it. */
export interface OutboundCallView {
  /** Also the session id in `/api/sessions` once it is answered. */
  id: string;
  state: OutboundCallState;
  to: string;
  from: string | null;
  trunk: string | null;
  agent: string | null;
  createdAt: string;
  answeredAt: string | null;
  endedAt: string | null;
  sipCallId: string | null;
  /** The final SIP status: 200 once answered; 486, 503, 408 ... for a call that failed. */
  status: number | null;
  /** The SIP reason phrase that came with `status`, or what voxgate says happened. */
  reason: string | null;
  /** The Q.850 cause of a Reason header (RFC 3326), when the carrier sent one. */
  cause: number | null;
  /** Why it ended (`bye`, `deleted`, `agent-hangup`, `failed`, `timeout`, ...), once ended. */
  endReason: string | null;
}

/** What the HTTP API and the TypeScript API need of the outbound-call service. */
export interface OutboundCallsApi {
  /**
   * Places the call; returns at once with its view (state `dialing`). Throws VoxgateError:
   * VG_REQUEST_INVALID (400, naming the field), VG_AUTH_FORBIDDEN (403, the source may not call),
   * VG_CALLER_ID_FORBIDDEN (403, `from` is not the trunk's), VG_TRUNK_LIMIT (429, Retry-After),
   * VG_CAPACITY / VG_HTTP_DRAINING (503).
   */
  dial(req: DialRequest, by: DialAuthority): OutboundCallView;
  /** A call placed recently (live, or ended within the history kept). */
  get(id: string): OutboundCallView | undefined;
  /** Live calls first, then the recently ended ones. */
  list(): OutboundCallView[];
  /** CANCEL before the answer, BYE after; the view after it, or undefined when unknown. */
  hangup(id: string): OutboundCallView | undefined;
}

/** A trunk as `GET /api/trunks` shows it. */
export interface TrunkView {
  name: string;
  inbound: { numbers: string[] } | null;
  outbound: { addresses: string[]; transport: string; numbers: string[] } | null;
  calls: { inbound: number; outbound: number };
  registration: RegistrationView | null;
}

/** An outbound registration's state. */
export interface RegistrationView {
  /** `standby`: in a fleet, another node holds this registration (`heldBy`) and this one waits to take over. */
  state: 'registering' | 'registered' | 'failed' | 'stopped' | 'standby';
  /** In a fleet, the node holding the registration's lease (null when nobody holds it or without `cluster`). */
  heldBy?: string | null;
  aor: string;
  /** The carrier address registered with (the first that answered). */
  registrar: string | null;
  expiresInSeconds: number | null;
  lastStatus: number | null;
  lastReason: string | null;
  /** Seconds until the next REGISTER (refresh or retry). */
  nextAttemptInSeconds: number | null;
}
