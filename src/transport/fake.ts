import { TypedEmitter } from '../core/events.js';
import type { RtpSink } from '../rtp/rtp-counter.js';
import type { AnswerPlan } from '../sdp/codec-policy.js';
import { isMdnsCandidate, type OfferingTransport, type TrickleTransport, type TrickleTransportFactory } from './factory.js';
import type { MediaTransport, MediaTransportEvents, SendStream, TransportFailure, TransportState } from './media-transport.js';

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

/** A WebRTC-shaped SDP for one audio track as a plan describes it (what planAnswer accepts on the far side). */
export function fakeSdp(plan: AnswerPlan, setup: 'actpass' | 'active' | 'passive', id = 'fake'): string {
  const a = plan.audio;
  const enc = (codec: string, rate: number) => (codec === 'opus' ? 'opus/48000/2' : `${codec.toUpperCase()}/${rate}`);
  const maps: [number, string][] = [[a.payloadType, enc(a.codec, a.clockRate)]];
  if (a.telephoneEvent) maps.push([a.telephoneEvent.payloadType, `telephone-event/${a.telephoneEvent.clockRate}`]);
  for (const alt of a.alternatives ?? []) {
    maps.push([alt.payloadType, enc(alt.codec, alt.clockRate)]);
    if (alt.telephoneEvent) maps.push([alt.telephoneEvent.payloadType, `telephone-event/${alt.telephoneEvent.clockRate}`]);
  }
  const pts = maps.map(([pt]) => pt);
  return [
    'v=0',
    `o=- ${Math.abs(hashOf(id))} 1 IN IP4 127.0.0.1`,
    's=-',
    't=0 0',
    'a=group:BUNDLE 0',
    'a=fingerprint:sha-256 8B:87:09:8A:5D:C2:F3:33:EF:C5:B1:F6:84:3A:3D:D6:A3:E2:9C:17:4C:E7:46:3B:1B:CE:84:98:DD:8E:AF:7B',
    'a=ice-ufrag:fake',
    'a=ice-pwd:fakefakefakefakefakefake',
    `m=audio 9 UDP/TLS/RTP/SAVPF ${pts.join(' ')}`,
    'c=IN IP4 127.0.0.1',
    'a=mid:0',
    `a=${a.direction}`,
    'a=rtcp-mux',
    `a=setup:${setup}`,
    ...maps.map(([pt, name]) => `a=rtpmap:${pt} ${name}`),
    'a=candidate:1 1 UDP 2122252543 127.0.0.1 40000 typ host',
    'a=end-of-candidates',
    '',
  ].join('\r\n');
}

function hashOf(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (Math.imul(h, 31) + s.charCodeAt(i)) | 0;
  return h;
}

/**
 * A fake transport negotiated by SDP: its SDP is made from the plan; the far end's answer and
 * the candidates it trickles are kept.
 */
export class FakeNegotiatedTransport extends FakeMediaTransport implements OfferingTransport, TrickleTransport {
  readonly answers: string[] = [];
  /** Trickled candidates it took (WHIP/WHEP PATCH). */
  readonly candidates: { candidate: string; mid: string }[] = [];
  rejectAnswers = false;

  constructor(
    readonly id: string,
    readonly localSdp: string,
  ) {
    super();
  }

  acceptAnswer(sdp: string): void {
    if (this.rejectAnswers) throw new Error('fake: the answer is refused');
    this.answers.push(sdp);
  }

  /** As WebRtcPeer: refused once closed, and for mDNS names nobody here can resolve. */
  addRemoteCandidate(candidate: string, mid: string): boolean {
    if (this.state === 'closed' || isMdnsCandidate(candidate)) return false;
    this.candidates.push({ candidate, mid });
    return true;
  }
}

/**
 * A TransportFactory for tests: every transport it makes is kept in `made`; `connect` makes
 * them connect as soon as they exist (as ICE and DTLS would on a good network).
 */
export class FakeTransportFactory implements TrickleTransportFactory {
  readonly made: FakeNegotiatedTransport[] = [];
  connect = true;
  /** Makes the next answer() or offer() fail (a WebRTC stack that cannot use the offer). */
  failNext = false;

  async answer(id: string, _offerSdp: string, plan: AnswerPlan, _out?: SendStream): Promise<FakeNegotiatedTransport> {
    return this.#make(id, fakeSdp(plan, 'passive', id));
  }

  async offer(id: string, plan: AnswerPlan, _out?: SendStream): Promise<FakeNegotiatedTransport> {
    return this.#make(id, fakeSdp(plan, 'actpass', id));
  }

  #make(id: string, sdp: string): FakeNegotiatedTransport {
    if (this.failNext) {
      this.failNext = false;
      throw new Error('fake: cannot negotiate');
    }
    const t = new FakeNegotiatedTransport(id, sdp);
    this.made.push(t);
    if (this.connect) queueMicrotask(() => t.connect());
    return t;
  }
}
