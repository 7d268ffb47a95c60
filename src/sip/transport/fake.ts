import type { SipFlow, SipProtocol, SipTransport, SipTransportListener } from './transport.js';

/** One far end on a fake transport: what the stack sent it, in order. */
export class FakeFlow implements SipFlow {
  authenticatedUser: string | undefined;
  readonly sent: string[] = [];
  open = true;

  constructor(
    readonly id: string,
    readonly transport: FakeSipTransport,
    readonly remote: string,
  ) {}

  send(text: string): boolean {
    if (!this.open) return false;
    this.sent.push(text);
    this.transport.onSend?.(this, text);
    return true;
  }

  /** The far end sends a message to the stack. */
  deliver(text: string | Buffer): void {
    this.transport.deliver(this, text);
  }

  /** Messages sent to this far end since the last take(), removed. */
  take(): string[] {
    return this.sent.splice(0);
  }

  close(): void {
    this.transport.drop(this);
  }
}

/**
 * A SipTransport for tests, reliable (as WebSocket or TCP) or not (as UDP): the test plays
 * the far ends through its flows; `onSend` lets a test UA answer as soon as something is sent.
 */
export class FakeSipTransport implements SipTransport {
  readonly flows = new Map<string, FakeFlow>();
  onSend: ((flow: FakeFlow, text: string) => void) | undefined;
  #listener: SipTransportListener | undefined;
  #next = 1;

  constructor(
    readonly protocol: SipProtocol = 'WS',
    readonly reliable = protocol !== 'UDP',
    readonly sentBy = protocol === 'WS' || protocol === 'WSS' ? 'gw.invalid' : '192.0.2.1:5060',
  ) {}

  listen(listener: SipTransportListener): void {
    this.#listener = listener;
  }

  /** A new far end (a connection, or a UDP peer address). */
  connect(remote = `198.51.100.${this.#next}:${5000 + this.#next}`): FakeFlow {
    // Unique across transports, as real flow ids are: the stack finds a flow by id among all of them.
    const flow = new FakeFlow(`fake-${this.protocol.toLowerCase()}-${this.#next++}`, this, remote);
    this.flows.set(flow.id, flow);
    return flow;
  }

  deliver(flow: FakeFlow, text: string | Buffer): void {
    this.#listener?.message(flow, Buffer.isBuffer(text) ? text : Buffer.from(text));
  }

  /** The connection went away: the stack is told, as a real transport would. */
  drop(flow: FakeFlow): void {
    if (!this.flows.delete(flow.id)) return;
    flow.open = false;
    if (this.reliable) this.#listener?.closed(flow);
  }

  /** Set by dialable(): the far end at an address, as UDP and TCP transports give one. */
  flowTo: ((address: { host: string; port: number }) => FakeFlow | undefined) | undefined;

  /**
   * Lets the stack open flows to addresses (calls and registrations voxgate places). Off by
   * default: with it, the stack also answers and routes by address, as a real UDP or TCP
   * transport does, rather than down the flow a request came on.
   */
  dialable(): this {
    this.flowTo = (address) => {
      const remote = `${address.host}:${address.port}`;
      return [...this.flows.values()].find((f) => f.remote === remote) ?? this.connect(remote);
    };
    return this;
  }

  sendTo(address: { host: string; port: number }, text: string): SipFlow | undefined {
    if (this.reliable && (this.protocol === 'WS' || this.protocol === 'WSS')) return undefined;
    const remote = `${address.host}:${address.port}`;
    const flow = [...this.flows.values()].find((f) => f.remote === remote) ?? this.connect(remote);
    flow.send(text);
    return flow;
  }

  close(): void {
    for (const f of [...this.flows.values()]) this.drop(f);
  }
}
