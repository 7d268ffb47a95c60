/**
 * The carrier's side of a SIP trunk for bench/trunk.ts: a minimal SIP UAC over one UDP socket
 * (RFC 3261), as an SBC sends from one address. INVITE with a PCMU offer (Timer A
 * retransmissions until a response), ACK to the 2xx's Contact (and again for every
 * retransmitted 2xx, §13.2.2.4), ACK of a non-2xx in its transaction (§17.1.1.3), CANCEL when
 * the answer is too slow, BYE (Timer E retransmissions), and 200 to what the gateway sends
 * inside a dialog (its BYE, a session-timer refresh).
 */
import { randomBytes } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';

const T1 = 500;
const T2 = 4000;
/** Header names and the RFC 3261 §7.3.3 compact forms we may be sent. */
const COMPACT: Record<string, string> = { v: 'via', f: 'from', t: 'to', i: 'call-id', m: 'contact', l: 'content-length', c: 'content-type', k: 'supported' };

export interface SipMessage {
  /** Responses: the status; requests: 0. */
  status: number;
  reason: string;
  method: string;
  uri: string;
  /** Lower-case full names; one entry per header line. */
  headers: Map<string, string[]>;
  body: string;
}

/** A SIP message from a datagram, or undefined when it is not one (pure: no socket, no clock). */
export function parseSip(data: Buffer): SipMessage | undefined {
  const text = data.toString('utf8');
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const lines = text.slice(0, end).split('\r\n');
  const start = lines[0] ?? '';
  const headers = new Map<string, string[]>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const raw = line.slice(0, colon).trim().toLowerCase();
    const name = COMPACT[raw] ?? raw;
    const list = headers.get(name) ?? [];
    list.push(line.slice(colon + 1).trim());
    headers.set(name, list);
  }
  const length = Number(headers.get('content-length')?.[0] ?? 0);
  const body = Buffer.from(text.slice(end + 4), 'utf8').subarray(0, length).toString('utf8');
  const res = /^SIP\/2\.0 (\d{3}) ?(.*)$/.exec(start);
  if (res) return { status: Number(res[1]), reason: res[2] ?? '', method: '', uri: '', headers, body };
  const req = /^([A-Z]+) (\S+) SIP\/2\.0$/.exec(start);
  if (req) return { status: 0, reason: '', method: req[1]!, uri: req[2]!, headers, body };
  return undefined;
}

function first(m: SipMessage, name: string): string {
  return m.headers.get(name)?.[0] ?? '';
}

function branchOf(via: string): string {
  return /;\s*branch=([^;,\s]+)/i.exec(via)?.[1] ?? '';
}

/** The URI inside a name-addr (`"x" <sip:a@b>;tag=1` -> `sip:a@b`), or the addr-spec itself. */
function uriOf(value: string): string {
  const angle = /<([^>]+)>/.exec(value);
  return angle ? angle[1]! : value.split(';')[0]!.trim();
}

const token = (bytes: number) => randomBytes(bytes).toString('hex');

/** A confirmed dialog, as the UAC keeps it (RFC 3261 §12.1.2). */
export interface UacDialog {
  callId: string;
  from: string;
  /** The To of the 2xx, with the gateway's tag. */
  to: string;
  /** The 2xx's Contact: where in-dialog requests go (the Request-URI). */
  target: string;
  cseq: number;
  /** The ACK as sent, resent for each retransmitted 2xx. */
  ack: string;
  /** Our offer, for answering a re-INVITE with the same session. */
  sdp: string;
  endedByGateway: boolean;
}

export type InviteOutcome =
  | { ok: true; inviteToOkMs: number; inviteToRingingMs: number | undefined; answerSdp: string; dialog: UacDialog }
  | { ok: false; why: string; afterMs: number };

export interface UacCounters {
  inviteRetransmits: number;
  byeRetransmits: number;
  /** 2xx retransmissions from the gateway (our ACK was late or lost), each answered with the ACK again. */
  reAcks: number;
  /** Requests the gateway sent inside our dialogs (a BYE, a refresh), answered 200. */
  gatewayRequests: number;
  /** Responses that matched no transaction or dialog. */
  strays: number;
  /** Contacts that did not name the listener we sent the INVITE to. */
  foreignContacts: string[];
}

interface ClientTx {
  onResponse(res: SipMessage): void;
}

/**
 * A UDP socket on 127.0.0.1 for a bench SIP peer, with room for bursts of 180/200 when hundreds
 * of calls a second ramp up (capped by net.core.rmem_max).
 */
export async function openSipSocket(): Promise<Socket> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      socket.off('error', reject);
      resolve();
    });
  });
  socket.setRecvBufferSize(8 << 20);
  socket.setSendBufferSize(8 << 20);
  return socket;
}

export class TrunkUac {
  readonly counters: UacCounters = { inviteRetransmits: 0, byeRetransmits: 0, reAcks: 0, gatewayRequests: 0, strays: 0, foreignContacts: [] };
  /** Called when the gateway ends a dialog (its BYE). */
  onGatewayBye: ((dialog: UacDialog) => void) | undefined;
  readonly #tx = new Map<string, ClientTx>();
  readonly #dialogs = new Map<string, UacDialog>();
  readonly #local: string;

  private constructor(
    readonly socket: Socket,
    readonly gateway: { host: string; port: number },
  ) {
    this.#local = `127.0.0.1:${socket.address().port}`;
    socket.on('message', (data, rinfo) => this.#onDatagram(data, rinfo));
    socket.on('error', () => undefined);
  }

  static async open(gateway: { host: string; port: number }): Promise<TrunkUac> {
    return new TrunkUac(await openSipSocket(), gateway);
  }

  get dialogs(): number {
    return this.#dialogs.size;
  }

  /** INVITE -> (100/180) -> 200 -> ACK; a CANCEL after timeoutMs without a final answer. */
  invite(opts: { to: string; from: string; sdp: string; timeoutMs: number }): Promise<InviteOutcome> {
    const callId = `${token(8)}@bench`;
    const branch = `z9hG4bK-${token(6)}`;
    const fromTag = token(4);
    const via = `SIP/2.0/UDP ${this.#local};branch=${branch};rport`;
    const from = `<sip:${opts.from}@127.0.0.1>;tag=${fromTag}`;
    const ruri = `sip:${opts.to}@${this.gateway.host}:${this.gateway.port};user=phone`;
    const text =
      `INVITE ${ruri} SIP/2.0\r\nVia: ${via}\r\nMax-Forwards: 70\r\nFrom: ${from}\r\nTo: <sip:${opts.to}@${this.gateway.host};user=phone>\r\n` +
      `Call-ID: ${callId}\r\nCSeq: 1 INVITE\r\nContact: <sip:${opts.from}@${this.#local}>\r\nAllow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\n` +
      `User-Agent: voxgate-bench-trunk\r\nContent-Type: application/sdp\r\nContent-Length: ${Buffer.byteLength(opts.sdp)}\r\n\r\n${opts.sdp}`;
    const t0 = performance.now();
    return new Promise<InviteOutcome>((resolve) => {
      let answered = false;
      let ringingAt: number | undefined;
      let retransmit: NodeJS.Timeout | undefined;
      let cancelled = false;
      let settled = false;
      const done = (outcome: InviteOutcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(retransmit);
        clearTimeout(deadline);
        this.#tx.delete(branch);
        resolve(outcome);
      };
      // §17.1.1.2 Timer A: resend until any response arrives.
      const resend = (interval: number) => {
        retransmit = setTimeout(() => {
          this.counters.inviteRetransmits++;
          this.#send(text);
          resend(Math.min(2 * interval, T2));
        }, interval);
      };
      const deadline = setTimeout(() => {
        if (answered) return;
        cancelled = true;
        // §9.1: CANCEL has the INVITE's branch, Call-ID, From, To and CSeq number; the 487 then ends it.
        this.#send(`CANCEL ${ruri} SIP/2.0\r\nVia: ${via}\r\nMax-Forwards: 70\r\nFrom: ${from}\r\nTo: <sip:${opts.to}@${this.gateway.host};user=phone>\r\nCall-ID: ${callId}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n`);
        setTimeout(() => done({ ok: false, why: `no answer within ${opts.timeoutMs} ms`, afterMs: performance.now() - t0 }), 2000).unref();
      }, opts.timeoutMs);
      this.#tx.set(branch, {
        onResponse: (res) => {
          clearTimeout(retransmit);
          const method = first(res, 'cseq').split(/\s+/)[1];
          if (method === 'CANCEL') return;
          if (res.status < 200) {
            if (res.status === 180 || res.status === 183) ringingAt ??= performance.now();
            return;
          }
          if (answered) return;
          answered = true;
          if (res.status >= 300) {
            // §17.1.1.3: the ACK of a non-2xx is part of the INVITE transaction (same branch and Request-URI).
            this.#send(`ACK ${ruri} SIP/2.0\r\nVia: ${via}\r\nMax-Forwards: 70\r\nFrom: ${from}\r\nTo: ${first(res, 'to')}\r\nCall-ID: ${callId}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n`);
            return done({ ok: false, why: cancelled ? `no answer within ${opts.timeoutMs} ms` : `${res.status} ${res.reason}`, afterMs: performance.now() - t0 });
          }
          const okAt = performance.now();
          const contact = first(res, 'contact');
          const target = uriOf(contact);
          if (!target.includes(`@${this.gateway.host}:${this.gateway.port}`) && this.counters.foreignContacts.length < 3) this.counters.foreignContacts.push(contact);
          const to = first(res, 'to');
          // §13.2.2.4: the 2xx's ACK is a new transaction to the remote target.
          const ack = `ACK ${target} SIP/2.0\r\nVia: SIP/2.0/UDP ${this.#local};branch=z9hG4bK-${token(6)};rport\r\nMax-Forwards: 70\r\nFrom: ${from}\r\nTo: ${to}\r\nCall-ID: ${callId}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n`;
          this.#send(ack);
          const dialog: UacDialog = { callId, from, to, target, cseq: 1, ack, sdp: opts.sdp, endedByGateway: false };
          this.#dialogs.set(callId, dialog);
          done({ ok: true, inviteToOkMs: okAt - t0, inviteToRingingMs: ringingAt === undefined ? undefined : ringingAt - t0, answerSdp: res.body, dialog });
        },
      });
      this.#send(text);
      resend(T1);
    });
  }

  /** BYE (Timer E until a final response); resolves with its status, 0 on timeout. */
  bye(dialog: UacDialog, timeoutMs = 8000): Promise<number> {
    if (dialog.endedByGateway || !this.#dialogs.has(dialog.callId)) return Promise.resolve(200);
    const branch = `z9hG4bK-${token(6)}`;
    dialog.cseq++;
    const text = `BYE ${dialog.target} SIP/2.0\r\nVia: SIP/2.0/UDP ${this.#local};branch=${branch};rport\r\nMax-Forwards: 70\r\nFrom: ${dialog.from}\r\nTo: ${dialog.to}\r\nCall-ID: ${dialog.callId}\r\nCSeq: ${dialog.cseq} BYE\r\nContent-Length: 0\r\n\r\n`;
    return new Promise<number>((resolve) => {
      let retransmit: NodeJS.Timeout | undefined;
      const done = (status: number) => {
        clearTimeout(retransmit);
        clearTimeout(deadline);
        this.#tx.delete(branch);
        this.#dialogs.delete(dialog.callId);
        resolve(status);
      };
      const deadline = setTimeout(() => done(0), timeoutMs);
      // §17.1.2.2 Timer E.
      const resend = (interval: number) => {
        retransmit = setTimeout(() => {
          this.counters.byeRetransmits++;
          this.#send(text);
          resend(Math.min(2 * interval, T2));
        }, interval);
      };
      this.#tx.set(branch, { onResponse: (res) => res.status >= 200 && done(res.status) });
      this.#send(text);
      resend(T1);
    });
  }

  close(): void {
    this.socket.close();
  }

  #send(text: string): void {
    this.socket.send(text, this.gateway.port, this.gateway.host);
  }

  #onDatagram(data: Buffer, rinfo: RemoteInfo): void {
    if (data.length < 4 || data.every((c) => c === 0x0d || c === 0x0a)) return;
    const m = parseSip(data);
    if (!m) return;
    if (m.status === 0) return this.#onRequest(m, rinfo);
    const tx = this.#tx.get(branchOf(first(m, 'via')));
    if (tx) return tx.onResponse(m);
    const dialog = this.#dialogs.get(first(m, 'call-id'));
    if (dialog && m.status >= 200 && m.status < 300 && /\bINVITE$/.test(first(m, 'cseq'))) {
      this.counters.reAcks++;
      this.#send(dialog.ack);
      return;
    }
    this.counters.strays++;
  }

  /** In-dialog requests from the gateway: 200 (with our session again for a re-INVITE). */
  #onRequest(req: SipMessage, rinfo: RemoteInfo): void {
    if (req.method === 'ACK') return;
    const dialog = this.#dialogs.get(first(req, 'call-id'));
    this.counters.gatewayRequests++;
    const status = dialog || req.method === 'OPTIONS' ? 200 : 481;
    const body = dialog && req.method === 'INVITE' ? dialog.sdp : '';
    const vias = (req.headers.get('via') ?? []).map((v) => `Via: ${v}\r\n`).join('');
    const contact = req.method === 'INVITE' ? `Contact: <sip:bench@${this.#local}>\r\n` : '';
    const type = body ? 'Content-Type: application/sdp\r\n' : '';
    const res =
      `SIP/2.0 ${status} ${status === 200 ? 'OK' : 'Call/Transaction Does Not Exist'}\r\n${vias}From: ${first(req, 'from')}\r\nTo: ${first(req, 'to')}\r\n` +
      `Call-ID: ${first(req, 'call-id')}\r\nCSeq: ${first(req, 'cseq')}\r\n${contact}${type}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    this.socket.send(res, rinfo.port, rinfo.address);
    if (dialog && req.method === 'BYE') {
      dialog.endedByGateway = true;
      this.#dialogs.delete(dialog.callId);
      this.onGatewayBye?.(dialog);
    }
  }
}

/** Our PCMU offer (RFC 3264 §5) for an RTP port; RTCP on port + 1 (RFC 3550 §11). */
export function pcmuOffer(port: number): string {
  const id = randomBytes(4).readUInt32BE(0);
  return (
    `v=0\r\no=bench ${id} 1 IN IP4 127.0.0.1\r\ns=bench\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n` +
    `m=audio ${port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n`
  );
}

/** Where the answer wants our RTP: its c= (media level over session level) and m=audio port. */
export function answerAddress(sdp: string): { host: string; port: number; payloadType: number } | undefined {
  const audio = sdp.indexOf('m=audio ');
  if (audio < 0) return undefined;
  const m = /^m=audio (\d+) RTP\/S?AVP ([\d ]+)/m.exec(sdp.slice(audio));
  const c = /^c=IN IP4 (\S+)/m.exec(sdp.slice(audio)) ?? /^c=IN IP4 (\S+)/m.exec(sdp);
  if (!m || !c) return undefined;
  return { host: c[1]!, port: Number(m[1]), payloadType: Number(m[2]!.split(' ')[0]) };
}
