import { cseqOf, header, headerList, type SipRequest } from './message.js';
import { parseNameAddr, SipParseError } from './grammar.js';

/**
 * RFC 3261 §10.3 registrar bindings, each tied to the WebSocket flow it came on (RFC 5626:
 * `+sip.instance` with `reg-id` names a binding, so a REGISTER from a reconnected client
 * replaces it instead of adding a second one). A closed flow drops its bindings at once.
 */
export interface Binding {
  aor: string;
  /** The Contact URI as registered: requests to this user are addressed to it. */
  contact: string;
  flowId: string;
  remote: string;
  instance: string | undefined;
  regId: string | undefined;
  callId: string;
  cseq: number;
  expiresAt: number;
  userAgent: string | undefined;
}

/** Where bindings live: memory by default; JetStream KV when scaled out (DESIGN.md). */
export interface LocationStore {
  list(aor: string): Binding[];
  all(): Binding[];
  set(aor: string, bindings: Binding[]): void;
}

export class MemoryLocationStore implements LocationStore {
  readonly #byAor = new Map<string, Binding[]>();

  list(aor: string): Binding[] {
    return this.#byAor.get(aor) ?? [];
  }

  all(): Binding[] {
    return [...this.#byAor.values()].flat();
  }

  set(aor: string, bindings: Binding[]): void {
    if (bindings.length) this.#byAor.set(aor, bindings);
    else this.#byAor.delete(aor);
  }
}

export type RegisterResult =
  | { status: 200; bindings: Binding[]; added: number; removed: number }
  | { status: 423; minExpires: number }
  | { status: 400 | 500; reason: string };

export interface RegistrarOptions {
  minExpires: number;
  maxExpires: number;
  defaultExpires: number;
}

export class Registrar {
  constructor(
    readonly store: LocationStore,
    private readonly opts: RegistrarOptions,
    private readonly now: () => number,
  ) {}

  /** Live bindings of a user, newest first. */
  lookup(aor: string): Binding[] {
    const now = this.now();
    const live = this.store.list(aor).filter((b) => b.expiresAt > now);
    if (live.length !== this.store.list(aor).length) this.store.set(aor, live);
    return [...live].sort((a, b) => b.expiresAt - a.expiresAt);
  }

  /** Applies a REGISTER from an authenticated user on a flow (§10.3 steps 6-8). */
  register(aor: string, req: SipRequest, flow: { id: string; remote: string }): RegisterResult {
    const callId = header(req, 'Call-ID')!;
    const cseq = cseqOf(req);
    const expiresHeader = header(req, 'Expires');
    const contacts = headerList(req, 'Contact');
    let bindings = this.lookup(aor);
    const before = bindings.length;
    if (contacts.length === 1 && contacts[0] === '*') {
      if (expiresHeader !== '0') return { status: 400, reason: 'Contact: * needs Expires: 0' };
      this.store.set(aor, []);
      return { status: 200, bindings: [], added: 0, removed: before };
    }
    let added = 0;
    for (const value of contacts) {
      if (value === '*') return { status: 400, reason: 'Contact: * must be alone' };
      let c;
      try {
        c = parseNameAddr(value);
      } catch (err) {
        return { status: 400, reason: `bad Contact: ${(err as SipParseError).message}` };
      }
      const expiresParam = c.params.get('expires');
      let expires = Number(expiresParam ?? expiresHeader ?? this.opts.defaultExpires);
      if (!Number.isFinite(expires) || expires < 0) return { status: 400, reason: 'bad expires' };
      if (expires > 0 && expires < this.opts.minExpires) return { status: 423, minExpires: this.opts.minExpires };
      expires = Math.min(expires, this.opts.maxExpires);
      const instance = c.params.get('+sip.instance') ?? undefined;
      const regId = c.params.get('reg-id') ?? undefined;
      const same = (b: Binding) => (instance !== undefined && regId !== undefined ? b.instance === instance && b.regId === regId : b.contact === c.uri);
      const old = bindings.find(same);
      // §10.3 step 7: an older CSeq in the same Call-ID is out of order.
      if (old && old.callId === callId && old.cseq >= cseq) return { status: 500, reason: 'out-of-order REGISTER (CSeq not above the binding)' };
      bindings = bindings.filter((b) => !same(b));
      if (expires === 0) continue;
      if (!old) added++;
      bindings.push({
        aor,
        contact: c.uri,
        flowId: flow.id,
        remote: flow.remote,
        instance,
        regId,
        callId,
        cseq,
        expiresAt: this.now() + expires * 1000,
        userAgent: header(req, 'User-Agent'),
      });
    }
    this.store.set(aor, bindings);
    return { status: 200, bindings, added, removed: Math.max(0, before + added - bindings.length) };
  }

  /** Drops every binding made over a flow (its WebSocket closed). */
  dropFlow(flowId: string): Binding[] {
    const dropped: Binding[] = [];
    for (const b of this.store.all()) {
      if (b.flowId !== flowId) continue;
      dropped.push(b);
      this.store.set(
        b.aor,
        this.store.list(b.aor).filter((x) => x.flowId !== flowId),
      );
    }
    return dropped;
  }

  all(): Binding[] {
    const now = this.now();
    return this.store.all().filter((b) => b.expiresAt > now);
  }
}
