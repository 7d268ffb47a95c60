import type { Clock, TimerHandle } from '../../core/clock.js';
import type { TrunkOutboundConfig } from '../../core/config.js';
import { TypedEmitter } from '../../core/events.js';
import type { Logger } from '../../core/logger.js';
import { DigestClient } from '../../sip/auth/digest-client.js';
import { ALLOW, newBranch, newCallId, newTag, SERVER } from '../../sip/build.js';
import { parseNameAddr, parseSipUri, type SipUri } from '../../sip/grammar.js';
import { header, headerList, serializeSipMessage, type SipHeader, type SipRequest, type SipResponse } from '../../sip/message.js';
import { bareHost } from '../../sip/transport/received.js';
import { viaFor, type SipFlow } from '../../sip/transport/transport.js';
import type { RegistrationView } from '../../call/outbound-types.js';
import { remoteHost } from './trunks.js';

/** What the registration needs of the stack (SipService has all three). */
export interface RegistrationStack {
  /** A client transaction; a timeout arrives as a synthesized 408. */
  sendRequest(flow: SipFlow, method: string, text: string, branch: string, onResponse: (res: SipResponse, text: string) => void): void;
  /** Our Contact name-addr on that flow. */
  contact(flow: SipFlow, user: string): string;
  /** The flow to the registrar over our transport of that protocol; undefined when there is none. */
  flowTo(protocol: 'UDP' | 'TCP' | 'TLS', address: { host: string; port: number }): SipFlow | undefined;
}

/** The shape of SipService.audit's entries. */
export interface RegistrationAuditEntry {
  action: string;
  outcome: 'ok' | 'error';
  [extra: string]: unknown;
}

export interface TrunkRegistrationDeps {
  stack: RegistrationStack;
  clock: Clock;
  log: Logger;
  audit(entry: RegistrationAuditEntry): void;
}

export interface TrunkRegistrationOptions {
  /** The trunk's name (`sip.trunks[].name`). */
  trunk: string;
  /** Its `outbound` block; `register` is what asks for this registration (its defaults apply when absent). */
  config: TrunkOutboundConfig;
}

export type RegistrationState = Exclude<RegistrationView['state'], 'standby'>;

/**
 * The legal moves. A refresh keeps `registered` (the binding holds until it expires); a failure
 * with another address left to try goes back to `registering`; `failed` waits for the backoff.
 */
const REGISTRATION_MOVES: Record<RegistrationState, RegistrationState[]> = {
  registering: ['registered', 'failed', 'stopped'],
  registered: ['registering', 'failed', 'stopped'],
  failed: ['registering', 'stopped'],
  // Only through resume(): a fleet's lease on the registration came back to this node.
  stopped: ['registering'],
};

export interface TrunkRegistrationEvents extends Record<string, unknown[]> {
  state: [state: RegistrationState];
}

/**
 * Retry delays after a failed round (every address tried, or a refusal such as 403), in
 * seconds: doubling from 30 s, capped at 5 min, back to the first after a success. A carrier's
 * Retry-After (§20.33) is honoured when longer, up to an hour.
 */
const BACKOFF_SECONDS = [30, 60, 120, 240, 300] as const;
const MAX_RETRY_AFTER_SECONDS = 3600;
/** A grant longer than a day is refreshed after a day (a timer past 2^31 ms would fire at once). */
const MAX_REFRESH_SECONDS = 86_400;
/** How long stop() waits for the answer to its Expires: 0 (a shutdown must not hang on a dead carrier). */
const STOP_WAIT_MS = 2_000;
const PROTOCOL = { udp: 'UDP', tcp: 'TCP', tls: 'TLS' } as const;

/**
 * When to refresh a binding granted for `granted` seconds: at max(90 %, granted − 30 s), i.e.
 * with a margin of 10 % for short bindings and 30 s for long ones (the two meet at 300 s), as
 * baresip (90 %) and Kamailio's uac (a fixed margin) do; never sooner than 1 s from now.
 * RFC 3261 §10.2.4 only asks for a refresh before the binding expires.
 */
export function refreshAfterSeconds(granted: number): number {
  return Math.max(1, Math.max(0.9 * granted, granted - 30));
}

/** The backoff after the n-th failed round in a row (n from 1). */
export function backoffSeconds(failures: number): number {
  return BACKOFF_SECONDS[Math.min(Math.max(failures, 1), BACKOFF_SECONDS.length) - 1]!;
}

interface RegistrarAddress {
  /** As configured: `host[:port]`. */
  text: string;
  /** As written in a URI (IPv6 in brackets). */
  host: string;
  port: number | undefined;
}

/** One REGISTER as sent: where to, what it asks, and the credentials it carried (for shouldRetry). */
interface Attempt {
  address: RegistrarAddress;
  flow: SipFlow;
  uri: string;
  aor: string;
  contact: string;
  /** 0 is the un-REGISTER of stop(). */
  expires: number;
  authorization?: string;
  proxyAuthorization?: string;
}

interface Binding {
  address: RegistrarAddress;
  flow: SipFlow;
  expiresAt: number;
}

/**
 * A trunk's outbound registration (RFC 3261 §10.2), for a trunk without a static IP: REGISTER
 * to the carrier with digest (401/407, §22.2), refreshed before the granted expiry, 423 answered
 * with the Min-Expires, failures retried with backoff, and failover across the trunk's
 * addresses on 408, 5xx and transport errors (RFC 3263 §4, DESIGN: never after a refusal).
 *
 * The Contact's user part is `vg-<trunk>`, not the AOR user: the AOR user may be an account
 * number two trunks share, or a local SIP user or agent name, and the carrier's INVITE
 * retargeted to our Contact (§10.3, §16.5) must name one trunk and nothing else.
 */
export class TrunkRegistration extends TypedEmitter<TrunkRegistrationEvents> {
  /** The user part of our Contact: an inbound INVITE to it (from the registrar's host) came on this registration. */
  readonly contactUser: string;
  readonly #deps: TrunkRegistrationDeps;
  readonly #trunk: string;
  readonly #config: TrunkOutboundConfig;
  readonly #addresses: RegistrarAddress[];
  readonly #user: string;
  readonly #digest: DigestClient | undefined;
  // §10.2: one Call-ID and From tag for the registration's life; CSeq goes up on each REGISTER (§10.2.4).
  readonly #callId = newCallId();
  readonly #fromTag = newTag();
  #cseq = 0;
  #state: RegistrationState = 'registering';
  #started = false;
  /** The Expires we ask for: the config's, raised by a 423's Min-Expires. */
  #asked: number;
  /** The address tried now (an index into #addresses), and how many failed over in this round. */
  #index = 0;
  #failedInRound = 0;
  /** Failed rounds in a row (the backoff step). */
  #failures = 0;
  #lastTried: RegistrarAddress | undefined;
  /** The REGISTER awaiting its final answer. */
  #pending: Attempt | undefined;
  #binding: Binding | undefined;
  #timer: { handle: TimerHandle; at: number } | undefined;
  #last: { status: number; reason: string } | undefined;
  /** The outcome last logged and audited: a repeated identical one is neither. */
  #lastOutcome = '';
  #stopping: Promise<void> | undefined;
  #unregistered: (() => void) | undefined;
  /** Bumped by stop() and resume(): a resume waiting on a stop goes ahead only if nothing came after it. */
  #generation = 0;

  constructor(deps: TrunkRegistrationDeps, opts: TrunkRegistrationOptions) {
    super();
    this.#deps = deps;
    this.#trunk = opts.trunk;
    this.#config = opts.config;
    const { address, auth, fromUser, register } = opts.config;
    this.#addresses = (Array.isArray(address) ? address : [address]).map(parseAddress);
    const user = register?.user ?? auth?.user ?? fromUser;
    if (user === undefined) throw new Error(`trunk ${opts.trunk}: a registration needs register.user, auth.user or fromUser`);
    this.#user = user;
    this.#asked = register?.expires ?? 600;
    this.#digest = auth ? new DigestClient({ username: auth.user, password: auth.password }) : undefined;
    this.contactUser = `vg-${opts.trunk.replace(/[^A-Za-z0-9._~-]/g, '-')}`;
  }

  get state(): RegistrationState {
    return this.#state;
  }

  get trunk(): string {
    return this.#trunk;
  }

  /**
   * Registers again after a stop (in a fleet, the lease on this registration came back to this
   * node): once the stop's un-REGISTER is done, a fresh round on the same Call-ID, CSeq going up.
   */
  async resume(): Promise<void> {
    if (this.#state !== 'stopped') return;
    const generation = ++this.#generation;
    await this.#stopping;
    // A stop asked for while we waited (the lease lost again, a shutdown) wins.
    if (this.#state !== 'stopped' || generation !== this.#generation) return;
    this.#stopping = undefined;
    this.#started = false;
    this.#failures = 0;
    this.#index = 0;
    this.#failedInRound = 0;
    this.#transition('registering');
    this.start();
  }

  /** Sends the first REGISTER now. */
  start(): void {
    if (this.#started || this.#state === 'stopped') return;
    this.#started = true;
    this.#round();
  }

  /**
   * Ends the registration: timers stop, and a binding we hold (or may be about to hold, a
   * REGISTER being in flight) is removed with Expires: 0 (§10.2.2), waiting at most 2 s for the answer.
   */
  stop(): Promise<void> {
    this.#generation++;
    if (this.#stopping) return this.#stopping;
    const now = this.#deps.clock.now();
    const held = this.#binding && this.#binding.expiresAt > now ? this.#binding : undefined;
    const target = held ?? this.#pending;
    this.#cancelTimer();
    this.#binding = undefined;
    this.#pending = undefined;
    this.#transition('stopped');
    if (!target) return (this.#stopping = Promise.resolve());
    this.#stopping = new Promise<void>((resolve) => {
      const wait = this.#deps.clock.setTimeout(() => {
        this.#unregistered = undefined;
        this.#outcome('sip.unregister.out', 'error', target.address, 408, `no answer within ${STOP_WAIT_MS / 1000} s`);
        resolve();
      }, STOP_WAIT_MS);
      this.#unregistered = () => {
        this.#deps.clock.clearTimeout(wait);
        this.#unregistered = undefined;
        resolve();
      };
      const address = target.address;
      this.#send({ address, flow: target.flow, uri: this.#requestUri(address), aor: this.#aor(address), contact: this.#deps.stack.contact(target.flow, this.contactUser), expires: 0 });
    });
    return this.#stopping;
  }

  /**
   * A connection closed (TCP/TLS; the lead's SipService flow-closed hook): if it carried our
   * binding, register again now on a new one, as PJSIP does; the carrier cannot reach a Contact
   * bound to a connection that is gone (RFC 5626 §4.4's reasoning, without its machinery).
   */
  flowClosed(flow: SipFlow): void {
    if (this.#state !== 'registered' || this.#binding?.flow !== flow || this.#pending) return;
    this.#round();
  }

  /** The registrar's host (the flow's remote) while a binding lives, for matching inbound INVITEs. */
  registrarHost(): string | undefined {
    const b = this.#binding;
    return b && this.#state !== 'stopped' && b.expiresAt > this.#deps.clock.now() ? remoteHost(b.flow.remote) : undefined;
  }

  view(): RegistrationView {
    const now = this.#deps.clock.now();
    const b = this.#binding && this.#binding.expiresAt > now ? this.#binding : undefined;
    const registrar = this.#state === 'registered' && b ? b.address : this.#lastTried;
    return {
      state: this.#state,
      aor: this.#aor(b?.address ?? this.#lastTried ?? this.#addresses[0]!),
      registrar: registrar?.text ?? null,
      expiresInSeconds: b ? Math.ceil((b.expiresAt - now) / 1000) : null,
      lastStatus: this.#last?.status ?? null,
      lastReason: this.#last?.reason ?? null,
      nextAttemptInSeconds: this.#timer ? Math.max(0, Math.ceil((this.#timer.at - now) / 1000)) : null,
    };
  }

  #transition(to: RegistrationState): void {
    if (to === this.#state) return;
    if (!REGISTRATION_MOVES[this.#state].includes(to)) throw new Error(`registration of trunk ${this.#trunk}: illegal transition ${this.#state} -> ${to}`);
    this.#state = to;
    this.emit('state', to);
  }

  /** A new round: the first REGISTER of a start, a refresh or a retry, at the current address. */
  #round(): void {
    this.#failedInRound = 0;
    if (this.#state === 'failed') this.#transition('registering');
    this.#attempt();
  }

  #attempt(): void {
    this.#cancelTimer();
    const address = this.#addresses[this.#index]!;
    this.#lastTried = address;
    const protocol = PROTOCOL[this.#config.transport];
    const flow = this.#deps.stack.flowTo(protocol, { host: bareHost(address.host), port: address.port ?? defaultPort(this.#config.transport) });
    // §8.1.3.1: a transport error counts as a 503 (and so fails over).
    if (!flow) return this.#failed(address, 503, `no ${protocol} flow to ${address.text}`);
    this.#send({ address, flow, uri: this.#requestUri(address), aor: this.#aor(address), contact: this.#deps.stack.contact(flow, this.contactUser), expires: this.#asked });
  }

  #send(attempt: Attempt): void {
    const branch = newBranch();
    const seq = ++this.#cseq;
    const headers: SipHeader[] = [
      { name: 'Via', value: viaFor(attempt.flow.transport, branch) },
      { name: 'Max-Forwards', value: '70' },
      // §10.2: To is the AOR, and so is From (no third-party registration).
      { name: 'From', value: `<${attempt.aor}>;tag=${this.#fromTag}` },
      { name: 'To', value: `<${attempt.aor}>` },
      { name: 'Call-ID', value: this.#callId },
      { name: 'CSeq', value: `${seq} REGISTER` },
      { name: 'Contact', value: attempt.contact },
      { name: 'Expires', value: String(attempt.expires) },
      ...(attempt.authorization ? [{ name: 'Authorization', value: attempt.authorization }] : []),
      ...(attempt.proxyAuthorization ? [{ name: 'Proxy-Authorization', value: attempt.proxyAuthorization }] : []),
      { name: 'Allow', value: ALLOW },
      { name: 'User-Agent', value: SERVER },
    ];
    const req: SipRequest = { kind: 'request', method: 'REGISTER', uri: attempt.uri, version: 'SIP/2.0', headers, body: Buffer.alloc(0) };
    if (attempt.expires > 0) this.#pending = attempt;
    this.#deps.stack.sendRequest(attempt.flow, 'REGISTER', serializeSipMessage(req), branch, (res) => {
      // A newer REGISTER (a retry, a refresh, the un-REGISTER) makes this one's answers moot.
      if (seq !== this.#cseq || res.status < 200) return;
      this.#onFinal(attempt, res);
    });
  }

  #onFinal(attempt: Attempt, res: SipResponse): void {
    if ((res.status === 401 || res.status === 407) && this.#answerChallenge(attempt, res)) return;
    if (attempt.expires === 0) {
      this.#outcome('sip.unregister.out', res.status < 300 ? 'ok' : 'error', attempt.address, res.status, res.reason);
      this.#unregistered?.();
      return;
    }
    this.#pending = undefined;
    if (res.status < 300) return this.#registered(attempt, res);
    if (res.status === 423) {
      // §10.2.8: ask again at once with at least the registrar's Min-Expires (once per value: it must go up).
      const min = seconds(header(res, 'Min-Expires'));
      if (min !== undefined && min > attempt.expires) {
        this.#asked = min;
        this.#deps.log.info({ trunk: this.#trunk, minExpires: min }, 'trunk registration: interval too brief; asking for the Min-Expires');
        return this.#attempt();
      }
    }
    this.#failed(attempt.address, res.status, res.reason, retryAfter(res));
  }

  /** §22.2: one answer per challenge; a second one for the same credentials is a failure (DigestClient.shouldRetry). */
  #answerChallenge(attempt: Attempt, res: SipResponse): boolean {
    if (!this.#digest) return false;
    const proxy = res.status === 407;
    const challenges = headerList(res, proxy ? 'Proxy-Authenticate' : 'WWW-Authenticate');
    if (!this.#digest.shouldRetry(challenges, proxy ? attempt.proxyAuthorization : attempt.authorization)) return false;
    // §22.4: the digest-uri is the Request-URI.
    const answer = this.#digest.answer(challenges, { method: 'REGISTER', uri: attempt.uri });
    if (!answer) return false;
    this.#send(proxy ? { ...attempt, proxyAuthorization: answer.value } : { ...attempt, authorization: answer.value });
    return true;
  }

  #registered(attempt: Attempt, res: SipResponse): void {
    const granted = grantedExpires(res, attempt.contact, this.contactUser, attempt.expires);
    const now = this.#deps.clock.now();
    this.#binding = { address: attempt.address, flow: attempt.flow, expiresAt: now + granted * 1000 };
    this.#failures = 0;
    this.#last = { status: res.status, reason: res.reason };
    this.#transition('registered');
    this.#outcome('sip.register.out', 'ok', attempt.address, res.status, res.reason, { expires: granted });
    this.#schedule(refreshAfterSeconds(Math.min(granted, MAX_REFRESH_SECONDS)) * 1000, () => this.#round());
  }

  /**
   * A REGISTER that failed: on 408, 5xx or a transport error the next address is tried at once
   * while this round has one left; otherwise the round is over, and the next one starts at the
   * first address after the backoff.
   */
  #failed(address: RegistrarAddress, status: number, reason: string, retryAfterSeconds?: number): void {
    this.#last = { status, reason };
    this.#outcome('sip.register.out', 'error', address, status, reason);
    const failover = status === 408 || (status >= 500 && status < 600);
    if (failover && ++this.#failedInRound < this.#addresses.length) {
      this.#index = (this.#index + 1) % this.#addresses.length;
      this.#transition('registering');
      return this.#attempt();
    }
    this.#failures++;
    this.#index = 0;
    this.#transition('failed');
    const delay = Math.max(backoffSeconds(this.#failures), Math.min(retryAfterSeconds ?? 0, MAX_RETRY_AFTER_SECONDS));
    this.#schedule(delay * 1000, () => this.#round());
  }

  /** Logs and audits an outcome unless it is the one before it again (a carrier down for hours is one line). */
  #outcome(action: string, outcome: 'ok' | 'error', address: RegistrarAddress, status: number, reason: string, extra: Record<string, unknown> = {}): void {
    const key = `${action}|${outcome}|${status}|${address.text}`;
    if (key === this.#lastOutcome) return;
    this.#lastOutcome = key;
    const entry = { action, outcome, trunk: this.#trunk, status, reason, registrar: address.text, aor: this.#aor(address), sourceKind: 'sip-trunk', ...extra };
    this.#deps.log.info(entry, outcome === 'ok' ? 'trunk registration: ok' : 'trunk registration: failed');
    try {
      this.#deps.audit(entry);
    } catch (err) {
      // The registration is the carrier's way to reach us: an audit failure is reported, not fatal.
      this.#deps.log.error({ err, trunk: this.#trunk }, 'audit write failed for a trunk registration');
    }
  }

  #schedule(ms: number, fn: () => void): void {
    this.#cancelTimer();
    const handle = this.#deps.clock.setTimeout(() => {
      this.#timer = undefined;
      fn();
    }, ms);
    this.#timer = { handle, at: this.#deps.clock.now() + ms };
  }

  #cancelTimer(): void {
    if (this.#timer) this.#deps.clock.clearTimeout(this.#timer.handle);
    this.#timer = undefined;
  }

  /** `sip:<user>@<fromHost ?? the address's host>`. */
  #aor(address: RegistrarAddress): string {
    return `sip:${this.#user}@${this.#config.fromHost ?? address.host}`;
  }

  /**
   * §10.2: the Request-URI names the registrar's domain, no user part: fromHost when given (the
   * carrier's domain, the address then being its proxy), else the address itself. TCP and TLS
   * say so (§19.1.1, RFC 3263 §4.1: a URI without it means UDP).
   */
  #requestUri(address: RegistrarAddress): string {
    const { fromHost, transport } = this.#config;
    const target = fromHost ?? `${address.host}${address.port === undefined ? '' : `:${address.port}`}`;
    return `sip:${target}${transport === 'udp' ? '' : `;transport=${transport}`}`;
  }
}

/** `host[:port]` as the config allows it (IPv6 in brackets). */
function parseAddress(text: string): RegistrarAddress {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d{1,5}))?$/.exec(text.trim());
  if (!m) throw new Error(`not a host:port: ${text}`);
  return { text, host: m[1]!.toLowerCase(), port: m[2] === undefined ? undefined : Number(m[2]) };
}

function defaultPort(transport: TrunkOutboundConfig['transport']): number {
  return transport === 'tls' ? 5061 : 5060;
}

/** A delta-seconds value (§25.1), undefined unless a positive integer. */
function seconds(value: string | null | undefined): number | undefined {
  const m = value == null ? null : /^\s*(\d{1,10})\s*$/.exec(value);
  const n = m ? Number(m[1]) : 0;
  return n > 0 ? n : undefined;
}

/** §20.33: `Retry-After: 120 (comment);duration=60`, the seconds only. */
function retryAfter(res: SipResponse): number | undefined {
  return seconds(/^\s*(\d+)/.exec(header(res, 'Retry-After') ?? '')?.[1]);
}

/**
 * §10.2.4: what the registrar granted us: the expires param of our Contact in the 200's list
 * (matched by user, host and port; by our user alone when a registrar rewrote the host, as
 * NAT-fixing ones do), else the Expires header, else what we asked.
 */
function grantedExpires(res: SipResponse, ourContact: string, ourUser: string, asked: number): number {
  const ours = uriOf(ourContact);
  let byUser: number | undefined;
  for (const value of headerList(res, 'Contact')) {
    let uri: SipUri;
    let expires: number | undefined;
    try {
      const na = parseNameAddr(value);
      uri = parseSipUri(na.uri);
      expires = seconds(na.params.get('expires'));
    } catch {
      continue;
    }
    if (expires === undefined || uri.user !== ourUser) continue;
    if (ours && uri.host === ours.host && portOf(uri) === portOf(ours)) return expires;
    byUser ??= expires;
  }
  return byUser ?? seconds(header(res, 'Expires')) ?? asked;
}

function uriOf(nameAddr: string): SipUri | undefined {
  try {
    return parseSipUri(parseNameAddr(nameAddr).uri);
  } catch {
    return undefined;
  }
}

function portOf(uri: SipUri): number {
  return uri.port ?? (uri.scheme === 'sips' || uri.params.get('transport')?.toLowerCase() === 'tls' ? 5061 : 5060);
}
