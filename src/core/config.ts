import { readFileSync } from 'node:fs';
import { z } from 'zod';

const CODECS = ['opus', 'pcmu', 'pcma', 'g722'] as const;
export type CodecName = (typeof CODECS)[number];

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

const sipUserSchema = z
  .object({
    user: z.string().min(1).regex(/^[A-Za-z0-9._~!$&'()*+,;=-]+$/, 'a SIP user part: letters, digits and -_.!~*\'()&=+$,;'),
    password: z.string().min(1).optional(),
    /** MD5(user:realm:password) instead of the password. */
    ha1: z.string().regex(/^[0-9a-f]{32}$/).optional(),
    /** SHA-256(user:realm:password) instead of the password. */
    ha1Sha256: z.string().regex(/^[0-9a-f]{64}$/).optional(),
    displayName: z.string().optional(),
    /** Calls this user may have with agents at once; one more gets 486 Busy Here. */
    maxCalls: z.number().int().positive().optional(),
  })
  .strict()
  .refine((u) => u.password !== undefined || u.ha1 !== undefined || u.ha1Sha256 !== undefined, { message: 'give a password, ha1 or ha1Sha256' });

const sipSchema = z
  .object({
    /** The domain users register in; also the digest realm. */
    domain: z.string().regex(/^[A-Za-z0-9.-]+$/).default('voxgate.local'),
    users: z.array(sipUserSchema).default([]),
    /** User parts that reach an agent (`agent` always reaches the default agent). */
    agents: z.record(z.string(), z.union([z.string(), z.record(z.string(), z.unknown())])).default({}),
    /** Largest SIP message answered (413 beyond); the WebSocket closes only past max(8 MiB, 4x this). */
    maxMessageBytes: z.number().int().min(4096).max(1 << 20).default(64 * 1024),
    pingIntervalSeconds: z.number().positive().default(20),
    nonceTtlSeconds: z.number().int().positive().default(300),
    minExpires: z.number().int().positive().default(60),
    maxExpires: z.number().int().positive().default(3600),
  })
  .strict()
  .prefault({});

export const configSchema = z
  .object({
    http: z
      .object({
        host: z.string().default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(8080),
        tls: z.object({ cert: z.string(), key: z.string() }).strict().optional(),
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
    admin: z.object({ token: z.string().min(16).optional() }).strict().prefault({}),
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
    audit: z.object({ path: z.string().default('voxgate-audit.jsonl') }).strict().prefault({}),
    /** Load-balancer mode: answer WHIP POSTs with 307 to these endpoints in turn (RFC 9725 §4.5). */
    redirect: z.object({ targets: z.array(z.url()).min(1) }).strict().optional(),
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
export type IceServerConfig = z.infer<typeof iceServerSchema>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
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
  if (problems.length) throw new ConfigError(problems);
  return cfg;
}

export interface ConfigOverrides {
  host?: string;
  httpPort?: number;
  udpPort?: number;
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
  if (overrides.httpPort !== undefined) http.port = overrides.httpPort;
  if (overrides.udpPort !== undefined) media.udpPort = overrides.udpPort;
  return parseConfig({ ...raw, http, media });
}
