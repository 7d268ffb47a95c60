/**
 * Test support (imported by *.test.ts only): a SIP stack on a fake transport and a fake clock,
 * and far ends that read what the stack sent them and answer it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { AuditLog } from '../audit/audit-log.js';
import { MemoryLocationStore } from '../cluster/memory/location-store.js';
import { FakeClock } from '../core/clock.js';
import { parseConfig, type ConfigInput } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { buildResponse, cancelFor, newBranch, tagOf } from '../sip/build.js';
import { digestHash, parseAuthParams } from '../sip/auth/digest.js';
import { header, headerList, parseSipMessage, serializeSipMessage, type SipHeader, type SipMessage, type SipRequest, type SipResponse } from '../sip/message.js';
import { SipMetrics } from '../sip/sip-metrics.js';
import { SipService } from '../sip/sip-service.js';
import { FakeSipTransport, type FakeFlow } from '../sip/transport/fake.js';
import type { SipProtocol } from '../sip/transport/transport.js';

export interface TestStack {
  clock: FakeClock;
  sip: SipService;
  transport: FakeSipTransport;
  audit: AuditLog;
  auditPath: string;
  close(): void;
}

/** A SipService with one fake transport (reliable unless UDP), a fresh audit file and a FakeClock. */
export function testStack(opts: { protocol?: SipProtocol; sip?: ConfigInput['sip']; stirShaken?: ConfigInput['stirShaken']; clock?: FakeClock; maxServerTransactions?: number } = {}): TestStack {
  const clock = opts.clock ?? new FakeClock();
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-sip-test-'));
  const auditPath = join(dir, 'audit.jsonl');
  const audit = new AuditLog(auditPath, clock);
  const config = parseConfig({ sip: opts.sip ?? { domain: 'voxgate.test', users: [{ user: 'alice', password: 'alice-secret' }, { user: 'bob', password: 'bob-secret' }] }, stirShaken: opts.stirShaken });
  const sip = new SipService({
    config: config.sip,
    locations: new MemoryLocationStore(),
    clock,
    log: createLogger(process.env.VOXGATE_TEST_LOG ? 'debug' : 'silent'),
    audit,
    metrics: new SipMetrics(new Registry(), { bindings: () => 0, flows: () => 0, dialogs: () => 0 }),
    ...(opts.maxServerTransactions ? { maxServerTransactions: opts.maxServerTransactions } : {}),
  });
  const transport = new FakeSipTransport(opts.protocol ?? 'WS');
  sip.addTransport(transport);
  return {
    clock,
    sip,
    transport,
    audit,
    auditPath,
    close() {
      sip.close();
      audit.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Lets promises and the audit log's per-turn commit run (no wall-clock wait). */
export async function settle(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}

/** A far end on a fake flow: reads what the stack sent it and answers like a UA would. */
export class FarEnd {
  readonly tag = `far${Math.floor(Math.random() * 1e6)}`;
  #cseq = 1;

  constructor(
    readonly flow: FakeFlow,
    readonly user = 'bob',
    readonly host = `${Math.random().toString(36).slice(2, 8)}.invalid`,
  ) {}

  get contact(): string {
    return `<sip:${this.user}@${this.host};transport=ws>`;
  }

  /** Everything sent to it since the last look, parsed. */
  take(): SipMessage[] {
    return this.flow.take().map((t) => parseSipMessage(t));
  }

  /** The one next message; fails the test if there is none or more than expected. */
  next<M extends SipMessage = SipMessage>(what = 'a message'): M {
    const t = this.flow.sent.shift();
    if (t === undefined) throw new Error(`expected ${what}; nothing was sent`);
    return parseSipMessage(t) as M;
  }

  /** The next request of a method (others before it are skipped and returned in `skipped`). */
  nextRequest(method: string): SipRequest {
    for (;;) {
      const m = this.next<SipMessage>(`a ${method}`);
      if (m.kind === 'request' && m.method === method) return m;
    }
  }

  respond(req: SipRequest, status: number, opts: { toTag?: string | null; headers?: SipHeader[]; body?: string; reason?: string } = {}): SipResponse {
    const toTag = opts.toTag === null ? undefined : opts.toTag ?? (status > 100 ? this.tag : undefined);
    const res = buildResponse(req, status, { toTag, headers: opts.headers, body: opts.body, reason: opts.reason });
    const headers = opts.body ? [...res.headers, { name: 'Content-Type', value: 'application/sdp' }] : res.headers;
    const full = { ...res, headers };
    this.flow.deliver(serializeSipMessage(full));
    return full;
  }

  /** A request from this far end into the stack. */
  send(method: string, uri: string, headers: SipHeader[], body = '', cseq?: number): SipRequest {
    const msg: SipRequest = {
      kind: 'request',
      method,
      uri,
      version: 'SIP/2.0',
      headers: [
        { name: 'Via', value: `SIP/2.0/WS ${this.host};branch=${newBranch()}` },
        { name: 'Max-Forwards', value: '70' },
        ...headers,
        { name: 'CSeq', value: `${cseq ?? this.#cseq++} ${method}` },
      ],
      body: Buffer.from(body),
    };
    if (!headers.some((h) => h.name === 'Call-ID')) msg.headers.push({ name: 'Call-ID', value: `far-${this.tag}-${this.#cseq}` });
    this.flow.deliver(serializeSipMessage(msg));
    return msg;
  }

  /**
   * A request in a dialog this far end started (its INVITE, the stack's 2xx): From as in the
   * INVITE, To with the stack's tag, the route set from the 2xx's Record-Route reversed (§12.1.2),
   * to the stack's Contact. CSeq counts on from the INVITE's unless given (an ACK takes the INVITE's).
   */
  callerRequest(method: string, invite: SipRequest, ok: SipResponse, opts: { headers?: SipHeader[]; body?: string; cseq?: number } = {}): SipRequest {
    const inviteSeq = Number(header(invite, 'CSeq')!.split(' ')[0]);
    const seq = opts.cseq ?? (method === 'ACK' ? inviteSeq : (this.#dialogSeq.get(header(invite, 'Call-ID')!) ?? inviteSeq) + 1);
    if (method !== 'ACK') this.#dialogSeq.set(header(invite, 'Call-ID')!, Math.max(seq, this.#dialogSeq.get(header(invite, 'Call-ID')!) ?? 0));
    const msg: SipRequest = {
      kind: 'request',
      method,
      uri: /<([^>]*)>/.exec(header(ok, 'Contact') ?? '')?.[1] ?? invite.uri,
      version: 'SIP/2.0',
      headers: [
        { name: 'Via', value: `SIP/2.0/WS ${this.host};branch=${newBranch()}` },
        { name: 'Max-Forwards', value: '70' },
        ...headerList(ok, 'Record-Route').reverse().map((r) => ({ name: 'Route', value: r })),
        { name: 'From', value: header(invite, 'From')! },
        { name: 'To', value: header(ok, 'To')! },
        { name: 'Call-ID', value: header(invite, 'Call-ID')! },
        { name: 'CSeq', value: `${seq} ${method}` },
        { name: 'Contact', value: this.contact },
        ...(opts.headers ?? []),
      ],
      body: Buffer.from(opts.body ?? ''),
    };
    this.flow.deliver(serializeSipMessage(msg));
    return msg;
  }

  readonly #dialogSeq = new Map<string, number>();

  /** §9.1: the CANCEL of an INVITE this far end sent (same top Via branch, CSeq number). */
  cancel(invite: SipRequest): void {
    this.flow.deliver(cancelFor(invite).text);
  }

  /** §17.1.1.3: the ACK of a non-2xx final response to an INVITE this far end sent (the INVITE's branch). */
  ackFailure(invite: SipRequest, res: SipResponse): void {
    const msg: SipRequest = {
      kind: 'request',
      method: 'ACK',
      uri: invite.uri,
      version: 'SIP/2.0',
      headers: [
        { name: 'Via', value: headerList(invite, 'Via')[0]! },
        { name: 'Max-Forwards', value: '70' },
        { name: 'From', value: header(invite, 'From')! },
        { name: 'To', value: header(res, 'To')! },
        { name: 'Call-ID', value: header(invite, 'Call-ID')! },
        { name: 'CSeq', value: `${header(invite, 'CSeq')!.split(' ')[0]} ACK` },
      ],
      body: Buffer.alloc(0),
    };
    this.flow.deliver(serializeSipMessage(msg));
  }

  /** An in-dialog request answering a dialog the stack made with this far end (its INVITE to us, our 2xx). */
  inDialog(method: string, invite: SipRequest, opts: { headers?: SipHeader[]; body?: string; cseq?: number } = {}): SipRequest {
    const from = header(invite, 'To')!.includes('tag=') ? header(invite, 'To')! : `${header(invite, 'To')};tag=${this.tag}`;
    const msg: SipRequest = {
      kind: 'request',
      method,
      uri: /<([^>]*)>/.exec(header(invite, 'Contact') ?? '')?.[1] ?? invite.uri,
      version: 'SIP/2.0',
      headers: [
        { name: 'Via', value: `SIP/2.0/WS ${this.host};branch=${newBranch()}` },
        { name: 'Max-Forwards', value: '70' },
        ...headerList(invite, 'Record-Route').map((r) => ({ name: 'Route', value: r })),
        { name: 'From', value: from },
        { name: 'To', value: header(invite, 'From')! },
        { name: 'Call-ID', value: header(invite, 'Call-ID')! },
        { name: 'CSeq', value: `${opts.cseq ?? this.#cseq++ + 1000} ${method}` },
        ...(opts.headers ?? []),
      ],
      body: Buffer.from(opts.body ?? ''),
    };
    this.flow.deliver(serializeSipMessage(msg));
    return msg;
  }
}

/** The digest answer a UA computes for a challenge (MD5, qop=auth). */
export function digestAnswer(challenge: string, user: string, password: string, method: string, uri: string): string {
  const p = parseAuthParams(challenge)!;
  const ha1 = digestHash('MD5', `${user}:${p.get('realm')}:${password}`);
  const response = digestHash('MD5', `${ha1}:${p.get('nonce')}:00000001:c0ffee:auth:${digestHash('MD5', `${method}:${uri}`)}`);
  return `Digest username="${user}", realm="${p.get('realm')}", nonce="${p.get('nonce')}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, cnonce="c0ffee", nc=00000001`;
}

export { tagOf };

/**
 * A far end REGISTERs as `user` in voxgate.test, answering the 401 with digest (MD5, the
 * challenge JsSIP and SIP.js take); throws unless it ends 200.
 */
export async function registerWithDigest(far: FarEnd, user: string, password: string): Promise<void> {
  const reg = (auth?: string) =>
    far.send('REGISTER', 'sip:voxgate.test', [
      { name: 'To', value: `<sip:${user}@voxgate.test>` },
      { name: 'From', value: `<sip:${user}@voxgate.test>;tag=${far.tag}` },
      { name: 'Call-ID', value: `reg-${far.tag}` },
      { name: 'Contact', value: `${far.contact};expires=600` },
      ...(auth ? [{ name: 'Authorization', value: auth }] : []),
    ]);
  reg();
  await settle();
  const challenge = far.next<SipResponse>('401');
  const offered = headerList(challenge, 'WWW-Authenticate');
  const md5 = offered.find((v) => /algorithm=MD5/i.test(v)) ?? offered.at(-1)!;
  reg(digestAnswer(md5, user, password, 'REGISTER', 'sip:voxgate.test'));
  await settle();
  const ok = far.next<SipResponse>('200');
  if (ok.status !== 200) throw new Error(`REGISTER answered ${ok.status}`);
}
