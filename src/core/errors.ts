/**
 * Every error voxgate reports has a stable code, an HTTP status and, where SIP can carry it,
 * a SIP status. Clients and operators key on the code; the detail tells a person what to fix.
 */
export const ERROR_TABLE = {
  VG_HTTP_NOT_FOUND: { http: 404, title: 'No such resource' },
  VG_HTTP_METHOD_NOT_ALLOWED: { http: 405, title: 'Method not allowed' },
  VG_HTTP_UNSUPPORTED_MEDIA_TYPE: { http: 415, title: 'Unsupported media type' },
  VG_HTTP_BODY_TOO_LARGE: { http: 413, title: 'Request body too large' },
  VG_HTTP_RATE_LIMITED: { http: 429, title: 'Too many requests' },
  VG_HTTP_DRAINING: { http: 503, sip: 503, title: 'Shutting down' },
  VG_AUTH_MISSING: { http: 401, title: 'Authentication required' },
  VG_AUTH_INVALID: { http: 401, title: 'Invalid token' },
  VG_AUTH_EXPIRED: { http: 401, title: 'Token expired' },
  VG_AUTH_FORBIDDEN: { http: 403, title: 'Not allowed' },
  VG_REQUEST_INVALID: { http: 400, title: 'Invalid request' },
  VG_CALLER_ID_FORBIDDEN: { http: 403, sip: 403, title: 'Caller ID not owned by this trunk' },
  VG_TRUNK_LIMIT: { http: 429, sip: 503, title: 'Trunk call limit reached' },
  VG_CALL_FAILED: { http: 502, title: 'The call failed' },
  VG_TRANSFER_FAILED: { http: 409, title: 'The transfer failed' },
  VG_SDP_MALFORMED: { http: 400, sip: 400, title: 'Malformed SDP' },
  VG_SDP_REFUSED: { http: 400, sip: 488, title: 'Offer refused by the WebRTC stack' },
  VG_SDP_NO_AUDIO: { http: 422, sip: 488, title: 'No audio track in the offer' },
  VG_SDP_TOO_MANY_AUDIO: { http: 422, sip: 488, title: 'More than one audio track' },
  VG_SDP_NO_COMMON_CODEC: { http: 422, sip: 488, title: 'No acceptable audio codec' },
  VG_SDP_BAD_DIRECTION: { http: 422, sip: 488, title: 'Unusable media direction' },
  VG_SDP_NOT_WEBRTC: { http: 422, sip: 488, title: 'Offer is not a WebRTC offer' },
  VG_SDP_PROFILE: { http: 422, sip: 488, title: 'Unusable media profile (RTP/AVP or RTP/SAVP)' },
  VG_TRICKLE_MALFORMED: { http: 400, title: 'Malformed trickle-ice-sdpfrag' },
  VG_ICE_RESTART_UNSUPPORTED: { http: 422, title: 'ICE restart not supported' },
  VG_PRECONDITION_REQUIRED: { http: 428, title: 'If-Match required' },
  VG_PRECONDITION_FAILED: { http: 412, title: 'ETag does not match' },
  VG_SESSION_NOT_FOUND: { http: 404, sip: 481, title: 'No such session' },
  VG_SESSION_NOT_STARTED: { http: 409, title: 'Session not live yet' },
  VG_SETUP_ABORTED: { http: 503, sip: 487, title: 'The session ended while it was being set up' },
  VG_SOURCE_SESSION_LIMIT: { http: 429, sip: 486, title: 'Session limit of this source reached' },
  VG_CAPACITY: { http: 503, sip: 503, title: 'At capacity' },
  VG_AGENT_NOT_READY: { http: 503, sip: 480, title: 'The agent did not start' },
  VG_RTP_PORTS_EXHAUSTED: { http: 503, sip: 503, title: 'No RTP port free (sip.rtp range exhausted)' },
  VG_WEBRTC_FAILED: { http: 500, sip: 500, title: 'WebRTC stack failed' },
  VG_AUDIT_WRITE_FAILED: { http: 500, sip: 500, title: 'Audit log write failed' },
  VG_INTERNAL: { http: 500, sip: 500, title: 'Internal error' },
} as const satisfies Record<string, { http: number; sip?: number; title: string }>;

export type ErrorCode = keyof typeof ERROR_TABLE;

export class VoxgateError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra members for the problem+json body (e.g. the codecs we accept). */
  readonly extra: Record<string, unknown>;
  /** Extra response headers (e.g. Retry-After, WWW-Authenticate). */
  readonly headers: Record<string, string>;

  constructor(
    code: ErrorCode,
    detail: string,
    opts: { extra?: Record<string, unknown>; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(detail, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'VoxgateError';
    this.code = code;
    this.status = ERROR_TABLE[code].http;
    this.extra = opts.extra ?? {};
    this.headers = opts.headers ?? {};
  }

  /** The SIP status for this error (500 where SIP has no better one). */
  get sipStatus(): number {
    const row = ERROR_TABLE[this.code];
    return 'sip' in row ? row.sip : 500;
  }

  /** RFC 9457 problem details. */
  toProblem(instance?: string): Record<string, unknown> {
    return {
      type: `urn:voxgate:error:${this.code}`,
      title: ERROR_TABLE[this.code].title,
      status: this.status,
      detail: this.message,
      code: this.code,
      ...(instance ? { instance } : {}),
      ...this.extra,
    };
  }
}

export function isVoxgateError(err: unknown): err is VoxgateError {
  return err instanceof VoxgateError;
}

/**
 * How a refused request is logged: a 4xx is the client's to fix (info); 503 is capacity or
 * draining (warn); any other 5xx is ours, at error with its cause, which is what an operator needs.
 */
export function logRefusal(log: { info(o: object, m: string): void; warn(o: object, m: string): void; error(o: object, m: string): void }, err: VoxgateError, fields: Record<string, unknown>, status = err.status, msg = err.message): void {
  if (status < 500) log.info({ ...fields, code: err.code }, msg);
  else if (status === 503) log.warn({ ...fields, code: err.code }, msg);
  else log.error({ ...fields, code: err.code, status, err, cause: err.cause instanceof Error ? err.cause.message : err.cause }, msg);
}
