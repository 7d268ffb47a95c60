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

/**
 * Makes the transports of calls negotiated by SDP (a SIP INVITE either way): WebRTC for
 * browsers, a fake in tests, plain RTP for trunks. Resolves once our SDP is complete (all
 * candidates gathered: RFC 9725 §4.3.2 asks no trickle of us).
 */
export interface TransportFactory {
  answer(id: string, offerSdp: string, plan: AnswerPlan, out: SendStream): Promise<NegotiatedTransport>;
  offer(id: string, plan: AnswerPlan, out: SendStream): Promise<OfferingTransport>;
}
