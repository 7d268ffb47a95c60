import type { RtpSink } from '../rtp/rtp-counter.js';

/** Our outgoing stream, announced in SDP (a=ssrc) where we send. */
export interface SendStream {
  ssrc: number;
  cname: string;
}

export type TransportState = 'connecting' | 'connected' | 'failed' | 'closed';

/** Why a transport failed: ICE or DTLS did not complete or lapsed, or the far end closed it. */
export type TransportFailure = 'ice-failed' | 'dtls-failed' | 'peer-closed';

export interface MediaTransportEvents extends Record<string, unknown[]> {
  state: [state: TransportState, failure: TransportFailure | undefined];
  rtcp: [packet: Buffer];
  /** A text message on the data channel (transports that have one). */
  message: [text: string];
}

/** Structural events API of a transport (TypedEmitter's public half). */
export interface MediaTransportEmitter {
  on<K extends keyof MediaTransportEvents & string>(event: K, fn: (...args: MediaTransportEvents[K]) => void): unknown;
  once<K extends keyof MediaTransportEvents & string>(event: K, fn: (...args: MediaTransportEvents[K]) => void): unknown;
  off<K extends keyof MediaTransportEvents & string>(event: K, fn: (...args: MediaTransportEvents[K]) => void): unknown;
}

/**
 * How a leg's RTP and RTCP reach the wire, whatever carries them: WebRTC (ICE, DTLS-SRTP,
 * BUNDLE), plain RTP over UDP (a trunk), or a fake in tests. Media endpoints see only this.
 * Received RTP goes to `rtpSink` by a direct call: the packet path is not an event.
 */
export interface MediaTransport extends MediaTransportEmitter {
  readonly kind: 'webrtc' | 'rtp-udp' | 'fake';
  readonly state: TransportState;
  rtpSink: RtpSink | undefined;
  /** False when it could not be sent (not connected, closing). */
  sendRtp(packet: Buffer): boolean;
  sendRtcp(packet: Buffer): boolean;
  /** The remote media address (host:port) in use, once known. */
  remoteAddress(): string | undefined;
  /** True while the far end holds the call and sends no media (a=recvonly or a=inactive from it). */
  readonly onHold?: boolean;
  /** Optional capability: a WebRTC data channel for JSON messages to and from the caller. */
  readonly dataChannel: { send(text: string): boolean } | undefined;
  /** Releases everything; state becomes `closed` (emitted once). */
  close(): void;
}
