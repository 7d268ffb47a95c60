import type { CallTable } from '../../call/call-table.js';
import type { Logger } from '../../core/logger.js';
import type { EndpointReply, EndpointRequest } from '../../wish/resource.js';
import type { Cluster } from './cluster.js';
import { forward, serveForwarded, type ForwardOp } from './forward.js';
import { NatsNodes } from './nodes.js';
import type { Subscription } from '@nats-io/transport-node';
import { WorkerPool } from '../../agent/worker/pool.js';
import { WorkerAgent, workerSpecSchema } from '../../agent/worker/worker-agent.js';
import type { AgentSpec } from '../../agent/registry.js';
import type { SipService } from '../../sip/sip-service.js';
import { SipRelay } from './sip-relay.js';
import { FleetLimits } from './limits.js';
import { Lease } from './lease.js';
import { AuditStream } from './audit-stream.js';
import type { AuditLog } from '../../audit/audit-log.js';
import type { TrunkRegistration } from '../../sip-calls/trunk/registration.js';

/** The lease a trunk's outbound registration is held under. */
export const registrationLease = (trunk: string): string => `trunk-registration:${trunk}`;

/**
 * What one node does as a member of the fleet (issue 17), on top of the shared state in
 * cluster.ts: it heartbeats, ends the sessions of nodes that stopped and its own if it was
 * reaped, answers other nodes' requests for its sessions, tells where another node's session
 * is, picks the least-loaded node for a redirect, and leaves cleanly.
 */
export interface FleetDeps {
  calls: CallTable;
  /** The handlers other nodes' forwarded requests run (this node's own WHIP endpoint). */
  handlers: Record<ForwardOp, (id: string, req: EndpointRequest) => Promise<EndpointReply> | EndpointReply>;
  now: () => number;
  log: Logger;
}

const SWEEP_MS = 30_000;

export class Fleet {
  readonly nodes: NatsNodes;
  /** The agent workers this node offers calls to (`{ "type": "worker" }` agents). */
  readonly workers: WorkerPool;
  /** Sources' maxSessions and trunks' maxCalls, counted on every node. */
  readonly limits: FleetLimits;
  /** SIP to and from users whose WebSocket is on another node (relaySip). */
  sipRelay: SipRelay | undefined;
  readonly #leases: Lease[] = [];
  #sip: SipService | undefined;
  /** This node's audit records, copied to `<prefix>_audit`. */
  auditStream: AuditStream | undefined;
  #forwarded: Subscription | undefined;
  #sweeper: NodeJS.Timeout | undefined;

  constructor(
    readonly cluster: Cluster,
    private readonly deps: FleetDeps,
  ) {
    this.nodes = new NatsNodes({
      kv: cluster.nodesKv,
      self: { nodeId: cluster.nodeId, publicUrl: cluster.publicUrl },
      load: () => deps.calls.size,
      now: deps.now,
      log: deps.log,
      onLost: (node) => {
        this.sipRelay?.nodeLost(node);
        return this.#endSessionsOf(node, 'node-lost');
      },
      // Reaped while cut off: the fleet was told these calls ended, so they end here too.
      onReaped: () => deps.calls.closeAll('node-lost'),
    });
    this.limits = new FleetLimits({ kv: cluster.limitsKv, nodeId: cluster.nodeId, gone: (n) => this.nodes.gone(n), holds: (id) => deps.calls.get(id) !== undefined, log: deps.log });
    this.workers = new WorkerPool({ nc: cluster.nc, prefix: cluster.prefix, log: deps.log.child({ component: 'workers' }) });
  }

  /** Copies every audit record this node writes to the fleet's stream (from now; published once joined). */
  streamAudit(audit: AuditLog): void {
    const { cluster } = this;
    this.auditStream = new AuditStream({ nc: cluster.nc, prefix: cluster.prefix, nodeId: cluster.nodeId, audit, log: this.deps.log.child({ component: 'audit-stream' }) });
  }

  /** SIP across nodes: the stack reaches users on other nodes' WebSockets, and ours carry other nodes' dialogs. */
  relaySip(service: SipService, wsSentBy: string): void {
    const { cluster } = this;
    const relay = new SipRelay({ nc: cluster.nc, prefix: cluster.prefix, nodeId: cluster.nodeId, gone: (n) => this.nodes.gone(n), sentBy: () => wsSentBy, log: this.deps.log.child({ component: 'sip-relay' }) });
    relay.useFlows((id) => service.flow(id));
    service.relay = relay;
    this.#sip = service;
    service.addTransport(relay.transport);
    this.sipRelay = relay;
  }

  /**
   * Trunks' registrations with their carriers, one node each: the node holding a registration's
   * lease registers; the others stand by and take over when it stops renewing (it died) or leaves.
   */
  async leaseRegistrations(registrations: TrunkRegistration[]): Promise<void> {
    const { cluster } = this;
    for (const r of registrations) {
      const lease = new Lease({
        kv: cluster.leasesKv,
        name: registrationLease(r.trunk),
        nodeId: cluster.nodeId,
        lost: (n) => this.nodes.markedLost(n),
        onAcquired: () => void (r.state === 'stopped' ? r.resume() : r.start()),
        onReleased: () => void r.stop(),
        log: this.deps.log,
      });
      this.#leases.push(lease);
      await lease.start();
    }
  }

  /** Who holds a lease now, by name (registrationLease(trunk)), as this node last read it. */
  leaseHolder(name: string): string | undefined {
    return this.#leases.find((l) => l.name === name)?.holder;
  }

  /** The agent for a `{ "type": "worker", "name": ... }` spec (one per call); a bad spec throws, naming the field. */
  workerAgent(spec: AgentSpec): WorkerAgent {
    const parsed = workerSpecSchema.safeParse(spec);
    if (!parsed.success) throw new Error(parsed.error.issues.map((i) => `${i.path.join('.') || 'agent'}: ${i.message}`).join('; '));
    const { cluster } = this;
    return new WorkerAgent(parsed.data, { nc: cluster.nc, prefix: cluster.prefix, nodeId: cluster.nodeId, pool: this.workers, log: this.deps.log });
  }

  /** Joins: ends what a previous run under this nodeId left claimed, heartbeats, answers forwarded requests, sweeps. */
  async join(): Promise<void> {
    const { cluster, deps } = this;
    await this.#endSessionsOf(cluster.nodeId, 'node-restarted');
    await this.#dropStaleBindings();
    void (async () => {
      for await (const s of cluster.nc.status()) {
        if (s.type === 'disconnect' || s.type === 'reconnect') {
          this.nodes.connectionChanged();
          this.workers.connectionChanged();
          for (const l of this.#leases) l.connectionChanged();
          deps.log.warn({ status: s.type }, 'NATS connection');
        }
      }
    })().catch(() => undefined);
    await this.nodes.start();
    await this.workers.start();
    this.sipRelay?.start();
    await this.auditStream?.start();
    this.#forwarded = serveForwarded(cluster.nc, cluster.prefix, cluster.nodeId, deps.handlers, deps.log);
    this.#sweeper = setInterval(() => void cluster.directory.sweep().catch((err: unknown) => deps.log.warn({ err }, 'session directory sweep failed')), SWEEP_MS);
    this.#sweeper.unref();
  }

  /** The base URL of the live node holding a session this node does not; else undefined (this node answers). */
  async holderUrl(id: string): Promise<string | undefined> {
    if (this.deps.calls.get(id)) return undefined;
    const node = await this.#holder(id);
    return node ? this.nodes.live().find((n) => n.nodeId === node)?.publicUrl.replace(/\/+$/, '') : undefined;
  }

  /** A request for a session another node holds: that node's answer; else undefined (this node answers). */
  async forwardIfElsewhere(op: ForwardOp, id: string, req: EndpointRequest): Promise<EndpointReply | undefined> {
    const node = await this.#holder(id);
    return node ? forward(this.cluster.nc, this.cluster.prefix, node, op, id, req) : undefined;
  }

  /** A WHIP endpoint URL on the least-loaded node, or undefined when this node is it (or the fleet is not known yet). */
  redirectTarget(): string | undefined {
    const node = this.nodes.pickLeastLoaded();
    return node && node.nodeId !== this.cluster.nodeId ? `${node.publicUrl.replace(/\/+$/, '')}/whip` : undefined;
  }

  /** Draining: no more forwarded requests, and the fleet is told not to send sessions here. */
  draining(): void {
    this.#forwarded?.unsubscribe();
    this.#forwarded = undefined;
    this.nodes.draining();
  }

  /** Leaves once the node's calls have ended and their releases are written: the shared state closes, then the connection. */
  async leave(): Promise<void> {
    clearInterval(this.#sweeper);
    this.draining();
    await this.deps.calls.settled();
    this.workers.close();
    this.sipRelay?.close();
    await Promise.all(this.#leases.map((l) => l.close()));
    await this.auditStream?.close();
    await this.nodes.close();
    await this.cluster.directory.close();
    await this.cluster.events.close();
    await this.cluster.locations.close();
    await this.cluster.close();
  }

  /** Registrations a previous run under this nodeId left: their sockets died with it. */
  async #dropStaleBindings(): Promise<void> {
    const registrar = this.#sip?.registrar;
    if (!registrar) return;
    const stale = (await registrar.all()).filter((b) => b.node === this.cluster.nodeId);
    for (const flowId of new Set(stale.map((b) => b.flowId))) await registrar.dropFlow(flowId);
    if (stale.length) this.deps.log.warn({ bindings: stale.length }, 'cluster: registrations left by a previous run of this node were removed');
  }

  async #holder(id: string): Promise<string | undefined> {
    const rec = await this.cluster.directory.lookup(id);
    return rec && rec.state !== 'ended' && rec.node !== this.cluster.nodeId ? rec.node : undefined;
  }

  /** A lost node's sessions (or a previous run's of this one), released and announced, several at a time. */
  async #endSessionsOf(node: string, reason: string): Promise<void> {
    const { directory, events } = this.cluster;
    const records = await directory.list({ node });
    for (let i = 0; i < records.length; i += 32) {
      await Promise.all(
        records.slice(i, i + 32).map(async (rec) => {
          const at = this.deps.now();
          await directory.release(rec.id, reason, at);
          await events.publish({ type: 'ended', at, id: rec.id, kind: rec.kind, node: rec.node, source: rec.source, sourceKind: rec.sourceKind, reason, durationMs: at - rec.createdAt, summary: null });
        }),
      );
    }
    if (records.length) this.deps.log.warn({ node, sessions: records.length, reason }, 'cluster: sessions of a node that is gone were ended');
  }
}
