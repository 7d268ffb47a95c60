import type { Call, EndReason } from '../call/call.js';
import { answerInviteWith, DIALOG_ALLOW, reasonHeader, sessionTimer } from './dialog-messages.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import type { MediaTransport } from '../transport/media-transport.js';
import type { Dialog } from '../sip/dialog.js';
import { parseNameAddr } from '../sip/grammar.js';
import { header, headerList, type SipRequest, type SipResponse } from '../sip/message.js';
import { sourceKindOf, type Incoming, type SipService } from '../sip/sip-service.js';
import type { SipFlow } from '../sip/transport/transport.js';
import { MAX_SE, MIN_SE, negotiateSessionTimer, SessionTimer } from './session-timer.js';
import { nextHopFlow } from '../sip/transport/next-hop.js';
import { parseOffer } from '../sdp/offer.js';
import { planRtpAnswer, type RtpRemote } from '../sdp/profile-rtp.js';
import type { Direction } from '../sdp/sdp.js';
import { RtpUdpTransport } from '../transport/rtp-udp/rtp-udp-transport.js';

export type PartyDialogState = 'answered' | 'confirmed' | 'detached' | 'ended';

/**
 * `answered`: our 2xx is out, the ACK not yet in (§13.3.1.4); `confirmed`: the call runs;
 * `detached`: a transfer moved the call to another dialog, this one can only end; `ended`.
 */
const PARTY_DIALOG_MOVES: Record<PartyDialogState, PartyDialogState[]> = {
  answered: ['confirmed', 'detached', 'ended'],
  confirmed: ['detached', 'ended'],
  detached: ['ended'],
  ended: [],
};


/** §13.3.1.4: no ACK within 64*T1 ends the dialog with a BYE. */
const ACK_WAIT_MS = 32_000;
/** How long a party whose media closed has to send its BYE before the call ends as peer-closed. */
const PEER_CLOSED_GRACE_MS = 1_000;

export interface PartyDialogDeps {
  sip: SipService;
  clock: Clock;
  log: Logger;
  /** The owner forgets the dialog (its table entry). */
  forget(dialog: PartyDialog): void;
}

/** What the owner of a dialog (the agent UAS, a bridge) adds to the generic handling. */
export interface PartyDialogHooks {
  /** The party hung up or its connection went; the default ends the call. */
  left?(reason: 'bye' | 'flow-closed'): void;
  refer?(incoming: Incoming): void;
  notify?(incoming: Incoming): void;
  /** The party's re-INVITE or UPDATE was answered: the direction it offered (a hold is sendonly or inactive). */
  offered?(direction: Direction): void;
}

/**
 * One party's SIP dialog in a call where voxgate is the UA (the caller of an agent call, a
 * person voxgate called): in-dialog requests (BYE, INFO DTMF, UPDATE and re-INVITE for session
 * refresh and hold, OPTIONS), the ACK wait, and media that closes before its BYE arrives.
 */
export class PartyDialog {
  readonly key: string;
  /** Whether we sent BYE (so a BYE of theirs crossing ours changes nothing). */
  byeSent = false;
  sdpVersion = 1;
  hooks: PartyDialogHooks = {};
  /** A carrier's leg (a trunk call either way): its TCP/TLS connection closing does not end the call. */
  carrier = false;
  /** The direction the party last offered (a hold: sendonly or inactive). */
  #theirDirection: Direction = 'sendrecv';
  #state: PartyDialogState;
  #ackTimer: TimerHandle | undefined;
  #graceTimer: TimerHandle | undefined;
  #sessionTimer: SessionTimer | undefined;
  /** Whether the party takes UPDATE (its Allow): our session refreshes use it, else a re-INVITE. */
  #peerAllowsUpdate = false;

  constructor(
    readonly dialog: Dialog,
    /** The flow it signals on; a carrier's new TCP/TLS connection replaces a closed one. */
    public flow: SipFlow,
    readonly call: Call,
    readonly role: 'caller' | 'callee',
    readonly transport: MediaTransport,
    /** The other party's user name. */
    readonly party: string,
    /** Our user part in this dialog (`agent`, a `sip.agents` entry). */
    readonly localUser: string,
    /** Our SDP as an answer: what a re-INVITE gets back, with the direction mirrored. */
    readonly answerSdp: string,
    private readonly deps: PartyDialogDeps,
    acked: boolean,
  ) {
    this.key = `${dialog.callId}|${dialog.localTag}`;
    this.#state = acked ? 'confirmed' : 'answered';
    call.on('dtmf-out', this.#onDtmfOut);
    if (!acked) {
      this.#ackTimer = deps.clock.setTimeout(() => {
        if (this.#state === 'answered') call.close('no-ack');
      }, ACK_WAIT_MS);
    }
  }

  get state(): PartyDialogState {
    return this.#state;
  }

  transition(to: PartyDialogState): void {
    if (to === this.#state) return;
    if (!PARTY_DIALOG_MOVES[this.#state].includes(to)) throw new Error(`dialog ${this.key}: illegal transition ${this.#state} -> ${to}`);
    this.#state = to;
    if (to !== 'answered') this.#clearAckTimer();
    if (to === 'ended' || to === 'detached') {
      this.#sessionTimer?.stop();
      this.call.off('dtmf-out', this.#onDtmfOut);
    }
    if (to === 'ended') this.#clearGrace();
  }

  /**
   * RFC 4028 from the INVITE we answered: as refresher we send UPDATE (or a re-INVITE) at half
   * the interval; otherwise the call ends, with a BYE, when their refresh does not come.
   */
  startSessionTimer(invite: SipRequest): void {
    this.#peerAllowsUpdate = headerList(invite, 'Allow').some((m) => m.toUpperCase() === 'UPDATE');
    const st = negotiateSessionTimer(invite);
    if (st.kind !== 'agreed') return;
    this.#sessionTimer = new SessionTimer(this.deps.clock, st.terms, {
      refresh: (interval) => this.#refreshSession(interval),
      expired: () => {
        this.deps.log.info({ session: this.call.id, interval: st.terms.interval }, 'SIP session timer expired');
        this.call.close('session-expired');
      },
    });
  }

  /**
   * RFC 4028 §7.2 from the 2xx to an INVITE we sent: its Session-Expires says the interval and
   * who refreshes (`refresher=uac` is us); none: the carrier runs no timer.
   */
  startSessionTimerFromAnswer(res: SipResponse): void {
    this.#peerAllowsUpdate = headerList(res, 'Allow').some((m) => m.toUpperCase() === 'UPDATE');
    const se = /^\s*(\d+)\s*(?:;.*refresher\s*=\s*(uac|uas))?/i.exec(header(res, 'Session-Expires') ?? '');
    if (!se) return;
    const interval = Math.max(MIN_SE, Math.min(Number(se[1]), MAX_SE));
    // SessionTimer speaks as the UAS: its `uas` refresher is us, which here is the 2xx's `uac`.
    const weRefresh = (se[2] ?? 'uac').toLowerCase() === 'uac';
    this.#sessionTimer = new SessionTimer(this.deps.clock, { interval, refresher: weRefresh ? 'uas' : 'uac' }, {
      refresh: (i) => this.#refreshSession(i),
      expired: () => {
        this.deps.log.info({ session: this.call.id, interval }, 'SIP session timer expired');
        this.call.close('session-expired');
      },
    });
  }

  acked(): void {
    if (this.#state === 'answered') this.transition('confirmed');
  }

  /** Our 2xx to the INVITE that made this dialog (§13.3.1.4): Contact, what we allow and support, the session timer, our SDP. */
  answerInvite(invite: Incoming): void {
    answerInviteWith(invite, this.contact(), this.answerSdp);
  }

  /** Where our requests in this dialog go: its route set or remote target (UDP, TCP, TLS), the flow itself on WebSocket. */
  requestFlow(): SipFlow {
    return nextHopFlow(this.dialog.routeSet, this.dialog.remoteTarget, this.flow);
  }

  contact(): string {
    return this.deps.sip.contact(this.flow, this.localUser);
  }

  /** Whether an in-dialog request belongs here. */
  matches(req: SipRequest): boolean {
    return this.dialog.matches(req);
  }

  /**
   * A UA hanging up sends BYE and closes its media at the same moment, and the DTLS
   * close_notify may arrive first. The dialog decides how the call ended: the BYE gets a moment,
   * and only without one does the call end as peer-closed.
   */
  mediaClosed(): void {
    this.#graceTimer ??= this.deps.clock.setTimeout(() => {
      if (this.#state !== 'detached' && this.#state !== 'ended') this.call.close('peer-closed');
    }, PEER_CLOSED_GRACE_MS);
  }

  /** Waits a moment, then sends BYE (a transferor that did not hang up itself). */
  byeAfter(ms: number, reason: EndReason, then: () => void): void {
    this.#clearGrace();
    this.#graceTimer = this.deps.clock.setTimeout(() => {
      this.bye(reason);
      then();
    }, ms);
  }

  /** Our BYE (§15.1.1), with the reason the call ended (RFC 3326: a Q.850 cause and ours). */
  bye(reason: string): void {
    if (this.byeSent) return;
    this.byeSent = true;
    this.#sessionTimer?.stop();
    const { text, branch } = this.dialog.request('BYE', [{ name: 'Reason', value: reasonHeader(reason) }]);
    this.deps.sip.audit({ action: 'sip.bye', outcome: 'ok', user: this.party, session: this.call.id, by: 'voxgate', reason, remote: this.flow.remote, sourceKind: sourceKindOf(this.flow) });
    this.deps.sip.sendRequest(this.requestFlow(), 'BYE', text, branch, () => undefined);
  }

  /** Timers stop and the owner forgets the dialog. */
  forget(): void {
    this.transition('ended');
    this.deps.forget(this);
  }

  /** An in-dialog request (§12.2.2); CSeq order is checked first. */
  handle(incoming: Incoming): void {
    const { req } = incoming;
    if (!this.dialog.acceptSeq(req)) return incoming.respond(500, { reason: 'CSeq out of order' });
    if (this.#state === 'detached' || this.#state === 'ended') {
      // The transferor's dialog after the call moved on: it can only end.
      if (req.method !== 'BYE') return incoming.respond(481, { reason: 'Call/Transaction Does Not Exist (the call was transferred)' });
      incoming.respond(200);
      return this.forget();
    }
    // A carrier that opened a new connection to us: our requests go on it from now on (RFC 5923's idea).
    if (incoming.flow !== this.flow && incoming.flow.transport === this.flow.transport && this.flow.transport.reliable) this.flow = incoming.flow;
    const contact = header(req, 'Contact');
    if (contact && (req.method === 'INVITE' || req.method === 'UPDATE')) this.dialog.remoteTarget = parseNameAddr(contact).uri;
    switch (req.method) {
      case 'BYE':
        incoming.respond(200);
        this.deps.sip.audit({ action: 'sip.bye', outcome: 'ok', status: 200, user: this.party, session: this.call.id, remote: incoming.flow.remote, sourceKind: sourceKindOf(incoming.flow) });
        return this.#left('bye');
      case 'INFO':
        return this.#info(incoming);
      case 'UPDATE':
        // RFC 3311 with SDP: a plain-RTP party's hold, resume or move, answered as a re-INVITE is.
        if (req.body.length > 0 && this.transport instanceof RtpUdpTransport) return this.#reinvite(incoming);
        // Deviation: a WebRTC party's media is not renegotiated by UPDATE (its DTLS and ICE stay).
        if (req.body.length > 0) return incoming.respond(488, { reason: 'Media renegotiation by UPDATE is not supported' });
        // Without a body: a session refresh (RFC 4028 §7.4).
        if (this.#refusedTooSmall(incoming)) return;
        this.#refreshedBy(req);
        return incoming.respond(200, { headers: sessionTimer(req) });
      case 'INVITE':
        return this.#reinvite(incoming);
      case 'OPTIONS':
        return incoming.respond(200, { headers: [{ name: 'Allow', value: DIALOG_ALLOW }] });
      case 'NOTIFY':
        if (this.hooks.notify) return this.hooks.notify(incoming);
        return incoming.respond(481, { reason: 'Call/Transaction Does Not Exist (no subscription)' });
      case 'REFER':
        if (this.hooks.refer) return this.hooks.refer(incoming);
        return incoming.respond(403, { reason: 'Forbidden (this party cannot transfer the call)' });
      default:
        // §12.2.2: a method we do not support inside a dialog.
        return incoming.respond(405, { headers: [{ name: 'Allow', value: DIALOG_ALLOW }] });
    }
  }

  /**
   * The party's connection closed. On WebSocket that is the browser gone (RFC 7118 has no way
   * back to it). A TCP or TLS connection, though, is only a carrier between transactions
   * (RFC 3261 §18: either side may close it and open a new one), so the call goes on.
   */
  flowClosed(): void {
    const p = this.flow.transport.protocol;
    // Only a carrier's: a phone registered over TCP is reachable on that connection alone.
    const carrier = p !== 'WS' && p !== 'WSS' && (this.carrier || (this.call.kind === 'sip-trunk' && this.role === 'caller'));
    if (carrier && this.#state !== 'detached' && this.#state !== 'ended') return;
    if (this.#state === 'detached' || this.#state === 'ended') return this.forget();
    this.#left('flow-closed');
  }

  #left(reason: 'bye' | 'flow-closed'): void {
    if (this.hooks.left) return this.hooks.left(reason);
    this.call.close(reason);
  }

  /** JsSIP's default DTMF: INFO application/dtmf-relay with `Signal=` and `Duration=`. */
  #info(incoming: Incoming): void {
    const type = (header(incoming.req, 'Content-Type') ?? '').split(';')[0]!.trim().toLowerCase();
    const body = incoming.req.body.toString('utf8');
    let digit: string | undefined;
    if (type === 'application/dtmf-relay') digit = /^\s*Signal\s*=\s*([0-9A-Da-d*#])\s*$/m.exec(body)?.[1];
    else if (type === 'application/dtmf') digit = /^\s*([0-9A-Da-d*#])\s*$/.exec(body)?.[1];
    else return incoming.respond(415, { headers: [{ name: 'Accept', value: 'application/dtmf-relay, application/dtmf' }] });
    if (!digit) return incoming.respond(400, { reason: 'No Signal= digit in the dtmf-relay body' });
    incoming.respond(200);
    this.deps.log.info({ session: this.call.id, digit, via: 'INFO' }, 'dtmf (SIP INFO)');
    this.call.dtmf(this.role, digit.toUpperCase());
  }

  /**
   * re-INVITE (or, for plain RTP, UPDATE with SDP): a session refresh or hold. The DTLS and ICE transport stays; the answer is our
   * original one with the direction mirrored (sendonly -> recvonly, inactive -> inactive).
   */
  #reinvite(incoming: Incoming): void {
    const { req } = incoming;
    if (this.#refusedTooSmall(incoming)) return;
    let direction = 'sendrecv';
    let rtpRemote: RtpRemote | undefined;
    if (req.body.length && this.transport instanceof RtpUdpTransport) {
      // A plain-RTP party may move its media or hold (a=sendonly, a=inactive, c=0.0.0.0); the codec stays.
      const codec = this.call.leg(this.role)?.endpoint?.format.codec;
      try {
        const plan = planRtpAnswer(parseOffer(req.body.toString('utf8')), { codecs: codec ? [codec] : ['pcmu'], encryption: 'allow' });
        direction = plan.audio.direction;
        rtpRemote = plan.rtp;
      } catch (err) {
        return incoming.respond(488, { reason: `Not Acceptable Here (${(err as Error).message.replace(/[\r\n]+/g, ' ').slice(0, 100)})` });
      }
    } else if (req.body.length) {
      const sdp = req.body.toString('utf8');
      const audio = sdp.split(/\r?\nm=/).find((s) => s.startsWith('audio')) ?? sdp;
      const dir = /\r?\na=(sendrecv|sendonly|recvonly|inactive)\b/.exec(audio)?.[1] ?? 'sendrecv';
      direction = { sendonly: 'recvonly', recvonly: 'sendonly', inactive: 'inactive', sendrecv: 'sendrecv' }[dir]!;
      const ufrag = /a=ice-ufrag:(\S+)/.exec(sdp)?.[1];
      const original = /a=ice-ufrag:(\S+)/.exec(this.dialog.remoteSdp)?.[1];
      // libdatachannel cannot restart ICE (its issue 545).
      if (ufrag && original && ufrag !== original) return incoming.respond(488, { reason: 'ICE restart is not supported' });
    }
    this.sdpVersion++;
    const answer = this.answerSdp
      .replace(/^(o=\S+ \S+ )(\d+)/m, (_m, pre: string) => `${pre}${this.sdpVersion}`)
      .replace(/a=(sendrecv|sendonly|recvonly|inactive)\b/g, `a=${direction}`);
    if (rtpRemote && this.transport instanceof RtpUdpTransport) this.transport.update(rtpRemote, direction as Direction, answer);
    // Counted as a refresh only now that it is answered 2xx.
    this.#refreshedBy(req);
    this.deps.log.info({ session: this.call.id, direction, method: req.method }, 'SIP offer in the dialog answered');
    incoming.respond(200, {
      recordRoute: req.method === 'INVITE',
      headers: [{ name: 'Contact', value: this.contact() }, ...sessionTimer(req), { name: 'Content-Type', value: 'application/sdp' }],
      body: answer,
    });
    // Only a change is news (a session refresh re-offers the same; planRtpAnswer reads an old-style c=0.0.0.0 hold as sendonly).
    const theirs: Direction = MIRROR[direction as Direction];
    if (req.body.length && theirs !== this.#theirDirection) {
      this.#theirDirection = theirs;
      this.hooks.offered?.(theirs);
    }
  }

  /**
   * Our re-INVITE with our session in this direction (RFC 3264 §8.4: sendonly or inactive holds
   * the party; sendrecv resumes), e.g. to carry the other party's hold across a bridge.
   */
  reoffer(direction: Direction): void {
    if (this.#state !== 'confirmed') return;
    this.sdpVersion++;
    const current = this.transport instanceof RtpUdpTransport ? this.transport.localSdp : this.answerSdp;
    const sdp = current.replace(/^(o=\S+ \S+ )(\d+)/m, (_m, pre: string) => `${pre}${this.sdpVersion}`).replace(/a=(sendrecv|sendonly|recvonly|inactive)\b/g, `a=${direction}`);
    const { text, branch } = this.dialog.request('INVITE', [{ name: 'Contact', value: this.contact() }], { type: 'application/sdp', content: sdp });
    const seq = this.dialog.localSeq;
    const to = this.requestFlow();
    this.deps.log.info({ session: this.call.id, direction, role: this.role }, 'SIP re-INVITE sent');
    this.deps.sip.sendRequest(to, 'INVITE', text, branch, (res) => {
      if (res.status < 200) return;
      if (res.status < 300) {
        to.send(this.dialog.ack(seq));
        if (this.transport instanceof RtpUdpTransport && res.body.length) {
          try {
            const codec = this.call.leg(this.role)?.endpoint?.format.codec;
            const plan = planRtpAnswer(parseOffer(res.body.toString('utf8')), { codecs: codec ? [codec] : ['pcmu'], encryption: 'allow' });
            this.transport.update(plan.rtp, plan.audio.direction, sdp);
          } catch (err) {
            this.deps.log.info({ err, session: this.call.id }, 'the answer to our re-INVITE was unusable; media unchanged');
          }
        }
      } else if (res.status === 481 || res.status === 408) this.call.close('bye');
    });
  }

  /**
   * A digit for this party when its media has no telephone-event: SIP INFO with
   * application/dtmf-relay (the de-facto package, draft-kaplan-dispatch-info-dtmf-package).
   */
  readonly #onDtmfOut = (to: string, digit: string): void => {
    if (to !== this.role || (this.#state !== 'confirmed' && this.#state !== 'answered')) return;
    // Bounded: a party that answers no INFO does not grow it without end.
    if (this.#infoDigits.length >= 32) return;
    this.#infoDigits.push(digit);
    if (this.#infoDigits.length === 1) this.#sendInfoDigit();
  };

  /** Digits waiting for INFO: one transaction at a time, so they arrive in CSeq order (§12.2.2). */
  readonly #infoDigits: string[] = [];

  #sendInfoDigit(): void {
    const digit = this.#infoDigits[0];
    if (digit === undefined || this.#state === 'ended' || this.#state === 'detached') return void this.#infoDigits.splice(0);
    const { text, branch } = this.dialog.request('INFO', [], { type: 'application/dtmf-relay', content: `Signal=${digit}\r\nDuration=160\r\n` });
    this.deps.sip.sendRequest(this.requestFlow(), 'INFO', text, branch, (res) => {
      if (res.status < 200) return;
      // §12.2.1.2: 481 or 408 means the dialog (or the party) is gone: the rest are dropped.
      if (res.status === 481 || res.status === 408) return void this.#infoDigits.splice(0);
      this.#infoDigits.shift();
      this.#sendInfoDigit();
    });
  }

  /** RFC 4028 §9: a refresh asking less than our Min-SE gets 422. */
  #refusedTooSmall(incoming: Incoming): boolean {
    const st = negotiateSessionTimer(incoming.req);
    if (st.kind !== 'too-small') return false;
    incoming.respond(422, { headers: [{ name: 'Min-SE', value: String(st.minSe) }] });
    return true;
  }

  /** Their re-INVITE or UPDATE refreshed the session (and may have changed its terms). */
  #refreshedBy(req: SipRequest): void {
    const st = negotiateSessionTimer(req);
    if (!this.#sessionTimer) {
      if (st.kind === 'agreed') this.startSessionTimer(req);
      return;
    }
    // §9: a refresh without Session-Expires (answered without one) turns the timer off.
    if (st.kind !== 'agreed') {
      this.#sessionTimer.stop();
      this.#sessionTimer = undefined;
      return;
    }
    this.#sessionTimer.refreshed(st.terms);
  }

  /**
   * RFC 4028 §7.4: our refresh, as the refresher. UPDATE without a body where the party allows
   * it (no media change), else a re-INVITE offering our session again. 2xx restarts the timer;
   * 481 or a timeout ends the call; anything else leaves it to expire.
   */
  #refreshSession(interval: number): void {
    if (this.#state !== 'confirmed' && this.#state !== 'answered') return;
    const timerHeaders = [
      // §7.4: in our refresh we are the UAC, and we stay the refresher.
      { name: 'Session-Expires', value: `${interval};refresher=uac` },
      { name: 'Supported', value: 'timer' },
      { name: 'Contact', value: this.contact() },
    ];
    const method = this.#peerAllowsUpdate ? 'UPDATE' : 'INVITE';
    let body: { type: string; content: string } | undefined;
    if (method === 'INVITE') {
      this.sdpVersion++;
      // The session as it is now (a plain-RTP party on hold stays on hold).
      const current = this.transport instanceof RtpUdpTransport ? this.transport.localSdp : this.answerSdp;
      body = { type: 'application/sdp', content: current.replace(/^(o=\S+ \S+ )(\d+)/m, (_m, pre: string) => `${pre}${this.sdpVersion}`) };
    }
    const { text, branch } = this.dialog.request(method, timerHeaders, body);
    const seq = this.dialog.localSeq;
    this.deps.log.debug({ session: this.call.id, method, interval }, 'SIP session refresh sent');
    const to = this.requestFlow();
    this.deps.sip.sendRequest(to, method, text, branch, (res) => {
      if (res.status < 200) return;
      if (method === 'INVITE' && res.status < 300) to.send(this.dialog.ack(seq));
      if (res.status < 300) return this.#refreshAnswered(res);
      if (res.status === 481 || res.status === 408) {
        this.deps.log.info({ session: this.call.id, status: res.status }, 'SIP session refresh failed; ending the call');
        this.call.close('session-expired');
      }
    });
  }

  /**
   * §7.2: the 2xx to our refresh says the interval and who refreshes from now on (its
   * `refresher` names the sides of that request, where we were the UAC); none: timers are off.
   */
  #refreshAnswered(res: SipResponse): void {
    const se = /^\s*(\d+)\s*(?:;.*refresher\s*=\s*(uac|uas))?/i.exec(header(res, 'Session-Expires') ?? '');
    if (!se) {
      this.#sessionTimer?.stop();
      this.#sessionTimer = undefined;
      return;
    }
    const weRefresh = (se[2] ?? 'uac').toLowerCase() === 'uac';
    this.#sessionTimer?.refreshed({ interval: Math.max(MIN_SE, Math.min(Number(se[1]), MAX_SE)), refresher: weRefresh ? 'uas' : 'uac' });
  }

  #clearAckTimer(): void {
    if (this.#ackTimer) this.deps.clock.clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
  }

  #clearGrace(): void {
    if (this.#graceTimer) this.deps.clock.clearTimeout(this.#graceTimer);
    this.#graceTimer = undefined;
  }
}

/** The direction the other side of an SDP exchange has (RFC 3264 §6.1). */
const MIRROR: Record<Direction, Direction> = { sendonly: 'recvonly', recvonly: 'sendonly', inactive: 'inactive', sendrecv: 'sendrecv' };
