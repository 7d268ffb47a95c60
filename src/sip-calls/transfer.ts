import { TransferError, type TransferOptions, type TransferTarget } from '../agent/agent.js';
import { transition } from '../core/state.js';
import type { TimerHandle } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import type { AgentLeg } from '../call/agent-leg.js';
import type { Call, EndReason } from '../call/call.js';
import { PartyLeg } from '../call/party-leg.js';
import { formatOf } from '../call/start-call.js';
import { MediaEndpoint, type MediaFormat } from '../media/endpoint.js';
import { hostOf, REASONS, userOf } from '../sip/build.js';
import type { Attestation } from '../sip/identity/passport.js';
import { header } from '../sip/message.js';
import type { Incoming } from '../sip/sip-service.js';
import type { SipFlow } from '../sip/transport/transport.js';
import type { RtpTransports } from '../transport/rtp-udp/factory.js';
import { assertedPhoneCaller, hangUp, NumberCallee, TRANSFER_RING_MS, trunkOfferCodecs, UserCallee, type Answered, type Callee } from './callee.js';
import type { SipCallsContext } from './context.js';
import type { PartyDialog } from './party-dialog.js';
import { isE164 } from '../sip/phone-number.js';
import { callerIdFor, phoneNumberOf, type OutboundRoutes } from './trunk/routes.js';
import type { Trunk } from './trunk/trunks.js';

/** The agent's REFER of its SIP caller (RFC 3515), until the caller's NOTIFY says how it went. */
type ReferState = 'sent' | 'accepted' | 'done';

/** `sent`: the REFER is out; `accepted`: 202; `done`: a final NOTIFY, a refusal, or the call ended. */
const REFER_MOVES: Record<ReferState, ReferState[]> = { sent: ['accepted', 'done'], accepted: ['done'], done: [] };

interface ReferOut {
  state: ReferState;
  resolve(): void;
  reject(err: Error): void;
  /** Gives up on a final NOTIFY that never comes (see REFER_GRACE_MS). */
  timer?: TimerHandle;
}

/** Beyond the ring time, how long the caller's phone gets to place its INVITE and send the final NOTIFY. */
const REFER_GRACE_MS = 5_000;

/** The people voxgate is calling to bridge a caller to. */
type BridgeState = 'ringing' | 'bridged' | 'failed';

interface BridgeAttempt {
  state: BridgeState;
  callees: Callee[];
}

/** `ringing`: the INVITEs are out (or being made); then bridged or failed. */
const BRIDGE_MOVES: Record<BridgeState, BridgeState[]> = { ringing: ['bridged', 'failed'], bridged: [], failed: [] };

/**
 * The agent's `transfer(target)`. A SIP caller is sent a REFER and calls the target itself
 * (its media then goes end to end). A caller that cannot be referred (WHIP) stays where it is:
 * voxgate calls the target as a UAC and, once they answer, bridges the caller's leg to theirs
 * (packets forwarded when both use the same codec, transcoded otherwise); the agent leaves
 * with `transferred`. Either way a failure leaves the caller with the agent, and the agent's
 * promise rejects with a TransferError carrying the SIP status.
 */
export class AgentTransfers {
  readonly #refers = new Map<PartyDialog, ReferOut>();
  readonly #bridging = new Map<Call, BridgeAttempt>();

  constructor(
    private readonly ctx: SipCallsContext,
    /** User parts that reach an agent: a transfer hands the caller to a person, not back to an agent. */
    private readonly isAgent: (user: string | undefined) => boolean,
    /** Trunks that place calls, for transfers to phone numbers. */
    private readonly outbound?: { routes: OutboundRoutes; rtp: RtpTransports },
  ) {}

  /**
   * The call's transfer handler for SIP callers: REFER the dialog that carries the caller now to
   * a SIP target; a phone number or a list of targets is dialled and bridged by voxgate.
   */
  transfer(call: Call, target: TransferTarget, opts?: TransferOptions): Promise<void> {
    if (typeof target !== 'string' || phoneNumberOf(target)) return this.bridge(call, target, opts);
    const d = this.ctx.dialogs.current(call);
    if (!d) return Promise.reject(new TransferError(481, 'the call is not set up yet'));
    return this.refer(d, target, opts);
  }

  /**
   * REFER (RFC 3515) the party on `d` to `target`; resolves on a 2xx sipfrag in a NOTIFY. A
   * final NOTIFY that has not come within the ring time (opts.timeoutSeconds, 30 s) and
   * REFER_GRACE_MS is a 408: the caller stays with the agent, which hears why.
   */
  refer(d: PartyDialog, target: string, opts: TransferOptions = {}): Promise<void> {
    const uri = this.ctx.targetUri(target);
    if (this.#refers.has(d) || this.#bridging.has(d.call)) return Promise.reject(new TransferError(491, 'a transfer is already in progress'));
    if (d.call.state === 'ended') return Promise.reject(new TransferError(481, 'the call has ended'));
    return new Promise<void>((resolve, reject) => {
      const out: ReferOut = { state: 'sent', resolve, reject };
      this.#refers.set(d, out);
      const limitMs = (opts.timeoutSeconds !== undefined ? Math.min(Math.max(1, opts.timeoutSeconds), 600) * 1000 : TRANSFER_RING_MS) + REFER_GRACE_MS;
      out.timer = this.ctx.deps.clock.setTimeout(() => {
        this.ctx.deps.log.info({ session: d.call.id, target: uri, limitMs }, 'no final NOTIFY for the REFER in time; the caller stays');
        this.#settle(d, new TransferError(408, `Request Timeout (the caller's phone sent no final NOTIFY within ${limitMs / 1000} s)`));
      }, limitMs);
      const { text, branch } = d.dialog.request('REFER', [
        { name: 'Refer-To', value: `<${uri}>` },
        { name: 'Referred-By', value: `<${this.ctx.aor(d.localUser)}>` },
        { name: 'Contact', value: d.contact() },
      ]);
      this.ctx.deps.sip.audit({ action: 'sip.refer', outcome: 'ok', user: d.party, session: d.call.id, target: uri, by: 'agent', remote: d.flow.remote });
      this.ctx.deps.sip.sendRequest(d.requestFlow(), 'REFER', text, branch, (res) => {
        if (res.status < 200) return;
        if (res.status < 300) {
          if (out.state === 'sent') out.state = transition(REFER_MOVES, out.state, 'accepted', 'REFER');
          return;
        }
        this.#settle(d, new TransferError(res.status, `the caller refused the transfer (${res.reason})`));
      });
    });
  }

  /** NOTIFY `Event: refer` with `message/sipfrag` progress for a REFER the agent sent (RFC 3515 §2.4.4). */
  onNotify(d: PartyDialog, incoming: Incoming): void {
    const event = (header(incoming.req, 'Event') ?? '').split(';')[0]!.trim().toLowerCase();
    if (event !== 'refer') return incoming.respond(489, { reason: 'Bad Event' });
    incoming.respond(200);
    const frag = /^SIP\/2\.0 (\d{3})(?: ([^\r\n]*))?/.exec(incoming.req.body.toString('utf8'));
    const status = frag ? Number(frag[1]) : 0;
    const terminated = /^\s*terminated/i.test(header(incoming.req, 'Subscription-State') ?? '');
    this.ctx.deps.log.info({ session: d.call.id, status, terminated }, 'transfer progress');
    if (!this.#refers.has(d)) return;
    if (status >= 200 && status < 300) {
      this.#settle(d);
      d.call.close('transferred');
    } else if (status >= 300) {
      this.#settle(d, new TransferError(status, frag?.[2] ?? REASONS[status] ?? 'the transfer target answered nothing'));
    } else if (terminated) {
      // The subscription ended on a provisional sipfrag (or none): a 1xx is no failure status
      // for the agent to act on, so it gets 487, as for a transfer that ended unanswered.
      this.#settle(d, new TransferError(487, 'the transfer target answered nothing'));
    }
  }

  /** The call ended before a REFER it sent was done. */
  callEnded(d: PartyDialog, reason: EndReason): void {
    if (this.#refers.has(d)) this.#settle(d, new TransferError(487, `the call ended (${reason}) before the transfer completed`));
  }

  #settle(d: PartyDialog, err?: Error): void {
    const out = this.#refers.get(d);
    if (!out) return;
    this.#refers.delete(d);
    if (out.timer) this.ctx.deps.clock.clearTimeout(out.timer);
    out.state = transition(REFER_MOVES, out.state, 'done', 'REFER');
    if (err) out.reject(err);
    else out.resolve();
  }

  /** A connection closed: a person being called on it is given up at once (480), a carrier's next address tried. */
  flowClosed(flow: SipFlow): void {
    for (const attempt of this.#bridging.values()) for (const c of attempt.callees) c.flowClosed(flow);
  }

  /**
   * The call's transfer handler for callers voxgate cannot refer (WHIP), for phone numbers and
   * for several targets at once: voxgate calls each (a registered user where they registered, a
   * number through a trunk) and bridges the caller to the first who answers; the others get
   * CANCEL (RFC 3326 Reason `Call completed elsewhere`). The agent leaves with `transferred`.
   */
  async bridge(call: Call, target: TransferTarget, opts: TransferOptions = {}): Promise<void> {
    const { deps } = this.ctx;
    const targets = [target].flat();
    if (targets.length === 0 || targets.length > MAX_TARGETS) throw new TransferError(400, `give 1 to ${MAX_TARGETS} transfer targets`);
    if (call.state === 'ended') throw new TransferError(481, 'the call has ended');
    if (this.#bridging.has(call) || call.leg('callee')) throw new TransferError(491, 'a transfer is already in progress');
    const caller = call.leg('caller')?.endpoint;
    const agent = call.leg('agent') as AgentLeg | undefined;
    if (!caller || !agent) throw new TransferError(481, 'the call has no caller and agent to transfer');
    const ringMs = opts.timeoutSeconds !== undefined ? Math.min(Math.max(1, opts.timeoutSeconds), 600) * 1000 : TRANSFER_RING_MS;
    const log = deps.log.child({ session: call.id, targets });
    const fail = (status: number, reason: string): never => {
      deps.sip.audit({ action: 'sip.transfer', outcome: 'error', status, user: call.source.name, target: targets.join(', '), session: call.id, reason });
      log.info({ status, reason }, 'the transfer failed; the caller stays with the agent');
      throw new TransferError(status, reason);
    };
    // Every target is checked before any is called: a rota with a typo rings nobody.
    const plans = targets.map((t) => this.#plan(call, t, opts));
    const bad = plans.find((p) => 'status' in p);
    if (bad && 'status' in bad) return fail(bad.status, bad.reason);
    // The rota's calls on each trunk are admitted together (maxCalls counts them all, callsPerSecond once).
    const perTrunk = new Map<Trunk, number>();
    for (const p of plans as CalleePlan[]) if (p.kind === 'number') perTrunk.set(p.trunk, (perTrunk.get(p.trunk) ?? 0) + 1);
    for (const [trunk, n] of perTrunk) {
      if (trunk.admitOutbound(deps.clock.now(), n) > 0) return fail(503, `Service Unavailable (trunk ${trunk.name} is at its outbound call limit)`);
    }
    const attempt: BridgeAttempt = { state: 'ringing', callees: [] };
    this.#bridging.set(call, attempt);
    try {
      attempt.callees = plans.map((p, i) => this.#callee(call, p as CalleePlan, caller.format, ringMs, log, i));
      // The caller may leave while it rings: the calls we place go with it.
      const onEnded = () => {
        for (const c of attempt.callees) c.cancel(487, 'Request Terminated (the caller left)');
      };
      call.on('ended', onEnded);
      const won = await firstAnswer(attempt.callees, (answered, loser) => {
        // A second answer (two phones picked up at once): it is hung up at once.
        hangUp(this.ctx, answered, 200, 'answered elsewhere');
        answered.transport.close();
        log.info({ target: loser.target }, 'a second transfer target answered; hung up');
      });
      call.off('ended', onEnded);
      if (!won.ok) {
        attempt.state = transition(BRIDGE_MOVES, attempt.state, 'failed', `bridge of ${call.id}`);
        return fail(won.status, won.reason);
      }
      const { answered, callee } = won;
      if (call.endReason !== undefined) {
        hangUp(this.ctx, answered, 487, 'the caller left');
        answered.transport.close();
        attempt.state = transition(BRIDGE_MOVES, attempt.state, 'failed', `bridge of ${call.id}`);
        return fail(487, 'Request Terminated (the caller left)');
      }
      this.#join(call, answered);
      const to = callee instanceof UserCallee ? this.ctx.aor(callee.target) : callee.target;
      agent.session.deliverTransferred(to);
      call.removeLeg('agent', 'transferred');
      attempt.state = transition(BRIDGE_MOVES, attempt.state, 'bridged', `bridge of ${call.id}`);
      deps.sip.metricsCall('agent', 'transferred');
      deps.sip.audit({ action: 'sip.transfer', outcome: 'ok', status: 200, user: call.source.name, target: to, session: call.id, mode: call.mode, remote: answered.flow.remote });
      log.info({ mode: call.mode, pipeline: call.describe(), target: to }, 'the caller was bridged to the transfer target');
    } finally {
      this.#bridging.delete(call);
    }
  }

  /** Where a target is reached: a user of our domain (not an agent), or a number on a trunk. */
  #plan(call: Call, target: string, opts: TransferOptions): CalleePlan | { status: number; reason: string } {
    const number = phoneNumberOf(target);
    if (number) {
      const out = this.outbound;
      const own = call.trunk ? out?.routes.trunks.byName(call.trunk.name) : undefined;
      const trunk = own?.config.outbound ? own : out?.routes.trunkFor(number);
      if (!out || !trunk) return { status: 404, reason: `Not Found (no outbound trunk routes ${number}: configure sip.outboundRoutes)` };
      if (!trunk.mayDial(number)) return { status: 403, reason: `Forbidden (trunk ${trunk.name} may not call ${number}: outbound.allowedPrefixes)` };
      // Passing the phone caller's own number on: voxgate is a gateway for it (ATIS-1000074 §5.2.3: C).
      const inbound = call.trunk?.direction === 'inbound' ? call.trunk : undefined;
      const passOn = opts.callerId === 'caller' && inbound && isE164(inbound.from) ? inbound.from : undefined;
      if (passOn) return { kind: 'number', number, trunk, from: passOn, attest: 'C' };
      const from = callerIdFor(trunk, undefined, inbound?.to);
      if (!from) return { status: 403, reason: `Forbidden (trunk ${trunk.name} has no outbound.numbers to present as caller ID)` };
      return { kind: 'number', number, trunk, from };
    }
    const uri = this.ctx.targetUri(target);
    const user = userOf(uri);
    const host = hostOf(uri);
    if (host !== this.ctx.deps.domain.toLowerCase()) return { status: 404, reason: `Not Found (domain ${host ?? '?'} is not served here)` };
    if (!user || this.isAgent(user)) return { status: 403, reason: 'Forbidden (a caller can be handed to a registered user or a phone number only)' };
    return { kind: 'user', user };
  }

  #callee(call: Call, p: CalleePlan, format: MediaFormat, ringTimeoutMs: number, log: Logger, i: number): Callee {
    if (p.kind === 'user') return new UserCallee(this.ctx, p.user, { id: `${call.id}-callee-${i}`, format, ringTimeoutMs, localUser: 'agent', log, headers: assertedPhoneCaller(this.ctx, call.trunk) });
    const callee = new NumberCallee(this.ctx, this.outbound!.rtp, p.trunk, p.number, { from: p.from, ringTimeoutMs, codecs: trunkOfferCodecs(p.trunk.config.codecs, format.codec), log, ...(p.attest ? { attest: p.attest } : {}) });
    p.trunk.outbound.add(`${call.id}-callee-${i}`);
    void callee.result.then((o) => {
      if (!o.ok) p.trunk.outbound.delete(`${call.id}-callee-${i}`);
      else call.on('ended', () => p.trunk.outbound.delete(`${call.id}-callee-${i}`));
    });
    return callee;
  }

  /** The person who answered joins as the callee; their dialog ends the call when they hang up. */
  #join(call: Call, answered: Answered): void {
    const { deps } = this.ctx;
    const d = this.ctx.openDialog({
      dialog: answered.dialog,
      flow: answered.flow,
      call,
      role: 'callee',
      peer: answered.transport,
      party: answered.party,
      localUser: answered.localUser,
      answerSdp: answered.answerSdp,
      acked: true,
      answer: answered.response,
    });
    let calleeLeft = false;
    d.hooks = {
      left: (reason) => {
        calleeLeft = true;
        // The caller's own dialog (a SIP caller) is told here: its end handler takes a `bye` for the caller's own.
        const caller = this.ctx.dialogs.current(call);
        if (caller && caller !== d) caller.bye(reason);
        call.close(reason);
      },
    };
    this.ctx.watchMedia(d);
    call.on('ended', (reason) => {
      if (!calleeLeft) d.bye(reason);
      d.forget();
    });
    call.addLeg('callee', new PartyLeg(answered.kind === 'sip-trunk' ? 'sip-trunk' : 'sip-uac', new MediaEndpoint(`${call.id}-callee`, answered.transport, formatOf(answered.plan), call.pcmRate, answered.out, deps.runtime)));
  }
}

/** Targets rung at once for one transfer. */
const MAX_TARGETS = 10;

type CalleePlan = { kind: 'user'; user: string } | { kind: 'number'; number: string; trunk: Trunk; from: string; attest?: Attestation };

/**
 * The first callee to answer, the others cancelled; when nobody answers, the most telling
 * failure (a busy or declined target over one that rang out or was cancelled).
 */
async function firstAnswer(
  callees: Callee[],
  extra: (answered: Answered, callee: Callee) => void,
): Promise<{ ok: true; answered: Answered; callee: Callee } | { ok: false; status: number; reason: string }> {
  return new Promise((resolve) => {
    let won = false;
    let left = callees.length;
    const failures: { status: number; reason: string }[] = [];
    for (const c of callees) {
      void c.result.then((o) => {
        left--;
        if (o.ok) {
          if (won) return extra(o, c);
          won = true;
          for (const other of callees) if (other !== c) other.cancel(487, 'Call completed elsewhere', 'SIP;cause=200;text="Call completed elsewhere"');
          return resolve({ ok: true, answered: o, callee: c });
        }
        failures.push({ status: o.status, reason: o.reason });
        if (left === 0 && !won) resolve({ ok: false, ...mostTelling(failures) });
      });
    }
  });
}

function mostTelling(failures: { status: number; reason: string }[]): { status: number; reason: string } {
  const rank = (s: number) => (s === 486 || s === 600 || s === 603 ? 0 : s === 487 ? 3 : s === 408 || s === 480 ? 2 : 1);
  return [...failures].sort((a, b) => rank(a.status) - rank(b.status))[0] ?? { status: 480, reason: 'Temporarily Unavailable' };
}
