import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from '../../core/logger.js';
import { header, type SipMessage } from '../../sip/message.js';
import type { Binding } from '../../sip/location-store.js';
import type { SipRelayHook } from '../../sip/relay-hook.js';
import type { SipFlow, SipTransport, SipTransportListener } from '../../sip/transport/transport.js';

/**
 * SIP between users on different nodes (issue 17, build 5). A WebSocket flow stays on the node
 * holding the socket; its bindings in the shared location store name that node. Another node
 * that must reach the user (a call from one of its own users, an agent's transfer) gets a
 * stand-in flow here: what its SIP stack sends down it is published to the holder, which writes
 * it to the socket and remembers the Call-ID; what then arrives on the socket with that Call-ID
 * (responses, in-dialog requests) is published back and received by the stack as if the flow
 * were its own. The holder is an edge proxy in RFC 5626's sense, on NATS; the node with the
 * dialog keeps all of its state (transactions, the proxy's call, an agent's dialog).
 *
 * Subject: `<prefix>.node.<nodeId>.sip`, JSON: `out` (send this on your flow), `in` (your
 * dialog's message arrived on my flow), `closed` (that flow is gone).
 */

type Wire =
  | { k: 'out'; from: string; flowId: string; text: string }
  | { k: 'in'; from: string; flowId: string; remote: string; data: string }
  | { k: 'closed'; from: string; flowId: string };

/** Dialogs routed through one of our flows for another node: at most this many, each for at most ROUTE_IDLE_MS without a message. */
const MAX_ROUTES = 50_000;
const ROUTE_IDLE_MS = 6 * 3_600_000;
const SWEEP_MS = 2000;

interface Route {
  node: string;
  flowId: string;
  at: number;
  /** A 2xx to the INVITE passed: a failure answer after it is a re-INVITE's, not the call's end. */
  confirmed: boolean;
}

export interface SipRelayDeps {
  nc: NatsConnection;
  prefix: string;
  nodeId: string;
  /** A node the fleet has marked lost, or no longer lists: a user on it is not reachable. */
  gone(node: string): boolean;
  /** Our own WebSocket transport: a stand-in flow builds Via and Record-Route as one of its flows would. */
  sentBy: () => string;
  log: Logger;
  now?: () => number;
}

/** A user's flow on another node, as this node's SIP stack uses it. */
class RemoteFlow implements SipFlow {
  #open = true;
  /** B's stack challenges what comes through it itself (its own 407s): no identity is carried over. */
  authenticatedUser: string | undefined = undefined;
  constructor(
    readonly id: string,
    readonly node: string,
    readonly remote: string,
    readonly transport: RelayTransport,
  ) {}

  get open(): boolean {
    return this.#open;
  }

  send(text: string): boolean {
    if (!this.#open) return false;
    return this.transport.relay.send(this.node, { k: 'out', from: this.transport.relay.nodeId, flowId: this.id, text });
  }

  close(): void {
    this.transport.drop(this, false);
  }

  /** Marks it closed; true the first time. */
  shut(): boolean {
    const was = this.#open;
    this.#open = false;
    return was;
  }
}

/** The stand-in flows as one more transport of the stack (WS: what the users on the far side speak). */
class RelayTransport implements SipTransport {
  readonly protocol = 'WS' as const;
  readonly reliable = true;
  readonly flows = new Map<string, RemoteFlow>();
  #listener: SipTransportListener | undefined;

  constructor(readonly relay: SipRelay) {}

  get sentBy(): string {
    return this.relay.deps.sentBy();
  }

  listen(listener: SipTransportListener): void {
    this.#listener = listener;
  }

  sendTo(): undefined {
    return undefined;
  }

  flow(binding: Binding, node: string): RemoteFlow {
    let f = this.flows.get(binding.flowId);
    if (!f || !f.open) {
      f = new RemoteFlow(binding.flowId, node, binding.remote, this);
      this.flows.set(f.id, f);
    }
    return f;
  }

  deliver(from: string, flowId: string, data: Buffer): boolean {
    const f = this.flows.get(flowId);
    if (!f?.open || f.node !== from) return false;
    this.#listener?.message(f, data);
    return true;
  }

  /** The flow is gone (its holder said so, or is lost): the stack ends what used it. */
  drop(f: RemoteFlow, tell = true): void {
    if (!f.shut()) return;
    this.flows.delete(f.id);
    if (tell) this.#listener?.closed(f);
  }

  /**
   * The stack's shutdown: the stand-ins stay usable, so the BYEs the stack sends as its own
   * sockets close still reach the users on other nodes; SipRelay.close() ends them later.
   */
  close(): void {}
}

export class SipRelay implements SipRelayHook {
  readonly transport: RelayTransport;
  readonly #routes = new Map<string, Route>();
  /** Per flow of ours: the nodes that sent on it (told when it closes, routed or not). */
  readonly #usedBy = new Map<string, Set<string>>();
  readonly #now: () => number;
  #sub: Subscription | undefined;
  #sweeper: NodeJS.Timeout | undefined;

  constructor(readonly deps: SipRelayDeps) {
    this.transport = new RelayTransport(this);
    this.#now = deps.now ?? Date.now;
  }

  get nodeId(): string {
    return this.deps.nodeId;
  }

  /** Dialogs of other nodes routed through our flows now. */
  get routes(): number {
    return this.#routes.size;
  }

  start(): void {
    const { nc, prefix, nodeId, log } = this.deps;
    this.#sub = nc.subscribe(`${prefix}.node.${nodeId}.sip`, {
      callback: (err, msg) => {
        if (err) return log.warn({ err }, 'SIP relay subscription failed');
        // Nothing may throw out of a NATS callback: it would stop this connection's reader.
        try {
          this.#received(msg.json<Wire>());
        } catch (e) {
          log.warn({ err: e }, 'a relayed SIP message could not be handled');
        }
      },
    });
    // Each node judges for itself (only one survivor reaps a lost node): stand-ins and routes of gone nodes go.
    this.#sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.#sweeper.unref();
  }

  close(): void {
    clearInterval(this.#sweeper);
    this.#sub?.unsubscribe();
    this.#sub = undefined;
    for (const f of [...this.transport.flows.values()]) this.transport.drop(f, false);
    this.#routes.clear();
    this.#usedBy.clear();
  }

  /** Whether a flow is one of our stand-ins (its close must not touch the user's registrations). */
  owns(flow: SipFlow): boolean {
    return flow.transport === this.transport;
  }

  flowFor(binding: Binding): SipFlow | undefined {
    const node = binding.node;
    // WebSocket flows only: a UDP/TCP/TLS phone's binding is reached from its own node (and `udp:<addr>` ids repeat across nodes).
    if (!node || node === this.deps.nodeId || /^(udp:|tcp-|tls-)/.test(binding.flowId) || this.deps.gone(node)) return undefined;
    return this.transport.flow(binding, node);
  }

  intercept(flow: SipFlow, msg: SipMessage, data: Buffer): boolean {
    if (flow.transport === this.transport || this.#routes.size === 0) return false;
    // Responses, ACK, CANCEL and in-dialog requests only: a new request (a REGISTER reusing a Call-ID) is this node's.
    if (msg.kind === 'request' && msg.method !== 'ACK' && msg.method !== 'CANCEL' && !/;\s*tag=/i.test(header(msg, 'To') ?? '')) return false;
    const callId = header(msg, 'Call-ID');
    const route = callId === undefined ? undefined : this.#routes.get(callId);
    if (!route || route.flowId !== flow.id) return false;
    if (this.deps.gone(route.node)) {
      this.#routes.delete(callId!); // its node is gone: this node answers (481 for a request)
      return false;
    }
    this.#routes.delete(callId!);
    if (!this.#ended(route, msg)) this.#routes.set(callId!, { ...route, at: this.#now() }); // re-inserted: the map's order is the routes' activity
    this.send(route.node, { k: 'in', from: this.deps.nodeId, flowId: flow.id, remote: flow.remote, data: data.toString('base64') });
    return true;
  }

  flowClosed(flow: SipFlow): void {
    if (flow.transport === this.transport) return;
    for (const [callId, r] of this.#routes) if (r.flowId === flow.id) this.#routes.delete(callId);
    for (const node of this.#usedBy.get(flow.id) ?? []) this.send(node, { k: 'closed', from: this.deps.nodeId, flowId: flow.id });
    this.#usedBy.delete(flow.id);
  }

  /** A node is lost: the flows we reached through it are gone too. */
  nodeLost(node: string): void {
    for (const f of [...this.transport.flows.values()]) if (f.node === node) this.transport.drop(f);
    for (const [callId, r] of this.#routes) if (r.node === node) this.#routes.delete(callId);
  }

  /** Ends what points at nodes the fleet has lost, and routes idle too long. */
  sweep(): void {
    const nodes = new Set([...this.transport.flows.values()].map((f) => f.node).concat([...this.#routes.values()].map((r) => r.node)));
    for (const n of nodes) if (this.deps.gone(n)) this.nodeLost(n);
    this.#prune();
  }

  send(node: string, wire: Wire): boolean {
    try {
      this.deps.nc.publish(`${this.deps.prefix}.node.${node}.sip`, JSON.stringify(wire));
      return true;
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message, node }, 'a SIP message could not be relayed');
      return false;
    }
  }

  #received(w: Wire): void {
    if (typeof w?.flowId !== 'string' || typeof w.from !== 'string' || w.from === this.deps.nodeId) return;
    if (w.k === 'out' && typeof w.text === 'string') return this.#sendOnOurFlow(w);
    if (w.k === 'in' && typeof w.data === 'string') {
      // A stand-in we no longer have (this node restarted, or let it go): the holder drops its routes.
      if (!this.transport.deliver(w.from, w.flowId, Buffer.from(w.data, 'base64'))) this.send(w.from, { k: 'closed', from: this.deps.nodeId, flowId: w.flowId });
      return;
    }
    if (w.k === 'closed') {
      const f = this.transport.flows.get(w.flowId);
      if (f && f.node === w.from) this.transport.drop(f);
      // From a node that used one of our flows: it no longer has it, so nothing routes back to it.
      for (const [callId, r] of this.#routes) if (r.flowId === w.flowId && r.node === w.from) this.#routes.delete(callId);
    }
  }

  /** Another node's message for a user on one of our WebSockets: written to it, its Call-ID remembered. */
  #sendOnOurFlow(w: Extract<Wire, { k: 'out' }>): void {
    const flow = this.#localFlow?.(w.flowId);
    if (!flow || this.deps.gone(w.from)) {
      this.send(w.from, { k: 'closed', from: this.deps.nodeId, flowId: w.flowId });
      return;
    }
    let users = this.#usedBy.get(w.flowId);
    if (!users) this.#usedBy.set(w.flowId, (users = new Set()));
    users.add(w.from);
    const callId = /^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)/im.exec(w.text)?.[1];
    if (callId) {
      const known = this.#routes.get(callId);
      this.#routes.delete(callId);
      const status = Number(/^SIP\/2\.0 (\d{3}) /.exec(w.text)?.[1] ?? 0);
      const cseq = /^CSeq[ \t]*:[ \t]*(.+)$/im.exec(w.text)?.[1];
      // An ACK does not open a route (it may close a failed call's); a BYE's 2xx ends one.
      const ends = endsDialog(status, cseq);
      if (!ends && (known || !w.text.startsWith('ACK '))) this.#routes.set(callId, { node: w.from, flowId: w.flowId, at: this.#now(), confirmed: known?.confirmed ?? false });
      this.#prune();
    }
    flow.send(w.text);
  }

  /** A message from our user that ends its route: a BYE's 2xx, or a failure answer to the call's INVITE (not a re-INVITE's). */
  #ended(route: Route, msg: SipMessage): boolean {
    if (msg.kind !== 'response') return false;
    const cseq = header(msg, 'CSeq') ?? '';
    if (/\bINVITE\s*$/i.test(cseq)) {
      if (msg.status >= 200 && msg.status < 300) route.confirmed = true;
      // The ACK for the failure goes back through us once more (B sends it on the stand-in): it finds no route and is just written.
      return msg.status >= 300 && !route.confirmed;
    }
    return endsDialog(msg.status, cseq);
  }

  #localFlow: ((id: string) => SipFlow | undefined) | undefined;

  /** Where this node's own flows are found (the SIP stack's `flow(id)`). */
  useFlows(find: (id: string) => SipFlow | undefined): void {
    this.#localFlow = (id) => {
      const f = find(id);
      return f && f.transport !== this.transport ? f : undefined;
    };
  }

  #prune(): void {
    const cutoff = this.#now() - ROUTE_IDLE_MS;
    for (const [callId, r] of this.#routes) {
      if (this.#routes.size <= MAX_ROUTES && r.at >= cutoff) break;
      this.#routes.delete(callId);
    }
  }
}

/** A 2xx to a BYE: the dialog is over, its route goes. */
function endsDialog(status: number, cseq: string | undefined): boolean {
  return status >= 200 && status < 300 && /\bBYE\s*$/i.test(cseq ?? '');
}
