import { tagOf } from '../sip/build.js';
import { header, type SipRequest } from '../sip/message.js';
import type { Incoming } from '../sip/sip-service.js';
import { negotiateSessionTimer } from './session-timer.js';

/** What we allow inside a dialog we are a party to. */
export const DIALOG_ALLOW = 'INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY';

/** Our 2xx to a dialog-making INVITE (§13.3.1.4), whoever answers it: Contact, Allow, Supported, the session timer, our SDP. */
export function answerInviteWith(invite: Incoming, contact: string, sdp: string): void {
  invite.respond(200, {
    recordRoute: true,
    headers: [
      { name: 'Contact', value: contact },
      { name: 'Allow', value: DIALOG_ALLOW },
      { name: 'Supported', value: 'timer, replaces' },
      ...sessionTimer(invite.req),
      { name: 'Content-Type', value: 'application/sdp' },
    ],
    body: sdp,
  });
}

/** RFC 4028 §9: the Session-Expires (and Require) our 2xx carries, when the request asked for a timer. */
export function sessionTimer(req: SipRequest): { name: string; value: string }[] {
  const st = negotiateSessionTimer(req);
  return st.kind === 'agreed' ? st.headers : [];
}

/** RFC 3326: why we hang up, as a Q.850 cause (ITU-T Q.850 Table 1) with our own reason as text. */
export function reasonHeader(reason: string): string {
  const cause: Record<string, number> = {
    'idle-timeout': 41, // temporary failure: the media stopped
    'session-expired': 102, // recovery on timer expiry
    'agent-failed': 41,
    'agent-disconnected': 41,
    'no-ack': 102,
    shutdown: 41,
    'setup-failed': 41,
    'ice-failed': 41,
    'dtls-failed': 41,
  };
  return `Q.850;cause=${cause[reason] ?? 16};text="${reason.replace(/"/g, '')}"`;
}

/** The key of the dialog an in-dialog request is for: its Call-ID and our tag (its To tag). */
export function dialogKeyOf(req: SipRequest): string {
  return `${header(req, 'Call-ID')}|${tagOf(header(req, 'To'))}`;
}
