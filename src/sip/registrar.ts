import { cseqOf, header, headerList, type SipRequest } from './message.js';
import { parseNameAddr, SipParseError } from './grammar.js';
import type { Binding, LocationStore } from './location-store.js';

export type { Binding, LocationStore };

export type RegisterResult =
  | { status: 200; bindings: Binding[]; added: number; removed: number }
  | { status: 423; minExpires: number }
  | { status: 400 | 500; reason: string };

export interface RegistrarOptions {
  minExpires: number;
  maxExpires: number;
  defaultExpires: number;
  /** In a fleet: this node's id, written into each binding made here. */
  node?: string;
}

/**
 * The registrar (RFC 3261 §10.3) over an async location store: each REGISTER is one atomic
 * update of its address of record, so two arriving together (or on two nodes) lose nothing.
 */
export class Registrar {
  constructor(
    readonly store: LocationStore,
    private readonly opts: RegistrarOptions,
    private readonly now: () => number,
  ) {}

  /** Live bindings of a user, newest first. */
  async lookup(aor: string): Promise<Binding[]> {
    const now = this.now();
    const live = (await this.store.get(aor)).filter((b) => b.expiresAt > now);
    return live.sort((a, b) => b.expiresAt - a.expiresAt);
  }

  /** Applies a REGISTER from an authenticated user on a flow (§10.3 steps 6-8). */
  async register(aor: string, req: SipRequest, flow: { id: string; remote: string }): Promise<RegisterResult> {
    let result: RegisterResult = { status: 500, reason: 'not applied' };
    const now = this.now();
    // Pure in `current` (it may run again on a store's revision conflict); the last run's result stands.
    await this.store.update(aor, (current) => {
      const r = this.#apply(aor, req, flow, current.filter((b) => b.expiresAt > now), now);
      result = r.result;
      return r.bindings ?? current;
    });
    return result;
  }

  #apply(aor: string, req: SipRequest, flow: { id: string; remote: string }, live: Binding[], now: number): { result: RegisterResult; bindings?: Binding[] } {
    const callId = header(req, 'Call-ID')!;
    const cseq = cseqOf(req);
    const expiresHeader = header(req, 'Expires');
    const contacts = headerList(req, 'Contact');
    let bindings = live;
    const before = bindings.length;
    if (contacts.length === 1 && contacts[0] === '*') {
      if (expiresHeader !== '0') return { result: { status: 400, reason: 'Contact: * needs Expires: 0' } };
      return { result: { status: 200, bindings: [], added: 0, removed: before }, bindings: [] };
    }
    let added = 0;
    for (const value of contacts) {
      if (value === '*') return { result: { status: 400, reason: 'Contact: * must be alone' } };
      let c;
      try {
        c = parseNameAddr(value);
      } catch (err) {
        return { result: { status: 400, reason: `bad Contact: ${(err as SipParseError).message}` } };
      }
      const expiresParam = c.params.get('expires');
      let expires = Number(expiresParam ?? expiresHeader ?? this.opts.defaultExpires);
      if (!Number.isFinite(expires) || expires < 0) return { result: { status: 400, reason: 'bad expires' } };
      if (expires > 0 && expires < this.opts.minExpires) return { result: { status: 423, minExpires: this.opts.minExpires } };
      expires = Math.min(expires, this.opts.maxExpires);
      const instance = c.params.get('+sip.instance') ?? undefined;
      const regId = c.params.get('reg-id') ?? undefined;
      const same = (b: Binding) => (instance !== undefined && regId !== undefined ? b.instance === instance && b.regId === regId : b.contact === c.uri);
      const old = bindings.find(same);
      // §10.3 step 7: an older CSeq in the same Call-ID is out of order.
      if (old && old.callId === callId && old.cseq >= cseq) return { result: { status: 500, reason: 'out-of-order REGISTER (CSeq not above the binding)' } };
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
        expiresAt: now + expires * 1000,
        userAgent: header(req, 'User-Agent'),
        ...(this.opts.node ? { node: this.opts.node } : {}),
      });
    }
    return { result: { status: 200, bindings, added, removed: Math.max(0, before + added - bindings.length) }, bindings };
  }

  /** Drops every binding made over a flow (its connection closed). */
  async dropFlow(flowId: string): Promise<Binding[]> {
    const dropped: Binding[] = [];
    const aors = new Set((await this.store.all()).filter((b) => b.flowId === flowId).map((b) => b.aor));
    for (const aor of aors) {
      let gone: Binding[] = [];
      await this.store.update(aor, (current) => {
        gone = current.filter((b) => b.flowId === flowId);
        return current.filter((b) => b.flowId !== flowId);
      });
      dropped.push(...gone);
    }
    return dropped;
  }

  async all(): Promise<Binding[]> {
    const now = this.now();
    return (await this.store.all()).filter((b) => b.expiresAt > now);
  }
}
