import type { SourceConfig } from '../core/config.js';
import { hostOf, userOf } from '../sip/build.js';
import { header, type SipRequest } from '../sip/message.js';
import type { Proxy } from '../sip/proxy.js';
import { sourceKindOf, type Incoming, type SipCallHandler } from '../sip/sip-service.js';
import type { SipFlow } from '../sip/transport/transport.js';
import { AgentUas } from './agent-uas.js';
import { SipCallsContext, type SipCallsDeps } from './context.js';
import { Referrals } from './referral.js';
import { AgentTransfers } from './transfer.js';
import { TrunkInbound } from './trunk/inbound.js';
import type { TrunkMetrics } from './trunk/trunk-metrics.js';
import type { TrunkTable } from './trunk/trunks.js';
import type { RtpTransports } from '../transport/rtp-udp/factory.js';
import { OutboundCalls } from './outbound-calls.js';
import { phoneNumberOf, type OutboundRoutes } from './trunk/routes.js';
import { PhoneBridge } from './trunk/sbc.js';

/** What inbound trunk calls need (present when `sip.trunks` has any). */
export interface TrunkRouting {
  trunks: TrunkTable;
  rtp: RtpTransports;
  metrics: TrunkMetrics;
  /** Users of `sip.users`: their calls over UDP/TCP/TLS take the users' path, not a trunk's. */
  users: ReadonlySet<string>;
  /** `sip.outboundRoutes` over the trunks that place calls. */
  routes: OutboundRoutes;
  /** The trunks each SIP user may call numbers through (`sip.users[].trunks`). */
  userTrunks: ReadonlyMap<string, readonly string[]>;
  /** Trunks' registrations with their carriers (a closed TCP/TLS connection re-registers). */
  registrations: readonly { flowClosed(flow: SipFlow): void }[];
}

/**
 * Where SIP requests become calls. An INVITE to an agent user part is answered by voxgate (the
 * agent UAS), one to a registered user is proxied to their flow, a known user who is offline
 * gets 480, anyone else 404; in-dialog requests go to the dialog voxgate is a party to, or
 * through the proxy.
 */
export class CallRouter implements SipCallHandler {
  readonly ctx: SipCallsContext;
  readonly agents: AgentUas;
  readonly transfers: AgentTransfers;
  readonly referrals: Referrals;
  readonly trunks: TrunkInbound | undefined;
  /** Calls voxgate places (`POST /api/calls`). */
  readonly outbound: OutboundCalls;
  /** Registered users' calls to phone numbers, bridged to a trunk. */
  readonly phones: PhoneBridge | undefined;
  readonly #registrations: readonly { flowClosed(flow: SipFlow): void }[];
  /** INVITEs to users whose location is being looked up. */
  readonly #locating = new Set<Incoming>();

  constructor(
    deps: SipCallsDeps,
    agentUsers: Record<string, SourceConfig['agent']>,
    private readonly proxy: Proxy,
    trunk?: TrunkRouting,
    /** The gateway is shutting down: no new calls are placed. */
    draining: () => boolean = () => false,
  ) {
    this.ctx = new SipCallsContext(deps);
    const isAgent = (user: string | undefined) => user === 'agent' || (user !== undefined && Object.hasOwn(agentUsers, user));
    this.transfers = new AgentTransfers(this.ctx, isAgent, trunk ? { routes: trunk.routes, rtp: trunk.rtp } : undefined);
    this.#registrations = trunk?.registrations ?? [];
    // The referral job hands the transferee's dialog to the agent UAS, which hands REFERs back to it.
    const isLocalUser = (user: string) => isAgent(user) || (trunk?.users.has(user) ?? false);
    this.referrals = new Referrals(this.ctx, {
      isAgent,
      isLocalUser,
      adopt: (d) => this.agents.adopt(d),
      ...(trunk ? { numbers: { rtp: trunk.rtp, trunkFor: (number: string, user: string) => trunk.routes.trunkFor(number, trunk.userTrunks.get(user) ?? []) } } : {}),
    });
    this.agents = new AgentUas(this.ctx, agentUsers, this.transfers, this.referrals);
    this.trunks = trunk
      ? new TrunkInbound({
          ctx: this.ctx,
          trunks: trunk.trunks,
          rtp: trunk.rtp,
          agentsByUser: agentUsers,
          isLocalUser: (user) => isAgent(user) || trunk.users.has(user),
          agents: this.agents,
          transfers: this.transfers,
          metrics: trunk.metrics,
        })
      : undefined;
    this.outbound = new OutboundCalls({ ctx: this.ctx, routes: trunk?.routes, rtp: trunk?.rtp, agents: this.agents, metrics: trunk?.metrics, draining });
    this.outbound.transfer = (call, target, opts) => this.transfers.bridge(call, target, opts);
    this.phones = trunk ? new PhoneBridge({ ctx: this.ctx, routes: trunk.routes, rtp: trunk.rtp, userTrunks: trunk.userTrunks, metrics: trunk.metrics }) : undefined;
    this.#isLocalUser = isLocalUser;
  }

  readonly #isLocalUser: (user: string) => boolean;

  claimInvite(incoming: Incoming): boolean {
    return this.trunks?.claims(incoming) ?? false;
  }

  /** SIP dialogs voxgate is in: as a party, and as the proxy in the middle. */
  get dialogs(): number {
    return this.ctx.dialogs.size + this.proxy.size;
  }

  invite(incoming: Incoming, caller: string): void {
    const { req } = incoming;
    const { sip, domain } = this.ctx.deps;
    const user = userOf(req.uri);
    const host = hostOf(req.uri);
    const refuse = (status: number, reason: string) => {
      sip.metricsCall(this.agents.isAgent(user) ? 'agent' : 'proxied', String(status));
      sip.audit({ action: 'sip.invite', outcome: 'error', status, user: caller, target: req.uri, remote: incoming.flow.remote, reason });
      incoming.respond(status, { reason });
    };
    // Before the domain check: hostOf() has no host for a URI without a user part, and the answer would name no domain.
    if (!user) return refuse(404, 'Not Found (no user part)');
    if (host !== domain.toLowerCase() && !sip.isLocalHost(host)) return refuse(404, `Not Found (domain ${host ?? '?'} is not served here)`);
    if (this.agents.isAgent(user)) {
      void this.agents.invite(incoming, caller);
      return;
    }
    // A number (`sip:+15557654321@domain`) that is no user of ours: out through a trunk.
    const number = phoneNumberOf(req.uri);
    if (number && this.phones && !this.#isLocalUser(user)) {
      void this.phones.invite(incoming, caller, number).catch((err: unknown) => {
        this.ctx.deps.log.error({ err }, 'the call to a phone failed');
        refuse(500, 'Server Internal Error (the call to the phone could not be placed)');
      });
      return;
    }
    // The lookup is async (a shared store in a cluster): a CANCEL may come while it runs.
    this.#locating.add(incoming);
    void sip
      .locate(user)
      .then((where) => {
        if (!this.#locating.delete(incoming)) return;
        if ('status' in where) return refuse(where.status, where.reason);
        this.proxy.invite(incoming, caller, where.binding, where.flow);
      })
      .catch((err: unknown) => {
        this.#locating.delete(incoming);
        this.ctx.deps.log.error({ err }, 'the location lookup failed');
        refuse(500, 'Server Internal Error (location lookup failed)');
      });
  }

  inDialog(incoming: Incoming): boolean {
    const d = this.ctx.dialogs.find(incoming.req);
    if (d) {
      d.handle(incoming);
      return true;
    }
    if (this.trunks?.byeWhileRinging(incoming)) return true;
    return this.proxy.inDialog(incoming);
  }

  ack(req: SipRequest, flow: SipFlow): void {
    const d = this.ctx.dialogs.find(req);
    if (d) return d.acked();
    // The ACK of a 200 that carried our offer (an INVITE without SDP) brings the answer.
    if (this.trunks?.late.ack(req)) return;
    // A stray ACK (no dialog) is dropped: nothing can be answered to an ACK.
    this.proxy.ack(req, flow);
  }

  cancel(cancel: Incoming, invite: Incoming | undefined): void {
    if (!invite) return;
    this.ctx.deps.sip.audit({ action: 'sip.cancel', outcome: 'ok', status: 200, callId: header(invite.req, 'Call-ID') ?? null, remote: cancel.flow.remote, sourceKind: sourceKindOf(cancel.flow) });
    if (this.proxy.cancel(cancel, invite)) return;
    cancel.respond(200);
    // §16.10: an INVITE not yet forwarded is answered 487 by us, and is not forwarded after.
    if (this.#locating.delete(invite)) return invite.respond(487);
    // §9.2: an INVITE already answered is not affected by its CANCEL.
    if (this.trunks?.cancel(invite)) return;
    if (this.phones?.cancel(invite)) return;
    this.agents.cancel(invite);
  }

  /** Shutdown: calls voxgate is placing stop ringing (CANCEL) before the calls themselves end. */
  cancelOutbound(): void {
    this.outbound.cancelAll();
    this.phones?.cancelAll();
  }

  flowClosed(flow: SipFlow): void {
    this.referrals.flowClosed(flow);
    this.transfers.flowClosed(flow);
    this.outbound.flowClosed(flow);
    this.phones?.flowClosed(flow);
    for (const r of this.#registrations) r.flowClosed(flow);
    for (const d of this.ctx.dialogs.onFlow(flow)) d.flowClosed();
    this.proxy.flowClosed(flow);
  }
}
