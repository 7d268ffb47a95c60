import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { SipConfig } from '../../core/config.js';
import type { Clock } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';
import type { RtpTransports } from '../../transport/rtp-udp/factory.js';
import type { TrunkView } from '../../call/outbound-types.js';
import type { TrunkRouting } from '../router.js';
import { TrunkRegistration, type RegistrationStack, type TrunkRegistrationDeps } from './registration.js';
import { carrierAddresses } from './outbound.js';
import { OutboundRoutes } from './routes.js';
import type { TrunkMetrics } from './trunk-metrics.js';
import type { TrunkTable } from './trunks.js';

/** What the router needs for trunks, built from `sip` once: routes, who may call out, registrations (not yet started). */
export function trunkRouting(
  sip: SipConfig,
  deps: { trunks: TrunkTable; rtp: RtpTransports; metrics: TrunkMetrics; stack: RegistrationStack; clock: Clock; log: Logger; audit: TrunkRegistrationDeps['audit'] },
): TrunkRouting & { registrations: TrunkRegistration[] } {
  const registrations: TrunkRegistration[] = [];
  for (const t of deps.trunks.all) {
    if (!t.config.outbound?.register) continue;
    const reg = new TrunkRegistration({ stack: deps.stack, clock: deps.clock, log: deps.log.child({ trunk: t.name }), audit: deps.audit }, { trunk: t.name, config: t.config.outbound });
    t.registration = reg;
    registrations.push(reg);
  }
  return {
    trunks: deps.trunks,
    rtp: deps.rtp,
    metrics: deps.metrics,
    users: new Set(sip.users.map((u) => u.user)),
    routes: new OutboundRoutes(deps.trunks, sip.outboundRoutes),
    userTrunks: new Map(sip.users.map((u) => [u.user, u.trunks ?? []])),
    registrations,
  };
}

/**
 * Resolves each registering trunk's carrier addresses (names by the system resolver), so the
 * calls it sends to our registration are known by their source address. Failures are logged:
 * the trunk then knows its registrar by the address registered with alone.
 */
export async function resolveCarriers(trunks: TrunkTable, log: Logger): Promise<void> {
  await Promise.all(
    trunks.all
      .filter((t) => t.registration && t.config.outbound)
      .flatMap((t) =>
        carrierAddresses(t.config.outbound!).map(async ({ host }) => {
          if (isIP(host)) return void t.carrierAddresses.add(host);
          try {
            for (const a of await lookup(host, { all: true })) t.carrierAddresses.add(a.address);
          } catch (err) {
            log.warn({ err, trunk: t.name, host }, 'the carrier address does not resolve; calls on the registration are taken from the registrar address only');
          }
        }),
      ),
  );
}

/** The trunks as `GET /api/trunks` shows them. */
/**
 * In a fleet, `lease` says who holds a trunk's registration (undefined: nobody yet); a
 * registration another node holds shows as `standby` on this one, with the holder.
 */
export interface RegistrationLeaseView {
  nodeId: string;
  holder(trunk: string): string | undefined;
}

export function trunkViews(trunks: TrunkTable, registrations: readonly TrunkRegistration[], lease?: RegistrationLeaseView): TrunkView[] {
  return trunks.all.map((t) => {
    const o = t.config.outbound;
    const reg = registrations.find((r) => t.registration === r);
    return {
      name: t.name,
      inbound: t.config.inbound ? { numbers: [...t.config.inbound.numbers] } : null,
      outbound: o ? { addresses: [o.address].flat(), transport: o.transport, numbers: [...o.numbers] } : null,
      calls: { inbound: t.active.size, outbound: t.outbound.size },
      registration: reg ? registrationView(reg, lease) : null,
    };
  });
}

function registrationView(reg: TrunkRegistration, lease: RegistrationLeaseView | undefined) {
  const view = reg.view();
  if (!lease) return view;
  const heldBy = lease.holder(reg.trunk) ?? null;
  // The holder's own view is its registration's; elsewhere it never started, or stopped on losing the lease.
  if (heldBy === lease.nodeId) return { ...view, heldBy };
  return { ...view, state: 'standby' as const, heldBy, expiresInSeconds: null, nextAttemptInSeconds: null };
}
