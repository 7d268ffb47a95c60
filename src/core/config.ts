import { readFileSync } from 'node:fs';
import { z } from 'zod';

import { CODECS } from './config-codecs.js';
import { E164, sipListenSchema, sipSchema, trunkSchema } from './config-sip.js';

export type { CodecName } from './config-codecs.js';
export { isCidr, type TrunkOutboundConfig } from './config-sip.js';

const iceServerSchema = z
  .object({
    urls: z.union([z.string(), z.array(z.string()).min(1)]),
    username: z.string().optional(),
    credential: z.string().optional(),
    /** TURN REST API shared secret (coturn `static-auth-secret`): credentials are minted per session. */
    secret: z.string().min(1).optional(),
    ttlSeconds: z.number().int().positive().default(86400),
  })
  .strict()
  .refine((s) => [s.urls].flat().every((u) => /^(stun|stuns|turn|turns):[^\s<>"]+$/.test(u)), {
    message: 'each url must be a stun:, stuns:, turn: or turns: URI without spaces, quotes or angle brackets',
    path: ['urls'],
  });

const sourceSchema = z
  .object({
    name: z.string().min(1).regex(/^[A-Za-z0-9._-]+$/, 'use letters, digits, dot, dash and underscore'),
    kind: z.string().min(1).default('browser'),
    token: z.string().min(16, 'tokens must be at least 16 characters'),
    agent: z.union([z.string(), z.record(z.string(), z.unknown())]).optional(),
    codecs: z.array(z.enum(CODECS)).min(1).optional(),
    maxSessions: z.number().int().positive().optional(),
    /** This source's token may place calls (`POST /api/calls`). */
    outbound: z.boolean().optional(),
  })
  .strict();

const listenerSchema = z
  .object({
    name: z.string().min(1).regex(/^[A-Za-z0-9._-]+$/, 'use letters, digits, dot, dash and underscore'),
    token: z.string().min(16, 'tokens must be at least 16 characters'),
    /** Session ids this listener may hear; omitted: any (subject to `sources`). */
    sessions: z.array(z.string()).optional(),
    /** Source names whose sessions this listener may hear; omitted: any. */
    sources: z.array(z.string()).optional(),
  })
  .strict();

export const configSchema = z
  .object({
    http: z
      .object({
        host: z.string().default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(8080),
        tls: z.object({ cert: z.string(), key: z.string() }).strict().optional(),
        /** HTTPS with a self-signed certificate for this machine, made once and reused (development; `--dev-tls`). */
        devTls: z.boolean().default(false),
        /** Largest accepted request body (an SDP offer is a few KB). */
        maxBodyBytes: z.number().int().positive().default(64 * 1024),
      })
      .strict()
      .prefault({}),
    /** Absolute base URL clients reach us at; Location headers are built from it. */
    publicUrl: z.url().optional(),
    media: z
      .object({
        udpPort: z.number().int().min(1).max(65535).default(50000),
        /** Address the media socket binds to; defaults to http.host. */
        bindAddress: z.string().optional(),
        /** Address written into our ICE candidates when behind NAT. */
        announcedAddress: z.string().optional(),
        /** The jitter buffer's cap: it adapts between 20 ms and this. */
        jitterBufferMaxMs: z.number().int().min(40).max(1000).default(200),
        /**
         * Threads that decode and encode sessions' audio, off the thread that receives packets
         * and runs the agents. Default: one per core but one (none on a single core); 0: inline.
         */
        codecThreads: z.number().int().min(0).max(64).optional(),
      })
      .strict()
      .prefault({}),
    iceServers: z.array(iceServerSchema).default([]),
    sources: z.array(sourceSchema).default([]),
    /** WHEP listeners: who may hear which sessions. The admin token may hear all. */
    listeners: z.array(listenerSchema).default([]),
    auth: z
      .object({
        /** HS256 secret for signed source tokens (JWT with `exp`, `sub` = source name). */
        jwtSecret: z.string().min(32, 'use at least 32 characters').optional(),
      })
      .strict()
      .prefault({}),
    admin: z
      .object({
        token: z.string().min(16).optional(),
        /** Ended calls `/api/history` (and the console) keep in memory, newest first. */
        recentCalls: z.number().int().min(0).max(100_000).default(500),
      })
      .strict()
      .prefault({}),
    idleTimeoutSeconds: z.number().positive().default(60),
    /** The agent for sources that name none. */
    defaultAgent: z.string().default('demo'),
    limits: z
      .object({
        maxSessions: z.number().int().positive().default(1000),
        /** Mutating requests (POST, PATCH, DELETE) per second per client address. */
        requestsPerSecond: z.number().positive().default(50),
        requestBurst: z.number().int().positive().default(100),
        retryAfterSeconds: z.number().int().positive().default(5),
      })
      .strict()
      .prefault({}),
    cors: z.object({ origins: z.array(z.string()).default(['*']) }).strict().prefault({}),
    sip: sipSchema,
    audit: z
      .object({
        path: z.string().default('voxgate-audit.jsonl'),
        /** Call-detail records, a JSON line per ended call; default `voxgate-cdr.jsonl` beside `path`; false for none. */
        cdrPath: z.union([z.string(), z.literal(false)]).optional(),
      })
      .strict()
      .prefault({}),
    /**
     * Several nodes on NATS JetStream (issue 17): sessions, registrations and events shared through
     * the server; absent, one node keeps everything in memory, as before.
     */
    cluster: z
      .object({
        /** This node's name in the fleet (KV keys, event subjects, /api/sessions). */
        nodeId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, - and _ (at most 64): it is part of NATS subjects and KV keys'),
        nats: z
          .object({
            servers: z.array(z.string().regex(/^(nats|tls):\/\/[^\s]+$|^[^\s:/]+:\d+$/, 'nats://host:port, tls://host:port or host:port')).min(1),
            user: z.string().optional(),
            password: z.string().optional(),
            token: z.string().optional(),
            /** PEM file paths: the CA that signed the servers' certificates; a client certificate and key for mutual TLS. */
            tls: z.object({ ca: z.string().optional(), cert: z.string().optional(), key: z.string().optional() }).strict().optional(),
            /** Bucket and stream names start with this (several fleets on one NATS). */
            prefix: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/).default('voxgate'),
          })
          .strict(),
        /**
         * Where clients reach this node itself, not the load balancer (other nodes redirect WHEP
         * listeners and player pages here, where the call's media is).
         */
        publicUrl: z.url(),
      })
      .strict()
      .superRefine((c, ctx) => {
        if ((c.nats.user === undefined) !== (c.nats.password === undefined)) ctx.addIssue({ code: 'custom', message: 'user and password go together', path: ['nats', c.nats.user === undefined ? 'user' : 'password'] });
        if ((c.nats.tls?.cert === undefined) !== (c.nats.tls?.key === undefined)) ctx.addIssue({ code: 'custom', message: 'a client certificate needs its key (and the key its certificate)', path: ['nats', 'tls', c.nats.tls?.cert === undefined ? 'cert' : 'key'] });
      })
      .optional(),
    /** Load-balancer mode: answer WHIP POSTs with 307 to these endpoints in turn (RFC 9725 §4.5). */
    redirect: z
      .object({
        targets: z.array(z.url()).min(1).optional(),
        /** In a fleet: send each publisher to the live node with the fewest sessions (this one included) instead. */
        leastLoaded: z.boolean().default(false),
      })
      .strict()
      .refine((r) => r.targets !== undefined || r.leastLoaded, 'give targets (WHIP endpoint URLs), or leastLoaded: true in a fleet')
      .optional(),
    /** STIR/SHAKEN (RFC 8224/8225/8588): how trunks with `stirShaken.sign` sign and with `stirShaken.verify` verify. */
    stirShaken: z
      .object({
        sign: z
          .object({
            /** PEM file: the EC P-256 key of our STI certificate. */
            privateKey: z.string().min(1),
            /** Where verifiers fetch that certificate (and its chain), HTTPS. */
            certificateUrl: z.url().refine((u) => u.startsWith('https://'), 'an https:// URL (RFC 8226 §9)'),
            attestation: z
              .object({
                /** For caller IDs not listed in `numbers` (ATIS-1000074: B, we know the customer but not its right to the number). */
                default: z.enum(['A', 'B', 'C']).default('B'),
                numbers: z.record(z.string().regex(E164, 'an E.164 number'), z.enum(['A', 'B', 'C'])).default({}),
              })
              .strict()
              .prefault({}),
            /** Our origination identifier (a UUID); default a new one per call. */
            origId: z.uuid().optional(),
          })
          .strict()
          .optional(),
        verify: z
          .object({
            /** PEM files: the STI-CA roots a signer's chain must end at (apart from the web PKI). */
            trustAnchors: z.array(z.string().min(1)).min(1),
            /** observe: the call goes on whatever the verdict; enforce: failures get RFC 8224's 428/436/437/438/403. */
            mode: z.enum(['observe', 'enforce']).default('observe'),
            maxAgeSeconds: z.number().int().positive().max(3600).default(60),
            certificateCache: z
              .object({ ttlSeconds: z.number().int().positive().default(3600), maxBytes: z.number().int().min(1024).max(1 << 20).default(65_536), timeoutMs: z.number().int().positive().max(30_000).default(5000) })
              .strict()
              .prefault({}),
            /** PEM files the certificate fetch's HTTPS trusts instead of the system CAs (a lab's web CA). */
            fetchCa: z.array(z.string().min(1)).optional(),
            /**
             * Whether an x5u may name a loopback, private, link-local or unique-local address (a lab
             * on one machine). Off: the x5u is chosen by whoever signed the call, and must not make
             * the gateway reach into its own network.
             */
            allowPrivateAddresses: z.boolean().default(false),
          })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
    log: z
      .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
      .strict()
      .prefault({}),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type SourceConfig = z.infer<typeof sourceSchema>;
export type ListenerConfig = z.infer<typeof listenerSchema>;
export type SipConfig = z.infer<typeof sipSchema>;
export type TrunkConfig = z.infer<typeof trunkSchema>;
export type SipListenConfig = z.infer<typeof sipListenSchema>;
export type IceServerConfig = z.infer<typeof iceServerSchema>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/**
 * A configured resource that cannot be used at start-up (a port taken, a file missing): one
 * line naming the field, the value and what to do, without the "invalid configuration" header.
 */
export class StartupError extends ConfigError {
  constructor(problem: string) {
    super([problem]);
    this.message = problem;
    this.name = 'StartupError';
  }
}

/** Validates a config object; every problem names its field and what is wrong with it. */
export function parseConfig(input: unknown): Config {
  const result = configSchema.safeParse(input ?? {});
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`),
    );
  }
  const cfg = result.data;
  const names = new Set<string>();
  const problems: string[] = [];
  cfg.sources.forEach((s, i) => {
    if (names.has(s.name)) problems.push(`sources.${i}.name: duplicate source name '${s.name}'`);
    names.add(s.name);
  });
  problems.push(...trunkProblems(cfg.sip));
  cfg.sip.trunks.forEach((t, i) => {
    if (t.stirShaken?.sign && !cfg.stirShaken?.sign) problems.push(`sip.trunks.${i}.stirShaken.sign: signing needs stirShaken.sign (privateKey, certificateUrl)`);
    if (t.stirShaken?.verify && !cfg.stirShaken?.verify) problems.push(`sip.trunks.${i}.stirShaken.verify: verification needs stirShaken.verify (trustAnchors)`);
  });
  if (cfg.redirect?.leastLoaded && !cfg.cluster) problems.push('redirect.leastLoaded: picks among a fleet\'s nodes; configure cluster, or give redirect.targets');
  if (cfg.redirect?.leastLoaded && cfg.redirect.targets) problems.push('redirect.targets: give targets or leastLoaded, not both');
  if (problems.length) throw new ConfigError(problems);
  return cfg;
}

export interface ConfigOverrides {
  host?: string;
  httpPort?: number;
  udpPort?: number;
  devTls?: boolean;
}

export function loadConfig(path: string | undefined, overrides: ConfigOverrides = {}): Config {
  let raw: Record<string, unknown> = {};
  if (path) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new ConfigError([`${path}: cannot read the file (${(err as Error).message})`]);
    }
    try {
      raw = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError([`${path}: not valid JSON (${(err as Error).message})`]);
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new ConfigError([`${path}: the top level must be a JSON object`]);
    }
  }
  const http = { ...((raw.http as object | undefined) ?? {}) } as Record<string, unknown>;
  const media = { ...((raw.media as object | undefined) ?? {}) } as Record<string, unknown>;
  if (overrides.host !== undefined) http.host = overrides.host;
  if (overrides.devTls) http.devTls = true;
  if (overrides.httpPort !== undefined) http.port = overrides.httpPort;
  if (overrides.udpPort !== undefined) media.udpPort = overrides.udpPort;
  return parseConfig({ ...raw, http, media });
}

/** Conflicts between trunks that a schema cannot see: caught when the config loads, not at call time. */
function trunkProblems(sip: SipConfig): string[] {
  const problems: string[] = [];
  const names = new Map<string, number>();
  const owners = new Map<string, string>();
  sip.trunks.forEach((t, i) => {
    if (names.has(t.name)) problems.push(`sip.trunks.${i}.name: duplicate trunk name '${t.name}' (also sip.trunks.${names.get(t.name)})`);
    names.set(t.name, i);
    const user = t.inbound?.auth?.user;
    if (user !== undefined) {
      // One digest user is one password: two trunks sharing a name would accept each other's.
      const other = sip.trunks.findIndex((o) => o !== t && o.inbound?.auth?.user === user);
      if (other >= 0 && other < i) problems.push(`sip.trunks.${i}.inbound.auth.user: '${user}' is already trunk '${sip.trunks[other]!.name}''s digest user; give each trunk its own`);
    }
    t.inbound?.numbers.forEach((n, j) => {
      const owner = owners.get(n);
      if (owner !== undefined) problems.push(`sip.trunks.${i}.inbound.numbers.${j}: ${n} is already trunk '${owner}''s number; a number belongs to one trunk`);
      else owners.set(n, t.name);
    });
  });
  const outbound = new Set(sip.trunks.filter((t) => t.outbound).map((t) => t.name));
  const why = (name: string) => (names.has(name) ? `trunk '${name}' has no outbound section` : `there is no trunk '${name}'`);
  sip.outboundRoutes.forEach((r, i) => {
    if (!outbound.has(r.trunk)) problems.push(`sip.outboundRoutes.${i}.trunk: ${why(r.trunk)}`);
  });
  sip.users.forEach((u, i) =>
    u.trunks?.forEach((name, j) => {
      if (!outbound.has(name)) problems.push(`sip.users.${i}.trunks.${j}: ${why(name)}`);
    }),
  );
  if (sip.trunks.length && !sip.listen.length) problems.push('sip.listen: trunks need a udp, tcp or tls listener (e.g. { "transport": "udp", "port": 5060 })');
  const seen = new Set<string>();
  sip.listen.forEach((l, i) => {
    const proto = l.transport === 'udp' ? 'udp' : 'tcp';
    const key = `${proto}|${l.host}|${l.port ?? (l.transport === 'tls' ? 5061 : 5060)}`;
    if (l.port !== 0 && seen.has(key)) problems.push(`sip.listen.${i}: ${l.transport} ${l.host}:${l.port ?? ''} is already taken by another listener`);
    seen.add(key);
  });
  if ((sip.rtp.portMax - sip.rtp.portMin + 1) / 2 < 1) problems.push('sip.rtp: the range holds no RTP/RTCP port pair');
  return problems;
}
