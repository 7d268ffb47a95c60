import { createHash, timingSafeEqual } from 'node:crypto';
import type { ListenerConfig } from '../core/config.js';
import { VoxgateError } from '../core/errors.js';
import { bearerToken, notBearerDetail } from './source-auth.js';

export interface ListenerIdentity {
  name: string;
  sessions: string[] | undefined;
  sources: string[] | undefined;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

function invalidListener(detail: string): VoxgateError {
  return new VoxgateError('VG_AUTH_INVALID', detail, {
    headers: { 'WWW-Authenticate': `Bearer realm="voxgate", error="invalid_token", error_description="${detail.replace(/"/g, "'")}"` },
  });
}

/** WHEP listener tokens (and the admin token, which may hear everything). */
export class ListenerAuthenticator {
  readonly #entries: { digest: Buffer; identity: ListenerIdentity }[];

  constructor(listeners: ListenerConfig[], adminToken: string) {
    this.#entries = [
      ...listeners.map((l) => ({ digest: sha256(l.token), identity: { name: l.name, sessions: l.sessions, sources: l.sources } })),
      { digest: sha256(adminToken), identity: { name: 'admin', sessions: undefined, sources: undefined } },
    ];
  }

  authenticate(authorization: string | undefined): ListenerIdentity {
    if (!authorization) {
      throw new VoxgateError('VG_AUTH_MISSING', 'Send "Authorization: Bearer <listener token>".', { headers: { 'WWW-Authenticate': 'Bearer realm="voxgate"' } });
    }
    const token = bearerToken(authorization);
    if (!token) throw invalidListener(notBearerDetail(authorization, 'listener token'));
    const presented = sha256(token);
    let found: ListenerIdentity | undefined;
    for (const e of this.#entries) if (timingSafeEqual(e.digest, presented)) found = e.identity;
    if (!found) throw invalidListener('The listener token is not known.');
    return found;
  }

  /** 403 unless the listener may hear this session of this source. */
  authorize(who: ListenerIdentity, sessionId: string, source: string): void {
    if (who.sessions && !who.sessions.includes(sessionId)) {
      throw new VoxgateError('VG_AUTH_FORBIDDEN', `Listener '${who.name}' may not hear session ${sessionId}.`);
    }
    if (who.sources && !who.sources.includes(source)) {
      throw new VoxgateError('VG_AUTH_FORBIDDEN', `Listener '${who.name}' may not hear sessions of source '${source}'.`);
    }
  }
}
