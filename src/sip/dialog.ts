import { cseqOf, header, headerList, serializeSipMessage, type SipHeader, type SipRequest, type SipResponse } from './message.js';
import { newBranch, SERVER, tagOf, uriOf } from './build.js';
import { viaFor, type SipTransport } from './transport/transport.js';

/** What a dialog needs of its transport: our Via comes from it. */
export type DialogTransport = Pick<SipTransport, 'protocol' | 'sentBy'>;

interface DialogState {
  callId: string;
  localTag: string;
  remoteTag: string;
  local: string;
  remote: string;
  remoteTarget: string;
  routeSet: string[];
  localSeq: number;
  remoteSeq: number;
  remoteSdp: string;
}

/**
 * A dialog voxgate is a party to (RFC 3261 §12): the route set, the remote target and both
 * sequence numbers, built from the initial INVITE as its UAS (§12.1.1) or from our INVITE and
 * its 2xx as the UAC (§12.1.2); builds in-dialog requests (BYE, REFER, NOTIFY, ACK) per §12.2.1.1.
 */
export class Dialog {
  readonly callId: string;
  readonly localTag: string;
  readonly remoteTag: string;
  /** Our From in requests we send, with our tag. */
  readonly local: string;
  /** Their address, with their tag: the To of requests we send. */
  readonly remote: string;
  remoteTarget: string;
  readonly routeSet: string[];
  localSeq: number;
  remoteSeq: number;
  /** Their SDP from the initial exchange (its ICE credentials tell a re-INVITE from an ICE restart). */
  readonly remoteSdp: string;

  private constructor(
    s: DialogState,
    private readonly transport: DialogTransport,
  ) {
    this.callId = s.callId;
    this.localTag = s.localTag;
    this.remoteTag = s.remoteTag;
    this.local = s.local;
    this.remote = s.remote;
    this.remoteTarget = s.remoteTarget;
    this.routeSet = s.routeSet;
    this.localSeq = s.localSeq;
    this.remoteSeq = s.remoteSeq;
    this.remoteSdp = s.remoteSdp;
  }

  /** §12.1.1: we answered `invite` with `localTag`; the route set is its Record-Route list in order. */
  static uas(invite: SipRequest, localTag: string, transport: DialogTransport): Dialog {
    return new Dialog(
      {
        callId: header(invite, 'Call-ID')!,
        localTag,
        remoteTag: tagOf(header(invite, 'From')) ?? '',
        local: `${header(invite, 'To')!};tag=${localTag}`,
        remote: header(invite, 'From')!,
        remoteTarget: uriOf(header(invite, 'Contact') ?? header(invite, 'From')!),
        routeSet: headerList(invite, 'Record-Route'),
        localSeq: Math.floor(Math.random() * 10_000),
        remoteSeq: cseqOf(invite),
        remoteSdp: invite.body.toString('utf8'),
      },
      transport,
    );
  }

  /** §12.1.2: our `invite` got the 2xx `ok`; the route set is its Record-Route list reversed. */
  static uac(invite: SipRequest, ok: SipResponse, transport: DialogTransport): Dialog {
    return new Dialog(
      {
        callId: header(invite, 'Call-ID')!,
        localTag: tagOf(header(invite, 'From')) ?? '',
        remoteTag: tagOf(header(ok, 'To')) ?? '',
        local: header(invite, 'From')!,
        remote: header(ok, 'To')!,
        remoteTarget: uriOf(header(ok, 'Contact') ?? header(invite, 'To')!),
        routeSet: headerList(ok, 'Record-Route').reverse(),
        localSeq: cseqOf(invite),
        // §12.1.2: the remote sequence number is empty until they send a request.
        remoteSeq: -1,
        remoteSdp: ok.body.toString('utf8'),
      },
      transport,
    );
  }

  /** Whether an in-dialog request belongs here (their From tag is the remote tag, To tag ours). */
  matches(req: SipRequest): boolean {
    return header(req, 'Call-ID') === this.callId && tagOf(header(req, 'From')) === this.remoteTag && tagOf(header(req, 'To')) === this.localTag;
  }

  /** §12.2.2: a lower CSeq than the last one is out of order (500). */
  acceptSeq(req: SipRequest): boolean {
    const seq = cseqOf(req);
    if (req.method === 'ACK' || req.method === 'CANCEL') return true;
    if (seq <= this.remoteSeq) return false;
    this.remoteSeq = seq;
    return true;
  }

  request(method: string, headers: SipHeader[] = [], body?: { type: string; content: string }): { text: string; branch: string } {
    const branch = newBranch();
    return { text: this.#build(method, ++this.localSeq, branch, headers, body), branch };
  }

  /** §13.2.2.4: the ACK for a 2xx is its own transaction, with the INVITE's CSeq number. */
  ack(inviteSeq: number): string {
    return this.#build('ACK', inviteSeq, newBranch(), []);
  }

  #build(method: string, seq: number, branch: string, headers: SipHeader[], body?: { type: string; content: string }): string {
    const lines: SipHeader[] = [
      { name: 'Via', value: viaFor(this.transport, branch) },
      { name: 'Max-Forwards', value: '70' },
      ...this.routeSet.map((r) => ({ name: 'Route', value: r })),
      { name: 'From', value: this.local },
      { name: 'To', value: this.remote },
      { name: 'Call-ID', value: this.callId },
      { name: 'CSeq', value: `${seq} ${method}` },
      { name: 'User-Agent', value: SERVER },
      ...headers,
    ];
    if (body) lines.push({ name: 'Content-Type', value: body.type });
    return serializeSipMessage({ kind: 'request', method, uri: this.remoteTarget, version: 'SIP/2.0', headers: lines, body: Buffer.from(body?.content ?? '') });
  }
}
