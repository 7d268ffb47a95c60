import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from '../../core/logger.js';
import { userOf } from '../../sip/build.js';
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
  | { k: 'in'; from: string; flowId: string; remote: string; text: string }
  | { k: 'closed'; from: string; flowId: string };

/** Dialogs routed through one of our flows for another node: at most this many, each for at most ROUTE_IDLE_MS without a message. */
const MAX_ROUTES = 50_000;
const ROUTE_IDLE_MS = 6 * 3_600_000;

interface Route {
  node: string;
  flowId: string;
  at: number;
}

export interface SipRelayDeps {
  nc: NatsConnection;
  prefix: string;
  nodeId: string;
  /** Whether a node is live now (its heartbeat seen): a user on a gone node is not reachable. */
  isLive(node: string): boolean;
  /** Our own WebSocket transport: a stand-in flow builds Via and Record-Route as one of its flows would. */
  sentBy: () => string;
  log: Logger;
  now?: () => number;
}

/** A user's flow on another node, as this node's SIP stack uses it. */
class RemoteFlow implements SipFlow {
  #open = true;
  constructor(
    readonly id: string,
    readonly node: string,
    readonly remote: string,
    readonly transport: RelayTransport,
    /** The holder checked the user's digest on that flow when it registered. */
    public authenticatedUser: string | undefined,
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
      f = new RemoteFlow(binding.flowId, node, binding.remote, this, userOf(binding.aor));
      this.flows.set(f.id, f);
    }
    return f;
  }

  deliver(flowId: string, data: Buffer): boolean {
    const f = this.flows.get(flowId);
    if (!f?.open) return false;
    this.#listener?.message(f, data);
    return true;
  }

  /** The flow is gone (its holder said so, or is lost): the stack ends what used it. */
  drop(f: RemoteFlow, tell = true): void {
    if (!f.shut()) return;
    this.flows.delete(f.id);
    if (tell) this.#listener?.closed(f);
  }

  close(): void {
    for (const f of [...this.flows.values()]) this.drop(f);
  }
}

/** A 2xx to a BYE: the dialog is over, its route goes (others go with their flow, or idle). */
function endsDialog(status: number, cseq: string | undefined): boolean {
  return status >= 200 && status < 300 && /\bBYE\s*$/i.test(cseq ?? '');
}

export class SipRelay implements SipRelayHook {
  readonly transport: RelayTransport;
  readonly #routes = new Map<string, Route>();
  readonly #now: () => number;
  #sub: Subscription | undefined;

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
  }

  close(): void {
    this.#sub?.unsubscribe();
    this.#sub = undefined;
    this.transport.close();
    this.#routes.clear();
  }

  flowFor(binding: Binding): SipFlow | undefined {
    const node = binding.node;
    if (!node || node === this.deps.nodeId || !this.deps.isLive(node)) return undefined;
    return this.transport.flow(binding, node);
  }

  intercept(flow: SipFlow, msg: SipMessage, data: Buffer): boolean {
    if (flow.transport === this.transport || this.#routes.size === 0) return false;
    const callId = header(msg, 'Call-ID');
    const route = callId === undefined ? undefined : this.#routes.get(callId);
    if (!route || route.flowId !== flow.id) return false;
    route.at = this.#now();
    if (endsDialog(msg.kind === 'response' ? msg.status : 0, header(msg, 'CSeq'))) this.#routes.delete(callId!);
    this.send(route.node, { k: 'in', from: this.deps.nodeId, flowId: flow.id, remote: flow.remote, text: data.toString('utf8') });
    return true;
  }

  flowClosed(flow: SipFlow): void {
    if (flow.transport === this.transport) return;
    const told = new Set<string>();
    for (const [callId, r] of this.#routes) {
      if (r.flowId !== flow.id) continue;
      this.#routes.delete(callId);
      if (!told.has(r.node)) this.send(r.node, { k: 'closed', from: this.deps.nodeId, flowId: flow.id });
      told.add(r.node);
    }
  }

  /** A node is lost: the flows we reached through it are gone too. */
  nodeLost(node: string): void {
    for (const f of [...this.transport.flows.values()]) if (f.node === node) this.transport.drop(f);
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
    if (typeof w?.flowId !== 'string' || typeof w.from !== 'string') return;
    if (w.k === 'out' && typeof w.text === 'string') return this.#sendOnOurFlow(w);
    if (w.k === 'in' && typeof w.text === 'string') {
      if (!this.transport.deliver(w.flowId, Buffer.from(w.text))) this.deps.log.debug({ flow: w.flowId }, 'a relayed message for a flow we no longer use; dropped');
      return;
    }
    if (w.k === 'closed') {
      const f = this.transport.flows.get(w.flowId);
      if (f) this.transport.drop(f);
    }
  }

  /** Another node's message for a user on one of our WebSockets: written to it, its Call-ID remembered. */
  #sendOnOurFlow(w: Extract<Wire, { k: 'out' }>): void {
    const flow = this.#localFlow?.(w.flowId);
    if (!flow) {
      this.send(w.from, { k: 'closed', from: this.deps.nodeId, flowId: w.flowId });
      return;
    }
    const callId = /^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)/im.exec(w.text)?.[1];
    const status = Number(/^SIP\/2\.0 (\d{3}) /.exec(w.text)?.[1] ?? 0);
    if (callId && endsDialog(status, /^CSeq[ \t]*:[ \t]*(.+)$/im.exec(w.text)?.[1])) this.#routes.delete(callId);
    else if (callId) {
      this.#routes.delete(callId); // re-inserted: the map's order is the routes' age
      this.#routes.set(callId, { node: w.from, flowId: w.flowId, at: this.#now() });
      this.#prune();
    }
    flow.send(w.text);
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
