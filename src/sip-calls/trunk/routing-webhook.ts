import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { REASONS } from '../../sip/build.js';

/** What voxgate POSTs for a carrier's INVITE on a trunk with `inbound.webhook`. */
export interface RoutingRequest {
  event: 'call.incoming';
  /** The INVITE's Call-ID (the voxgate session is made only once the call is routed). */
  sipCallId: string;
  trunk: string;
  /** E.164 or SIP URI of the caller. */
  from: string;
  /** E.164 called number. */
  to: string;
  callerId: {
    number: string;
    name?: string;
    privacy: boolean;
    source: 'P-Asserted-Identity' | 'P-Preferred-Identity' | 'Remote-Party-ID' | 'From';
  };
  diversion?: string[];
  /** The X-* headers the carrier sent. */
  headers: Record<string, string>;
  /** Source ip:port. */
  remote: string;
  transport: 'UDP' | 'TCP' | 'TLS' | 'WS' | 'WSS';
  /** STIR/SHAKEN verdict (RFC 8224 verstat), once verified. */
  verstat?: string;
}

export type RoutingDecision =
  | { kind: 'accept'; agent: string | Record<string, unknown> | undefined; customParameters: Record<string, string>; by: 'webhook' }
  | { kind: 'reject'; status: number; reason: string; by: 'webhook' }
  /** The caller decides what this means: the trunk's default agent, or a reject under `onFailure: 'reject'`. */
  | { kind: 'fallback'; why: string };

export interface RoutingWebhookOptions {
  url: string;
  secret: string;
  /** Whole exchange, headers and body; the carrier is waiting (Twilio allows 15 s, but post-dial delay is felt long before). */
  timeoutMs?: number;
}

export interface RoutingWebhookDeps {
  fetch?: typeof fetch;
  /** Milliseconds since the epoch, as Date.now. */
  now?: () => number;
}

export const SIGNATURE_HEADER = 'X-Voxgate-Signature';
export const DEFAULT_TIMEOUT_MS = 3000;
/** A routing reply is a few hundred bytes; more than this is a misconfigured URL, not a decision worth buffering. */
export const MAX_REPLY_BYTES = 64 * 1024;

/** Stripe's scheme: the HMAC covers the timestamp too, so a captured request cannot be replayed later. */
function hmacHex(secret: string, body: string | Uint8Array, t: number): string {
  return createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex');
}

/** The `X-Voxgate-Signature` value for `body` sent at `nowSeconds`: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`. */
export function signBody(secret: string, body: string | Uint8Array, nowSeconds: number): string {
  const t = Math.floor(nowSeconds);
  return `t=${t},v1=${hmacHex(secret, body, t)}`;
}

/**
 * Whether `header` signs the raw `body` with `secret`, within `toleranceSeconds` of now (either side, for clock skew).
 * Several v1 entries are allowed, as Stripe allows, so a receiver can roll secrets.
 */
export function verifySignature(
  secret: string,
  header: string | undefined,
  body: string | Uint8Array,
  nowSeconds: number,
  toleranceSeconds = 300,
): boolean {
  if (!header) return false;
  let t: number | undefined;
  const given: Buffer[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (k === 't' && /^\d{1,12}$/.test(v)) t = Number(v);
    else if (k === 'v1' && /^[0-9a-f]{64}$/i.test(v)) given.push(Buffer.from(v, 'hex'));
  }
  if (t === undefined || given.length === 0) return false;
  if (Math.abs(nowSeconds - t) > toleranceSeconds) return false;
  const expected = Buffer.from(hmacHex(secret, body, t), 'hex');
  // Check every entry, no early exit, so timing says nothing about which one matched.
  let ok = false;
  for (const g of given) if (timingSafeEqual(g, expected)) ok = true;
  return ok;
}

// Reason phrases must stay one token-ish line: they go into the SIP status line (RFC 3261 §25.1 Reason-Phrase).
const reasonPhrase = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[^\x00-\x1f\x7f]*$/, 'no control characters (it becomes the SIP reason phrase)');

// An agent object is an agent spec for the registry, which validates its own fields; here it only needs to say which agent.
const agentObject = z.looseObject({}).refine((o) => typeof o.type === 'string' || typeof o.name === 'string', {
  message: 'an agent object names its agent with "type" (or "name")',
});

/**
 * Strict at the top level and in `reject`: a typo such as `"customParameter"` or `"rejct"` must not be silently
 * dropped and route the call to the default agent without anyone noticing; it becomes a fallback whose why
 * names the key. Inside an agent object, extra fields are the agent's own settings, so they pass through.
 */
const replySchema = z
  .strictObject({
    agent: z.union([z.string().min(1), agentObject], { error: 'name an agent ("echo") or give an agent object' }).optional(),
    customParameters: z.record(z.string().min(1), z.string()).optional(),
    reject: z
      .strictObject({
        // RFC 3261 §21.4-21.6: only final failure classes end an INVITE; 3xx would be a redirect, not a reject.
        status: z.number().int().min(400).max(699),
        reason: reasonPhrase.optional(),
      })
      .optional(),
  })
  .refine((r) => !(r.reject && (r.agent !== undefined || r.customParameters !== undefined)), {
    message: 'a reply either rejects or picks an agent, not both',
  });

// RFC 3261 §21.6 global failures, which the shared table does not carry because voxgate never sends them itself.
const GLOBAL_REASONS: Record<number, string> = { 600: 'Busy Everywhere', 603: 'Decline', 604: 'Does Not Exist Anywhere', 606: 'Not Acceptable' };

function defaultReason(status: number): string {
  return REASONS[status] ?? GLOBAL_REASONS[status] ?? (status >= 600 ? 'Global Failure' : status >= 500 ? 'Server Failure' : 'Client Failure');
}

/** Bounded: the why goes into logs and metrics labels, and the keys in it are the receiver's, not ours. */
function describeIssues(err: z.ZodError): string {
  const text = err.issues
    .map((i) => {
      const where = i.path.join('.');
      const what = i.code === 'unrecognized_keys' ? `unknown key(s) ${i.keys.map((k) => `"${k}"`).join(', ')}` : i.message;
      return where ? `${where}: ${what}` : what;
    })
    .join('; ');
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

/** Reads at most `cap` bytes; undefined when the body is larger. Throws what the stream throws (an abort on timeout). */
async function readCapped(res: Response, cap: number): Promise<Buffer | undefined> {
  const declared = Number(res.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > cap) {
    await res.body?.cancel().catch(() => undefined);
    return undefined;
  }
  if (!res.body) return Buffer.alloc(0);
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > cap) {
      // Cancel so the rest is never buffered and the connection is released.
      await reader.cancel().catch(() => undefined);
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

function failureWhy(err: unknown): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return 'timeout';
  // undici reports network failures as TypeError('fetch failed') with the socket error as cause.
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
  const code = (cause as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return `unreachable: ${code}`;
  return `unreachable: ${cause instanceof Error ? cause.message : String(cause)}`;
}

/**
 * Asks a trunk's routing URL which agent answers an inbound call, as Twilio's voice webhook and LiveKit's
 * dispatch rules do. `decide` never throws: every failure is a fallback with its why, because the INVITE
 * must still get an answer.
 */
export class RoutingWebhook {
  readonly url: string;
  readonly timeoutMs: number;
  readonly #secret: string;
  readonly #fetch: typeof fetch;
  readonly #now: () => number;

  constructor(opts: RoutingWebhookOptions, deps: RoutingWebhookDeps = {}) {
    // A bad URL or an empty secret is configuration, refused when the trunk is built, not on its first call.
    const protocol = URL.canParse(opts.url) ? new URL(opts.url).protocol : '';
    if (protocol !== 'http:' && protocol !== 'https:') throw new TypeError(`inbound.webhook.url must be an http:// or https:// URL, not '${opts.url}'`);
    if (!opts.secret) throw new TypeError('inbound.webhook.secret must not be empty: replies are only trusted from whoever holds it');
    this.url = opts.url;
    this.#secret = opts.secret;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#fetch = deps.fetch ?? fetch;
    this.#now = deps.now ?? Date.now;
  }

  async decide(req: RoutingRequest): Promise<RoutingDecision> {
    try {
      return await this.#decide(req);
    } catch (err) {
      return { kind: 'fallback', why: failureWhy(err) };
    }
  }

  async #decide(req: RoutingRequest): Promise<RoutingDecision> {
    const body = JSON.stringify(req);
    const res = await this.#fetch(this.url, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        Accept: 'application/json',
        'User-Agent': 'voxgate',
        [SIGNATURE_HEADER]: signBody(this.#secret, body, this.#now() / 1000),
      },
      body,
      // Deviation from fetch's default: a redirect could carry the signed call details to a host nobody configured.
      redirect: 'manual',
      // One deadline over headers and body alike: a server that trickles its reply is as late as one that never answers.
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    if (res.status < 200 || res.status > 299) {
      await res.body?.cancel().catch(() => undefined);
      return { kind: 'fallback', why: `http ${res.status}` };
    }
    if (res.status === 204) return { kind: 'fallback', why: 'no decision' };
    const raw = await readCapped(res, MAX_REPLY_BYTES);
    if (raw === undefined) return { kind: 'fallback', why: 'invalid reply: too large' };
    let json: unknown;
    try {
      json = JSON.parse(raw.toString('utf8'));
    } catch {
      return { kind: 'fallback', why: 'invalid reply: not JSON' };
    }
    const parsed = replySchema.safeParse(json);
    if (!parsed.success) return { kind: 'fallback', why: `invalid reply: ${describeIssues(parsed.error)}` };
    const r = parsed.data;
    if (r.reject) {
      return { kind: 'reject', status: r.reject.status, reason: r.reject.reason ?? defaultReason(r.reject.status), by: 'webhook' };
    }
    if (r.agent === undefined && r.customParameters === undefined) return { kind: 'fallback', why: 'no decision' };
    // customParameters alone: the trunk's default agent, with these parameters.
    return { kind: 'accept', agent: r.agent, customParameters: r.customParameters ?? {}, by: 'webhook' };
  }
}
