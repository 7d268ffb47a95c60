import type { Clock, TimerHandle } from '../../core/clock.js';
import type { TrunkOutboundConfig } from '../../core/config.js';
import { TypedEmitter } from '../../core/events.js';
import type { Logger } from '../../core/logger.js';
import { parseNameAddr, parseSipUri } from '../../sip/grammar.js';
import { header, type SipHeader, type SipResponse } from '../../sip/message.js';
import { InviteUac, type InviteUacOutcome, type UacStack } from '../../sip/ua/invite-uac.js';
import type { SipFlow } from '../../sip/transport/transport.js';

/** What a trunk call needs of the SIP stack: client transactions, our Contact, a flow to an address. */
export interface TrunkStack extends UacStack {
  flowTo(protocol: 'UDP' | 'TCP' | 'TLS', address: { host: string; port: number }): SipFlow | undefined;
}

/** One carrier address of `outbound.address`. */
export interface CarrierAddress {
  host: string;
  port: number;
  /** As configured, for logs and the API. */
  text: string;
}

/** `host:port`, `host`, `[v6]:port` into an address (port: the transport's default). */
export function carrierAddresses(o: TrunkOutboundConfig): CarrierAddress[] {
  const fallback = o.transport === 'tls' ? 5061 : 5060;
  return [o.address].flat().map((text) => {
    const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(text)!;
    return { host: m[1] ?? m[2]!, port: m[3] ? Number(m[3]) : fallback, text };
  });
}

const PROTOCOL = { udp: 'UDP', tcp: 'TCP', tls: 'TLS' } as const;

/** A host as it goes into a URI (an IPv6 address in brackets). */
const uriHost = (host: string) => (host.includes(':') ? `[${host}]` : host);

/** A number's URI at a host, with `;user=phone` when the trunk wants it (RFC 3261 §19.1.6). */
function numberUri(number: string, host: string, userPhone: boolean, params = ''): string {
  return `sip:${number}@${host}${params}${userPhone && /^\+?\d+$/.test(number) ? ';user=phone' : ''}`;
}

export interface TrunkInviteRequest {
  /** The called number (E.164). */
  to: string;
  /** The caller ID presented (E.164, one of the trunk's numbers). */
  from: string;
  callerName?: string;
  /** Our SDP offer. */
  sdp: string;
  /** How long it may ring in all, over every address tried. */
  ringTimeoutMs: number;
  headers?: SipHeader[];
}

/** How a trunk call ended up: answered (with the address that answered) or why not. */
export type TrunkInviteOutcome = (InviteUacOutcome & { ok: true; address: CarrierAddress }) | { ok: false; status: number; reason: string; cause: number | undefined; response?: SipResponse };

export interface TrunkInviteEvents extends Record<string, unknown[]> {
  /** Every provisional response (100 excepted), from the address now tried. */
  provisional: [response: SipResponse];
  /** A new INVITE went out (first try, failover): its Call-ID. */
  attempt: [address: CarrierAddress, callId: string];
}

/** The Q.850 cause of a response's Reason header (RFC 3326), if it has one. */
export function q850Of(res: SipResponse | undefined): number | undefined {
  const m = /(?:^|,)\s*Q\.850\s*;[^,]*?\bcause\s*=\s*(\d+)/i.exec(res ? header(res, 'Reason') ?? '' : '');
  return m ? Number(m[1]) : undefined;
}

/** DESIGN "SIP trunks": another address is tried on 408, 5xx and transport errors, never after 486/600/603. */
function failsOver(status: number): boolean {
  return status === 408 || (status >= 500 && status < 600);
}

/**
 * An INVITE to a phone number through a trunk (RFC 3261 §13.2, the carrier's customs): the
 * Request-URI `sip:+E164@carrier;user=phone`, From with the account user or the caller ID,
 * the caller ID in From, P-Asserted-Identity or P-Preferred-Identity (RFC 3325), digest on
 * 401/407 with the account credentials (the digest `uri` is the Request-URI), a 3xx followed.
 * The addresses of `outbound.address` are tried in order: the next one only after 408 (or an
 * address that answers nothing, not even 100, for `failoverAfterSeconds`), a 5xx or a transport
 * error (T4, RFC 3263 §4.3), never after a 4xx or 6xx, and never once we gave up.
 * Deviation: each address gets a new INVITE (new Call-ID, From tag, CSeq 1) where RFC 3263 §4.3
 * resends the same request with a new branch: a slow first address that answers late then
 * makes a dialog of its own, which is hung up, instead of a fork of ours.
 */
export class TrunkInvite extends TypedEmitter<TrunkInviteEvents> {
  readonly result: Promise<TrunkInviteOutcome>;
  #uac: InviteUac | undefined;
  #flow: SipFlow | undefined;
  #cancelled: { status: number; reason: string } | undefined;
  #silence: TimerHandle | undefined;
  #started = false;
  readonly #resolve: (o: TrunkInviteOutcome) => void;
  readonly #addresses: CarrierAddress[];
  readonly #deadline: number;

  constructor(
    private readonly deps: { stack: TrunkStack; clock: Clock; log: Logger },
    private readonly trunk: { name: string; outbound: TrunkOutboundConfig },
    private readonly req: TrunkInviteRequest,
  ) {
    super();
    this.#addresses = carrierAddresses(trunk.outbound);
    this.#deadline = deps.clock.now() + req.ringTimeoutMs;
    let resolve!: (o: TrunkInviteOutcome) => void;
    this.result = new Promise((r) => (resolve = r));
    this.#resolve = resolve;
  }

  /** The INVITE client now ringing (its early dialog, its Call-ID). */
  get uac(): InviteUac | undefined {
    return this.#uac;
  }

  /** The flow the current INVITE went on: a TCP/TLS one closing is a transport error. */
  get flow(): SipFlow | undefined {
    return this.#flow;
  }

  start(): this {
    if (this.#started) return this;
    this.#started = true;
    void this.#run();
    return this;
  }

  /** Gives up (CANCEL once a provisional came; RFC 3261 §9.1): the outcome carries this status. */
  cancel(status = 487, reason = 'Request Terminated', why?: string): void {
    if (this.#cancelled) return;
    this.#cancelled = { status, reason };
    this.#uac?.cancel(status, reason, why);
  }

  /** A connection closed: the INVITE on it failed with a transport error (the next address is tried). */
  flowClosed(flow: SipFlow): void {
    if (flow === this.#flow && this.#uac && (this.#uac.state === 'calling' || this.#uac.state === 'proceeding' || this.#uac.state === 'early')) {
      this.#uac.abandon(503, 'Service Unavailable (the connection to the carrier closed)');
    }
  }

  async #run(): Promise<void> {
    const o = this.trunk.outbound;
    const protocol = PROTOCOL[o.transport];
    let last: TrunkInviteOutcome = { ok: false, status: 503, reason: 'Service Unavailable (no carrier address could be reached)', cause: undefined };
    for (const [i, address] of this.#addresses.entries()) {
      if (this.#cancelled) return this.#resolve({ ok: false, ...this.#cancelled, cause: undefined });
      const remaining = this.#deadline - this.deps.clock.now();
      if (remaining <= 0) break;
      const flow = this.deps.stack.flowTo(protocol, address);
      if (!flow) {
        this.deps.log.warn({ trunk: this.trunk.name, address: address.text, transport: protocol }, 'no SIP transport for the trunk address; trying the next');
        last = { ok: false, status: 503, reason: `Service Unavailable (no ${protocol} transport to ${address.text}: add a sip.listen entry)`, cause: undefined };
        continue;
      }
      const { outcome, rang } = await this.#try(flow, address, remaining, i < this.#addresses.length - 1);
      if (outcome.ok) return this.#resolve({ ...outcome, address });
      const cause = q850Of(outcome.response);
      last = { ok: false, status: outcome.status, reason: outcome.reason, cause, ...(outcome.response ? { response: outcome.response } : {}) };
      // Once the callee rang through this address, another would ring them again (RFC 3263 §4.3 is about reaching the next hop).
      if (this.#cancelled || !failsOver(outcome.status) || rang) break;
      this.deps.log.info({ trunk: this.trunk.name, address: address.text, status: outcome.status, reason: outcome.reason }, 'carrier address failed; trying the next');
    }
    if (this.#cancelled && last.ok === false && !last.response) last = { ok: false, ...this.#cancelled, cause: undefined };
    this.#resolve(last);
  }

  #try(flow: SipFlow, address: CarrierAddress, ringTimeoutMs: number, more: boolean): Promise<{ outcome: InviteUacOutcome; rang: boolean }> {
    const o = this.trunk.outbound;
    const { req } = this;
    const host = uriHost(address.host);
    const transportParam = o.transport === 'udp' ? '' : `;transport=${o.transport}`;
    const fromHost = o.fromHost ?? host;
    const uri = numberUri(req.to, `${host}:${address.port}`, o.userPhone, transportParam);
    const identity = `<${numberUri(req.from, fromHost, o.userPhone)}>`;
    const fromUser = o.callerIdHeader === 'from' ? req.from : (o.fromUser ?? req.from);
    const name = req.callerName ? `"${req.callerName.replace(/["\\\r\n]/g, '')}" ` : '';
    const headers: SipHeader[] = [];
    if (o.callerIdHeader === 'pai') headers.push({ name: 'P-Asserted-Identity', value: `${name}${identity}` });
    if (o.callerIdHeader === 'ppi') headers.push({ name: 'P-Preferred-Identity', value: `${name}${identity}` });
    const uac = new InviteUac(this.deps.stack, this.deps.clock, {
      flow,
      uri,
      from: `${name}<${numberUri(fromUser, fromHost, o.userPhone)}>`,
      to: `<${numberUri(req.to, host, o.userPhone)}>`,
      contactUser: fromUser,
      sdp: req.sdp,
      ringTimeoutMs,
      headers: [...headers, ...(req.headers ?? [])],
      ...(o.auth ? { credentials: { username: o.auth.user, password: o.auth.password } } : {}),
      redirect: (contact) => Promise.resolve(this.#redirect(contact)),
    });
    this.#uac = uac;
    this.#flow = flow;
    let rang = false;
    uac.on('provisional', (res) => {
      rang = true;
      this.emit('provisional', res);
    });
    // Any answer, a 100 included, shows the address is alive.
    uac.on('trying', () => this.#stopSilence());
    uac.on('state', (s) => {
      // The address answered: it is alive, and the ring time alone decides from here.
      if (s !== 'calling') this.#stopSilence();
    });
    uac.start();
    this.emit('attempt', address, uac.callId);
    if (this.#cancelled) uac.cancel(this.#cancelled.status, this.#cancelled.reason);
    // An address that answers nothing at all (a dead host, a black-holed UDP port) is given up
    // after failoverAfterSeconds when another address remains, as Kamailio's fr_timer does.
    if (more) {
      this.#silence = this.deps.clock.setTimeout(() => {
        if (uac.state === 'calling') uac.abandon(408, `Request Timeout (${address.text} answered nothing in ${o.failoverAfterSeconds} s)`, { cancelLate: true });
      }, o.failoverAfterSeconds * 1000);
    }
    return uac.result.then((outcome) => ({ outcome, rang })).finally(() => this.#stopSilence());
  }

  /**
   * A 3xx's Contact (§8.1.3.4), followed only to one of the trunk's own addresses (another
   * number there, or its other SBC): a redirect elsewhere would carry our INVITE, and our digest
   * answer to whatever challenge that host sends, anywhere. Anything else ends the call with the 3xx.
   */
  #redirect(contact: string): { flow: SipFlow; uri: string } | undefined {
    try {
      const uri = parseNameAddr(contact).uri;
      const parsed = parseSipUri(uri);
      const fallback = this.trunk.outbound.transport === 'tls' ? 5061 : 5060;
      const target = { host: parsed.host.replace(/^\[|\]$/g, '').toLowerCase(), port: parsed.port ?? fallback };
      if (!this.#addresses.some((a) => a.host.toLowerCase() === target.host && a.port === target.port)) {
        this.deps.log.warn({ trunk: this.trunk.name, contact: uri }, 'a redirect outside the trunk\'s addresses is not followed');
        return undefined;
      }
      const flow = this.deps.stack.flowTo(PROTOCOL[this.trunk.outbound.transport], target);
      return flow ? { flow, uri } : undefined;
    } catch {
      return undefined;
    }
  }

  #stopSilence(): void {
    if (this.#silence) this.deps.clock.clearTimeout(this.#silence);
    this.#silence = undefined;
  }
}
