import { chooseCrypto, formatCrypto, newMasterKey } from '../../sdp/crypto.js';
import { SRTP_SUITES, SrtpSession, type SrtpSuite } from '../../rtp/srtp.js';
import type { SdesKeying } from '../../transport/rtp-udp/factory.js';

/**
 * SDES keying (RFC 4568) for a trunk leg: the first offered `a=crypto` line with a suite we
 * support (AES_CM_128_HMAC_SHA1_80, then _32) keys what we receive; our answer carries the same
 * tag and suite with a fresh key of ours (§6.1: each direction has its own key), which keys what we send.
 */
export const sdesKeying: SdesKeying = {
  answer(offeredLines) {
    const chosen = chooseCrypto(offeredLines, SRTP_SUITES);
    if (!chosen) return undefined;
    const suite = chosen.suite as SrtpSuite;
    const ours = newMasterKey();
    const rx = new SrtpSession(suite, { key: chosen.keys[0]!.key, salt: chosen.keys[0]!.salt });
    const tx = new SrtpSession(suite, ours);
    return {
      answerLine: formatCrypto({ tag: chosen.tag, suite, keys: [ours], sessionParams: [] }),
      contexts: {
        protectRtp: (p) => tx.protectRtp(p),
        unprotectRtp: (p) => rx.unprotectRtp(p),
        protectRtcp: (p) => tx.protectRtcp(p),
        unprotectRtcp: (p) => rx.unprotectRtcp(p),
      },
    };
  },
};
