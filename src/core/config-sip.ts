import { z } from 'zod';
import { isIP } from 'node:net';
import { CODECS } from './config-codecs.js';

/** The `sip` section of the configuration: users, listeners, trunks (their schemas; config.ts composes them). */

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
    /** Trunks this user may call phone numbers through (`sip.outboundRoutes` picks one); none: no calls out. */
    trunks: z.array(z.string().min(1)).optional(),
  })
  .strict()
  .refine((u) => u.password !== undefined || u.ha1 !== undefined || u.ha1Sha256 !== undefined, { message: 'give a password, ha1 or ha1Sha256' });

/** RFC 3966 / E.164: `+`, a country code, at most 15 digits. */
export const E164 = /^\+[1-9]\d{1,14}$/;

const agentSpecSchema = z.union([z.string(), z.record(z.string(), z.unknown())]);

export const sipListenSchema = z
  .object({
    transport: z.enum(['udp', 'tcp', 'tls']),
    host: z.string().min(1).default('0.0.0.0'),
    /** Default 5060 (UDP, TCP) or 5061 (TLS); 0 picks a free port. */
    port: z.number().int().min(0).max(65535).optional(),
    /** TLS only: PEM files. */
    cert: z.string().min(1).optional(),
    key: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((l, ctx) => {
    if (l.transport === 'tls' && (!l.cert || !l.key)) ctx.addIssue({ code: 'custom', message: 'a tls listener needs cert and key (PEM file paths)', path: [l.cert ? 'key' : 'cert'] });
    if (l.transport !== 'tls' && (l.cert || l.key)) ctx.addIssue({ code: 'custom', message: `cert and key belong on a tls listener, not ${l.transport}`, path: ['cert'] });
  });

const trunkInboundSchema = z
  .object({
    /** The numbers this trunk brings (E.164), each owned by one trunk. */
    numbers: z.array(z.string().regex(E164, 'an E.164 number: + then up to 15 digits, e.g. +15551230000')).default([]),
    /** Source addresses (CIDR, or one address) the carrier sends from. */
    allowedAddresses: z.array(z.string().refine(isCidr, 'a CIDR such as 192.0.2.0/24 or 2001:db8::/32, or one address')).default([]),
    /** Digest credentials the carrier answers a 407 with. */
    auth: z.object({ user: z.string().min(1), password: z.string().min(1) }).strict().optional(),
    /** The agent for this trunk's calls, after the routing webhook's pick and `sip.agents` by number; else `defaultAgent`. */
    agent: agentSpecSchema.optional(),
    /** The carrier takes a blind REFER for transfers; else voxgate bridges them itself. */
    refer: z.boolean().default(false),
    /** How long the caller hears ringing while the agent starts (480 after). */
    ringTimeoutSeconds: z.number().positive().max(300).default(30),
    webhook: z
      .object({
        url: z.url(),
        secret: z.string().min(16, 'use at least 16 characters'),
        timeoutMs: z.number().int().positive().max(30_000).default(3000),
        /** What a webhook that fails or times out means: the trunk's agent, or a refusal (503). */
        onFailure: z.enum(['fallback', 'reject']).default('fallback'),
      })
      .strict()
      .optional(),
  })
  .strict();

/** `host:port`, `host` (the transport's default port), `[v6]:port`. */
const HOST_PORT = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?$/;
const hostPortSchema = z.string().regex(HOST_PORT, 'host:port, e.g. carrier.example.net:5060 or 192.0.2.10:5060');
const e164Schema = z.string().regex(E164, 'an E.164 number: + then up to 15 digits, e.g. +15551230000');

export const trunkOutboundSchema = z
  .object({
    /** The carrier's SIP address, or several tried in order (failover on 408, 5xx and transport errors). */
    address: z.union([hostPortSchema, z.array(hostPortSchema).min(1)]),
    transport: z.enum(['udp', 'tcp', 'tls']).default('udp'),
    /** Digest credentials for the carrier's 401/407; the user is the account, apart from From. */
    auth: z.object({ user: z.string().min(1), password: z.string().min(1) }).strict().optional(),
    /** The From user when the caller ID travels in PAI/PPI (default: the caller's number). */
    fromUser: z.string().regex(/^[A-Za-z0-9._~!$&'()*+,;=%-]+$/, 'a SIP user part').optional(),
    /** The host of From, PAI and PPI (default: the carrier address's host). */
    fromHost: z.string().regex(/^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)$/, 'a host name or address').optional(),
    /** The caller IDs (E.164) this trunk may present. */
    numbers: z.array(e164Schema).default([]),
    /** Where the caller ID goes: From, P-Asserted-Identity (RFC 3325) or P-Preferred-Identity. */
    callerIdHeader: z.enum(['from', 'pai', 'ppi']).default('from'),
    /** `;user=phone` on URIs that carry a number (RFC 3261 §19.1.1). */
    userPhone: z.boolean().default(true),
    /** Keep a registration with the carrier (a trunk without a static IP); its calls come in on it. */
    register: z
      .object({
        expires: z.number().int().min(60).max(86_400).default(600),
        /** The AOR user (default: auth.user, else fromUser). */
        user: z.string().regex(/^[A-Za-z0-9._~!$&'()*+,;=%-]+$/, 'a SIP user part').optional(),
      })
      .strict()
      .optional(),
    /**
     * The numbers this trunk may call (E.164 prefixes such as +1 or +4420); default any. What an
     * agent talked into a transfer, or a browser, can reach: toll fraud starts with an open list.
     */
    allowedPrefixes: z.array(z.string().regex(/^\+\d*$/, 'an E.164 prefix such as +1 or +4420')).optional(),
    /** Outbound calls at once on this trunk; one more gets 429 with Retry-After. */
    maxCalls: z.number().int().positive().optional(),
    /** New outbound calls per second on this trunk (a carrier's CPS limit); more get 429. */
    callsPerSecond: z.number().positive().optional(),
    /** How long an address may answer nothing at all (not even 100) before the next one is tried. */
    failoverAfterSeconds: z.number().min(0.5).max(32).default(4),
  })
  .strict()
  .refine((o) => !o.register || o.register.user !== undefined || o.auth !== undefined || o.fromUser !== undefined, {
    message: 'a registration needs a user: give register.user, auth.user or fromUser',
    path: ['register'],
  });

export const trunkSchema = z
  .object({
    name: z.string().min(1).regex(/^[A-Za-z0-9._-]+$/, 'use letters, digits, dot, dash and underscore'),
    inbound: trunkInboundSchema.optional(),
    outbound: trunkOutboundSchema.optional(),
    codecs: z.array(z.enum(CODECS)).min(1).default(['pcmu', 'pcma', 'g722', 'opus']),
    /** SDES-SRTP (RFC 4568): `allow` follows the offer; `require` refuses RTP/AVP; `none` refuses RTP/SAVP. */
    mediaEncryption: z.enum(['none', 'allow', 'require']).default('allow'),
    /** STIR/SHAKEN on this trunk: sign its outbound INVITEs, verify its inbound ones (the top-level `stirShaken` says how). */
    stirShaken: z.object({ sign: z.boolean().default(false), verify: z.boolean().default(false) }).strict().optional(),
    /** Calls at once on this trunk; one more gets 503 with Retry-After. */
    maxCalls: z.number().int().positive().optional(),
  })
  .strict()
  .refine((t) => !t.inbound || t.inbound.allowedAddresses.length > 0 || t.inbound.auth !== undefined || t.outbound?.register !== undefined, {
    message: 'give allowedAddresses, auth or both (or outbound.register: calls then come on the registration): an inbound trunk open to anyone is refused',
    path: ['inbound', 'allowedAddresses'],
  });

export type TrunkOutboundConfig = z.infer<typeof trunkOutboundSchema>;

/** Whether a string is an IPv4/IPv6 address or CIDR block. */
export function isCidr(s: string): boolean {
  const [addr, bits, ...rest] = s.trim().split('/');
  if (rest.length || !addr) return false;
  const v = isIP(addr);
  if (v === 0) return false;
  if (bits === undefined) return true;
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (v === 4 ? 32 : 128);
}

export const sipSchema = z
  .object({
    /** The domain users register in; also the digest realm. */
    domain: z.string().regex(/^[A-Za-z0-9.-]+$/).default('voxgate.local'),
    users: z.array(sipUserSchema).default([]),
    /** User parts that reach an agent (`agent` always reaches the default agent). */
    agents: z.record(z.string(), z.union([z.string(), z.record(z.string(), z.unknown())])).default({}),
    /** Largest SIP message answered (413 beyond); the WebSocket closes only past max(8 MiB, 4x this). */
    maxMessageBytes: z.number().int().min(4096).max(1 << 20).default(64 * 1024),
    pingIntervalSeconds: z.number().positive().default(20),
    /** SIP over WebSocket connections: at most this many (503), this many from one address (429), closed when they neither register nor call within setupTimeoutSeconds. */
    ws: z
      .strictObject({
        maxConnections: z.number().int().positive().default(20_000),
        maxConnectionsPerAddress: z.number().int().positive().default(500),
        setupTimeoutSeconds: z.number().positive().default(120),
      })
      .default({ maxConnections: 20_000, maxConnectionsPerAddress: 500, setupTimeoutSeconds: 120 }),
    nonceTtlSeconds: z.number().int().positive().default(300),
    minExpires: z.number().int().positive().default(60),
    maxExpires: z.number().int().positive().default(3600),
    /** SIP over UDP, TCP and TLS for trunks and phones; none: SIP over WebSocket only. */
    listen: z.array(sipListenSchema).default([]),
    /** The public address behind NAT: written into Via, Contact and SDP instead of the bound one. */
    externalAddress: z.string().refine((a) => isIP(a) !== 0, 'an IPv4 or IPv6 address').optional(),
    rtp: z
      .object({
        portMin: z.number().int().min(1024).max(65534).default(20000),
        portMax: z.number().int().min(1025).max(65535).default(29999),
        /** Where RTP sockets bind; default: the first listener's host. */
        bindAddress: z.string().optional(),
        /** How long a port stays unused after its call ends, so late packets cannot reach a new call. */
        quarantineSeconds: z.number().min(0).max(600).default(10),
      })
      .strict()
      .refine((r) => r.portMax > r.portMin, { message: 'portMax must be above portMin', path: ['portMax'] })
      .prefault({}),
    trunks: z.array(trunkSchema).default([]),
    /** Which trunk a registered user's call to a phone number takes: the longest matching prefix. */
    outboundRoutes: z
      .array(z.object({ prefix: z.string().regex(/^\+?\d*$/, 'a number prefix such as +1 or +4420 (empty: every number)'), trunk: z.string().min(1) }).strict())
      .default([]),
  })
  .strict()
  .prefault({});

