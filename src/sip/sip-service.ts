import type { Clock } from '../core/clock.js';
import type { SipConfig } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { Incoming } from './incoming.js';
import { ALLOW, capitalise, httpDate, knownMethod, quoteIfNeeded, sipAddressOf, REASONS, responseText, salvageResponse, stripTopVia, tagOf, userOf } from './build.js';
import { DigestAuthenticator } from './auth/digest.js';
import { parseSipUri, SipParseError } from './grammar.js';
import { cseqOf, header, headerList, parseSipMessage, topVia, type SipHeader, type SipRequest, type SipResponse } from './message.js';
import { Registrar, type Binding, type LocationStore } from './registrar.js';
import { cancelledInviteKey, clientKey, serverKey } from './transaction/matcher.js';
import { InviteServerTransaction, NonInviteServerTransaction } from './transaction/server.js';
import { NonInviteClientTransaction, InviteClientTransaction } from './transaction/client.js';
import { T1 } from './transaction/transaction.js';
import { contactFor, recordRouteFor, sentByHost, viaFor, type SipFlow, type SipTransport } from './transport/transport.js';
import type { SipMetrics } from './sip-metrics.js';
import { stampVia } from './transport/received.js';
import { remoteAddress } from './transport/remote.js';
import { largeOverTcp, replyFlow } from './transport/flows.js';
import type { SipRelayHook } from './relay-hook.js';

/** A record for the audit log: what happened, how it ended, and whatever else says who and why. */
export interface SipAuditEntry {
  action: string;
  outcome: 'ok' | 'rejected' | 'error';
  [extra: string]: unknown;
}

/** Where the stack audits (the gateway's hash-chained AuditLog): one record at once, or group-committed. */
export interface SipAudit {
  write(entry: SipAuditEntry): void;
  append(entry: SipAuditEntry, done: (err: Error | undefined) => void): void;
}

export { Incoming };

/** The audit's source kind for a flow: browsers on WebSocket, carriers and phones on UDP, TCP and TLS. */
export function sourceKindOf(flow: SipFlow): 'sip-ws' | 'sip-trunk' {
  return flow.transport.protocol === 'WS' || flow.transport.protocol === 'WSS' ? 'sip-ws' : 'sip-trunk';
}

/** What handles requests beyond registration: agent calls and the proxy between users. */
export interface SipCallHandler {
  /**
   * An INVITE outside any dialog, before SIP users' digest: true when the handler took it (a
   * trunk call: identified by source address and/or its own digest, and answered there).
   */
  claimInvite?(incoming: Incoming): boolean;
  /** An authenticated INVITE outside any dialog. */
  invite(incoming: Incoming, caller: string): void;
  /** A request inside a dialog (it has a To tag); false when no dialog knows it. */
  inDialog(incoming: Incoming): boolean;
  /** An ACK outside any transaction (a 2xx ACK, or a stray one). */
  ack(req: SipRequest, flow: SipFlow): void;
  cancel(incoming: Incoming, invite: Incoming | undefined): void;
  flowClosed(flow: SipFlow): void;
}

export interface SipServiceDeps {
  config: SipConfig;
  /** Where registrations live (memory, or JetStream KV in a cluster). */
  locations: LocationStore;
  clock: Clock;
  log: Logger;
  audit: SipAudit;
  metrics: SipMetrics;
  /** In a fleet: this node's id (bindings name it; users registered on other nodes are reached through `relay`). */
  node?: string;
  /** In a fleet: the digest nonce secret the nodes share. */
  nonceSecret?: Buffer;
  /** Server transactions at most (MAX_SERVER_TRANSACTIONS). */
  maxServerTransactions?: number;
}

interface ClientEntry {
  tx: InviteClientTransaction | NonInviteClientTransaction;
  onResponse: (res: SipResponse, text: string) => void;
}

/**
 * The SIP stack: parses each message from any registered transport, matches it to a
 * transaction (§17.2.3), authenticates (digest, then the flow it proved itself on), keeps the
 * registrar, and hands calls to a SipCallHandler. Transactions are reliable or not as their
 * flow's transport is. Nothing a client sends can throw out of here.
 */
export class SipService {
  readonly registrar: Registrar;
  readonly digest: DigestAuthenticator;
  readonly transports: SipTransport[] = [];
  calls: SipCallHandler | undefined;
  /** In a fleet: users whose flow is on another node. */
  relay: SipRelayHook | undefined;
  readonly #server = new Map<string, Incoming>();
  readonly #client = new Map<string, ClientEntry>();
  /** BYEs sent and not yet answered finally: what a shutdown waits for. */
  readonly #byes = new Set<string>();
  /** 2xx answers to INVITE being repeated on unreliable flows, by dialog and CSeq (§13.3.1.4). */
  readonly #awaitingAck = new Map<string, Incoming>();
  readonly #users: Set<string>;
  readonly #core: { clock: Clock; awaitAck(incoming: Incoming): void };

  constructor(private readonly deps: SipServiceDeps) {
    const { config } = deps;
    this.#users = new Set(config.users.map((u) => u.user));
    this.digest = new DigestAuthenticator(config.domain, config.users, () => deps.clock.now(), config.nonceTtlSeconds * 1000, deps.nonceSecret);
    this.registrar = new Registrar(deps.locations, { minExpires: config.minExpires, maxExpires: config.maxExpires, defaultExpires: 600, ...(deps.node ? { node: deps.node } : {}) }, () => deps.clock.now());
    this.#core = {
      clock: deps.clock,
      awaitAck: (incoming) => {
        const key = ackKey(incoming.req, incoming.toTag);
        this.#awaitingAck.set(key, incoming);
        deps.clock.setTimeout(() => {
          if (this.#awaitingAck.get(key) === incoming) this.#awaitingAck.delete(key);
        }, 64 * T1);
      },
    };
  }

  /** Registers a transport: its messages come here, and its closed flows drop their registrations. */
  addTransport(transport: SipTransport): void {
    this.transports.push(transport);
    transport.listen({ message: (flow, data) => this.receive(flow, data), closed: (flow) => void this.#flowClosed(flow) });
  }

  /** A live flow of any transport, by id. */
  flow(id: string): SipFlow | undefined {
    for (const t of this.transports) {
      const f = t.flows.get(id);
      if (f) return f;
    }
    return undefined;
  }

  /** A flow to an address on our UDP, TCP or TLS transport (a connection reused, §18.1.1); undefined without one. */
  flowTo(protocol: 'UDP' | 'TCP' | 'TLS', address: { host: string; port: number }): SipFlow | undefined {
    return this.transports.find((t) => t.protocol === protocol)?.flowTo?.(address);
  }

  get flowCount(): number {
    return this.transports.reduce((n, t) => n + t.flows.size, 0);
  }

  /** Whether a URI host names this node on one of its transports (a Route or Request-URI to us). */
  isLocalHost(host: string | undefined): boolean {
    if (!host) return false;
    const h = host.toLowerCase();
    return this.transports.some((t) => sentByHost(t.sentBy) === h);
  }

  /** Our Via, Contact and Record-Route for requests and answers on a flow: built from its transport. */
  via(flow: SipFlow, branch: string): string {
    return viaFor(flow.transport, branch);
  }

  contact(flow: SipFlow, user: string): string {
    return contactFor(flow.transport, user);
  }

  recordRoute(flow: SipFlow): string {
    return recordRouteFor(flow.transport);
  }

  async #flowClosed(flow: SipFlow): Promise<void> {
    this.calls?.flowClosed(flow); // whatever a shared store says: it may be slow or away
    if (this.relay?.owns(flow)) return;
    this.relay?.flowClosed(flow);
    const dropped = await this.registrar.dropFlow(flow.id).catch((err: unknown) => (this.deps.log.warn({ err, flow: flow.id }, 'SIP flow closed; its registrations could not be removed (they expire)'), []));
    if (dropped.length) this.deps.log.info({ flow: flow.id, aors: dropped.map((b) => b.aor) }, 'SIP flow closed; its registrations are gone');
    for (const b of dropped) this.#audit({ action: 'sip.unregister', outcome: 'ok', user: b.aor, remote: flow.remote, reason: 'flow-closed' });
  }

  /** Where a user can be called now: their newest binding on a live flow, or why not (404, 480). */
  async locate(user: string): Promise<{ binding: Binding; flow: SipFlow } | { status: 404 | 480; reason: string }> {
    const bindings = await this.registrar.lookup(user);
    for (const binding of bindings) {
      const flow = this.flow(binding.flowId) ?? this.relay?.flowFor(binding);
      if (flow) return { binding, flow };
    }
    if (bindings.length || this.#users.has(user)) return { status: 480, reason: 'Temporarily Unavailable (not registered)' };
    return { status: 404, reason: 'Not Found' };
  }

  /** Sends a request down a flow as a client transaction; responses come back to `onResponse`. */
  sendRequest(flow: SipFlow, method: string, text: string, branch: string, onResponse: (res: SipResponse, text: string) => void): void {
    ({ flow, text } = largeOverTcp(this.transports, flow, text, branch));
    const id = `${branch}|${method}`;
    const reliable = flow.transport.reliable;
    const tx = method === 'INVITE' ? new InviteClientTransaction(this.deps.clock, reliable, id, text) : new NonInviteClientTransaction(this.deps.clock, reliable, id, text);
    // A BYE counts for drain() until its final answer (or its timeout).
    if (method === 'BYE') {
      this.#byes.add(id);
      const answered = onResponse;
      onResponse = (res, text) => {
        if (res.status >= 200) this.#byes.delete(id);
        answered(res, text);
      };
    }
    const entry = { tx, onResponse };
    this.#client.set(id, entry);
    tx.on('send', (t) => flow.send(t));
    tx.on('timeout', () => {
      this.deps.metrics.timeouts.inc({ method });
      onResponse({ kind: 'response', status: 408, reason: 'Request Timeout', version: 'SIP/2.0', headers: [], body: Buffer.alloc(0) }, '');
    });
    // Deleted by identity: a newer transaction may have taken the same id (a CANCEL per INVITE).
    tx.on('terminated', () => {
      this.#byes.delete(id);
      if (this.#client.get(id) === entry) this.#client.delete(id);
    });
    this.deps.metrics.transactions.inc({ method, side: 'client' });
    tx.start();
  }

  /** One SIP message from a flow: what the WebSocket transport hands over (and bench:sip-pipeline). */
  receive(flow: SipFlow, data: Buffer): void {
    let msg;
    try {
      msg = parseSipMessage(data, { maxBytes: this.deps.config.maxMessageBytes });
    } catch (err) {
      if (!(err instanceof SipParseError)) throw err;
      const reason = err.status === 400 ? capitalise(err.message) : REASONS[err.status] ?? 'Bad Request';
      const reply = salvageResponse(data, err.status, reason);
      this.deps.metrics.rejected.inc({ status: String(err.status) });
      this.deps.log.info({ flow: flow.id, remote: flow.remote, status: err.status, reason: err.message, answered: reply !== undefined }, 'unparseable SIP message');
      if (reply) flow.send(reply);
      return;
    }
    try {
      if (this.relay?.intercept(flow, msg, data)) return;
      if (msg.kind === 'response') this.#onResponse(msg, data);
      else {
        // RFC 3261 §18.2.1, RFC 3581 §4: where the request really came from, in its top Via.
        const source = remoteAddress(flow.remote);
        if (source) stampVia(msg, source);
        this.#onRequest(flow, msg);
      }
    } catch (err) {
      this.deps.log.error({ err, flow: flow.id }, 'SIP message handling failed');
      if (msg.kind !== 'request' || msg.method === 'ACK') return;
      // Through its transaction where it has one, so the transaction ends and a retransmission gets the same answer.
      const incoming = this.#server.get(serverKey(msg).key);
      const [status, reason] = err instanceof URIError ? [400, 'Bad Request (a percent-escape that does not decode)'] : [500, 'Server Internal Error'];
      if (incoming?.req !== msg) replyFlow(flow, msg).send(responseText(msg, status, { reason }));
      else if (!incoming.answered) incoming.respond(status, { reason });
    }
  }

  #onResponse(res: SipResponse, data: Buffer): void {
    const via = topVia(res);
    // §18.1.2: a response whose top Via is not ours is dropped.
    const entry = via && this.isLocalHost(via.host) ? this.#client.get(clientKey(res)) : undefined;
    if (!entry) {
      this.deps.log.debug({ status: res.status, branch: via?.params.get('branch') }, 'response matches no transaction; dropped');
      return;
    }
    const pass =
      entry.tx instanceof InviteClientTransaction
        ? entry.tx.onResponse(res.status, () => this.#ackFor(entry, res))
        : entry.tx.onResponse(res.status);
    if (pass) entry.onResponse(res, stripTopVia(data.toString('utf8')));
  }

  /** §17.1.1.3: the ACK for a non-2xx final response, built from the INVITE we sent. */
  #ackFor(entry: ClientEntry, res: SipResponse): string {
    const invite = parseSipMessage(entry.tx.request) as SipRequest;
    const lines = [
      `ACK ${invite.uri} SIP/2.0`,
      `Via: ${headerList(invite, 'Via')[0]}`,
      ...headerList(invite, 'Route').map((r) => `Route: ${r}`),
      `From: ${header(invite, 'From')}`,
      `To: ${header(res, 'To')}`,
      `Call-ID: ${header(invite, 'Call-ID')}`,
      `CSeq: ${cseqOf(invite)} ACK`,
      'Max-Forwards: 70',
      'Content-Length: 0',
    ];
    return `${lines.join('\r\n')}\r\n\r\n`;
  }

  #onRequest(flow: SipFlow, req: SipRequest): void {
    const { metrics } = this.deps;
    const { key, legacy } = serverKey(req);
    const existing = this.#server.get(key);
    // RFC 2543 matching: an ACK is for our INVITE only with the To tag we answered with.
    if (existing && !(legacy && req.method === 'ACK' && tagOf(header(req, 'To')) !== existing.toTag)) {
      if (req.method !== 'ACK') {
        existing.tx.onRetransmission();
        return;
      }
      if (!(existing.tx as InviteServerTransaction).onAck()) return;
    }
    if (req.method === 'ACK') {
      const waiting = this.#awaitingAck.get(ackKey(req, tagOf(header(req, 'To')) ?? ''));
      if (waiting) {
        waiting.acked();
        this.#awaitingAck.delete(ackKey(req, tagOf(header(req, 'To')) ?? ''));
      }
      this.calls?.ack(req, flow);
      return;
    }
    // A bounded table: past it, new requests are refused statelessly (nothing kept for them).
    if (this.#server.size >= (this.deps.maxServerTransactions ?? MAX_SERVER_TRANSACTIONS)) return void replyFlow(flow, req).send(responseText(req, 503, { reason: 'Service Unavailable (too many requests in progress)', headers: [{ name: 'Retry-After', value: '5' }] }));
    const reliable = flow.transport.reliable;
    const tx = req.method === 'INVITE' ? new InviteServerTransaction(this.deps.clock, reliable, key) : new NonInviteServerTransaction(this.deps.clock, reliable, key);
    const replies = replyFlow(flow, req);
    // The flow it came on says who sent it (trunk ACLs, dialogs, audit); answers go where §18.2.2 says.
    const incoming = new Incoming(req, flow, tx, this.#core, replies);
    this.#server.set(key, incoming);
    tx.on('send', (t) => replies.send(t));
    tx.on('terminated', () => {
      if (this.#server.get(key) === incoming) this.#server.delete(key);
    });
    metrics.transactions.inc({ method: knownMethod(req.method), side: 'server' });

    // §16.3 / §8.2: checks every request passes before it is looked at.
    if (header(req, 'Max-Forwards') === '0' && req.method !== 'OPTIONS') return this.#refuse(incoming, 483, 'Max-Forwards reached 0');
    // RFC 5630 §3.1.3: sips: needs TLS (or WSS) on every hop, ours included.
    if (/^sips:/i.test(req.uri) && flow.transport.protocol !== 'TLS' && flow.transport.protocol !== 'WSS') return this.#refuse(incoming, 416, 'sips: is not served over this transport');
    if (!/^sips?:/i.test(req.uri)) return this.#refuse(incoming, 416, `the ${req.uri.split(':')[0]}: scheme is not served`);
    try {
      parseSipUri(req.uri);
    } catch (err) {
      return this.#refuse(incoming, 400, capitalise((err as Error).message));
    }
    const unsupported = headerList(req, 'Require').filter((r) => !['timer', 'outbound', 'path', 'gruu'].includes(r.toLowerCase()));
    if (unsupported.length && req.method !== 'CANCEL') {
      return incoming.respond(420, { headers: [{ name: 'Unsupported', value: unsupported.join(', ') }] });
    }

    if (req.method === 'CANCEL') {
      const invite = this.#server.get(cancelledInviteKey(req));
      this.calls?.cancel(incoming, invite);
      if (!incoming.answered) incoming.respond(invite ? 200 : 481);
      return;
    }
    if (tagOf(header(req, 'To'))) {
      if (!this.calls?.inDialog(incoming)) this.#refuse(incoming, 481, 'no such dialog');
      return;
    }
    switch (req.method) {
      case 'REGISTER':
        return void this.#register(incoming).catch((err: unknown) => {
          this.deps.log.error({ err }, 'REGISTER failed');
          incoming.respond(500, { reason: 'Server Internal Error (location store)' });
        });
      case 'OPTIONS':
        return incoming.respond(200, { headers: capabilities() });
      case 'INVITE': {
        if (this.calls?.claimInvite?.(incoming)) return;
        const caller = this.#authorise(incoming);
        if (caller === undefined) return;
        if (!this.calls) return incoming.respond(503, { headers: [{ name: 'Retry-After', value: '5' }] });
        return this.calls.invite(incoming, caller);
      }
      case 'BYE':
      case 'INFO':
      case 'UPDATE':
      case 'NOTIFY':
      case 'PRACK':
        return this.#refuse(incoming, 481, 'no such dialog');
      case 'REFER':
      case 'SUBSCRIBE':
      case 'PUBLISH':
      case 'MESSAGE':
        return incoming.respond(405, { headers: [{ name: 'Allow', value: ALLOW }] });
      default:
        return incoming.respond(501, { headers: [{ name: 'Allow', value: ALLOW }] });
    }
  }

  #refuse(incoming: Incoming, status: number, why: string): void {
    this.deps.metrics.rejected.inc({ status: String(status) });
    this.deps.log.info({ method: incoming.req.method, flow: incoming.flow.id, status, why }, 'SIP request refused');
    incoming.respond(status, { reason: status === 400 ? capitalise(why) : undefined });
  }

  /**
   * Who is calling: a flow that registered with a password may call as that user; anyone
   * else must answer a 407 digest challenge. Returns undefined when the request was answered.
   */
  #authorise(incoming: Incoming): string | undefined {
    const { req, flow } = incoming;
    const fromUser = userOf(header(req, 'From')!);
    if (flow.authenticatedUser !== undefined && fromUser === flow.authenticatedUser) return fromUser;
    const outcome = this.digest.verify(header(req, 'Proxy-Authorization'), req.method);
    if (outcome.ok && outcome.user === fromUser) return outcome.user;
    const stale = !outcome.ok && outcome.stale;
    if (!outcome.ok && outcome.reason !== 'no credentials') {
      this.#audit({ action: `sip.${req.method.toLowerCase()}`, outcome: 'error', status: 407, user: outcome.user ?? fromUser ?? null, remote: flow.remote, reason: outcome.reason });
    }
    incoming.respond(407, { headers: this.digest.challenges(stale).map((value) => ({ name: 'Proxy-Authenticate', value })) });
    return undefined;
  }

  async #register(incoming: Incoming): Promise<void> {
    const { req, flow } = incoming;
    const to = sipAddressOf(header(req, 'To')!);
    const aor = to?.user;
    const toHost = to?.host;
    const fail = (status: number, reason: string, extra: SipHeader[] = []) => {
      this.deps.metrics.registrations.inc({ outcome: String(status) });
      this.#auditThen(incoming, { action: 'sip.register', outcome: 'error', status, user: aor ?? null, remote: flow.remote, reason, sourceKind: 'sip-ws' }, () =>
        incoming.respond(status, { headers: extra, reason: status === 400 || status === 403 ? capitalise(reason) : undefined }),
      );
    };
    if (!aor) return fail(400, 'the To header has no user part');
    if (toHost !== this.deps.config.domain.toLowerCase()) return fail(404, `domain ${toHost} is not served here`);
    const outcome = this.digest.verify(header(req, 'Authorization'), 'REGISTER');
    if (!outcome.ok) {
      const challenge = this.digest.challenges(outcome.stale).map((value) => ({ name: 'WWW-Authenticate', value }));
      if (outcome.reason === 'no credentials' || outcome.stale) {
        this.deps.metrics.registrations.inc({ outcome: 'challenged' });
        return incoming.respond(401, { headers: challenge });
      }
      return fail(401, outcome.reason, challenge);
    }
    if (outcome.user !== aor) return fail(403, `user ${outcome.user} may not register ${aor}`);
    const result = await this.registrar.register(aor, req, flow);
    if (result.status === 423) return fail(423, 'expiry too brief', [{ name: 'Min-Expires', value: String(result.minExpires) }]);
    if (result.status !== 200) return fail(result.status, result.reason);
    flow.authenticatedUser = aor;
    const now = this.deps.clock.now();
    const contacts = result.bindings.map((b) => {
      const params = [`expires=${Math.max(0, Math.round((b.expiresAt - now) / 1000))}`];
      if (b.instance !== undefined) params.push(`+sip.instance=${quoteIfNeeded(b.instance)}`);
      if (b.regId !== undefined) params.push(`reg-id=${b.regId}`);
      return { name: 'Contact', value: `<${b.contact}>;${params.join(';')}` };
    });
    this.deps.metrics.registrations.inc({ outcome: '200' });
    const entry = { action: 'sip.register', outcome: 'ok' as const, status: 200, user: aor, remote: flow.remote, bindings: result.bindings.length, added: result.added, removed: result.removed, algorithm: outcome.algorithm, sourceKind: 'sip-ws' as const };
    this.#auditThen(incoming, entry, () => incoming.respond(200, { headers: [...contacts, { name: 'Date', value: httpDate(now) }, ...capabilities()] }));
  }

  /**
   * Audits, then answers: the answer goes out once the record is in the file (group commit:
   * one write for all the records of an event-loop turn), or 500 when it cannot be written.
   */
  #auditThen(incoming: Incoming, entry: SipAuditEntry & { sourceKind: 'sip-ws' }, answer: () => void): void {
    this.deps.audit.append(entry, (err) => {
      if (!err) return answer();
      this.deps.log.error({ err }, 'audit write failed; the SIP request is refused');
      incoming.respond(500, { reason: 'Server Internal Error (audit log unavailable)' });
    });
  }

  #audit(entry: SipAuditEntry): void {
    try {
      this.deps.audit.write({ sourceKind: 'sip-ws', ...entry });
    } catch (err) {
      this.deps.log.error({ err }, 'audit write failed for a SIP request');
    }
  }

  metricsCall(kind: 'agent' | 'proxied', outcome: string): void {
    this.deps.metrics.calls.inc({ kind, outcome });
  }

  audit(entry: SipAuditEntry): void {
    this.#audit(entry);
  }

  /**
   * Waits (at most `ms`) for our BYEs to be answered: those of a shutdown must leave before the
   * transports close (a UDP send completes only on a later tick).
   */
  async drain(ms: number): Promise<void> {
    // Wall-clock bounded on purpose: shutdown must end even when the signalling clock is a test's.
    const end = Date.now() + ms;
    while (this.#byes.size > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  }

  /** Transactions (and 2xx repeats waiting for an ACK) in progress: tests and soaks count them. */
  get pending(): { server: number; client: number; awaitingAck: number } {
    return { server: this.#server.size, client: this.#client.size, awaitingAck: this.#awaitingAck.size };
  }

  close(): void {
    for (const t of this.transports) t.close();
  }
}

/** Server transactions at most: at 32 s each (Timer H, J), about 3,000 new requests a second. */
export const MAX_SERVER_TRANSACTIONS = 100_000;

const CAPABILITIES: readonly SipHeader[] = Object.freeze([
  { name: 'Allow', value: ALLOW },
  { name: 'Accept', value: 'application/sdp, application/dtmf-relay, message/sipfrag' },
  { name: 'Supported', value: 'timer, replaces, outbound, path' },
]);

function capabilities(): SipHeader[] {
  return [...CAPABILITIES];
}

/** What an ACK shares with the 2xx it acknowledges (§13.2.2.4, §17.1.1.3): dialog and CSeq number. */
function ackKey(req: SipRequest, toTag: string): string {
  return `${header(req, 'Call-ID')}|${toTag}|${cseqOf(req)}`;
}
