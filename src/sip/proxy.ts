import type { Logger } from '../core/logger.js';
import { cancelFor, newBranch, tagOf, uriOf } from './build.js';

const optionalUri = (value: string | undefined) => (value ? uriOf(value) : undefined);
import { parseSipUri } from './grammar.js';
import { cseqOf, header, headerList, serializeSipMessage, type SipHeader, type SipRequest, type SipResponse } from './message.js';
import type { Binding } from './registrar.js';
import type { Incoming, SipService } from './sip-service.js';
import type { SipFlow } from './transport/transport.js';

/** One call between two registered users, as the dialog-stateful proxy in the middle sees it. */
interface ProxiedCall {
  callId: string;
  caller: SipFlow;
  callerTag: string | undefined;
  callee: SipFlow;
  calleeTag: string | undefined;
  /** The caller's INVITE while it is pending, with what we forwarded (to build a CANCEL). */
  invite: Incoming | undefined;
  forwarded: SipRequest | undefined;
  confirmed: boolean;
  /** To send a BYE for a party whose WebSocket dropped: each side's address, Contact and last CSeq. */
  callerFrom: string;
  callerContact: string | undefined;
  calleeTo: string;
  calleeContact: string | undefined;
  seq: { caller: number; callee: number };
}

/**
 * Calls between registered users (RFC 3261 §16): voxgate record-routes, so every in-dialog
 * request comes back through it, and routes them by Call-ID to the other party's WebSocket
 * (the parties' Contacts are `.invalid` hosts only their flow reaches). Media goes end to end.
 */
export class Proxy {
  readonly #calls = new Map<string, ProxiedCall>();

  constructor(
    private readonly sip: SipService,
    private readonly log: Logger,
  ) {}

  get size(): number {
    return this.#calls.size;
  }

  invite(incoming: Incoming, caller: string, binding: Binding, flow: SipFlow): void {
    const { req } = incoming;
    const callId = header(req, 'Call-ID')!;
    if (this.#calls.has(callId)) return incoming.respond(482, { reason: 'Loop Detected' });
    incoming.scheduleTrying();
    const seq = cseqOf(req);
    const pc: ProxiedCall = {
      callId,
      caller: incoming.flow,
      callerTag: tagOf(header(req, 'From')),
      callee: flow,
      calleeTag: undefined,
      invite: incoming,
      forwarded: undefined,
      confirmed: false,
      callerFrom: header(req, 'From')!,
      callerContact: optionalUri(header(req, 'Contact')),
      calleeTo: header(req, 'To')!,
      calleeContact: undefined,
      seq: { caller: seq, callee: 0 },
    };
    this.#calls.set(callId, pc);
    const branch = newBranch();
    pc.forwarded = this.#forward(req, branch, binding.contact, flow, incoming.flow);
    const text = serializeSipMessage(pc.forwarded);
    this.sip.audit({ action: 'sip.invite', outcome: 'ok', status: 0, user: caller, target: req.uri, callee: binding.aor, remote: incoming.flow.remote, proxied: true });
    this.log.info({ callId, caller, callee: binding.aor }, 'SIP call proxied');
    this.sip.sendRequest(flow, 'INVITE', text, branch, (res, resText) => {
      if (res.status > 100 && res.status < 300) {
        pc.calleeTag ??= tagOf(header(res, 'To'));
        pc.calleeTo = header(res, 'To')!;
        pc.calleeContact = optionalUri(header(res, 'Contact')) ?? pc.calleeContact;
      }
      if (res.status >= 200) {
        pc.invite = undefined;
        this.sip.metricsCall('proxied', res.status < 300 ? 'answered' : String(res.status));
        if (res.status >= 300) this.#calls.delete(callId);
      }
      if (res.status === 408 && !resText) return incoming.respond(408);
      incoming.relay(res, resText);
    });
  }

  cancel(cancel: Incoming, invite: Incoming): boolean {
    const pc = this.#calls.get(header(invite.req, 'Call-ID')!);
    if (!pc || pc.invite !== invite || !pc.forwarded) return false;
    cancel.respond(200);
    const { text, branch } = cancelFor(pc.forwarded);
    this.sip.sendRequest(pc.callee, 'CANCEL', text, branch, () => undefined);
    return true;
  }

  inDialog(incoming: Incoming): boolean {
    const { req, flow } = incoming;
    const pc = this.#calls.get(header(req, 'Call-ID')!);
    if (!pc) return false;
    const fromTag = tagOf(header(req, 'From'));
    const target = flow === pc.caller && fromTag === pc.callerTag ? pc.callee : flow === pc.callee ? pc.caller : undefined;
    if (!target) return false;
    if (!this.sip.flow(target.id)) {
      if (req.method === 'BYE') this.#calls.delete(pc.callId);
      incoming.respond(req.method === 'BYE' ? 200 : 480, { reason: req.method === 'BYE' ? undefined : 'Temporarily Unavailable (the other party is gone)' });
      return true;
    }
    if (req.method === 'INVITE' || req.method === 'BYE' || req.method === 'REFER') {
      this.sip.audit({ action: `sip.${req.method.toLowerCase()}`, outcome: 'ok', status: 0, callId: pc.callId, proxied: true, remote: flow.remote });
    }
    const seq = cseqOf(req);
    if (target === pc.callee) pc.seq.caller = Math.max(pc.seq.caller, seq);
    else pc.seq.callee = Math.max(pc.seq.callee, seq);
    const branch = newBranch();
    const text = serializeSipMessage(this.#forward(req, branch, req.uri, target));
    this.sip.sendRequest(target, req.method, text, branch, (res: SipResponse, resText) => {
      if (req.method === 'BYE' && res.status >= 200) this.#calls.delete(pc.callId);
      if (res.status === 408 && !resText) return incoming.respond(408);
      incoming.relay(res, resText);
    });
    return true;
  }

  /** An ACK for a 2xx travels end to end through us, statelessly (§16.7 does not apply). */
  ack(req: SipRequest, flow: SipFlow): boolean {
    const pc = this.#calls.get(header(req, 'Call-ID')!);
    if (!pc) return false;
    const target = flow === pc.caller ? pc.callee : pc.caller;
    pc.confirmed = true;
    target.send(serializeSipMessage(this.#forward(req, newBranch(), req.uri, target)));
    return true;
  }

  flowClosed(flow: SipFlow): void {
    for (const pc of [...this.#calls.values()]) {
      if (pc.caller !== flow && pc.callee !== flow) continue;
      if (pc.invite && pc.callee === flow) pc.invite.respond(480, { reason: 'Temporarily Unavailable (the callee disconnected)' });
      else if (pc.confirmed) this.#byeForGone(pc, flow);
      this.#calls.delete(pc.callId);
    }
  }

  /**
   * A party's WebSocket dropped mid-call: the other party gets the BYE the gone one can no
   * longer send (in the gone party's name, with a CSeq above any it used).
   */
  #byeForGone(pc: ProxiedCall, gone: SipFlow): void {
    const callerGone = gone === pc.caller;
    const other = callerGone ? pc.callee : pc.caller;
    const uri = callerGone ? pc.calleeContact : pc.callerContact;
    if (!uri || !this.sip.flow(other.id)) return;
    const from = callerGone ? pc.callerFrom : pc.calleeTo;
    const to = callerGone ? pc.calleeTo : pc.callerFrom;
    const cseq = (callerGone ? pc.seq.caller : pc.seq.callee) + 1;
    const branch = newBranch();
    const text = [
      `BYE ${uri} SIP/2.0`,
      `Via: ${this.sip.via(other, branch)}`,
      'Max-Forwards: 70',
      `From: ${from}`,
      `To: ${to}`,
      `Call-ID: ${pc.callId}`,
      `CSeq: ${cseq} BYE`,
      'Reason: SIP;cause=480;text="the other party\'s connection closed"',
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
    this.log.info({ callId: pc.callId }, 'a proxied party disconnected; sending BYE to the other');
    this.sip.audit({ action: 'sip.bye', outcome: 'ok', status: 0, callId: pc.callId, proxied: true, by: 'voxgate', reason: 'flow-closed' });
    this.sip.sendRequest(other, 'BYE', text, branch, () => undefined);
  }

  /**
   * §16.6: copy, retarget, decrement Max-Forwards, drop our own Route, add our Via (of the flow
   * it goes out on) on top, and on a dialog-creating INVITE (`inbound` given), Record-Route so
   * the dialog's requests come back through us: twice when the two sides' transports differ
   * (RFC 5658 §4: the outgoing side's on top).
   */
  #forward(req: SipRequest, branch: string, uri: string, out: SipFlow, inbound?: SipFlow): SipRequest {
    const mf = Number(header(req, 'Max-Forwards') ?? 70);
    const headers: SipHeader[] = [{ name: 'Via', value: this.sip.via(out, branch) }];
    if (inbound) {
      headers.push({ name: 'Record-Route', value: this.sip.recordRoute(out) });
      if (inbound.transport !== out.transport) headers.push({ name: 'Record-Route', value: this.sip.recordRoute(inbound) });
    }
    let routesSeen = false;
    for (const h of req.headers) {
      if (h.name === 'Max-Forwards') continue;
      if (h.name === 'Route' && !routesSeen) {
        routesSeen = true;
        const routes = headerList({ ...req, headers: [h] }, 'Route').filter((r) => !this.#isOurs(r));
        for (const r of routes) headers.push({ name: 'Route', value: r });
        continue;
      }
      if (h.name === 'Proxy-Authorization') continue;
      headers.push(h);
    }
    headers.push({ name: 'Max-Forwards', value: String(Math.max(0, mf - 1)) });
    return { ...req, uri, headers };
  }

  #isOurs(route: string): boolean {
    const m = /<([^>]*)>/.exec(route);
    try {
      return this.sip.isLocalHost(parseSipUri(m ? m[1]! : route).host);
    } catch {
      return false;
    }
  }
}

