import { VoxgateError } from '../core/errors.js';
import { attr, attrs, type SdpMedia, type SessionDescription } from './sdp.js';

/** RFC 8839 §5.4: ice-char = ALPHA / DIGIT / "+" / "/"; ufrag 4-256 of them, pwd 22-256. */
const ICE_UFRAG = /^[A-Za-z0-9+/]{4,256}$/;
const ICE_PWD = /^[A-Za-z0-9+/]{22,256}$/;
/** RFC 8122 §5: hash-func SP 2UHEX *(":" 2UHEX); the digest's length by hash function. */
const FINGERPRINT = /^([A-Za-z0-9-]+) ([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})*)$/;
const DIGEST_BYTES: Record<string, number> = { 'sha-1': 20, 'sha-224': 28, 'sha-256': 32, 'sha-384': 48, 'sha-512': 64 };
/** a=rtpmap / a=fmtp: a payload type (0-127) first (RFC 8866 §6.6, §6.15). */
const PAYLOAD_TYPE = /^(\d{1,3})(?: |$)/;

const malformed = (detail: string) => new VoxgateError('VG_SDP_MALFORMED', `The SDP offer is malformed: ${detail}.`);

/**
 * What of a WebRTC offer's ICE and DTLS attributes our own parser can check, checked before the
 * WebRTC stack sees it: a stack that refuses them says only "Invalid integer" or "Invalid ICE
 * settings", and a client deserves to hear which line is wrong (400, VG_SDP_MALFORMED).
 */
export function checkWebRtcAttributes(offer: SessionDescription, audio: SdpMedia): void {
  const ufrag = (attr(audio.attributes, 'ice-ufrag') ?? attr(offer.attributes, 'ice-ufrag'))?.trim() ?? '';
  const pwd = (attr(audio.attributes, 'ice-pwd') ?? attr(offer.attributes, 'ice-pwd'))?.trim() ?? '';
  if (!ICE_UFRAG.test(ufrag)) throw malformed(`a=ice-ufrag must be 4 to 256 letters, digits, '+' or '/' (RFC 8839 §5.4), got '${ufrag.slice(0, 40)}'`);
  if (!ICE_PWD.test(pwd)) throw malformed(`a=ice-pwd must be 22 to 256 letters, digits, '+' or '/' (RFC 8839 §5.4)${pwd ? ` (got ${pwd.length} characters)` : ', and there is none'}`);
  for (const fp of [...attrs(offer.attributes, 'fingerprint'), ...attrs(audio.attributes, 'fingerprint')]) {
    const m = FINGERPRINT.exec(fp.trim());
    const bytes = m ? DIGEST_BYTES[m[1]!.toLowerCase()] : undefined;
    if (!m || (bytes !== undefined && m[2]!.split(':').length !== bytes)) {
      throw malformed(`a=fingerprint:${fp.slice(0, 60)} is not a hash function and its digest in hex pairs (RFC 8122 §5, e.g. sha-256 with 32 bytes)`);
    }
  }
  for (const name of ['rtpmap', 'fmtp']) {
    for (const v of attrs(audio.attributes, name)) {
      const pt = PAYLOAD_TYPE.exec(v);
      if (!pt || Number(pt[1]) > 127) throw malformed(`a=${name}:${v.slice(0, 40)} does not start with a payload type from 0 to 127`);
    }
  }
}
