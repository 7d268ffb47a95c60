import type { AnswerPlan } from '../sdp/codec-policy.js';
import type { MediaTransport, SendStream } from './media-transport.js';

/** A transport negotiated by SDP: ours is `localSdp` (the answer, or our offer). */
export interface NegotiatedTransport extends MediaTransport {
  readonly localSdp: string;
}

/** A transport we offered: the far end's answer completes it. */
export interface OfferingTransport extends NegotiatedTransport {
  /** Throws when the answer cannot be used. */
  acceptAnswer(sdp: string): void;
}

/** A transport we answered whose far end may trickle candidates after the offer (WHIP/WHEP PATCH, RFC 8840). */
export interface TrickleTransport extends NegotiatedTransport {
  /**
   * Adds one trickled candidate to the media section `mid`; false when it cannot be used (the
   * transport is closed, or an mDNS name: see isMdnsCandidate), which RFC 9725 §4.3.2 drops silently.
   */
  addRemoteCandidate(candidate: string, mid: string): boolean;
}

/**
 * Makes the transports of calls negotiated by SDP (a SIP INVITE either way): WebRTC for
 * browsers, a fake in tests, plain RTP for trunks. Resolves once our SDP is complete (all
 * candidates gathered: RFC 9725 §4.3.2 asks no trickle of us).
 */
export interface TransportFactory {
  answer(id: string, offerSdp: string, plan: AnswerPlan, out: SendStream): Promise<NegotiatedTransport>;
  offer(id: string, plan: AnswerPlan, out: SendStream): Promise<OfferingTransport>;
}

/** A TransportFactory whose answers take trickled candidates (WebRTC, and its fake). */
export interface TrickleTransportFactory extends TransportFactory {
  answer(id: string, offerSdp: string, plan: AnswerPlan, out: SendStream): Promise<TrickleTransport>;
}

/** What WHIP and WHEP need of a media stack: an answer to the offer that can take trickled candidates. */
export type TrickleAnswerer = Pick<TrickleTransportFactory, 'answer'>;

/**
 * An mDNS (`.local`) host candidate (draft-ietf-mmusic-mdns-ice-candidates: browsers hide their
 * addresses behind them): the gateway cannot resolve it, so ICE finds that peer as peer-reflexive instead.
 */
export function isMdnsCandidate(candidate: string): boolean {
  // candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...
  const address = candidate.replace(/^a=/, '').split(' ')[4] ?? '';
  return address.toLowerCase().endsWith('.local');
}
