/**
 * The signalling of bench/trunk-bridge.ts, both ends:
 *
 * - PhoneUas: the phones behind a carrier, a SIP UAS on one UDP socket (RFC 3261) that voxgate's
 *   outbound trunk sends its INVITEs to: 100, 180, then 200 with the answer (retransmitted until
 *   the ACK, §13.3.1.4), BYE taken (200) and sent (Timer E), OPTIONS/UPDATE/INFO answered 200,
 *   a re-INVITE answered with the same session.
 * - BrowserSip: a browser's SIP over WebSocket (RFC 7118) as JsSIP does it: REGISTER with digest,
 *   INVITE with the WebRTC offer (a 407 answered with Proxy-Authorization), ACK of the 2xx to its
 *   Contact through its Record-Route, BYE sent and taken.
 *
 * The SDP side of the phone (what it answers to an RTP/AVP offer) is `phoneAnswer`, used too when
 * rtpengine, not voxgate, carries the offer.
 */
import { randomBytes } from 'node:crypto';
import type { RemoteInfo, Socket } from 'node:dgram';
import { openSipSocket, parseSip, type SipMessage } from './trunk-sip.js';

const T1 = 500;
const T2 = 4000;
export const token = (bytes: number) => randomBytes(bytes).toString('hex');
export const first = (m: SipMessage, name: string) => m.headers.get(name)?.[0] ?? '';
export const branchOf = (via: string) => /;\s*branch=([^;,\s]+)/i.exec(via)?.[1] ?? '';
/** The URI inside a name-addr (`"x" <sip:a@b>;tag=1` -> `sip:a@b`), or the addr-spec itself. */
export const uriOf = (value: string) => /<([^>]+)>/.exec(value)?.[1] ?? value.split(';')[0]!.trim();
/** Where a SIP URI's requests go over UDP: its host and port (5060 by default). */
function hostPortOf(uri: string): { host: string; port: number } {
  const m = /^sips?:(?:[^@]*@)?(\[[^\]]+\]|[^:;>]+)(?::(\d+))?/.exec(uri);
  return { host: m?.[1] ?? '127.0.0.1', port: Number(m?.[2] ?? 5060) };
}
/** Header values split on the commas between them (Record-Route may carry several). */
export const headerValues = (m: SipMessage, name: string) => (m.headers.get(name) ?? []).flatMap((v) => v.split(/,(?=\s*<)/).map((x) => x.trim()));

// ------------------------------------------------------------------ SDP

export interface AudioOffer {
  host: string;
  port: number;
  proto: string;
  /** Payload types in the offer's order, with their rtpmap (static 0/8 filled in). */
  formats: { pt: number; name: string; rate: number }[];
}

/** The first audio stream of an offer (media-level c= over session-level). */
export function parseAudioOffer(sdp: string): AudioOffer | undefined {
  const at = sdp.indexOf('m=audio ');
  if (at < 0) return undefined;
  const media = sdp.slice(at);
  const m = /^m=audio (\d+) (\S+) ([\d ]+)/m.exec(media);
  const c = /^c=IN IP4 (\S+)/m.exec(media) ?? /^c=IN IP4 (\S+)/m.exec(sdp);
  if (!m || !c) return undefined;
  const maps = new Map<number, { name: string; rate: number }>([
    [0, { name: 'pcmu', rate: 8000 }],
    [8, { name: 'pcma', rate: 8000 }],
  ]);
  for (const r of media.matchAll(/^a=rtpmap:(\d+) ([^/\s]+)\/(\d+)/gm)) maps.set(Number(r[1]), { name: r[2]!.toLowerCase(), rate: Number(r[3]) });
  const formats = m[3]!.trim().split(/\s+/).map(Number).map((pt) => ({ pt, ...(maps.get(pt) ?? { name: '?', rate: 0 }) }));
  return { host: c[1]!, port: Number(m[1]), proto: m[2]!, formats };
}

export type PhoneMode = 'pcmu' | 'opus';

/**
 * What the phone answers to an RTP/AVP offer (RFC 3264 §6.1): PCMU (pt 0), or in `opus` mode
 * opus/48000/2 with the offer's payload type; telephone-event at the codec's rate if offered.
 * Undefined when the codec it wants is not offered.
 */
export function phoneAnswer(offer: AudioOffer, mode: PhoneMode, port: number): { sdp: string; pt: number } | undefined {
  const codec = offer.formats.find((f) => (mode === 'pcmu' ? f.pt === 0 || (f.name === 'pcmu' && f.rate === 8000) : f.name === 'opus' && f.rate === 48000));
  if (!codec) return undefined;
  const rate = mode === 'pcmu' ? 8000 : 48000;
  const te = offer.formats.find((f) => f.name === 'telephone-event' && f.rate === rate);
  const pts = [codec.pt, ...(te ? [te.pt] : [])];
  const id = randomBytes(4).readUInt32BE(0);
  const lines = [
    'v=0',
    `o=phone ${id} 1 IN IP4 127.0.0.1`,
    's=phone',
    'c=IN IP4 127.0.0.1',
    't=0 0',
    `m=audio ${port} ${offer.proto} ${pts.join(' ')}`,
    mode === 'pcmu' ? `a=rtpmap:${codec.pt} PCMU/8000` : `a=rtpmap:${codec.pt} opus/48000/2`,
    ...(mode === 'opus' ? [`a=fmtp:${codec.pt} minptime=10;useinbandfec=1`] : []),
    ...(te ? [`a=rtpmap:${te.pt} telephone-event/${rate}`, `a=fmtp:${te.pt} 0-16`] : []),
    `a=rtcp:${port + 1}`,
    'a=ptime:20',
    'a=sendrecv',
    '',
  ];
  return { sdp: lines.join('\r\n'), pt: codec.pt };
}

// ------------------------------------------------------------------ the phones (UDP UAS)

/** A call the phones answered (the UAS side of the dialog, §12.1.1). */
export interface PhoneDialog {
  callId: string;
  /** The number voxgate called (the Request-URI's user part). */
  number: string;
  /** Our To, with our tag: the From of our requests. */
  local: string;
  /** The INVITE's From: the To of our requests. */
  remote: string;
  target: string;
  routes: string[];
  cseq: number;
  answer: string;
  endedByGateway: boolean;
  acked: boolean;
}

export interface PhoneCounters {
  invites: number;
  inviteRetransmits: number;
  okRetransmits: number;
  /** 200s given up on: no ACK in 64 x T1. */
  noAck: number;
  byesFromGateway: number;
  byeRetransmits: number;
  /** Other requests the gateway sent (OPTIONS, UPDATE, INFO, re-INVITE). */
  otherRequests: number;
  strays: number;
  /** Refusals we sent, by status and why. */
  refused: Map<string, number>;
}

/** What the bench does with an INVITE: an answer (and the call's setup continues), or a refusal. */
export type InviteHandler = (number: string, offerSdp: string, dialog: PhoneDialog) => Promise<{ sdp: string } | { status: number; reason: string }>;

interface UasTx {
  /** The last response sent, resent for a retransmitted request. */
  last: string;
  to: RemoteInfo;
}

export class PhoneUas {
  readonly counters: PhoneCounters = { invites: 0, inviteRetransmits: 0, okRetransmits: 0, noAck: 0, byesFromGateway: 0, byeRetransmits: 0, otherRequests: 0, strays: 0, refused: new Map() };
  onInvite: InviteHandler | undefined;
  onBye: ((dialog: PhoneDialog) => void) | undefined;
  readonly dialogs = new Map<string, PhoneDialog>();
  readonly #server = new Map<string, UasTx>();
  readonly #client = new Map<string, (res: SipMessage) => void>();
  readonly #okTimers = new Map<string, NodeJS.Timeout>();
  readonly #local: string;

  private constructor(readonly socket: Socket) {
    this.#local = `127.0.0.1:${socket.address().port}`;
    socket.on('message', (data, rinfo) => this.#onDatagram(data, rinfo));
    socket.on('error', () => undefined);
  }

  static async open(): Promise<PhoneUas> {
    return new PhoneUas(await openSipSocket());
  }

  get port(): number {
    return this.socket.address().port;
  }

  /** BYE (Timer E until a final response); resolves with its status, 0 on timeout. */
  bye(dialog: PhoneDialog, timeoutMs = 8000): Promise<number> {
    if (dialog.endedByGateway || !this.dialogs.has(dialog.callId)) return Promise.resolve(200);
    const branch = `z9hG4bK-${token(6)}`;
    dialog.cseq++;
    const hop = hostPortOf(dialog.routes.length ? uriOf(dialog.routes[0]!) : dialog.target);
    const text =
      `BYE ${dialog.target} SIP/2.0\r\nVia: SIP/2.0/UDP ${this.#local};branch=${branch};rport\r\nMax-Forwards: 70\r\n` +
      dialog.routes.map((r) => `Route: ${r}\r\n`).join('') +
      `From: ${dialog.local}\r\nTo: ${dialog.remote}\r\nCall-ID: ${dialog.callId}\r\nCSeq: ${dialog.cseq} BYE\r\nContent-Length: 0\r\n\r\n`;
    return new Promise<number>((resolve) => {
      let retransmit: NodeJS.Timeout | undefined;
      const done = (status: number) => {
        clearTimeout(retransmit);
        clearTimeout(deadline);
        this.#client.delete(branch);
        this.#forget(dialog.callId);
        resolve(status);
      };
      const deadline = setTimeout(() => done(0), timeoutMs);
      // §17.1.2.2 Timer E.
      const resend = (interval: number) => {
        retransmit = setTimeout(() => {
          this.counters.byeRetransmits++;
          this.socket.send(text, hop.port, hop.host);
          resend(Math.min(2 * interval, T2));
        }, interval);
      };
      this.#client.set(branch, (res) => res.status >= 200 && done(res.status));
      this.socket.send(text, hop.port, hop.host);
      resend(T1);
    });
  }

  close(): void {
    for (const t of this.#okTimers.values()) clearTimeout(t);
    this.socket.close();
  }

  #forget(callId: string): void {
    this.dialogs.delete(callId);
    clearTimeout(this.#okTimers.get(callId));
    this.#okTimers.delete(callId);
  }

  #onDatagram(data: Buffer, rinfo: RemoteInfo): void {
    if (data.length < 4 || data.every((c) => c === 0x0d || c === 0x0a)) return;
    const m = parseSip(data);
    if (!m) return;
    if (m.status > 0) {
      const tx = this.#client.get(branchOf(first(m, 'via')));
      if (tx) tx(m);
      else this.counters.strays++;
      return;
    }
    if (m.method === 'ACK') return this.#onAck(m);
    const key = `${branchOf(first(m, 'via'))}|${m.method}`;
    const tx = this.#server.get(key);
    if (tx) {
      // §17.2.1: a retransmitted request gets the last response again.
      if (m.method === 'INVITE') this.counters.inviteRetransmits++;
      this.socket.send(tx.last, tx.to.port, tx.to.address);
      return;
    }
    const respond = (status: number, reason: string, extra = '', body = '', toTag = '') => {
      const to = first(m, 'to');
      const res =
        `SIP/2.0 ${status} ${reason}\r\n${(m.headers.get('via') ?? []).map((v) => `Via: ${v}\r\n`).join('')}` +
        (m.headers.get('record-route') ?? []).map((v) => `Record-Route: ${v}\r\n`).join('') +
        `From: ${first(m, 'from')}\r\nTo: ${to}${toTag && !/;\s*tag=/i.test(to) ? `;tag=${toTag}` : ''}\r\nCall-ID: ${first(m, 'call-id')}\r\nCSeq: ${first(m, 'cseq')}\r\n${extra}` +
        `${body ? 'Content-Type: application/sdp\r\n' : ''}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
      this.#server.set(key, { last: res, to: rinfo });
      // The server transaction is kept long enough to absorb retransmissions (Timer J / H, 64 x T1).
      setTimeout(() => this.#server.delete(key), 64 * T1).unref();
      this.socket.send(res, rinfo.port, rinfo.address);
      return res;
    };
    const callId = first(m, 'call-id');
    const dialog = this.dialogs.get(callId);
    if (m.method === 'INVITE' && !/;\s*tag=/i.test(first(m, 'to'))) return void this.#onInvite(m, respond, rinfo);
    if (m.method === 'BYE') {
      if (!dialog) return void respond(481, 'Call/Transaction Does Not Exist');
      respond(200, 'OK');
      dialog.endedByGateway = true;
      this.counters.byesFromGateway++;
      this.#forget(callId);
      this.onBye?.(dialog);
      return;
    }
    if (m.method === 'CANCEL') return void respond(200, 'OK');
    this.counters.otherRequests++;
    if (m.method === 'OPTIONS') return void respond(200, 'OK', `Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO\r\n`);
    if (!dialog) return void respond(481, 'Call/Transaction Does Not Exist');
    // A refresh (re-INVITE or UPDATE, RFC 4028) keeps the session as it is.
    const contact = `Contact: <sip:phone@${this.#local}>\r\n`;
    if (m.method === 'INVITE') return void respond(200, 'OK', contact, dialog.answer);
    respond(200, 'OK', m.method === 'UPDATE' ? contact : '');
  }

  async #onInvite(m: SipMessage, respond: (status: number, reason: string, extra?: string, body?: string, toTag?: string) => string, rinfo: RemoteInfo): Promise<void> {
    this.counters.invites++;
    const tag = token(4);
    const refuse = (status: number, reason: string) => {
      const k = `${status} ${reason}`;
      this.counters.refused.set(k, (this.counters.refused.get(k) ?? 0) + 1);
      respond(status, reason, '', '', tag);
    };
    respond(100, 'Trying');
    const number = /^sips?:([^@;]+)/.exec(m.uri)?.[1] ?? '';
    const callId = first(m, 'call-id');
    const dialog: PhoneDialog = {
      callId,
      number,
      local: `${first(m, 'to')};tag=${tag}`,
      remote: first(m, 'from'),
      target: uriOf(first(m, 'contact')),
      // §12.1.1: the UAS's route set is the Record-Route in order.
      routes: headerValues(m, 'record-route'),
      cseq: 0,
      answer: '',
      endedByGateway: false,
      acked: false,
    };
    if (!m.body) return refuse(488, 'Not Acceptable Here (no offer)');
    if (!this.onInvite) return refuse(480, 'Temporarily Unavailable');
    let outcome: Awaited<ReturnType<InviteHandler>>;
    try {
      outcome = await this.onInvite(number, m.body, dialog);
    } catch (err) {
      return refuse(500, `Server Internal Error (${(err as Error).message.slice(0, 80)})`);
    }
    if ('status' in outcome) return refuse(outcome.status, outcome.reason);
    dialog.answer = outcome.sdp;
    this.dialogs.set(callId, dialog);
    const contact = `Contact: <sip:phone@${this.#local}>\r\nAllow: INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO\r\n`;
    respond(180, 'Ringing', contact, '', tag);
    const ok = respond(200, 'OK', contact, outcome.sdp, tag);
    // §13.3.1.4: the 2xx is resent, T1 doubling up to T2, until the ACK; after 64 x T1 the call is given up.
    const started = performance.now();
    const resend = (interval: number) => {
      this.#okTimers.set(
        callId,
        setTimeout(() => {
          if (dialog.acked || !this.dialogs.has(callId)) return;
          if (performance.now() - started >= 64 * T1) {
            this.counters.noAck++;
            return;
          }
          this.counters.okRetransmits++;
          // Where the INVITE came from (§18.2.2 with rport, RFC 3581).
          this.socket.send(ok, rinfo.port, rinfo.address);
          resend(Math.min(2 * interval, T2));
        }, interval),
      );
    };
    resend(T1);
  }

  #onAck(m: SipMessage): void {
    const d = this.dialogs.get(first(m, 'call-id'));
    if (!d) return;
    d.acked = true;
    clearTimeout(this.#okTimers.get(d.callId));
    this.#okTimers.delete(d.callId);
  }
}
