import { createHmac } from 'node:crypto';
import type { IceServerConfig } from '../../core/config.js';

/**
 * `Link: <stun:...>; rel="ice-server"` headers (RFC 9725 §4.6, RFC 8288 syntax). Every
 * parameter value is quoted: unquoted credentials containing '=' broke clients.
 * TURN credentials from a shared secret follow the TURN REST API convention that coturn
 * implements (`use-auth-secret`): username "<expiry>:<session>", password base64(HMAC-SHA1).
 */
export function iceServerLinks(servers: IceServerConfig[], sessionId: string, nowMs: number): string[] {
  const links: string[] = [];
  for (const s of servers) {
    let username = s.username;
    let credential = s.credential;
    if (s.secret) {
      username = `${Math.floor(nowMs / 1000) + s.ttlSeconds}:${sessionId}`;
      credential = createHmac('sha1', s.secret).update(username).digest('base64');
    }
    for (const url of [s.urls].flat()) {
      let link = `<${url}>; rel="ice-server"`;
      if (/^turns?:/.test(url) && username !== undefined && credential !== undefined) {
        link += `; username="${quote(username)}"; credential="${quote(credential)}"; credential-type="password"`;
      }
      links.push(link);
    }
  }
  return links;
}

function quote(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
}
