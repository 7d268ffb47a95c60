import { hostOf, userOf } from './build.js';
import type { AgentCalls } from './agent-calls.js';
import { header, type SipRequest } from './message.js';
import type { Proxy } from './proxy.js';
import type { Incoming, SipCallHandler, SipService } from './sip-service.js';
import type { SipFlow } from './ws-transport.js';

/**
 * Where an INVITE goes: an agent user part to the agent (voxgate answers), a registered user
 * to their WebSocket (voxgate proxies), a known user who is offline 480, anyone else 404.
 */
export class CallRouter implements SipCallHandler {
  constructor(
    private readonly sip: SipService,
    private readonly agents: AgentCalls,
    private readonly proxy: Proxy,
    private readonly domain: string,
  ) {}

  invite(incoming: Incoming, caller: string): void {
    const { req } = incoming;
    const user = userOf(req.uri);
    const host = hostOf(req.uri);
    const refuse = (status: number, reason: string) => {
      this.sip.metricsCall(this.agents.isAgent(user) ? 'agent' : 'proxied', String(status));
      this.sip.audit({ action: 'sip.invite', outcome: 'error', status, user: caller, target: req.uri, remote: incoming.flow.remote, reason });
      incoming.respond(status, { reason });
    };
    if (host !== this.domain.toLowerCase() && host !== this.sip.viaHost.toLowerCase()) return refuse(404, `Not Found (domain ${host ?? '?'} is not served here)`);
    if (this.agents.isAgent(user)) {
      void this.agents.invite(incoming, caller);
      return;
    }
    if (!user) return refuse(404, 'Not Found (no user part)');
    const where = this.sip.locate(user);
    if ('status' in where) return refuse(where.status, where.reason);
    this.proxy.invite(incoming, caller, where.binding, where.flow);
  }

  inDialog(incoming: Incoming): boolean {
    return this.agents.inDialog(incoming) || this.proxy.inDialog(incoming);
  }

  ack(req: SipRequest, flow: SipFlow): void {
    // A stray ACK (no dialog) is dropped: nothing can be answered to an ACK.
    if (!this.agents.ack(req)) this.proxy.ack(req, flow);
  }

  cancel(cancel: Incoming, invite: Incoming | undefined): void {
    if (!invite) return;
    this.sip.audit({ action: 'sip.cancel', outcome: 'ok', status: 200, callId: header(invite.req, 'Call-ID') ?? null, remote: cancel.flow.remote });
    if (this.proxy.cancel(cancel, invite)) return;
    cancel.respond(200);
    this.agents.cancel(invite);
  }

  flowClosed(flow: SipFlow): void {
    this.agents.flowClosed(flow);
    this.proxy.flowClosed(flow);
  }
}
