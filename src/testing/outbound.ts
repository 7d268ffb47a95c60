/**
 * Test support (imported by *.test.ts only): calls voxgate places, on trunkHarness's fake UDP
 * transport made dialable, with a WebSocket transport for registered browsers.
 */
import { Registry } from 'prom-client';
import type { Agent } from '../agent/agent.js';
import { parseConfig } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { CallRouter } from '../sip-calls/router.js';
import { trunkRouting } from '../sip-calls/trunk/setup.js';
import { TrunkMetrics } from '../sip-calls/trunk/trunk-metrics.js';
import { Proxy as SipProxy } from '../sip/proxy.js';
import { FakeSipTransport } from '../sip/transport/fake.js';
import { FakeTransportFactory } from '../transport/fake.js';
import { FarEnd, registerWithDigest } from './sip.js';
import { loadStirShaken } from '../sip/identity/stir.js';
import { HeldAgent, trunkHarness, type TrunkHarness, type TrunkHarnessOptions } from './trunk.js';

/** `sip.outboundRoutes` entries and SIP users who may call numbers (`sip.users[].trunks`). */
export interface OutboundHarnessOptions extends TrunkHarnessOptions {
  outboundRoutes?: { prefix: string; trunk: string }[];
  users?: { user: string; password: string; trunks?: string[] }[];
}

export interface OutboundHarness<A extends Agent> extends TrunkHarness<A> {
  /** The browsers' WebRTC transports (every answer and offer made is in `made`). */
  readonly transports: FakeTransportFactory;
  /** A SIP-over-WebSocket transport for registered browsers. */
  readonly ws: FakeSipTransport;
  /** A browser on a new WebSocket flow, registered as `user` with digest. */
  browser(user: string, password: string): Promise<FarEnd>;
}

/**
 * trunkHarness for calls voxgate places: the UDP transport is dialable (the stack opens flows to
 * carrier addresses; a carrier made first by `carrier(remote)` is the flow flowTo finds), a
 * WebSocket transport for browsers, and a CallRouter built from a config that has
 * `sip.outboundRoutes` and the users' `trunks` (trunkHarness's own router is replaced, and its
 * metrics with it: `metrics`, `registry` and `inboundCounts` are the new router's).
 */
export function outboundHarness(opts: OutboundHarnessOptions & { agent?: undefined }): OutboundHarness<HeldAgent>;
export function outboundHarness<A extends Agent>(opts: OutboundHarnessOptions & { agent: A }): OutboundHarness<A>;
export function outboundHarness(opts: OutboundHarnessOptions): OutboundHarness<Agent> {
  const users = opts.users ?? [{ user: 'alice', password: 'alice-secret' }];
  const base = trunkHarness({ ...opts, users, agent: opts.agent ?? new HeldAgent() });
  base.transport.dialable();
  const ws = new FakeSipTransport('WS');
  base.sip.addTransport(ws);
  const full = parseConfig({
    sip: {
      domain: 'voxgate.test',
      users,
      agents: opts.sipAgents ?? {},
      listen: [{ transport: 'udp' as const, host: '127.0.0.1', port: 0 }],
      rtp: { portMin: base.rtpRange.min, portMax: base.rtpRange.max, bindAddress: '127.0.0.1', quarantineSeconds: 0 },
      trunks: opts.trunks,
      outboundRoutes: opts.outboundRoutes ?? [],
    },
    stirShaken: opts.stirShaken,
  });
  const config = full.sip;
  const log = createLogger(process.env.VOXGATE_TEST_LOG ? 'debug' : 'silent');
  const agents = opts.agents ?? {};
  const transports = new FakeTransportFactory();
  const registry = new Registry();
  const metrics = new TrunkMetrics(registry, { active: () => router.trunks?.active() ?? [], rtpPortsInUse: () => base.rtp.pool.portsInUse });
  const { clock, sip } = base;
  const router: CallRouter = new CallRouter(
    {
      sip,
      calls: base.calls,
      runtime: base.runtime,
      clock,
      log,
      idleTimeoutMs: opts.idleTimeoutMs ?? 3_600_000,
      resolveAgent: (spec) => (typeof spec === 'string' && Object.hasOwn(agents, spec) ? agents[spec]! : base.agent),
      transports,
      domain: config.domain,
      stir: loadStirShaken(full.stirShaken),
    },
    config.agents,
    new SipProxy(sip, log),
    trunkRouting(config, { trunks: base.trunks, rtp: base.rtp, metrics, stack: sip, clock, log, audit: (e) => sip.audit(e) }),
  );
  sip.calls = router;
  base.calls.dialer = router.outbound;
  return {
    ...base,
    router,
    registry,
    metrics,
    transports,
    ws,
    async inboundCounts() {
      const out: Record<string, number> = {};
      for (const v of (await metrics.calls.get()).values) {
        if (v.labels.direction === 'inbound') out[`${v.labels.trunk}/${v.labels.outcome}`] = v.value;
      }
      return out;
    },
    async browser(user, password) {
      const far = new FarEnd(ws.connect(), user);
      await registerWithDigest(far, user, password);
      return far;
    },
  };
}
