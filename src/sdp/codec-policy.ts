import type { CodecName } from '../core/config.js';
import { VoxgateError } from '../core/errors.js';
import { checkWebRtcAttributes } from './webrtc-attributes.js';
import { attr, directionOf, rtpMaps, type Direction, type RtpMap, type SdpMedia, type SessionDescription } from './sdp.js';

/** What we answer with, decided from the offer and the source's codec policy. */
export interface AnswerPlan {
  audio: {
    mid: string;
    codec: CodecName;
    payloadType: number;
    clockRate: number;
    channels: number;
    fmtp: string | undefined;
    telephoneEvent: { payloadType: number; clockRate: number } | undefined;
    /** Our direction in the answer. */
    direction: Direction;
    /** The offerer's direction for this track. */
    offered: Direction;
    /**
     * An offer of ours only: further codecs, after `codec`, the answerer may choose instead
     * (each with its telephone-event where its clock rate differs from `codec`'s).
     */
    alternatives?: { codec: CodecName; payloadType: number; clockRate: number; telephoneEvent?: { payloadType: number; clockRate: number } }[];
  };
  /** Non-audio tracks answered inactive (e.g. OBS always offers video). */
  inactive: { mid: string; type: string; payloadType: number; encoding: string; clockRate: number }[];
  hasDataChannel: boolean;
}

export interface CodecPolicy {
  /** Codecs we accept for this source, most preferred first. */
  codecs: readonly CodecName[];
  /** May the answer be sendrecv when the offer is (to return the agent's audio)? */
  allowSendRecv: boolean;
  /** WHIP needs media from the offerer; WHEP needs the offerer to receive. */
  role: 'ingest' | 'egress';
}

const ENCODING: Record<CodecName, { encoding: string; clockRate: number }> = {
  opus: { encoding: 'opus', clockRate: 48000 },
  pcmu: { encoding: 'pcmu', clockRate: 8000 },
  pcma: { encoding: 'pcma', clockRate: 8000 },
  g722: { encoding: 'g722', clockRate: 8000 },
};

export function describeCodecs(codecs: readonly CodecName[]): string[] {
  return codecs.map((c) => `${ENCODING[c].encoding}/${ENCODING[c].clockRate}`);
}

/** RFC 3264 §6.1: the first of our codecs (in our order of preference) that the offer has. */
export function chooseCodec(maps: readonly RtpMap[], codecs: readonly CodecName[]): { codec: CodecName; map: RtpMap } | undefined {
  for (const codec of codecs) {
    const want = ENCODING[codec];
    const map = maps.find((m) => m.encoding === want.encoding && m.clockRate === want.clockRate);
    if (map) return { codec, map };
  }
  return undefined;
}

/** The answer's audio: the chosen codec, and telephone-event at its clock rate (RFC 4733 §7.1.1) when offered. */
export function audioPlanOf(mid: string, maps: readonly RtpMap[], chosen: { codec: CodecName; map: RtpMap }, direction: Direction, offered: Direction): AnswerPlan['audio'] {
  const te = maps.find((m) => m.encoding === 'telephone-event' && m.clockRate === chosen.map.clockRate);
  return {
    mid,
    codec: chosen.codec,
    payloadType: chosen.map.payloadType,
    clockRate: chosen.map.clockRate,
    channels: chosen.map.channels,
    fmtp: chosen.map.fmtp,
    telephoneEvent: te ? { payloadType: te.payloadType, clockRate: te.clockRate } : undefined,
    direction,
    offered,
  };
}

/**
 * Decides the answer for a WebRTC offer, or throws a 4xx VoxgateError before anything is allocated.
 * RFC 9725 §4.4.2: at most one audio track; RFC 3264 §6: one codec chosen from the offer.
 */
export function planAnswer(offer: SessionDescription, policy: CodecPolicy): AnswerPlan {
  const accepted = { accepted: describeCodecs(policy.codecs) };
  const live = offer.media.filter((m) => m.port !== 0 || attr(m.attributes, 'bundle-only') !== undefined);
  const audio = live.filter((m) => m.type === 'audio');
  if (offer.media.length === 0) {
    throw new VoxgateError('VG_SDP_MALFORMED', 'The offer has no m= line; offer one audio track.', { extra: accepted });
  }
  if (audio.length === 0) {
    throw new VoxgateError(
      'VG_SDP_NO_AUDIO',
      `The offer has no audio track (it offers ${live.map((m) => m.type).join(', ') || 'nothing'}); voxgate takes exactly one audio track.`,
      { extra: accepted },
    );
  }
  if (audio.length > 1) {
    throw new VoxgateError('VG_SDP_TOO_MANY_AUDIO', `The offer has ${audio.length} audio tracks; send exactly one.`, {
      extra: accepted,
    });
  }
  const bundled = attr(offer.attributes, 'group')?.startsWith('BUNDLE');
  const a = audio[0] as SdpMedia;
  if (!a.proto.includes('SAVPF') && !a.proto.includes('SAVP')) {
    throw new VoxgateError('VG_SDP_NOT_WEBRTC', `The audio track uses ${a.proto}; WebRTC offers use UDP/TLS/RTP/SAVPF with DTLS-SRTP.`);
  }
  const fingerprint = attr(a.attributes, 'fingerprint') ?? attr(offer.attributes, 'fingerprint');
  const ufrag = attr(a.attributes, 'ice-ufrag') ?? attr(offer.attributes, 'ice-ufrag');
  if (!fingerprint || !ufrag) {
    throw new VoxgateError('VG_SDP_NOT_WEBRTC', 'The offer lacks a=fingerprint or a=ice-ufrag; WebRTC offers need ICE and DTLS-SRTP.');
  }
  checkWebRtcAttributes(offer, a);
  const mid = attr(a.attributes, 'mid');
  if (mid === undefined) throw new VoxgateError('VG_SDP_MALFORMED', 'The audio m= section has no a=mid; BUNDLE needs one.');
  if (!bundled && live.length > 1) {
    throw new VoxgateError('VG_SDP_MALFORMED', 'The offer has several m= sections but no a=group:BUNDLE; bundle them (RFC 9725 §4.4.1).');
  }

  const offered = directionOf(offer, a);
  let direction: Direction;
  if (policy.role === 'ingest') {
    if (offered === 'recvonly' || offered === 'inactive') {
      throw new VoxgateError('VG_SDP_BAD_DIRECTION', `The audio track is ${offered}; a WHIP publisher must send audio (sendonly or sendrecv).`);
    }
    direction = offered === 'sendrecv' && policy.allowSendRecv ? 'sendrecv' : 'recvonly';
  } else {
    if (offered === 'sendonly' || offered === 'inactive') {
      throw new VoxgateError('VG_SDP_BAD_DIRECTION', `The audio track is ${offered}; a WHEP player must receive audio (recvonly).`);
    }
    direction = 'sendonly';
  }

  const maps = rtpMaps(a);
  const chosen = chooseCodec(maps, policy.codecs);
  if (!chosen) {
    const offeredCodecs = maps.filter((m) => m.encoding !== 'telephone-event').map((m) => `${m.encoding}/${m.clockRate}`);
    throw new VoxgateError(
      'VG_SDP_NO_COMMON_CODEC',
      `None of the offered codecs (${offeredCodecs.join(', ') || 'none'}) is accepted; offer one of ${accepted.accepted.join(', ')}.`,
      { extra: accepted },
    );
  }
  const inactive = live
    .filter((m) => m !== a && m.type !== 'application')
    .map((m) => {
      const first = rtpMaps(m)[0];
      return {
        mid: attr(m.attributes, 'mid') ?? '',
        type: m.type,
        payloadType: first?.payloadType ?? Number(m.formats[0] ?? 0),
        encoding: first?.encoding ?? 'unknown',
        clockRate: first?.clockRate ?? 90000,
      };
    });
  if (inactive.some((m) => m.mid === '')) throw new VoxgateError('VG_SDP_MALFORMED', 'Every bundled m= section needs an a=mid.');
  return {
    audio: audioPlanOf(mid, maps, chosen, direction, offered),
    inactive,
    hasDataChannel: live.some((m) => m.type === 'application'),
  };
}
