import { Counter, Gauge, type Registry } from 'prom-client';

/** Per-trunk Prometheus metrics: calls by outcome, calls now, and the RTP ports they hold. */
export class TrunkMetrics {
  readonly calls: Counter<'trunk' | 'direction' | 'outcome'>;
  readonly verifications: Counter<'trunk' | 'verstat'>;

  constructor(registry: Registry, live: { active(): { trunk: string; calls: number }[]; rtpPortsInUse(): number }) {
    const registers = [registry];
    this.calls = new Counter({
      name: 'voxgate_sip_trunk_calls_total',
      help: 'Trunk calls by trunk, direction (inbound, outbound) and outcome (answered, cancelled, or the refusal status)',
      labelNames: ['trunk', 'direction', 'outcome'],
      registers,
    });
    this.verifications = new Counter({
      name: 'voxgate_stir_verifications_total',
      help: 'Inbound INVITEs verified on STIR/SHAKEN trunks, by trunk and verstat (TN-Validation-Passed, TN-Validation-Failed, No-TN-Validation)',
      labelNames: ['trunk', 'verstat'],
      registers,
    });
    new Gauge({
      name: 'voxgate_sip_trunk_active_calls',
      help: 'Trunk calls now, by trunk',
      labelNames: ['trunk'],
      registers,
      collect() {
        this.reset();
        for (const t of live.active()) this.set({ trunk: t.trunk }, t.calls);
      },
    });
    new Gauge({
      name: 'voxgate_rtp_ports_in_use',
      help: 'UDP ports of the sip.rtp range held by plain-RTP legs (two per leg)',
      registers,
      collect() {
        this.set(live.rtpPortsInUse());
      },
    });
  }

  /** `trunk` is `unknown` for refusals before a trunk was identified. */
  inbound(trunk: string, outcome: string): void {
    this.calls.inc({ trunk, direction: 'inbound', outcome });
  }

  stir(trunk: string, verstat: string): void {
    this.verifications.inc({ trunk, verstat });
  }

  /** Calls voxgate placed: answered, or the SIP status they failed with (429: refused at the trunk's limit). */
  outbound(trunk: string, outcome: string): void {
    this.calls.inc({ trunk, direction: 'outbound', outcome });
  }
}
