import { header, headerList, serializeSipMessage, type SipHeader, type SipRequest } from './message.js';
import { newBranch, SERVER, tagOf, uriOf } from './build.js';

/**
 * A dialog in which voxgate is the UAS of the initial INVITE (RFC 3261 §12.1.1): it keeps the
 * route set, the remote target and both sequence numbers, and builds in-dialog requests
 * (BYE, REFER, re-INVITE) as §12.2.1.1 says.
 */
export class UasDialog {
  readonly callId: string;
  readonly localTag: string;
  readonly remoteTag: string;
  /** Our From in requests we send: the INVITE's To, with our tag. */
  readonly local: string;
  /** Their address: the INVITE's From, with their tag. */
  readonly remote: string;
  remoteTarget: string;
  readonly routeSet: string[];
  localSeq: number;
  remoteSeq: number;
  /** The initial offer (its ICE credentials tell a re-INVITE from an ICE restart). */
  readonly offerSdp: string;

  constructor(
    invite: SipRequest,
    localTag: string,
    private readonly viaHost: string,
    private readonly transport: string,
  ) {
    this.callId = header(invite, 'Call-ID')!;
    this.localTag = localTag;
    this.remoteTag = tagOf(header(invite, 'From')) ?? '';
    this.local = `${header(invite, 'To')!};tag=${localTag}`;
    this.remote = header(invite, 'From')!;
    this.remoteTarget = uriOf(header(invite, 'Contact') ?? header(invite, 'From')!);
    // §12.1.1: the UAS's route set is the Record-Route list in order.
    this.routeSet = headerList(invite, 'Record-Route');
    this.localSeq = Math.floor(Math.random() * 10_000);
    this.remoteSeq = Number(header(invite, 'CSeq')!.trim().split(/\s+/)[0]);
    this.offerSdp = invite.body.toString('utf8');
  }

  /** Whether an in-dialog request belongs here (their From tag is the remote tag, To tag ours). */
  matches(req: SipRequest): boolean {
    return header(req, 'Call-ID') === this.callId && tagOf(header(req, 'From')) === this.remoteTag && tagOf(header(req, 'To')) === this.localTag;
  }

  /** §12.2.2: a lower CSeq than the last one is out of order (500). */
  acceptSeq(req: SipRequest): boolean {
    const seq = Number(header(req, 'CSeq')!.trim().split(/\s+/)[0]);
    if (req.method === 'ACK' || req.method === 'CANCEL') return true;
    if (seq <= this.remoteSeq) return false;
    this.remoteSeq = seq;
    return true;
  }

  request(method: string, headers: SipHeader[] = [], body?: { type: string; content: string }): { text: string; branch: string } {
    const branch = newBranch();
    const seq = ++this.localSeq;
    const lines: SipHeader[] = [
      { name: 'Via', value: `SIP/2.0/${this.transport} ${this.viaHost};branch=${branch}` },
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
    const text = serializeSipMessage({ kind: 'request', method, uri: this.remoteTarget, version: 'SIP/2.0', headers: lines, body: Buffer.from(body?.content ?? '') });
    return { text, branch };
  }
}
