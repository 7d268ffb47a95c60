import { VoxgateError } from '../core/errors.js';
import { parseSdp, SdpParseError, type SessionDescription } from './sdp.js';

/** Parses an offer (or an answer to ours); a malformed one is a 400 (VG_SDP_MALFORMED) that names the line. */
export function parseOffer(text: string): SessionDescription {
  try {
    return parseSdp(text);
  } catch (err) {
    if (err instanceof SdpParseError) throw new VoxgateError('VG_SDP_MALFORMED', `The SDP offer is malformed: ${err.message}.`);
    throw err;
  }
}
