import { Counter, Gauge, type Registry } from 'prom-client';

/** SIP's Prometheus metrics, on the gateway's registry. */
export class SipMetrics {
  readonly registrations: Counter<'outcome'>;
  readonly calls: Counter<'kind' | 'outcome'>;
  readonly transactions: Counter<'method' | 'side'>;
  readonly timeouts: Counter<'method'>;
  readonly rejected: Counter<'status'>;

  constructor(registry: Registry, live: { bindings(): number; flows(): number; dialogs(): number }) {
    const registers = [registry];
    this.registrations = new Counter({ name: 'voxgate_sip_registrations_total', help: 'REGISTER requests, by outcome (200, challenged, 401, 403, 423, ...)', labelNames: ['outcome'], registers });
    this.calls = new Counter({ name: 'voxgate_sip_calls_total', help: 'SIP calls, by kind (agent, proxied) and outcome (answered, or the final status)', labelNames: ['kind', 'outcome'], registers });
    this.transactions = new Counter({ name: 'voxgate_sip_transactions_total', help: 'SIP transactions, by method and side (server, client)', labelNames: ['method', 'side'], registers });
    this.timeouts = new Counter({ name: 'voxgate_sip_transaction_timeouts_total', help: 'Client transactions that timed out (Timer B/F)', labelNames: ['method'], registers });
    this.rejected = new Counter({ name: 'voxgate_sip_rejected_total', help: 'SIP messages refused or unparseable, by status', labelNames: ['status'], registers });
    new Gauge({ name: 'voxgate_sip_bindings', help: 'Live registrar bindings', registers, collect() { this.set(live.bindings()); } });
    new Gauge({ name: 'voxgate_sip_flows', help: 'Open SIP WebSocket connections', registers, collect() { this.set(live.flows()); } });
    new Gauge({ name: 'voxgate_sip_dialogs', help: 'Live SIP dialogs (agent calls and proxied calls)', registers, collect() { this.set(live.dialogs()); } });
  }
}
