import { TypedEmitter } from '../core/events.js';
import type { RtpSink } from '../rtp/rtp-counter.js';
import type { MediaTransport, MediaTransportEvents, TransportFailure, TransportState } from './media-transport.js';

/**
 * A MediaTransport for tests: what the endpoint sends is kept in `rtp`, `rtcp` and `messages`;
 * the test plays the far end with receiveRtp(), receiveRtcp(), receiveMessage(), connect(), fail().
 */
export class FakeMediaTransport extends TypedEmitter<MediaTransportEvents> implements MediaTransport {
  readonly kind = 'fake' as const;
  rtpSink: RtpSink | undefined;
  readonly rtp: Buffer[] = [];
  readonly rtcp: Buffer[] = [];
  readonly messages: string[] = [];
  readonly dataChannel: { send(text: string): boolean } | undefined;
  #state: TransportState = 'connecting';

  constructor(
    private readonly remote = '192.0.2.10:40000',
    opts: { dataChannel?: boolean } = {},
  ) {
    super();
    this.dataChannel = opts.dataChannel === false ? undefined : { send: (text) => this.#connected() && (this.messages.push(text), true) };
  }

  get state(): TransportState {
    return this.#state;
  }

  connect(): void {
    if (this.#state !== 'connecting') return;
    this.#state = 'connected';
    this.emit('state', 'connected', undefined);
  }

  fail(failure: TransportFailure): void {
    if (this.#state === 'closed' || this.#state === 'failed') return;
    this.#state = 'failed';
    this.emit('state', 'failed', failure);
  }

  receiveRtp(packet: Buffer): void {
    this.rtpSink?.writeRtp(packet);
  }

  receiveRtcp(packet: Buffer): void {
    this.emit('rtcp', packet);
  }

  receiveMessage(text: string): void {
    this.emit('message', text);
  }

  sendRtp(packet: Buffer): boolean {
    if (!this.#connected()) return false;
    this.rtp.push(packet);
    return true;
  }

  sendRtcp(packet: Buffer): boolean {
    if (!this.#connected()) return false;
    this.rtcp.push(packet);
    return true;
  }

  remoteAddress(): string | undefined {
    return this.#state === 'connected' ? this.remote : undefined;
  }

  close(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.rtpSink = undefined;
    this.emit('state', 'closed', undefined);
    this.removeAllListeners();
  }

  #connected(): boolean {
    return this.#state === 'connected';
  }
}
