/**
 * Test support (imported by *.test.ts only): inbound SIP trunk calls on a fake UDP transport
 * and a fake clock, with real plain-RTP legs (sockets on 127.0.0.1, a small random port range),
 * and carriers that send INVITEs from the address a test chooses (the trunk ACL reads it).
 */
import { trunkRouting } from '../sip-calls/trunk/setup.js';
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import type { Agent, AgentSession } from '../agent/agent.js';
import { CodecPool } from '../audio/codec-pool.js';
import { FrameClock } from '../audio/frame-clock.js';
import { CallTable } from '../call/call-table.js';
import { parseConfig, type ConfigInput, type SourceConfig } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import type { MediaRuntime } from '../media/endpoint.js';
import { loadStirShaken } from '../sip/identity/stir.js';
import { CallRouter } from '../sip-calls/router.js';
import type { RoutingRequest } from '../sip-calls/trunk/routing-webhook.js';
import { sdesKeying } from '../sip-calls/trunk/sdes.js';
import { TrunkMetrics } from '../sip-calls/trunk/trunk-metrics.js';
import { TrunkTable } from '../sip-calls/trunk/trunks.js';
import { header, headerList, type SipHeader, type SipRequest, type SipResponse } from '../sip/message.js';
import { Proxy as SipProxy } from '../sip/proxy.js';
import type { FakeFlow } from '../sip/transport/fake.js';
import { FakeTransportFactory } from '../transport/fake.js';
import { RtpTransports } from '../transport/rtp-udp/factory.js';
import { digestAnswer, FarEnd, settle, testStack, type TestStack } from './sip.js';
import { TestAgent } from './sip-calls.js';

/** One `sip.trunks` entry as a config file writes it (before defaults). */
export type TrunkInput = NonNullable<NonNullable<ConfigInput['sip']>['trunks']>[number];

/** The number the carriers call: every test trunk owns it unless it says otherwise. */
export const TRUNK_NUMBER = '+15551230000';
/** Who the carriers call from (their From and P-Asserted-Identity by default). */
export const CALLER_NUMBER = '+15557654321';

/**
 * An agent that records what it gets (as TestAgent) and whose attach() can be held: while
 * `holding`, attach waits for release(), as an agent still opening its model's socket would,
 * so the caller hears ringing, can CANCEL, or can outlast the ring timeout.
 */
export class HeldAgent implements Agent {
  readonly name: string;
  readonly sampleRate = 8000;
  holding = false;
  readonly #recorder = new TestAgent(8000);
  readonly #waiting: (() => void)[] = [];

  constructor(name = 'test') {
    this.name = name;
  }

  attach(session: AgentSession): Promise<void> | void {
    this.#recorder.attach(session);
    if (this.holding) return new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  get sessions(): TestAgent['sessions'] {
    return this.#recorder.sessions;
  }

  get last(): TestAgent['sessions'][number] {
    return this.#recorder.last;
  }

  /** Attaches waiting now.  */
  get held(): number {
    return this.#waiting.length;
  }

  /** The held attaches complete, and later ones are not held. */
  release(): void {
    this.holding = false;
    for (const go of this.#waiting.splice(0)) go();
  }
}

export interface CarrierInviteOptions {
  /** The called number (To and Request-URI): TRUNK_NUMBER unless given. */
  to?: string;
  /** The Request-URI: `sip:<to>@voxgate.test;user=phone` unless given. */
  uri?: string;
  /** The From value without its tag: `<sip:CALLER_NUMBER@carrier.example;user=phone>` unless given. */
  from?: string;
  /** A P-Asserted-Identity value (none unless given). */
  pai?: string;
  /** More headers (X-*, Privacy, Session-Expires, Supported...). */
  headers?: SipHeader[];
  /** The SDP body: a PCMU offer on this carrier's RTP socket unless given. */
  sdp?: string;
  /** A Call-ID (a new one unless given). */
  callId?: string;
  /** The Allow header; `null` leaves it out. */
  allow?: string | null;
}

/** A PCMU (and telephone-event) RTP/AVP offer to receive on 127.0.0.1:`port`, as a carrier's SBC sends it. */
export function pcmuOffer(port: number): string {
  return [
    'v=0',
    'o=carrier 1001 1 IN IP4 127.0.0.1',
    's=-',
    'c=IN IP4 127.0.0.1',
    't=0 0',
    `m=audio ${port} RTP/AVP 0 101`,
    'a=rtpmap:0 PCMU/8000',
    'a=rtpmap:101 telephone-event/8000',
    'a=fmtp:101 0-16',
    'a=ptime:20',
    'a=sendrecv',
    '',
  ].join('\r\n');
}

/** An offer of G.729 only (a codec voxgate does not have). */
export function g729Offer(port: number): string {
  return ['v=0', 'o=carrier 1002 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', `m=audio ${port} RTP/AVP 18`, 'a=rtpmap:18 G729/8000', 'a=sendrecv', ''].join('\r\n');
}

/**
 * A carrier's SBC on a UDP flow from the address the test gave: it sends INVITEs with a PCMU
 * offer for a real UDP socket of its own, answers digest challenges, ACKs and CANCELs.
 */
export class Carrier extends FarEnd {
  constructor(
    flow: FakeFlow,
    /** Where its RTP arrives (bound on 127.0.0.1). */
    readonly rtp: Socket,
    number = CALLER_NUMBER,
  ) {
    super(flow, number, flow.remote);
  }

  /** An SBC's Contact: its own address, no transport parameter (UDP). */
  override get contact(): string {
    return `<sip:${this.user}@${this.host}>`;
  }

  get rtpPort(): number {
    return this.rtp.address().port;
  }

  /** Sends an INVITE for the trunk's number; returns it. */
  invite(opts: CarrierInviteOptions = {}): SipRequest {
    const to = opts.to ?? TRUNK_NUMBER;
    const uri = opts.uri ?? `sip:${to}@voxgate.test;user=phone`;
    return this.send(
      'INVITE',
      uri,
      [
        { name: 'From', value: `${opts.from ?? `<sip:${this.user}@carrier.example;user=phone>`};tag=${this.tag}` },
        { name: 'To', value: `<${uri}>` },
        { name: 'Call-ID', value: opts.callId ?? `trunk-${this.tag}-${Math.random().toString(36).slice(2, 10)}` },
        { name: 'Contact', value: this.contact },
        ...(opts.allow === null ? [] : [{ name: 'Allow', value: opts.allow ?? 'INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE' }]),
        ...(opts.pai ? [{ name: 'P-Asserted-Identity', value: opts.pai }] : []),
        ...(opts.headers ?? []),
        { name: 'Content-Type', value: 'application/sdp' },
      ],
      opts.sdp ?? pcmuOffer(this.rtpPort),
    );
  }

  /**
   * The INVITE again after its 407 (the 407 ACKed first, §17.1.1.3): same Call-ID, From and To,
   * the next CSeq, and a Proxy-Authorization answering the MD5 challenge.
   */
  authorize(invite: SipRequest, challenge: SipResponse, user: string, password: string): SipRequest {
    this.ackFailure(invite, challenge);
    const md5 = headerList(challenge, 'Proxy-Authenticate').find((v) => /algorithm=MD5/i.test(v));
    if (!md5) throw new Error(`no MD5 Proxy-Authenticate in the ${challenge.status}`);
    const headers = invite.headers.filter((h) => !['Via', 'Max-Forwards', 'CSeq', 'Content-Length'].includes(h.name));
    return this.send('INVITE', invite.uri, [...headers, { name: 'Proxy-Authorization', value: digestAnswer(md5, user, password, 'INVITE', invite.uri) }], invite.body.toString('utf8'));
  }

  /** The responses it got since the last look (after the async setup has run). */
  async responses(): Promise<SipResponse[]> {
    await settle();
    return this.take().filter((m): m is SipResponse => m.kind === 'response');
  }

  /** Their status codes. */
  async statuses(): Promise<number[]> {
    return (await this.responses()).map((r) => r.status);
  }

  /** ACK of our 2xx (§13.2.2.4). */
  ack(invite: SipRequest, ok: SipResponse): void {
    this.callerRequest('ACK', invite, ok);
  }
}

/** An audit record as it is in the file. */
export type AuditRecord = Record<string, unknown> & { action: string };

export interface TrunkHarnessOptions {
  trunks: TrunkInput[];
  /** The agent a call gets unless its spec names one of `agents`: a HeldAgent unless given. */
  agent?: Agent;
  /** Agents by the name a spec (`inbound.agent`, `sip.agents`, the webhook's reply) gives, as GatewayOptions.agents. */
  agents?: Record<string, Agent>;
  /** `sip.agents`: user parts and numbers that pick an agent spec. */
  sipAgents?: Record<string, NonNullable<SourceConfig['agent']>>;
  /** `sip.users` (their user parts take the users' path, not a trunk's). */
  users?: { user: string; password: string }[];
  maxSessions?: number;
  /** The calls' idle timeout (no media from the carrier); long by default, as the fake clock runs far. */
  idleTimeoutMs?: number;
  /** The top-level `stirShaken` config (its signer and verifier are loaded for the router). */
  stirShaken?: ConfigInput['stirShaken'];
}

export interface TrunkHarness<A extends Agent> extends TestStack {
  readonly agent: A;
  readonly router: CallRouter;
  readonly calls: CallTable;
  readonly runtime: MediaRuntime;
  readonly rtp: RtpTransports;
  /** `sip.rtp` as configured: the ports answers may name. */
  readonly rtpRange: { min: number; max: number };
  readonly trunks: TrunkTable;
  readonly metrics: TrunkMetrics;
  readonly registry: Registry;
  /** How each call ended, by session id. */
  readonly ends: Map<string, string>;
  /** A carrier on a new UDP flow from `remote` (`192.0.2.10:5060`), with its own RTP socket. */
  carrier(remote: string, number?: string): Promise<Carrier>;
  /** The audit file's records (of one action, if given). */
  audits(action?: string): AuditRecord[];
  /** voxgate_sip_trunk_calls_total{direction="inbound"} by `trunk/outcome`. */
  inboundCounts(): Promise<Record<string, number>>;
  close(): void;
}

/**
 * The SIP call layer with `sip.trunks` (parsed by parseConfig, with a UDP listener entry that
 * is only validated), a UDP FakeSipTransport, a real RtpTransports on 127.0.0.1, the trunk
 * table and metrics on a fresh registry, and the CallRouter that routes trunk INVITEs.
 */
export function trunkHarness(opts: TrunkHarnessOptions & { agent?: undefined }): TrunkHarness<HeldAgent>;
export function trunkHarness<A extends Agent>(opts: TrunkHarnessOptions & { agent: A }): TrunkHarness<A>;
export function trunkHarness(opts: TrunkHarnessOptions): TrunkHarness<Agent> {
  // Even, below the default sip.rtp range (20000-29999) and the kernel's ephemeral ports (32768+,
  // which every port-0 socket of a parallel test file or benchmark may take), so files rarely meet.
  const portMin = 12_000 + 2 * Math.floor(Math.random() * 3_900);
  const sipInput = {
    domain: 'voxgate.test',
    users: opts.users ?? [{ user: 'alice', password: 'alice-secret' }],
    agents: opts.sipAgents ?? {},
    listen: [{ transport: 'udp' as const, host: '127.0.0.1', port: 0 }],
    rtp: { portMin, portMax: portMin + 19, bindAddress: '127.0.0.1', quarantineSeconds: 0 },
    trunks: opts.trunks,
  };
  const full = parseConfig({ sip: sipInput, stirShaken: opts.stirShaken });
  const config = full.sip;
  const stack = testStack({ protocol: 'UDP', sip: sipInput, stirShaken: opts.stirShaken });
  const { clock, sip } = stack;
  const log = createLogger(process.env.VOXGATE_TEST_LOG ? 'debug' : 'silent');
  const calls = new CallTable({ maxSessions: opts.maxSessions ?? 10, retryAfterSeconds: 5, now: () => clock.now() });
  const codecs = new CodecPool(0);
  const runtime: MediaRuntime = { clock, frameClock: new FrameClock(clock, (err) => { throw err; }), codecs, maxJitterMs: 200 };
  const agent = opts.agent ?? new HeldAgent();
  const agents = opts.agents ?? {};
  const rtp = new RtpTransports({
    host: config.rtp.bindAddress ?? '127.0.0.1',
    min: config.rtp.portMin,
    max: config.rtp.portMax,
    quarantineMs: config.rtp.quarantineSeconds * 1000,
    now: () => clock.now(),
    announcedAddress: '127.0.0.1',
    sdes: sdesKeying,
  });
  const registry = new Registry();
  const trunks = new TrunkTable(config.trunks, config.domain, () => clock.now(), config.nonceTtlSeconds * 1000);
  const metrics = new TrunkMetrics(registry, { active: () => router.trunks?.active() ?? [], rtpPortsInUse: () => rtp.pool.portsInUse });
  const router: CallRouter = new CallRouter(
    {
      sip,
      calls,
      runtime,
      clock,
      log,
      idleTimeoutMs: opts.idleTimeoutMs ?? 3_600_000,
      resolveAgent: (spec) => (typeof spec === 'string' && Object.hasOwn(agents, spec) ? agents[spec]! : agent),
      // Trunk calls are plain RTP; WebRTC transports are only for SIP over WebSocket.
      transports: new FakeTransportFactory(),
      domain: config.domain,
      stir: loadStirShaken(full.stirShaken),
    },
    config.agents,
    new SipProxy(sip, log),
    trunkRouting(config, { trunks, rtp, metrics, stack: sip, clock, log, audit: (e) => sip.audit(e) }),
  );
  sip.calls = router;
  const ends = new Map<string, string>();
  calls.on('ended', (call, reason) => ends.set(call.id, reason));
  const sockets: Socket[] = [];
  return {
    ...stack,
    agent,
    router,
    calls,
    runtime,
    rtp,
    rtpRange: { min: config.rtp.portMin, max: config.rtp.portMax },
    trunks,
    metrics,
    registry,
    ends,
    async carrier(remote, number) {
      const socket = createSocket('udp4');
      sockets.push(socket);
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(0, '127.0.0.1', () => {
          socket.off('error', reject);
          resolve();
        });
      });
      const flow = stack.transport.connect(remote);
      // FarEnd writes WebSocket Vias; this far end is on UDP, and its messages say so.
      const deliver = flow.deliver.bind(flow);
      flow.deliver = (text) => deliver(text.toString().replace(/^Via: SIP\/2\.0\/WS /gm, 'Via: SIP/2.0/UDP '));
      return new Carrier(flow, socket, number);
    },
    audits(action) {
      const lines = readFileSync(stack.auditPath, 'utf8').split('\n').filter((l) => l.trim());
      const records = lines.map((l) => JSON.parse(l) as AuditRecord);
      return action ? records.filter((r) => r.action === action) : records;
    },
    async inboundCounts() {
      const out: Record<string, number> = {};
      for (const v of (await metrics.calls.get()).values) {
        if (v.labels.direction === 'inbound') out[`${v.labels.trunk}/${v.labels.outcome}`] = v.value;
      }
      return out;
    },
    close() {
      for (const c of [...calls.values()]) c.close('shutdown');
      rtp.close();
      for (const s of sockets.splice(0)) s.close();
      stack.close();
      void codecs.stop();
    },
  };
}

/** What a routing server does with one request: a JSON reply, or `hang` (never answers). */
export type RoutingReply = { status?: number; body: unknown } | 'hang';

/** A routing webhook receiver on 127.0.0.1 (a real node:http server), for a trunk's `inbound.webhook`. */
export interface RoutingServer {
  readonly url: string;
  readonly secret: string;
  /** What voxgate POSTed, parsed, in order. */
  readonly requests: RoutingRequest[];
  /** Requests held by `hang`, still open. */
  readonly hanging: ServerResponse[];
  close(): Promise<void>;
}

export async function routingServer(reply: (req: RoutingRequest) => RoutingReply): Promise<RoutingServer> {
  const requests: RoutingRequest[] = [];
  const hanging: ServerResponse[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as RoutingRequest;
      requests.push(body);
      const r = reply(body);
      if (r === 'hang') return void hanging.push(res);
      res.writeHead(r.status ?? 200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(r.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/route`,
    secret: 'routing-secret-0123456789',
    requests,
    hanging,
    async close() {
      for (const res of hanging.splice(0)) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Waits (real time, for what runs outside the fake clock: the routing webhook's HTTP) until
 * `ready()` holds, letting the stack's promises run between looks; fails after `ms`.
 */
export async function until(ready: () => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
    await settle();
  }
}

export { header, headerList, settle };
