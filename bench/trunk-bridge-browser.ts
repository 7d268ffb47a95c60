/** bench/trunk-bridge.ts's browsers' signalling: SIP over WebSocket (REGISTER, INVITE with the WebRTC offer, ACK, BYE) to voxgate. */
import type WebSocket from 'ws';
import { answerChallenge, SipWsClient } from '../test/helpers/sip-ws-client.js';
import { branchOf, first, headerValues, token, uriOf } from './trunk-bridge-sip.js';
import { parseSip, type SipMessage } from './trunk-sip.js';


export type CallOutcome = { ok: true; answerSdp: string; inviteToOkMs: number; ringing: boolean } | { ok: false; why: string; status: number };

interface WsDialog {
  callId: string;
  local: string;
  remote: string;
  target: string;
  routes: string[];
  cseq: number;
  offer: string;
}

export class BrowserSip {
  /** The gateway ended the call (its BYE); set before onBye runs. */
  endedByGateway = false;
  onBye: (() => void) | undefined;
  otherRequests = 0;
  readonly #tx = new Map<string, (text: string, m: SipMessage) => void>();
  #dialog: WsDialog | undefined;

  private constructor(
    readonly client: SipWsClient,
    readonly user: string,
    readonly password: string,
    readonly domain: string,
  ) {
    client.ws.on('message', (data: WebSocket.RawData) => this.#onMessage(Buffer.isBuffer(data) ? data : Buffer.from(data.toString())));
  }

  /** A WebSocket to the gateway's /sip and a registration (401 -> digest -> 200). */
  static async register(url: string, user: string, password: string, domain: string): Promise<BrowserSip> {
    const client = await SipWsClient.connect(url);
    try {
      const res = await client.register(user, password, domain);
      if (res.status !== 200) throw new Error(`REGISTER ${user}: ${res.status} ${res.reason}`);
    } catch (err) {
      await client.close();
      throw err;
    }
    return new BrowserSip(client, user, password, domain);
  }

  /** INVITE (407 -> with Proxy-Authorization) -> 200 -> ACK; a CANCEL after timeoutMs without a final answer. */
  invite(number: string, offer: string, timeoutMs: number): Promise<CallOutcome> {
    const c = this.client;
    const ruri = `sip:${number}@${this.domain}`;
    const callId = token(10);
    const local = `"${this.user}" <sip:${this.user}@${this.domain}>;tag=${token(5)}`;
    const contact = `<sip:${c.contactUser}@${c.host};transport=ws;ob>`;
    const t0 = performance.now();
    return new Promise<CallOutcome>((resolve) => {
      let cseq = 0;
      let branch = '';
      let answered = false;
      let ringing = false;
      let settled = false;
      const done = (o: CallOutcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        this.#tx.delete(branch);
        resolve(o);
      };
      const send = (auth?: string) => {
        this.#tx.delete(branch);
        branch = `z9hG4bK${token(6)}`;
        cseq++;
        this.#tx.set(branch, onResponse);
        c.send(
          `INVITE ${ruri} SIP/2.0\r\nVia: SIP/2.0/WS ${c.host};branch=${branch}\r\nMax-Forwards: 70\r\nTo: <${ruri}>\r\nFrom: ${local}\r\nCall-ID: ${callId}\r\n` +
            `CSeq: ${cseq} INVITE\r\n${auth ? `Proxy-Authorization: ${auth}\r\n` : ''}Contact: ${contact}\r\nAllow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO,NOTIFY\r\n` +
            `Supported: ice,replaces,outbound\r\nUser-Agent: voxgate-bench-bridge\r\nContent-Type: application/sdp\r\nContent-Length: ${Buffer.byteLength(offer)}\r\n\r\n${offer}`,
        );
      };
      // §17.1.1.3: the ACK of a non-2xx belongs to the INVITE's transaction (its branch and Request-URI).
      const ackFailure = (m: SipMessage) =>
        c.send(`ACK ${ruri} SIP/2.0\r\nVia: SIP/2.0/WS ${c.host};branch=${branch}\r\nMax-Forwards: 70\r\nTo: ${first(m, 'to')}\r\nFrom: ${local}\r\nCall-ID: ${callId}\r\nCSeq: ${cseq} ACK\r\nContent-Length: 0\r\n\r\n`);
      const onResponse = (_text: string, m: SipMessage) => {
        if (!/\bINVITE$/.test(first(m, 'cseq'))) return;
        if (m.status < 200) {
          if (m.status === 180 || m.status === 183) ringing = true;
          return;
        }
        if (m.status === 407 || m.status === 401) {
          ackFailure(m);
          if (cseq > 1) return done({ ok: false, why: `${m.status} ${m.reason} (after our credentials)`, status: m.status });
          const challenge = (m.headers.get(m.status === 407 ? 'proxy-authenticate' : 'www-authenticate') ?? []).at(-1);
          if (!challenge) return done({ ok: false, why: `${m.status} without a challenge`, status: m.status });
          return send(answerChallenge(challenge, this.user, this.password, 'INVITE', ruri));
        }
        if (m.status >= 300) {
          ackFailure(m);
          return done({ ok: false, why: `${m.status} ${m.reason}`, status: m.status });
        }
        if (answered) return;
        answered = true;
        const okMs = performance.now() - t0;
        // §12.1.2: the UAC's route set is the Record-Route reversed; the target is the 2xx's Contact.
        this.#dialog = { callId, local, remote: first(m, 'to'), target: uriOf(first(m, 'contact')), routes: headerValues(m, 'record-route').reverse(), cseq, offer };
        this.#send2xxAck();
        done({ ok: true, answerSdp: m.body, inviteToOkMs: okMs, ringing });
      };
      const deadline = setTimeout(() => {
        if (answered) return;
        c.send(`CANCEL ${ruri} SIP/2.0\r\nVia: SIP/2.0/WS ${c.host};branch=${branch}\r\nMax-Forwards: 70\r\nTo: <${ruri}>\r\nFrom: ${local}\r\nCall-ID: ${callId}\r\nCSeq: ${cseq} CANCEL\r\nContent-Length: 0\r\n\r\n`);
        done({ ok: false, why: `no final answer within ${timeoutMs} ms`, status: 0 });
      }, timeoutMs);
      send();
    });
  }

  #send2xxAck(): void {
    const d = this.#dialog!;
    // §13.2.2.4: the 2xx's ACK is its own transaction, to the remote target.
    this.client.send(
      `ACK ${d.target} SIP/2.0\r\nVia: SIP/2.0/WS ${this.client.host};branch=z9hG4bK${token(6)}\r\nMax-Forwards: 70\r\n${d.routes.map((r) => `Route: ${r}\r\n`).join('')}` +
        `To: ${d.remote}\r\nFrom: ${d.local}\r\nCall-ID: ${d.callId}\r\nCSeq: ${d.cseq} ACK\r\nContent-Length: 0\r\n\r\n`,
    );
  }

  /** BYE; resolves with the final status, 0 on timeout, 200 if the gateway already ended the call. */
  bye(timeoutMs = 8000): Promise<number> {
    const d = this.#dialog;
    if (!d || this.endedByGateway) return Promise.resolve(200);
    this.#dialog = undefined;
    d.cseq++;
    const branch = `z9hG4bK${token(6)}`;
    return new Promise<number>((resolve) => {
      const timer = setTimeout(() => {
        this.#tx.delete(branch);
        resolve(0);
      }, timeoutMs);
      this.#tx.set(branch, (_t, m) => {
        if (m.status < 200) return;
        clearTimeout(timer);
        this.#tx.delete(branch);
        resolve(m.status);
      });
      this.client.send(
        `BYE ${d.target} SIP/2.0\r\nVia: SIP/2.0/WS ${this.client.host};branch=${branch}\r\nMax-Forwards: 70\r\n${d.routes.map((r) => `Route: ${r}\r\n`).join('')}` +
          `To: ${d.remote}\r\nFrom: ${d.local}\r\nCall-ID: ${d.callId}\r\nCSeq: ${d.cseq} BYE\r\nContent-Length: 0\r\n\r\n`,
      );
    });
  }

  close(): Promise<void> {
    return this.client.close();
  }

  #onMessage(data: Buffer): void {
    const m = parseSip(data);
    if (!m) return;
    if (m.status > 0) {
      const tx = this.#tx.get(branchOf(first(m, 'via')));
      if (tx) return tx(data.toString(), m);
      // A retransmitted 2xx (our ACK was lost): ACK it again (§13.2.2.4).
      if (this.#dialog && m.status >= 200 && m.status < 300 && first(m, 'call-id') === this.#dialog.callId && /\bINVITE$/.test(first(m, 'cseq'))) this.#send2xxAck();
      return;
    }
    if (m.method === 'ACK') return;
    const d = this.#dialog;
    const inDialog = d !== undefined && first(m, 'call-id') === d.callId;
    const status = inDialog || m.method === 'OPTIONS' ? 200 : 481;
    const body = inDialog && m.method === 'INVITE' ? d.offer : '';
    if (m.method !== 'BYE') this.otherRequests++;
    this.client.send(
      `SIP/2.0 ${status} ${status === 200 ? 'OK' : 'Call/Transaction Does Not Exist'}\r\n${(m.headers.get('via') ?? []).map((v) => `Via: ${v}\r\n`).join('')}` +
        `From: ${first(m, 'from')}\r\nTo: ${first(m, 'to')}\r\nCall-ID: ${first(m, 'call-id')}\r\nCSeq: ${first(m, 'cseq')}\r\n` +
        `${m.method === 'INVITE' || m.method === 'UPDATE' ? `Contact: <sip:${this.client.contactUser}@${this.client.host};transport=ws>\r\n` : ''}` +
        `${body ? 'Content-Type: application/sdp\r\n' : ''}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    if (inDialog && m.method === 'BYE') {
      this.endedByGateway = true;
      this.#dialog = undefined;
      this.onBye?.();
    }
  }
}
