import type { SourceIdentity } from '../../auth/source-auth.js';
import { Call, type EndReason } from '../../call/call.js';
import { PartyLeg } from '../../call/party-leg.js';
import { formatOf, newSendStream } from '../../call/start-call.js';
import { VoxgateError } from '../../core/errors.js';
import { newSessionId } from '../../core/ids.js';
import { MediaEndpoint } from '../../media/endpoint.js';
import { planAnswer, type AnswerPlan } from '../../sdp/codec-policy.js';
import { parseOffer } from '../../sdp/offer.js';
import { Dialog } from '../../sip/dialog.js';
import { header, type SipRequest } from '../../sip/message.js';
import type { Incoming } from '../../sip/sip-service.js';
import type { SipFlow } from '../../sip/transport/transport.js';
import type { NegotiatedTransport } from '../../transport/factory.js';
import type { RtpTransports } from '../../transport/rtp-udp/factory.js';
import { dropAnswered, NumberCallee, trunkOfferCodecs } from '../callee.js';
import type { SipCallsContext } from '../context.js';
import { answerInviteWith } from '../dialog-messages.js';
import type { PartyDialog } from '../party-dialog.js';
import { negotiateSessionTimer } from '../session-timer.js';
import { callerIdFor, type OutboundRoutes } from './routes.js';
import type { TrunkMetrics } from './trunk-metrics.js';

/** How long a browser's call to a phone may ring (the carrier's own timers usually end it first). */
const RING_MS = 120_000;

/** A browser's INVITE to a number, from its arrival to the carrier's answer. */
interface Pending {
  incoming: Incoming;
  callee: NumberCallee;
  call: Call | undefined;
  cancelled: boolean;
  /** The carrier's final answer came: the early call's end is no longer a CANCEL of the attempt. */
  settled: boolean;
}

export interface PhoneBridgeDeps {
  ctx: SipCallsContext;
  routes: OutboundRoutes;
  rtp: RtpTransports;
  /** The trunks each SIP user may call numbers through (`sip.users[].trunks`). */
  userTrunks: ReadonlyMap<string, readonly string[]>;
  metrics: TrunkMetrics;
}

/**
 * Browser → phone, voxgate as the SBC between them (a B2BUA): a registered user's INVITE to a
 * number goes out on the trunk `sip.outboundRoutes` picks among the user's `trunks`. The
 * browser's leg stays WebRTC (ICE, DTLS-SRTP, Opus); the carrier's is RTP/AVP offered in the
 * trunk's codecs with the browser's first, so both legs forward packets untouched when the
 * carrier takes it and are transcoded otherwise. The carrier's 180 and 183 (its early media)
 * reach the browser; its final answer is the browser's (486 stays 486); BYE, CANCEL, hold and
 * DTMF cross both ways. The call is one session (kind `sip-ws`) in /api/sessions, WHEP, audit.
 */
export class PhoneBridge {
  readonly #pending = new Map<string, Pending>();

  constructor(private readonly deps: PhoneBridgeDeps) {}

  /** Refusals are answered here too; a call placed is answered when the carrier answers. */
  async invite(incoming: Incoming, caller: string, number: string): Promise<void> {
    const { ctx, routes, metrics } = this.deps;
    const { deps } = ctx;
    const { req, flow } = incoming;
    const audit = (outcome: 'ok' | 'error', status: number, extra: Record<string, unknown> = {}) =>
      deps.sip.audit({ action: 'sip.invite', outcome, status, user: caller, target: req.uri, number, remote: flow.remote, for: 'phone', ...extra });
    const refuse = (status: number, reason: string, headers: { name: string; value: string }[] = []) => {
      audit('error', status, { reason });
      incoming.respond(status, { reason, headers });
    };
    const allowed = this.deps.userTrunks.get(caller) ?? [];
    if (allowed.length === 0) return refuse(403, `Forbidden (user ${caller} may not call phone numbers: give the user trunks in sip.users)`);
    const trunk = routes.trunkFor(number, allowed);
    if (!trunk) return refuse(404, `Not Found (no outbound route for ${number} among ${caller}'s trunks)`);
    if (!trunk.mayDial(number)) return refuse(403, `Forbidden (trunk ${trunk.name} may not call ${number})`);
    const from = callerIdFor(trunk);
    if (!from) return refuse(403, `Forbidden (trunk ${trunk.name} has no outbound.numbers to present as caller ID)`);
    if (req.body.length === 0) return refuse(488, 'Not Acceptable Here (send the SDP offer in the INVITE)');
    const st = negotiateSessionTimer(req);
    if (st.kind === 'too-small') return refuse(422, 'Session Interval Too Small', [{ name: 'Min-SE', value: String(st.minSe) }]);
    const source: SourceIdentity = { name: `sip:${caller}`, kind: 'sip-ws', agent: undefined, codecs: ['opus', 'g722', 'pcmu', 'pcma'], maxSessions: deps.maxCalls?.get(caller), via: 'sip-digest' };
    let plan: AnswerPlan;
    try {
      plan = planAnswer(parseOffer(req.body.toString('utf8')), { codecs: source.codecs, allowSendRecv: true, role: 'ingest' });
      deps.calls.checkAdmission(source);
    } catch (err) {
      const e = err instanceof VoxgateError ? err : new VoxgateError('VG_INTERNAL', 'Server Internal Error', { cause: err });
      return refuse(e.sipStatus, e.message.replace(/[\r\n]+/g, ' ').slice(0, 120), e.sipStatus === 503 ? [{ name: 'Retry-After', value: '5' }] : []);
    }
    const wait = trunk.admitOutbound(deps.clock.now());
    if (wait > 0) {
      metrics.outbound(trunk.name, '503');
      return refuse(503, `Service Unavailable (trunk ${trunk.name} is at its outbound limit)`, [{ name: 'Retry-After', value: String(wait) }]);
    }
    incoming.scheduleTrying();
    const id = newSessionId();
    const log = deps.log.child({ session: id, caller, number, trunk: trunk.name });
    const callee = new NumberCallee(ctx, this.deps.rtp, trunk, number, { from, ringTimeoutMs: RING_MS, codecs: trunkOfferCodecs(trunk.config.codecs, plan.audio.codec), log });
    const key = pendingKey(req);
    const pending: Pending = { incoming, callee, call: undefined, cancelled: false, settled: false };
    this.#pending.set(key, pending);
    trunk.outbound.add(id);
    // The browser's answer is made while the carrier rings: its ICE gathering costs no ringing time.
    const out = newSendStream();
    const browser = deps.transports.answer(id, req.body.toString('utf8'), plan, out);
    // A browser leg that cannot be made: the phone is not left ringing for nobody.
    browser.catch(() => callee.cancel(500, 'Server Internal Error (the browser leg failed)'));
    const contact = deps.sip.contact(flow, number);
    let early = false;
    callee.on('ringing', () => {
      if (!early) incoming.respond(180, { headers: [{ name: 'Contact', value: contact }] });
    });
    callee.on('early-media', (transport, calleePlan, calleeOut) => {
      early = true;
      // RFC 3960: the carrier's early media reaches the browser in our 183 (no 100rel: the 200 repeats the SDP).
      void browser
        .then((b) => {
          if (pending.cancelled || pending.call) return;
          pending.call = this.#call(id, source, b, plan, out, trunk.name, from, number);
          this.#addCallee(pending.call, transport, calleePlan, calleeOut);
          // The early call ending before the answer (shutdown, an operator's DELETE, idle) ends the attempt: CANCEL there, 487 here.
          pending.call.on('ended', () => {
            if (pending.settled || pending.cancelled) return;
            pending.cancelled = true;
            callee.cancel(487, 'Request Terminated (the call ended)');
            incoming.respond(487);
          });
          incoming.respond(183, { headers: [{ name: 'Contact', value: contact }, { name: 'Content-Type', value: 'application/sdp' }], body: b.localSdp });
          log.info({ pipeline: pending.call.describe() }, 'early media from the carrier reaches the browser');
        })
        .catch(() => undefined);
    });
    audit('ok', 0, { trunk: trunk.name, session: id, from, state: 'dialing' });
    const outcome = await callee.result;
    pending.settled = true;
    let b: NegotiatedTransport;
    try {
      b = await browser;
    } catch (err) {
      this.#pending.delete(key);
      log.error({ err }, 'the browser leg could not be answered');
      if (outcome.ok) dropAnswered(ctx, outcome, 'setup-failed');
      trunk.outbound.delete(id);
      if (!pending.cancelled) refuse(500, 'Server Internal Error (the WebRTC stack could not answer this offer)');
      return;
    }
    // Deleted only now: a CANCEL while the browser's answer was still being made must find it.
    this.#pending.delete(key);
    if (!outcome.ok || pending.cancelled) {
      trunk.outbound.delete(id);
      pending.call?.close(pending.cancelled ? 'cancelled' : 'setup-failed');
      if (!pending.call) b.close();
      if (outcome.ok) return dropAnswered(ctx, outcome, 'the caller hung up');
      metrics.outbound(trunk.name, String(outcome.status));
      if (pending.cancelled) return;
      // The carrier's answer is the browser's (RFC 3261 §16.7's spirit for a B2BUA): 486 stays 486.
      audit('error', outcome.status, { trunk: trunk.name, session: id, reason: outcome.reason, cause: outcome.cause ?? null });
      const reasonHeader = outcome.cause !== undefined ? [{ name: 'Reason', value: `Q.850;cause=${outcome.cause}` }] : [];
      const relayed = browserStatus(outcome.status, outcome.reason);
      incoming.respond(relayed.status, { reason: relayed.reason.replace(/[\r\n]+/g, ' ').slice(0, 120), headers: reasonHeader });
      return;
    }
    const call = pending.call ?? this.#call(id, source, b, plan, out, trunk.name, from, number);
    if (!pending.call) this.#addCallee(call, outcome.transport, outcome.plan, outcome.out);
    call.sipCallId = header(req, 'Call-ID');
    call.on('ended', () => trunk.outbound.delete(id));
    const browserDialog = ctx.openDialog({ dialog: Dialog.uas(req, incoming.toTag, flow.transport), flow, call, role: 'caller', peer: b, party: caller, localUser: number, answerSdp: b.localSdp, acked: false });
    const carrierDialog = ctx.openDialog({ dialog: outcome.dialog, flow: outcome.flow, call, role: 'callee', peer: outcome.transport, party: number, localUser: outcome.localUser, answerSdp: outcome.answerSdp, acked: true, answer: outcome.response });
    carrierDialog.carrier = true;
    this.#cross(call, browserDialog, carrierDialog);
    browserDialog.startSessionTimer(req);
    answerInviteWith(incoming, contact, b.localSdp);
    metrics.outbound(trunk.name, 'answered');
    audit('ok', 200, { trunk: trunk.name, session: id, codec: outcome.plan.audio.codec, mode: call.mode, media: outcome.flow.remote });
    log.info({ mode: call.mode, pipeline: call.describe() }, 'browser bridged to the phone');
  }

  /** CANCEL from the browser while the carrier rings: CANCEL there, 487 here. */
  cancel(invite: Incoming): boolean {
    const p = this.#pending.get(pendingKey(invite.req));
    if (!p || p.cancelled) return false;
    p.cancelled = true;
    p.callee.cancel(487, 'Request Terminated (the caller hung up)');
    invite.respond(487);
    p.call?.close('cancelled');
    return true;
  }

  flowClosed(flow: SipFlow): void {
    for (const p of this.#pending.values()) p.callee.flowClosed(flow);
  }

  /** Shutdown: every call still ringing is given up (CANCEL to the carrier, 503 to the browser). */
  cancelAll(): void {
    for (const [key, p] of this.#pending) {
      if (p.cancelled) continue;
      p.cancelled = true;
      p.callee.cancel(503, 'Service Unavailable (shutting down)');
      p.incoming.respond(503, { reason: 'Service Unavailable (shutting down)', headers: [{ name: 'Retry-After', value: '5' }] });
      p.call?.close('shutdown');
      this.#pending.delete(key);
    }
  }

  /** The call, with the browser as its caller; its callee joins at early media or the answer. */
  #call(id: string, source: SourceIdentity, browser: NegotiatedTransport, plan: AnswerPlan, out: ReturnType<typeof newSendStream>, trunk: string, from: string, number: string): Call {
    const { deps } = this.deps.ctx;
    const call = new Call(id, source, deps.clock, deps.idleTimeoutMs, { kind: 'sip-ws', mediaNow: () => deps.runtime.clock.now() });
    call.signalingRemote = undefined;
    call.trunk = { name: trunk, direction: 'outbound', from, to: number };
    deps.calls.add(call);
    call.addLeg('caller', new PartyLeg('sip-ws', new MediaEndpoint(id, browser, formatOf(plan), call.pcmRate, out, deps.runtime)));
    browser.on('state', (state) => {
      if (state === 'connected') call.markConnected();
    });
    return call;
  }

  #addCallee(call: Call, transport: NegotiatedTransport, plan: AnswerPlan, out: ReturnType<typeof newSendStream>): void {
    const { deps } = this.deps.ctx;
    call.addLeg('callee', new PartyLeg('sip-trunk', new MediaEndpoint(`${call.id}-callee`, transport, formatOf(plan), call.pcmRate, out, deps.runtime)));
  }

  /** Either side hanging up hangs up the other; a hold on one side holds the other. */
  #cross(call: Call, browser: PartyDialog, carrier: PartyDialog): void {
    const { ctx } = this.deps;
    let gone: PartyDialog | undefined;
    for (const [d, other] of [
      [browser, carrier],
      [carrier, browser],
    ] as const) {
      d.hooks = {
        left: (reason) => {
          gone = d;
          call.close(reason);
        },
        // The party's own offer, carried to the other side as ours (RFC 3264 §8.4 hold and resume).
        offered: (direction) => other.reoffer(direction),
      };
      ctx.watchMedia(d);
    }
    call.on('ended', (reason: EndReason) => {
      for (const d of [browser, carrier]) {
        if (d !== gone) d.bye(reason);
        d.forget();
      }
      ctx.deps.sip.audit({ action: 'sip.call.ended', outcome: 'ok', user: browser.party, session: call.id, reason, remote: browser.flow.remote, sourceKind: 'sip-ws' });
    });
  }
}

/**
 * The carrier's failure as the browser gets it (RFC 3261 §16.7 step 6's rules for what a middle
 * box passes on): a challenge to our account is no challenge the browser can answer (403), a
 * redirect we did not follow no Contact it can use (480), and the carrier's 503 is not ours (502).
 */
export function browserStatus(status: number, reason: string): { status: number; reason: string } {
  if (status === 401 || status === 407) return { status: 403, reason: `Forbidden (the carrier refused the trunk's credentials: ${status})` };
  if (status >= 300 && status < 400) return { status: 480, reason: `Temporarily Unavailable (the carrier redirected the call: ${status})` };
  if (status === 503) return { status: 502, reason: `Bad Gateway (the carrier answered 503 ${reason})` };
  if (status < 300 || status >= 700) return { status: 500, reason: 'Server Internal Error' };
  return { status, reason };
}

function pendingKey(req: SipRequest): string {
  return `${header(req, 'Call-ID')}|${header(req, 'CSeq')}`;
}

