import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { digestHash, parseAuthParams, type DigestAlgorithm } from '../../src/sip/auth/digest.js';
import { header, headerList, parseSipMessage, type SipResponse } from '../../src/sip/message.js';

/**
 * A bare SIP-over-WebSocket client for tests and benchmarks: sends raw text, collects what
 * comes back, and can REGISTER with digest the way JsSIP does (MD5, the last challenge).
 */
export class SipWsClient {
  readonly received: string[] = [];
  readonly #waiters: { match: (text: string) => boolean; resolve: (text: string) => void }[] = [];
  readonly host = `${randomBytes(4).toString('hex')}.invalid`;
  readonly contactUser = randomBytes(4).toString('hex');
  cseq = 1;
  closed = false;
  closeCode: number | undefined;
  closeReason: string | undefined;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const text = data.toString();
      this.received.push(text);
      const i = this.#waiters.findIndex((w) => w.match(text));
      if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve(text);
    });
    ws.on('close', (code, reason) => {
      this.closed = true;
      this.closeCode = code;
      this.closeReason = reason.toString();
    });
  }

  /** `localAddress`: the loopback address to connect from (127.0.0.2 is another client's). */
  static async connect(url: string, opts: { protocol?: string | undefined; origin?: string; path?: string; localAddress?: string } = {}): Promise<SipWsClient> {
    const ws = new WebSocket(url.replace(/^http/, 'ws') + (opts.path ?? '/sip'), opts.protocol === undefined ? ['sip'] : opts.protocol ? [opts.protocol] : [], { origin: opts.origin, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    });
    return new SipWsClient(ws);
  }

  send(text: string | Buffer): void {
    this.ws.send(text);
  }

  /** The next message that `match` accepts (already received ones are not looked at). */
  next(match: (text: string) => boolean, ms = 5000): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching SIP message within ${ms} ms; last: ${this.received.at(-1)?.slice(0, 200)}`)), ms);
      this.#waiters.push({
        match,
        resolve: (t) => {
          clearTimeout(timer);
          resolve(t);
        },
      });
    });
  }

  /** Sends a request and resolves with its final response (provisional ones skipped). */
  async request(text: string): Promise<SipResponse> {
    const branch = /branch=([^;\s]+)/.exec(text)![1]!;
    const reply = this.next((t) => t.startsWith('SIP/2.0 ') && t.includes(branch) && !/^SIP\/2\.0 1\d\d /.test(t));
    this.send(text);
    return parseSipMessage(await reply) as SipResponse;
  }

  registerText(opts: { user: string; domain: string; callId: string; expires?: number; authorization?: string; instance?: string; regId?: number }): string {
    const params = opts.instance ? `;+sip.instance="<urn:uuid:${opts.instance}>";reg-id=${opts.regId ?? 1}` : '';
    return [
      `REGISTER sip:${opts.domain} SIP/2.0`,
      `Via: SIP/2.0/WS ${this.host};branch=z9hG4bK${randomBytes(6).toString('hex')}`,
      'Max-Forwards: 70',
      `To: <sip:${opts.user}@${opts.domain}>`,
      `From: <sip:${opts.user}@${opts.domain}>;tag=${randomBytes(4).toString('hex')}`,
      `Call-ID: ${opts.callId}`,
      `CSeq: ${this.cseq++} REGISTER`,
      `Contact: <sip:${this.contactUser}@${this.host};transport=ws>${params};expires=${opts.expires ?? 600}`,
      ...(opts.authorization ? [`Authorization: ${opts.authorization}`] : []),
      'Supported: path, gruu, outbound',
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
  }

  /** An INVITE from `from` to `to` (users of `domain`) with an SDP offer, from this client's Contact. */
  inviteText(opts: { from: string; to: string; domain: string; callId: string; sdp: string }): string {
    const { from, to, domain, callId, sdp } = opts;
    return [
      `INVITE sip:${to}@${domain} SIP/2.0`,
      `Via: SIP/2.0/WS ${this.host};branch=z9hG4bK${randomBytes(6).toString('hex')}`,
      'Max-Forwards: 70',
      `To: <sip:${to}@${domain}>`,
      `From: <sip:${from}@${domain}>;tag=${from}-tag`,
      `Call-ID: ${callId}`,
      'CSeq: 1 INVITE',
      `Contact: <sip:${this.contactUser}@${this.host};transport=ws>`,
      'Content-Type: application/sdp',
      `Content-Length: ${Buffer.byteLength(sdp)}`,
      '',
      sdp,
    ].join('\r\n');
  }

  /** A request in the dialog an INVITE's 200 set up, from the caller: to its Contact, through its Record-Route. */
  inDialogText(ok: SipResponse, method: string, cseq: number, extra: string[] = [], body = ''): string {
    const target = /<([^>]+)>/.exec(header(ok, 'Contact')!)![1]!;
    return [
      `${method} ${target} SIP/2.0`,
      `Via: SIP/2.0/WS ${this.host};branch=z9hG4bK${randomBytes(6).toString('hex')}`,
      'Max-Forwards: 70',
      ...headerList(ok, 'Record-Route').map((r) => `Route: ${r}`),
      `To: ${header(ok, 'To')}`,
      `From: ${header(ok, 'From')}`,
      `Call-ID: ${header(ok, 'Call-ID')}`,
      `CSeq: ${cseq} ${method}`,
      ...extra,
      `Content-Length: ${Buffer.byteLength(body)}`,
      '',
      body,
    ].join('\r\n');
  }

  /** REGISTER → 401 → REGISTER with credentials; resolves with the final response. */
  async register(user: string, password: string, domain: string, extra: { expires?: number; instance?: string; regId?: number } = {}): Promise<SipResponse> {
    const callId = randomBytes(8).toString('hex');
    const first = await this.request(this.registerText({ user, domain, callId, ...extra }));
    if (first.status !== 401) return first;
    const challenge = headerList(first, 'WWW-Authenticate').at(-1)!;
    return this.request(this.registerText({ user, domain, callId, ...extra, authorization: answerChallenge(challenge, user, password, 'REGISTER', `sip:${domain}`) }));
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close();
    });
  }
}

export function answerChallenge(challenge: string, user: string, password: string, method: string, uri: string): string {
  const p = parseAuthParams(challenge)!;
  const alg = (p.get('algorithm') ?? 'MD5') as DigestAlgorithm;
  const ha1 = digestHash(alg, `${user}:${p.get('realm')}:${password}`);
  const ha2 = digestHash(alg, `${method}:${uri}`);
  const cnonce = randomBytes(6).toString('hex');
  const nc = '00000001';
  const response = digestHash(alg, `${ha1}:${p.get('nonce')}:${nc}:${cnonce}:auth:${ha2}`);
  return `Digest algorithm=${alg}, username="${user}", realm="${p.get('realm')}", nonce="${p.get('nonce')}", uri="${uri}", response="${response}", qop=auth, cnonce="${cnonce}", nc=${nc}`;
}

export { header, headerList };
