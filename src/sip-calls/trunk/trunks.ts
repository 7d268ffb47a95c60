import { BlockList, isIP } from 'node:net';
import type { TrunkConfig } from '../../core/config.js';
import { DigestAuthenticator } from '../../sip/auth/digest.js';
import { RoutingWebhook } from './routing-webhook.js';

/** A trunk's source-address list (CIDR blocks or single addresses), IPv4 and IPv6. */
export class AddressList {
  readonly #list = new BlockList();

  constructor(entries: readonly string[]) {
    for (const e of entries) {
      const [addr, bits] = e.trim().split('/') as [string, string | undefined];
      const family = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
      if (bits === undefined) this.#list.addAddress(addr, family);
      else this.#list.addSubnet(addr, Number(bits), family);
    }
  }

  has(address: string): boolean {
    const a = address.replace(/^\[|\]$/g, '');
    const v = isIP(a);
    if (v === 0) return false;
    // An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d.
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a)?.[1];
    if (mapped) return this.#list.check(mapped, 'ipv4');
    return this.#list.check(a, v === 6 ? 'ipv6' : 'ipv4');
  }
}

const DEFAULT_INBOUND: NonNullable<TrunkConfig['inbound']> = { numbers: [], allowedAddresses: [], refer: false, ringTimeoutSeconds: 30 };

/** One configured trunk as calls use it: its ACL, its credentials, its webhook and its live calls. */
export class Trunk {
  readonly acl: AddressList | undefined;
  readonly webhook: RoutingWebhook | undefined;
  /** Calls on this trunk now (admitted, not yet ended), by session id. */
  readonly active = new Set<string>();

  constructor(readonly config: TrunkConfig) {
    const inbound = config.inbound;
    this.acl = inbound?.allowedAddresses.length ? new AddressList(inbound.allowedAddresses) : undefined;
    this.webhook = inbound?.webhook ? new RoutingWebhook({ url: inbound.webhook.url, secret: inbound.webhook.secret, timeoutMs: inbound.webhook.timeoutMs }) : undefined;
  }

  get name(): string {
    return this.config.name;
  }

  /** Its registration with the carrier (`outbound.register`), once the gateway started it. */
  registration: { readonly contactUser: string; registrarHost(): string | undefined } | undefined;
  /** The addresses its `outbound.address` names resolve to (a registration's calls come from them). */
  readonly carrierAddresses = new Set<string>();

  /** The inbound settings (a trunk that only registers takes its calls with the defaults). */
  get inbound(): NonNullable<TrunkConfig['inbound']> {
    return this.config.inbound ?? DEFAULT_INBOUND;
  }

  /** Outbound calls on this trunk now (ringing or answered), by session id. */
  readonly outbound = new Set<string>();
  /** When the last outbound call was let through, for `outbound.callsPerSecond`. */
  #lastDial = -Infinity;

  /** Whether this trunk may call the number (`outbound.allowedPrefixes`). */
  mayDial(number: string): boolean {
    const allowed = this.config.outbound?.allowedPrefixes;
    return !allowed || allowed.some((p) => number.startsWith(p));
  }

  /**
   * Whether `count` more outbound calls may go now (`outbound.maxCalls`, `outbound.callsPerSecond`;
   * a rota's calls go together, as one): 0 when they may (and the rate slot is taken), else the
   * seconds to wait before trying again.
   */
  admitOutbound(now: number, count = 1): number {
    const o = this.config.outbound;
    if (!o) return 0;
    if (o.maxCalls !== undefined && this.outbound.size + count > o.maxCalls) return 5;
    if (o.callsPerSecond !== undefined) {
      const gap = 1000 / o.callsPerSecond;
      const wait = this.#lastDial + gap - now;
      if (wait > 0) return Math.max(1, Math.ceil(wait / 1000));
    }
    this.#lastDial = now;
    return 0;
  }

  #reserved = 0;

  /** At maxCalls: the calls it has plus the INVITEs admitted and still being set up. */
  get full(): boolean {
    return this.config.maxCalls !== undefined && this.active.size + this.#reserved >= this.config.maxCalls;
  }

  /** Holds a slot for an INVITE being set up; the returned function gives it back (once). */
  reserve(): () => void {
    this.#reserved++;
    let held = true;
    return () => {
      if (held) this.#reserved--;
      held = false;
    };
  }
}

/**
 * The trunks of the config: by number (each number belongs to one trunk, checked at load), and
 * one digest authenticator for all their credentials (realm: the SIP domain).
 */
export class TrunkTable {
  readonly all: Trunk[];
  readonly #byNumber = new Map<string, Trunk>();
  readonly digest: DigestAuthenticator;

  constructor(configs: readonly TrunkConfig[], realm: string, now: () => number, nonceTtlMs: number, nonceSecret?: Buffer) {
    this.all = configs.map((c) => new Trunk(c));
    for (const t of this.all) for (const n of t.config.inbound?.numbers ?? []) this.#byNumber.set(n, t);
    const users = this.all.flatMap((t) => (t.config.inbound?.auth ? [{ user: t.config.inbound.auth.user, password: t.config.inbound.auth.password }] : []));
    this.digest = new DigestAuthenticator(realm, users, now, nonceTtlMs, nonceSecret);
  }

  byNumber(number: string | undefined): Trunk | undefined {
    return number === undefined ? undefined : this.#byNumber.get(number);
  }

  /** Trunks whose ACL holds this source address. */
  byAddress(host: string): Trunk[] {
    return this.all.filter((t) => t.acl?.has(host));
  }

  byName(name: string): Trunk | undefined {
    return this.all.find((t) => t.name === name);
  }

  /**
   * The trunk whose registration an INVITE arrived on: its Request-URI user is the Contact user
   * we registered, and it comes from the registrar we registered with.
   */
  byRegistration(user: string | undefined, host: string): Trunk | undefined {
    if (user === undefined) return undefined;
    return this.all.find((t) => t.registration?.contactUser === user && (t.registration.registrarHost() === host || t.carrierAddresses.has(host) || t.acl?.has(host)));
  }

  /** Trunks that take calls from any address that proves their digest credentials. */
  get authOnly(): Trunk[] {
    return this.all.filter((t) => !t.acl && t.config.inbound?.auth);
  }
}

/** The host of a flow's remote (`1.2.3.4:5060`, `[2001:db8::1]:5060`). */
export function remoteHost(remote: string): string {
  const v6 = /^\[([^\]]+)\]/.exec(remote);
  if (v6) return v6[1]!;
  const i = remote.lastIndexOf(':');
  return i > 0 && remote.indexOf(':') === i ? remote.slice(0, i) : remote;
}
