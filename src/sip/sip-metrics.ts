import { Counter, Gauge, type Registry } from 'prom-client';

/**
 * A Prometheus counter bumped on every SIP message: an increment is a Map lookup on the label
 * values, and prom-client reads the totals when scraped. prom-client's own inc() hashes and
 * validates the label object each time, a noticeable share of a REGISTER.
 */
export class HotCounter<L extends string> {
  readonly #values = new Map<string, { labels: Record<L, string>; value: number }>();
  readonly #labelNames: readonly L[];

  constructor(registry: Registry, opts: { name: string; help: string; labelNames: readonly L[] }) {
    this.#labelNames = opts.labelNames;
    const values = this.#values;
    new Counter({
      ...opts,
      labelNames: [...opts.labelNames],
      registers: [registry],
      collect() {
        this.reset();
        for (const v of values.values()) this.inc(v.labels, v.value);
      },
    });
  }

  inc(labels: Record<L, string>): void {
    const names = this.#labelNames;
    let key = labels[names[0]!];
    for (let i = 1; i < names.length; i++) key += `\u0000${labels[names[i]!]}`;
    const v = this.#values.get(key);
    if (v) v.value++;
    else this.#values.set(key, { labels: { ...labels }, value: 1 });
  }
}

/** SIP's Prometheus metrics, on the gateway's registry. */
export class SipMetrics {
  readonly registrations: HotCounter<'outcome'>;
  readonly calls: Counter<'kind' | 'outcome'>;
  readonly transactions: HotCounter<'method' | 'side'>;
  readonly timeouts: Counter<'method'>;
  readonly rejected: Counter<'status'>;

  constructor(registry: Registry, live: { bindings(): number | Promise<number>; flows(): number; dialogs(): number }) {
    const registers = [registry];
    this.registrations = new HotCounter(registry, { name: 'voxgate_sip_registrations_total', help: 'REGISTER requests, by outcome (200, challenged, 401, 403, 423, ...)', labelNames: ['outcome'] });
    this.calls = new Counter({ name: 'voxgate_sip_calls_total', help: 'SIP calls, by kind (agent, proxied) and outcome (answered, or the final status)', labelNames: ['kind', 'outcome'], registers });
    this.transactions = new HotCounter(registry, { name: 'voxgate_sip_transactions_total', help: 'SIP transactions, by method and side (server, client)', labelNames: ['method', 'side'] });
    this.timeouts = new Counter({ name: 'voxgate_sip_transaction_timeouts_total', help: 'Client transactions that timed out (Timer B/F)', labelNames: ['method'], registers });
    this.rejected = new Counter({ name: 'voxgate_sip_rejected_total', help: 'SIP messages refused or unparseable, by status', labelNames: ['status'], registers });
    new Gauge({ name: 'voxgate_sip_bindings', help: 'Live registrar bindings', registers, async collect() { this.set(await live.bindings()); } });
    new Gauge({ name: 'voxgate_sip_flows', help: 'Open SIP connections (WebSocket, TCP, TLS) and UDP peers', registers, collect() { this.set(live.flows()); } });
    new Gauge({ name: 'voxgate_sip_dialogs', help: 'Live SIP dialogs (voxgate a party: agent calls, transfers; and proxied calls)', registers, collect() { this.set(live.dialogs()); } });
  }
}
