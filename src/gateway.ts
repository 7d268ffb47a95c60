import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { availableParallelism } from 'node:os';
import { AuditLog } from './audit/audit-log.js';
import { SourceAuthenticator } from './auth/source-auth.js';
import { ListenerAuthenticator } from './auth/listener-auth.js';
import { AgentRegistry, type AgentFactory } from './agent/registry.js';
import { CodecPool } from './audio/codec-pool.js';
import { FrameClock } from './audio/frame-clock.js';
import { CallTable } from './call/call-table.js';
import type { StartCallDeps } from './call/start-call.js';
import type { SessionDirectory } from './call/session-directory.js';
import type { EventBus } from './call/session-events.js';
import { MemorySessionDirectory } from './cluster/memory/session-directory.js';
import { MemoryEventBus } from './cluster/memory/event-bus.js';
import { openCluster, type Cluster } from './cluster/nats/cluster.js';
import { Fleet, registrationLease } from './cluster/nats/fleet.js';
import { SystemClock, type Clock } from './core/clock.js';
import { ConfigError, type Config, type SourceConfig } from './core/config.js';
import { TypedEmitter } from './core/events.js';
import { newToken } from './core/ids.js';
import { createLogger, type Logger } from './core/logger.js';
import type { MediaRuntime } from './media/endpoint.js';
import type { MediaEndpointOptions } from './transport/webrtc/peer.js';
import { WhipEndpoint } from './whip/whip-endpoint.js';
import { WhepEndpoint } from './whep/whep-endpoint.js';
import { GatewayMetrics } from './http/metrics.js';
import { RateLimiter } from './http/rate-limit.js';
import { Router } from './http/router.js';
import { baseUrl, close, createServer, listen, serverUrl } from './http/server.js';
import { adminEndSession, adminPlugin, adminTransferSession } from './http/plugins/admin.js';
import { consolePlugin } from './http/plugins/console.js';
import { CallHistory } from './call/call-history.js';
import { CallMonitor } from './call/call-monitor.js';
import { logCalls } from './call/call-logging.js';
import type { EndpointReply, EndpointRequest } from './wish/resource.js';
import { dirname, join } from 'node:path';
import { healthPlugin } from './http/plugins/health.js';
import { metricsPlugin } from './http/plugins/metrics.js';
import { pagesPlugin } from './http/plugins/pages.js';
import { ssePlugin } from './http/plugins/sse.js';
import { whepPlugin } from './http/plugins/whep.js';
import { whipPlugin } from './http/plugins/whip.js';
import { SipService } from './sip/sip-service.js';
import { SipMetrics } from './sip/sip-metrics.js';
import { Proxy as SipProxy } from './sip/proxy.js';
import { WsTransport } from './sip/transport/ws.js';
import { CallRouter } from './sip-calls/router.js';
import { MemoryLocationStore } from './cluster/memory/location-store.js';
import { peersSettled, webRtcTransports } from './transport/webrtc/peer.js';
import { RtpTransports } from './transport/rtp-udp/factory.js';
import { advertisedHost, openSipListeners } from './sip/transport/listeners.js';
import type { SipTransport } from './sip/transport/transport.js';
import { TrunkTable } from './sip-calls/trunk/trunks.js';
import { TrunkMetrics } from './sip-calls/trunk/trunk-metrics.js';
import { sdesKeying } from './sip-calls/trunk/sdes.js';
import { resolveCarriers, trunkRouting, trunkViews } from './sip-calls/trunk/setup.js';
import type { TrunkRegistration } from './sip-calls/trunk/registration.js';
import type { TrunkView } from './call/outbound-types.js';
import { callsPlugin } from './http/plugins/calls.js';
import { loadStirShaken } from './sip/identity/stir.js';
import { auditPathProblem, fileProblem, portProblem, readConfigFile } from './core/startup.js';
import { holdMediaPort } from './transport/webrtc/port-hold.js';
import { devCertificate, type DevCertificate } from './http/dev-tls.js';

export interface GatewayOptions {
  /**
   * The signalling clock (default SystemClock): SIP transaction and dialog timers, call idle
   * timeouts, digest nonces, the HTTP rate limiter, source JWT expiry, TURN credential times,
   * session directory tombstones and audit times. A FakeClock here tests those timers without sleeping.
   */
  clock?: Clock;
  /**
   * The media clock (default SystemClock, whatever `clock` is): the 20 ms FrameClock and the media
   * runtime (MediaEndpoint arrival times and jitter buffers, AgentLeg playout), so audio can flow in
   * real time while the signalling clock is a fake.
   */
  mediaClock?: Clock;
  log?: Logger;
  /** In-process agents by name, for sources to pick with `agent: "<name>"` (the TypeScript Agent API). */
  agents?: Record<string, AgentFactory>;
}

/**
 * One voxgate node, and the one place that knows how its parts fit: the HTTP(S) server and its
 * plugins, the media runtime, the call table, SIP and the audit log. `start()` needs no
 * configuration at all; `stop()` drains (refuses new sessions, ends the live ones with reason
 * `shutdown`, closes the server).
 */
export class Gateway {
  /** The signalling clock (see GatewayOptions). */
  readonly clock: Clock;
  /** The media clock (see GatewayOptions). */
  readonly mediaClock: Clock;
  readonly log: Logger;
  readonly calls: CallTable;
  /** Every session by id, whatever its kind (WHEP finds calls here). */
  readonly directory: SessionDirectory;
  /** created / connected / ended, as serialisable events. */
  readonly events: EventBus;
  readonly audit: AuditLog;
  /** Recently ended calls and their call-detail records. */
  readonly history: CallHistory;
  /** Every live call's chart, timeline and levels, for the console (`GET /api/events`). */
  readonly monitor: CallMonitor;
  /** The admin's acts on a call, run where the call is (another node's are forwarded here). */
  readonly #admin: { end: (id: string, req: EndpointRequest) => EndpointReply; transfer: (id: string, req: EndpointRequest) => Promise<EndpointReply> };
  readonly #listeners: ListenerAuthenticator;
  readonly auth: SourceAuthenticator;
  readonly whip: WhipEndpoint;
  readonly whep: WhepEndpoint;
  readonly metrics: GatewayMetrics;
  readonly limiter: RateLimiter;
  readonly agents: AgentRegistry;
  readonly frameClock: FrameClock;
  /** Where sessions' audio is decoded and encoded. */
  readonly codecs: CodecPool;
  /** The SIP stack; its WebSocket transport (RFC 7118) takes upgrades on `/sip` and `/`. */
  readonly sip: SipService;
  readonly sipWs: WsTransport;
  /** Where SIP dialogs become calls (agent calls, transfers, the proxy between users). */
  readonly sipCalls: CallRouter;
  /** Plain-RTP legs (trunks, phones): their port pool. */
  readonly rtp: RtpTransports;
  /** SIP over UDP, TCP and TLS (`sip.listen`), once listening. */
  sipTransports: SipTransport[] = [];
  /** Trunks' registrations with their carriers (`outbound.register`), started once SIP listens. */
  registrations: TrunkRegistration[] = [];
  #trunkViews: () => TrunkView[] = () => [];
  #trunkTable: TrunkTable | undefined;
  readonly #stir: ReturnType<typeof loadStirShaken>;
  /** Printed at start-up when no source is configured. */
  readonly devToken: string | undefined;
  readonly adminToken: string;
  /** The development certificate (`http.devTls`), for the banner. */
  devTls: DevCertificate | undefined;
  draining = false;
  /** This node as a member of the fleet, when `cluster` is configured. */
  readonly fleet: Fleet | undefined;
  readonly #router: Router;
  #server: Server | undefined;
  readonly #media: MediaEndpointOptions;
  #mediaPort: { close(): void } | undefined;
  #redirectNext = 0;

  private constructor(
    readonly config: Config,
    opts: GatewayOptions,
    /** The fleet's shared state on NATS, when `cluster` is configured. */
    readonly cluster?: Cluster,
  ) {
    this.clock = opts.clock ?? new SystemClock();
    this.mediaClock = opts.mediaClock ?? new SystemClock();
    this.log = opts.log ?? createLogger(config.log.level);
    TypedEmitter.onListenerError = (event, err) => this.log.error({ err, event }, 'event listener threw');
    let sources: SourceConfig[] = config.sources;
    if (sources.length === 0 && !config.auth.jwtSecret) {
      this.devToken = newToken();
      sources = [{ name: 'dev', kind: 'browser', token: this.devToken }];
    }
    this.adminToken = config.admin.token ?? newToken();
    this.auth = new SourceAuthenticator(sources, config.auth.jwtSecret, this.clock);
    this.directory = cluster?.directory ?? new MemorySessionDirectory({ now: () => this.clock.now() });
    this.events = cluster?.events ?? new MemoryEventBus({ onError: (err) => this.log.error({ err }, 'session event subscriber threw') });
    this.calls = new CallTable({
      ...config.limits,
      ...(cluster ? { node: cluster.nodeId } : {}),
      directory: this.directory,
      events: this.events,
      now: () => this.clock.now(),
      onError: (err, what) => this.log.error({ err }, `${what} failed`),
      eventsAfterAudit: true,
    });
    this.fleet = cluster
      ? new Fleet(cluster, {
          calls: this.calls,
          handlers: { 'whip.patch': (id, req) => this.whip.patch(id, req), 'whip.delete': (id, req) => this.whip.delete(id, req), 'session.delete': (id, req) => this.#admin.end(id, req), 'session.transfer': (id, req) => this.#admin.transfer(id, req) },
          now: () => this.clock.now(),
          log: this.log.child({ component: 'cluster' }),
        })
      : undefined;
    try {
      this.audit = new AuditLog(config.audit.path, this.clock);
    } catch (err) {
      throw auditPathProblem(config.audit.path, err);
    }
    this.fleet?.streamAudit(this.audit); // every record also to the fleet's stream
    const cdrPath = config.audit.cdrPath === false ? undefined : (config.audit.cdrPath ?? join(dirname(config.audit.path), 'voxgate-cdr.jsonl'));
    try {
      this.history = new CallHistory({ calls: this.calls, now: () => this.clock.now(), node: cluster?.nodeId ?? 'local', size: config.admin.recentCalls, cdrPath, onError: (err) => this.log.error({ err }, 'call-detail record not written') });
    } catch (err) {
      this.audit.close();
      throw fileProblem('audit.cdrPath', cdrPath!, err, 'the call-detail record file');
    }
    const adminDeps = { adminToken: this.adminToken, call: (id: string) => this.calls.get(id), history: this.history, audit: this.audit, log: this.log };
    this.#admin = { end: adminEndSession(adminDeps), transfer: adminTransferSession(adminDeps) };
    this.monitor = new CallMonitor({ calls: this.calls, history: this.history, now: () => this.clock.now(), events: this.events, node: cluster?.nodeId ?? 'local', onError: (err) => this.log.error({ err }, 'console watcher failed') });
    this.audit.tap((text) => {
      for (const m of text.matchAll(/"session":"([^"]+)"/g)) this.calls.recorded(m[1]!); // events after their audit record
    });
    this.agents = new AgentRegistry(config.defaultAgent, this.log);
    if (this.fleet) this.agents.registerType('worker', (spec) => this.fleet!.workerAgent(spec));
    for (const [name, factory] of Object.entries(opts.agents ?? {})) this.agents.register(name, factory);
    // Fail at start-up, naming the source, rather than on its first call.
    const badAgents = this.agents.problems([
      ...sources.map((s, i): [string, SourceConfig['agent']] => [`sources.${i}.agent`, s.agent]),
      ...Object.entries(config.sip.agents).map(([user, spec]): [string, SourceConfig['agent']] => [`sip.agents.${user}`, spec]),
      ...config.sip.trunks.flatMap((t, i): [string, SourceConfig['agent']][] => (t.inbound?.agent === undefined ? [] : [[`sip.trunks.${i}.inbound.agent`, t.inbound.agent]])),
    ]);
    if (badAgents.length) throw new ConfigError(badAgents);
    // Keys and trust anchors are read now: a missing file stops start-up, naming its field.
    this.#stir = loadStirShaken(config.stirShaken);
    this.frameClock = new FrameClock(this.mediaClock, (err) => this.log.error({ err }, 'media tick failed'));
    const codecThreads = config.media.codecThreads ?? Math.min(8, availableParallelism() - 1);
    this.codecs = new CodecPool(codecThreads, (err, what) => this.log.error({ err }, what));
    // Media runs on the media clock; the call's idle timer (callDeps.clock) on the signalling clock.
    const runtime: MediaRuntime = { clock: this.mediaClock, frameClock: this.frameClock, codecs: this.codecs, maxJitterMs: config.media.jitterBufferMaxMs };
    this.limiter = new RateLimiter(config.limits.requestsPerSecond, config.limits.requestBurst, () => this.clock.now());
    const media = this.#media = { udpPort: config.media.udpPort, bindAddress: config.media.bindAddress ?? config.http.host, announcedAddress: config.media.announcedAddress };
    const callDeps: StartCallDeps = {
      calls: this.calls,
      runtime,
      clock: this.clock,
      log: this.log,
      idleTimeoutMs: config.idleTimeoutSeconds * 1000,
      resolveAgent: (spec, hint) => this.agents.resolve(spec, hint),
      ...(this.fleet ? { limits: this.fleet.limits } : {}),
    };
    // A WHIP caller cannot be sent a REFER: the agent's transfer() has voxgate call the target and bridge.
    this.whip = new WhipEndpoint({ ...callDeps, auth: this.auth, audit: this.audit, transports: webRtcTransports(media), iceServers: config.iceServers, transfer: (call, target, opts) => this.sipCalls.transfers.bridge(call, target, opts) });
    this.#listeners = new ListenerAuthenticator(config.listeners, this.adminToken);
    this.whep = new WhepEndpoint({
      directory: this.directory,
      calls: this.calls,
      auth: this.#listeners,
      audit: this.audit,
      clock: this.clock,
      log: this.log,
      transports: webRtcTransports(media),
      iceServers: config.iceServers,
      retryAfterSeconds: config.limits.retryAfterSeconds,
    });
    this.metrics = new GatewayMetrics(this.calls, this.codecs);
    logCalls({ calls: this.calls, audit: this.audit, log: this.log, mos: this.metrics.mos, now: () => this.clock.now() });
    const rtpHost = config.sip.rtp.bindAddress ?? config.sip.listen[0]?.host ?? '0.0.0.0';
    this.rtp = new RtpTransports({
      host: rtpHost,
      min: config.sip.rtp.portMin,
      max: config.sip.rtp.portMax,
      quarantineMs: config.sip.rtp.quarantineSeconds * 1000,
      now: () => this.clock.now(),
      announcedAddress: advertisedHost(rtpHost, config.sip.externalAddress),
      sdes: sdesKeying,
    });
    const sip = this.#buildSip(callDeps, media);
    this.sip = sip.service;
    this.sipWs = sip.ws;
    this.sipCalls = sip.calls;
    this.#router = this.#buildRouter();
  }

  static async start(config: Config, opts: GatewayOptions = {}): Promise<Gateway> {
    const log = opts.log ?? createLogger(config.log.level);
    // Development HTTPS: a certificate of this machine's own, made before anything listens.
    const devTls = config.http.devTls && !config.http.tls ? devCertificate(join(dirname(config.audit.path), 'voxgate-dev-tls')) : undefined;
    if (devTls) config = { ...config, http: { ...config.http, tls: { cert: devTls.certPath, key: devTls.keyPath } } };
    const clock = opts.clock ?? new SystemClock();
    // A cluster that cannot be reached stops start-up before anything listens.
    const cluster = config.cluster ? await openCluster(config.cluster, config.cluster.publicUrl, { now: () => clock.now(), log }) : undefined;
    let gw: Gateway;
    try {
      gw = new Gateway(config, { ...opts, log, clock }, cluster);
      gw.devTls = devTls;
    } catch (err) {
      await cluster?.close(); // a bad config must not leave a connection reconnecting for ever
      throw err;
    }
    try {
      await gw.#listen();
    } catch (err) {
      await gw.stop(); // nothing half-started is left behind (the audit file, codec threads)
      throw err;
    }
    return gw;
  }

  get url(): string {
    const { host, port, tls } = this.config.http;
    return serverUrl(this.#server, { host, port, tls: !!tls });
  }

  /** The HTTP routes and their methods. */
  routes(): { pattern: string; methods: string[] }[] {
    return this.#router.routes();
  }

  /** Where SIP over UDP, TCP and TLS listens (`sip.listen`), with the ports actually bound. */
  sipListening(): { protocol: 'UDP' | 'TCP' | 'TLS'; sentBy: string; port: number }[] {
    return this.sipTransports.flatMap((t) => {
      const port = (t as { port?: number }).port;
      return (t.protocol === 'UDP' || t.protocol === 'TCP' || t.protocol === 'TLS') && port !== undefined ? [{ protocol: t.protocol, sentBy: t.sentBy, port }] : [];
    });
  }

  /** SIP: the stack (registrar, transactions), its transports, and where dialogs become calls. */
  #buildSip(callDeps: StartCallDeps, media: MediaEndpointOptions): { service: SipService; ws: WsTransport; calls: CallRouter } {
    const { config } = this;
    const log = this.log.child({ component: 'sip' });
    const metrics = new SipMetrics(this.metrics.registry, {
      bindings: async () => (await service.registrar.all()).length,
      flows: () => service.flowCount,
      dialogs: () => calls.dialogs,
    });
    const service: SipService = new SipService({ config: config.sip, locations: this.cluster?.locations ?? new MemoryLocationStore(), clock: this.clock, log, audit: this.audit, metrics, node: this.cluster?.nodeId, nonceSecret: this.cluster?.digestSecret });
    const ws = new WsTransport({ origins: config.cors.origins, maxMessageBytes: config.sip.maxMessageBytes, pingIntervalMs: config.sip.pingIntervalSeconds * 1000, tls: !!config.http.tls, log, maxFlows: config.sip.ws.maxConnections, maxFlowsPerAddress: config.sip.ws.maxConnectionsPerAddress, setupTimeoutMs: config.sip.ws.setupTimeoutSeconds * 1000 });
    service.addTransport(ws);
    this.fleet?.relaySip(service, ws.sentBy); // users registered on other nodes, through theirs
    const maxCalls = new Map(config.sip.users.flatMap((u) => (u.maxCalls ? [[u.user, u.maxCalls] as const] : [])));
    const trunks = config.sip.trunks.length
      ? trunkRouting(config.sip, {
          trunks: new TrunkTable(config.sip.trunks, config.sip.domain, () => this.clock.now(), config.sip.nonceTtlSeconds * 1000, this.cluster?.digestSecret),
          rtp: this.rtp,
          metrics: new TrunkMetrics(this.metrics.registry, { active: () => calls.trunks?.active() ?? [], rtpPortsInUse: () => this.rtp.pool.portsInUse }),
          stack: service,
          clock: this.clock,
          log,
          audit: (entry) => service.audit(entry),
        })
      : undefined;
    const calls: CallRouter = new CallRouter(
      { ...callDeps, sip: service, log, transports: webRtcTransports(media), domain: config.sip.domain, maxCalls, stir: this.#stir },
      config.sip.agents,
      new SipProxy(service, log),
      trunks,
      () => this.draining,
    );
    service.calls = calls;
    this.calls.dialer = calls.outbound;
    this.registrations = trunks?.registrations ?? [];
    this.#trunkTable = trunks?.trunks;
    const fleet = this.fleet;
    const lease = fleet && { nodeId: fleet.cluster.nodeId, holder: (trunk: string) => fleet.leaseHolder(registrationLease(trunk)) };
    this.#trunkViews = () => (trunks ? trunkViews(trunks.trunks, trunks.registrations, lease) : []);
    return { service, ws, calls };
  }

  #buildRouter(): Router {
    const { config } = this;
    const draining = () => this.draining;
    const sessions = () => this.calls.size;
    const router = new Router({
      corsOrigins: config.cors.origins,
      maxBodyBytes: config.http.maxBodyBytes,
      limiter: this.limiter,
      baseUrl: (req) => baseUrl(req, { publicUrl: config.publicUrl, tls: !!config.http.tls, fallback: () => this.url }),
      audit: this.audit,
      log: this.log,
      onResponse: (method, status) => this.metrics.httpResponses.inc({ method, status: String(status) }),
    });
    router.use(whipPlugin({
      whip: this.whip,
      auth: this.auth,
      iceServers: config.iceServers,
      clock: this.clock,
      draining,
      sessions,
      maxSessions: config.limits.maxSessions,
      nextRedirect: () => this.#nextRedirect(),
      retryAfterSeconds: config.limits.retryAfterSeconds,
      audit: this.audit,
      ...(this.fleet ? { elsewhere: (op, id, req) => this.fleet!.forwardIfElsewhere(op, id, req) } : {}),
    }));
    const holderUrl = this.fleet ? (id: string) => this.fleet!.holderUrl(id) : undefined;
    router.use(whepPlugin({ whep: this.whep, ...(holderUrl ? { holderUrl } : {}) }));
    router.use(ssePlugin({ whep: this.whep }));
    router.use(healthPlugin({ draining, sessions }));
    router.use(metricsPlugin({ registry: this.metrics.registry }));
    router.use(adminPlugin({
      adminToken: this.adminToken,
      devToken: this.devToken,
      calls: () => this.calls.values(),
      registrations: () => this.sip.registrar.all(),
      clock: this.clock,
      call: (id) => this.calls.get(id),
      history: this.history,
      listeners: this.#listeners,
      audit: this.audit,
      log: this.log,
      ...(this.cluster ? { nodeId: this.cluster.nodeId, fleet: () => this.directory.list(), record: (id: string) => this.directory.lookup(id) } : {}),
      ...(this.fleet ? { elsewhere: (op: 'session.delete' | 'session.transfer', id: string, req: EndpointRequest) => this.fleet!.forwardIfElsewhere(op, id, req) } : {}),
    }));
    router.use(consolePlugin({ adminToken: this.adminToken, monitor: this.monitor, history: this.history, ...(this.cluster ? { nodeId: this.cluster.nodeId, fleet: () => this.directory.list() } : {}) }));
    router.use(callsPlugin({
      adminToken: this.adminToken,
      authenticateSource: (authorization) => this.auth.authenticate(authorization),
      calls: this.sipCalls.outbound,
      trunks: () => this.#trunkViews(),
      audit: this.audit,
      log: this.log,
    }));
    router.use(pagesPlugin(holderUrl ? { holderUrl } : {}));
    return router;
  }

  #nextRedirect(): string | undefined {
    if (this.config.redirect?.leastLoaded) return this.fleet?.redirectTarget();
    const targets = this.config.redirect?.targets;
    if (!targets) return undefined;
    return targets[this.#redirectNext++ % targets.length];
  }

  async #listen(): Promise<void> {
    const { tls, port, host } = this.config.http;
    const pem = tls && { cert: readConfigFile(tls.cert, 'http.tls.cert', 'the certificate'), key: readConfigFile(tls.key, 'http.tls.key', 'the private key') };
    this.#mediaPort = await holdMediaPort(this.#media);
    const sipUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): boolean => {
      if (this.draining) return false;
      this.sipWs.handleUpgrade(req, socket, head);
      return true;
    };
    this.#server = createServer(this.#router.listener, {
      tls: pem,
      upgrades: {
        // RFC 7118: SIP over WebSocket; refused (404) once draining. Libre-based clients (baresip)
        // always connect to `/`: the `sip` subprotocol decides there too.
        '/sip': sipUpgrade,
        '/': sipUpgrade,
      },
    });
    try {
      await listen(this.#server, port, host);
    } catch (err) {
      throw portProblem('http.port', 'TCP', host, port, err, '--http-port');
    }
    this.sipTransports = await openSipListeners(this.config.sip, this.log.child({ component: 'sip' }));
    for (const t of this.sipTransports) this.sip.addTransport(t);
    if (this.registrations.length && this.sipCalls.trunks) await resolveCarriers(this.#trunkTable!, this.log);
    await this.fleet?.join();
    if (this.fleet) await this.fleet.leaseRegistrations(this.registrations); // one node registers each
    else for (const r of this.registrations) r.start();
  }

  /** Drains: new sessions get 503, live ones end with `shutdown`, then the server closes. */
  async stop(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.fleet?.draining();
    this.sipCalls.cancelOutbound();
    this.calls.closeAll('shutdown');
    const peersClosed = peersSettled(); // their `ended` notices go before DTLS closes
    // Un-REGISTER (Expires: 0) while the transports are still open; each waits at most 2 s.
    await Promise.all(this.registrations.map((r) => r.stop()));
    // Their BYEs go out and are answered (or 2 s pass) before the SIP transports close.
    await this.sip.drain(2000);
    await this.sipWs.goAway(1000); // close frames; the flows' last audit records are written
    this.sip.close();
    this.rtp.close();
    await peersClosed;
    this.#mediaPort?.close();
    this.monitor.close(); // console streams end: an open one would hold the server's close
    if (this.#server) await close(this.#server);
    this.audit.close();
    this.history.close();
    await this.codecs.stop();
    this.agents.close();
    if (this.fleet) await this.fleet.leave();
    else {
      await this.directory.close();
      await this.events.close();
    }
  }
}
