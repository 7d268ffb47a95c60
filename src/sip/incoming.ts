import type { Clock, TimerHandle } from '../core/clock.js';
import { newTag, responseText, tagOf } from './build.js';
import { header } from './message.js';
import type { SipRequest, SipResponse } from './message.js';
import { InviteServerTransaction, type NonInviteServerTransaction } from './transaction/server.js';
import { T1, T2 } from './transaction/transaction.js';
import type { SipFlow } from './transport/transport.js';

/** A request we are the server of: its transaction, and how to answer it. */
export class Incoming {
  #toTag: string | undefined;
  #retransmit: TimerHandle | undefined;
  #req: SipRequest;

  constructor(
    req: SipRequest,
    /** The flow it arrived on: who sent it. */
    readonly flow: SipFlow,
    readonly tx: InviteServerTransaction | NonInviteServerTransaction,
    private readonly core: { clock: Clock; awaitAck(incoming: Incoming): void },
    /** Where its answers go (RFC 3261 §18.2.2): the same flow, or over UDP the sent-by port. */
    readonly replyTo: SipFlow = flow,
  ) {
    this.#req = req;
  }

  get req(): SipRequest {
    return this.#req;
  }

  /**
   * Our To tag: the request's own inside a dialog (§12.2.1.1: it is ours already), else minted
   * when first needed (most requests are answered without one).
   */
  get toTag(): string {
    return (this.#toTag ??= tagOf(header(this.req, 'To')) ?? newTag());
  }

  get answered(): boolean {
    return this.tx.state !== 'trying' && this.tx.state !== 'proceeding';
  }

  respond(status: number, opts: Parameters<typeof responseText>[2] = {}): void {
    if (this.answered || this.tx.state === 'terminated') return;
    const text = responseText(this.req, status, { toTag: this.toTag, ...opts });
    this.tx.respond(status, text);
    // Refused (a 407 challenge, say): the transaction lives on for its retransmissions (Timer H,
    // 32 s), which need only the answer it keeps; the request's bulk (headers, body) is let go.
    if (status >= 300) this.#req = slim(this.#req);
    // §13.3.1.4: over an unreliable transport the UAS core itself repeats a 2xx to INVITE
    // (T1, doubling to T2) until the ACK comes or 64*T1 has passed.
    if (this.tx instanceof InviteServerTransaction && status >= 200 && status < 300 && !this.flow.transport.reliable) {
      this.core.awaitAck(this);
      this.#repeat(text, T1, 0);
    }
  }

  /** The ACK for our 2xx arrived: no more retransmissions. */
  acked(): void {
    if (this.#retransmit) this.core.clock.clearTimeout(this.#retransmit);
    this.#retransmit = undefined;
  }

  #repeat(text: string, interval: number, elapsed: number): void {
    if (elapsed + interval > 64 * T1) return;
    this.#retransmit = this.core.clock.setTimeout(() => {
      this.replyTo.send(text);
      this.#repeat(text, Math.min(2 * interval, T2), elapsed + interval);
    }, interval);
  }

  /** §17.2.1: an INVITE gets a 100 Trying unless its final answer comes within 200 ms. */
  scheduleTrying(): void {
    if (this.tx instanceof InviteServerTransaction) this.tx.scheduleTrying(responseText(this.req, 100));
  }

  /** Passes a downstream response up (a proxy): our Via is already removed. */
  relay(res: SipResponse, text: string): void {
    if (res.status === 100 || this.answered || this.tx.state === 'terminated') return;
    this.tx.respond(res.status, text);
  }
}

/** What of a refused request its transaction still reads: the headers that identify it. */
const KEPT = new Set(['via', 'from', 'to', 'call-id', 'cseq']);

function slim(req: SipRequest): SipRequest {
  // Copied, not sliced: a substring would keep the whole message's text alive.
  const own = (v: string) => Buffer.from(v, 'utf8').toString('utf8');
  return {
    ...req,
    method: own(req.method),
    uri: own(req.uri),
    headers: req.headers.filter((h) => KEPT.has(h.name.toLowerCase())).map((h) => ({ name: own(h.name), value: own(h.value) })),
    body: Buffer.alloc(0),
  };
}
