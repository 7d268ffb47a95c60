import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import type { Duplex } from 'node:stream';
import { AuditLog } from '../audit/audit-log.js';
import { SourceAuthenticator } from '../auth/source-auth.js';
import { CallTable } from '../call/call-table.js';
import { SystemClock, type Clock } from '../core/clock.js';
import { ConfigError, type Config, type SourceConfig } from '../core/config.js';
import { TypedEmitter } from '../core/events.js';
import { newToken } from '../core/ids.js';
import { createLogger, type Logger } from '../core/logger.js';
import { WhipEndpoint } from '../whip/whip-endpoint.js';
import { WhepEndpoint } from '../whep/whep-endpoint.js';
import { ListenerAuthenticator } from '../auth/listener-auth.js';
import { AgentRegistry, type AgentFactory } from '../agent/registry.js';
import { CodecPool } from '../audio/codec-pool.js';
import type { MediaRuntime } from '../media/endpoint.js';
import type { StartCallDeps } from '../call/start-call.js';
import type { SessionDirectory } from '../call/session-directory.js';
import type { EventBus } from '../call/session-events.js';
import { MemorySessionDirectory } from '../cluster/memory/session-directory.js';
import { MemoryEventBus } from '../cluster/memory/event-bus.js';
import { FrameClock } from '../audio/frame-clock.js';
import { GatewayMetrics } from './metrics.js';
import { RateLimiter } from './rate-limit.js';
import { handleRequest } from './routes.js';
import { SipService } from '../sip/sip-service.js';
import { SipMetrics } from '../sip/sip-metrics.js';
import { AgentCalls } from '../sip/agent-calls.js';
import { Proxy as SipProxy } from '../sip/proxy.js';
import { CallRouter } from '../sip/call-router.js';

export interface GatewayOptions {
  clock?: Clock;
  log?: Logger;
  /** In-process agents by name, for sources to pick with `agent: "<name>"` (the TypeScript Agent API). */
  agents?: Record<string, AgentFactory>;
}

/**
 * One voxgate node: the HTTP(S) server, the media endpoint, the call table and the audit log.
 * `start()` needs no configuration at all; `stop()` drains (refuses new sessions, ends the
 * live ones with reason `shutdown`, closes the server).
 */
export class Gateway {
  readonly clock: Clock;
  readonly log: Logger;
  readonly calls: CallTable;
  /** Every session by id, whatever its kind (WHEP finds calls here). */
  readonly directory: SessionDirectory;
  /** created / connected / ended, as serialisable events. */
  readonly events: EventBus;
  readonly audit: AuditLog;
  readonly auth: SourceAuthenticator;
  readonly whip: WhipEndpoint;
  readonly whep: WhepEndpoint;
  readonly metrics: GatewayMetrics;
  readonly limiter: RateLimiter;
  readonly agents: AgentRegistry;
  readonly frameClock: FrameClock;
  /** Where sessions' audio is decoded and encoded. */
  readonly codecs: CodecPool;
  /** SIP over WebSocket (RFC 7118) on `/sip`. */
  readonly sip: SipService;
  readonly sipAgentCalls: AgentCalls;
  /** Printed at start-up when no source is configured. */
  readonly devToken: string | undefined;
  readonly adminToken: string;
  draining = false;
  #server: Server | undefined;
  #redirectNext = 0;
  readonly #poor = new Set<string>();

  private constructor(
    readonly config: Config,
    opts: GatewayOptions,
  ) {
    this.clock = opts.clock ?? new SystemClock();
    this.log = opts.log ?? createLogger(config.log.level);
    TypedEmitter.onListenerError = (event, err) => this.log.error({ err, event }, 'event listener threw');
    let sources: SourceConfig[] = config.sources;
    if (sources.length === 0 && !config.auth.jwtSecret) {
      this.devToken = newToken();
      sources = [{ name: 'dev', kind: 'browser', token: this.devToken }];
    }
    this.adminToken = config.admin.token ?? newToken();
    this.auth = new SourceAuthenticator(sources, config.auth.jwtSecret, this.clock);
    this.directory = new MemorySessionDirectory({ now: () => this.clock.now() });
    this.events = new MemoryEventBus({ onError: (err) => this.log.error({ err }, 'session event subscriber threw') });
    this.calls = new CallTable({
      ...config.limits,
      directory: this.directory,
      events: this.events,
      now: () => this.clock.now(),
      onError: (err, what) => this.log.error({ err }, `${what} failed`),
    });
    this.audit = new AuditLog(config.audit.path, this.clock);
    this.agents = new AgentRegistry(config.defaultAgent, this.log);
    for (const [name, factory] of Object.entries(opts.agents ?? {})) this.agents.register(name, factory);
    // Fail at start-up, naming the source, rather than on its first call.
    const badAgents = sources.flatMap((s, i) => {
      try {
        this.agents.resolve(s.agent);
        return [];
      } catch (err) {
        return [`sources.${i}.agent: ${(err as Error).message}`];
      }
    });
    for (const [user, spec] of Object.entries(config.sip.agents)) {
      try {
        this.agents.resolve(spec);
      } catch (err) {
        badAgents.push(`sip.agents.${user}: ${(err as Error).message}`);
      }
    }
    if (badAgents.length) throw new ConfigError(badAgents);
    this.frameClock = new FrameClock(this.clock, (err) => this.log.error({ err }, 'media tick failed'));
    const codecThreads = config.media.codecThreads ?? Math.min(8, availableParallelism() - 1);
    this.codecs = new CodecPool(codecThreads, (err, what) => this.log.error({ err }, what));
    const runtime: MediaRuntime = { clock: this.clock, frameClock: this.frameClock, codecs: this.codecs, maxJitterMs: config.media.jitterBufferMaxMs };
    this.limiter = new RateLimiter(config.limits.requestsPerSecond, config.limits.requestBurst, () => this.clock.now());
    const media = { udpPort: config.media.udpPort, bindAddress: config.media.bindAddress ?? config.http.host, announcedAddress: config.media.announcedAddress };
    const callDeps: StartCallDeps = {
      calls: this.calls,
      runtime,
      clock: this.clock,
      log: this.log,
      idleTimeoutMs: config.idleTimeoutSeconds * 1000,
      resolveAgent: (spec) => this.agents.resolve(spec),
    };
    this.whip = new WhipEndpoint({ ...callDeps, auth: this.auth, audit: this.audit, media, iceServers: config.iceServers });
    this.calls.on('created', (call) => {
      call.on('quality', (q) => {
        this.metrics.mos.observe(q.mos);
        // agent-protocols.md alert thresholds; logged when a call crosses them, not every 5 s.
        const poor = q.mos < 3.5 || q.lossPercent > 3 || q.jitterMs > 30 || (q.rttMs ?? 0) > 400;
        if (poor !== this.#poor.has(call.id)) {
          if (poor) this.#poor.add(call.id);
          else this.#poor.delete(call.id);
          const fields = { session: call.id, source: call.source.name, ...q };
          if (poor) this.log.warn(fields, 'call quality is poor');
          else this.log.info(fields, 'call quality recovered');
        }
      });
    });
    this.whep = new WhepEndpoint({
      directory: this.directory,
      calls: this.calls,
      auth: new ListenerAuthenticator(config.listeners, this.adminToken),
      audit: this.audit,
      clock: this.clock,
      log: this.log,
      media,
      iceServers: config.iceServers,
      retryAfterSeconds: config.limits.retryAfterSeconds,
    });
    this.metrics = new GatewayMetrics(this.calls, this.codecs);
    this.calls.on('ended', (call, reason) => {
      this.#poor.delete(call.id);
      const media = call.totals().packetsReceived;
      this.log.info({ session: call.id, source: call.source.name, reason, packets: media }, 'session ended');
      try {
        this.audit.write({
          action: 'session.ended',
          outcome: reason === 'deleted' || reason === 'shutdown' ? 'ok' : 'error',
          reason,
          source: call.source.name,
          sourceKind: call.source.kind,
          session: call.id,
          durationMs: this.clock.now() - call.createdAt,
          packets: media,
        });
      } catch (err) {
        this.log.error({ err, session: call.id }, 'audit write failed for a session end');
      }
    });
    let sipDialogs = () => 0;
    const sipMetrics = new SipMetrics(this.metrics.registry, {
      bindings: () => this.sip.registrar.all().length,
      flows: () => this.sip.transport.flows.size,
      dialogs: () => sipDialogs(),
    });
    this.sip = new SipService({ config: config.sip, origins: config.cors.origins, tls: !!config.http.tls, clock: this.clock, log: this.log.child({ component: 'sip' }), audit: this.audit, metrics: sipMetrics });
    const agentCalls = new AgentCalls(
      { ...callDeps, sip: this.sip, log: this.log.child({ component: 'sip' }), media, domain: config.sip.domain },
      config.sip.agents,
    );
    this.sipAgentCalls = agentCalls;
    const proxy = new SipProxy(this.sip, this.log.child({ component: 'sip' }));
    sipDialogs = () => agentCalls.size + proxy.size;
    this.sip.calls = new CallRouter(this.sip, agentCalls, proxy, config.sip.domain);
    this.calls.on('connected', (call) => this.log.info({ session: call.id, source: call.source.name }, 'session connected'));
  }

  static async start(config: Config, opts: GatewayOptions = {}): Promise<Gateway> {
    const gw = new Gateway(config, opts);
    try {
      await gw.#listen();
    } catch (err) {
      await gw.stop(); // nothing half-started is left behind (the audit file, codec threads)
      throw err;
    }
    return gw;
  }

  get url(): string {
    const addr = this.#server?.address() as AddressInfo | null;
    const host = this.config.http.host.includes(':') ? `[${this.config.http.host}]` : this.config.http.host;
    return `${this.config.http.tls ? 'https' : 'http'}://${host === '0.0.0.0' ? '127.0.0.1' : host}:${addr?.port ?? this.config.http.port}`;
  }

  /** Absolute base URL for Location headers: publicUrl, else what the client called us by. */
  baseUrl(req: IncomingMessage): string {
    if (this.config.publicUrl) return this.config.publicUrl.replace(/\/+$/, '');
    const host = req.headers.host;
    if (host && /^[A-Za-z0-9.\-:[\]]{1,255}$/.test(host)) return `${this.config.http.tls ? 'https' : 'http'}://${host}`;
    return this.url;
  }

  nextRedirect(): string | undefined {
    const targets = this.config.redirect?.targets;
    if (!targets) return undefined;
    return targets[this.#redirectNext++ % targets.length];
  }

  async #listen(): Promise<void> {
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      handleRequest(this, req, res).catch((err: unknown) => {
        this.log.error({ err }, 'request handler failed');
        if (!res.headersSent) {
          res.writeHead(500, { 'Content-Type': 'application/problem+json' });
          res.end(JSON.stringify({ type: 'urn:voxgate:error:VG_INTERNAL', title: 'Internal error', status: 500 }));
        } else res.destroy();
      });
    };
    const { tls } = this.config.http;
    const server = tls
      ? createHttpsServer({ cert: readFileSync(tls.cert), key: readFileSync(tls.key) }, handler)
      : createHttpServer(handler);
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const path = (req.url ?? '').split('?')[0];
      if (path === '/sip' && !this.draining) return this.sip.transport.handleUpgrade(req, socket, head);
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    });
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    server.keepAliveTimeout = 5_000;
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.http.port, this.config.http.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  /** Drains: new sessions get 503, live ones end with `shutdown`, then the server closes. */
  async stop(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.calls.closeAll('shutdown');
    this.sip.close();
    const server = this.#server;
    if (server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
    }
    this.audit.close();
    await this.codecs.stop();
    this.agents.close();
    await this.directory.close();
    await this.events.close();
  }
}
