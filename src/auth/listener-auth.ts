import { createHash, timingSafeEqual } from 'node:crypto';
import type { ListenerConfig } from '../core/config.js';
import { VoxgateError } from '../core/errors.js';
import { bearerToken } from './source-auth.js';

export interface ListenerIdentity {
  name: string;
  sessions: string[] | undefined;
  sources: string[] | undefined;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

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
    const presented = sha256(token ?? '');
    let found: ListenerIdentity | undefined;
    for (const e of this.#entries) if (timingSafeEqual(e.digest, presented)) found = e.identity;
    if (!token || !found) {
      throw new VoxgateError('VG_AUTH_INVALID', 'The listener token is not known.', {
        headers: { 'WWW-Authenticate': 'Bearer realm="voxgate", error="invalid_token", error_description="The listener token is not known."' },
      });
    }
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
