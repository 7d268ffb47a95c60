import type { CodecName } from '../core/config.js';
import { VoxgateError } from '../core/errors.js';
import { audioPlanOf, chooseCodec, describeCodecs, type AnswerPlan } from './codec-policy.js';
import { attr, attrs, directionOf, rtpMaps, type Direction, type SdpMedia, type SessionDescription } from './sdp.js';

/** Whether a trunk's media is SRTP (SDES, RFC 4568): never, when the far end offers it, or always. */
export type MediaEncryption = 'none' | 'allow' | 'require';

export interface RtpPolicy {
  /** Codecs this trunk takes, most preferred first. */
  codecs: readonly CodecName[];
  encryption: MediaEncryption;
}

/** Where the far end wants its RTP and RTCP, as its SDP says (before symmetric RTP latches). */
export interface RtpRemote {
  host: string;
  port: number;
  /** RTCP's port: `a=rtcp` (RFC 3605), else port + 1 (RFC 3550 §11); the RTP port when muxed. */
  rtcpPort: number;
  /** RFC 5761: offered, so answered (never asked for when not offered). */
  rtcpMux: boolean;
  /** `c=` 0.0.0.0 (RFC 3264 §8.4, RFC 2543 hold): nothing is sent to it. */
  held: boolean;
  /** The packet time they want to receive (a=ptime), if they said. */
  ptime: number | undefined;
}

/** An SDES key line the far end offered (RFC 4568 §9.1), kept as text for the transport's keying. */
export interface OfferedCrypto {
  /** The `a=crypto` values of the audio section, in the offerer's order. */
  lines: string[];
}

/** The plan for an RTP/AVP or RTP/SAVP answer: the codec plan plus what the transport needs. */
export interface RtpAnswerPlan extends AnswerPlan {
  rtp: RtpRemote & {
    profile: 'RTP/AVP' | 'RTP/SAVP';
    /** Set for RTP/SAVP: the transport picks a line it supports and answers with its own key. */
    crypto: OfferedCrypto | undefined;
    /** The offer's m= sections in order: the audio one we answer, the others we refuse with port 0 (RFC 3264 §6). */
    sections: ({ audio: true } | { audio: false; line: string })[];
  };
}

export function isRtpAnswerPlan(plan: AnswerPlan): plan is RtpAnswerPlan {
  return 'rtp' in plan;
}

/** The connection address of a media section: media-level c= over session-level (RFC 8866 §5.7). */
export function connectionOf(sdp: SessionDescription, m: SdpMedia): string | undefined {
  const c = m.lines.find((l) => l.startsWith('c=')) ?? sdp.lines.find((l) => l.startsWith('c='));
  const mm = c && /^c=IN IP[46] ([^\s/]+)/.exec(c);
  return mm ? mm[1] : undefined;
}

/**
 * Decides the answer to a plain-RTP offer (a SIP trunk, a phone): one audio section on RTP/AVP
 * or RTP/SAVP as the trunk's `mediaEncryption` allows, one codec from the trunk's list, and
 * telephone-event at that codec's clock rate. Throws a 4xx VoxgateError (488 in SIP) before
 * anything is allocated. RFC 3264 §6.
 */
export function planRtpAnswer(offer: SessionDescription, policy: RtpPolicy): RtpAnswerPlan {
  const accepted = { accepted: describeCodecs(policy.codecs) };
  const audio = offer.media.filter((m) => m.type === 'audio' && m.port !== 0);
  if (audio.length === 0) {
    throw new VoxgateError('VG_SDP_NO_AUDIO', `The offer has no audio stream (it offers ${offer.media.map((m) => m.type).join(', ') || 'nothing'}).`, { extra: accepted });
  }
  // RFC 3264 §6: streams we do not take are answered with port 0; one audio stream is answered.
  const a = audio[0]!;
  const proto = a.proto.toUpperCase();
  if (proto !== 'RTP/AVP' && proto !== 'RTP/SAVP') {
    const why = proto.includes('SAVPF') ? 'a WebRTC offer (ICE and DTLS-SRTP) belongs on SIP over WebSocket' : 'offer RTP/AVP or RTP/SAVP';
    throw new VoxgateError('VG_SDP_PROFILE', `The audio stream uses ${a.proto}; ${why}.`);
  }
  if (proto === 'RTP/AVP' && policy.encryption === 'require') {
    throw new VoxgateError('VG_SDP_PROFILE', 'This trunk requires SRTP: offer RTP/SAVP with an a=crypto line (RFC 4568).');
  }
  if (proto === 'RTP/SAVP' && policy.encryption === 'none') {
    throw new VoxgateError('VG_SDP_PROFILE', 'This trunk does not use SRTP: offer RTP/AVP.');
  }
  const cryptoLines = attrs(a.attributes, 'crypto');
  if (proto === 'RTP/SAVP' && cryptoLines.length === 0) {
    throw new VoxgateError('VG_SDP_PROFILE', 'The RTP/SAVP stream has no a=crypto line; SDES keys are needed (RFC 4568 §5).');
  }
  const host = connectionOf(offer, a);
  if (host === undefined) throw new VoxgateError('VG_SDP_MALFORMED', 'The audio stream has no c= line (IN IP4 or IN IP6 address).');

  const maps = rtpMaps(a);
  const chosen = chooseCodec(maps, policy.codecs);
  if (!chosen) {
    const offered = maps.filter((m) => m.encoding !== 'telephone-event').map((m) => `${m.encoding}/${m.clockRate}`);
    const unknown = a.formats.filter((f) => !maps.some((m) => String(m.payloadType) === f));
    throw new VoxgateError(
      'VG_SDP_NO_COMMON_CODEC',
      `None of the offered codecs (${[...offered, ...unknown.map((f) => `payload type ${f}`)].join(', ') || 'none'}) is accepted; offer one of ${accepted.accepted.join(', ')}.`,
      { extra: accepted },
    );
  }
  const held = host === '0.0.0.0' || host === '::';
  const offered: Direction = held && directionOf(offer, a) === 'sendrecv' ? 'sendonly' : directionOf(offer, a);
  // RFC 3264 §6.1: the answer's direction mirrors the offer's.
  const direction: Direction = ({ sendrecv: 'sendrecv', sendonly: 'recvonly', recvonly: 'sendonly', inactive: 'inactive' } as const)[offered];
  const rtcpMux = a.attributes.some((x) => x.name === 'rtcp-mux');
  const rtcpAttr = /^(\d+)/.exec(attr(a.attributes, 'rtcp') ?? '')?.[1];
  const ptime = Number(attr(a.attributes, 'ptime') ?? NaN);
  return {
    audio: audioPlanOf(attr(a.attributes, 'mid') ?? '', maps, chosen, direction, offered),
    inactive: [],
    hasDataChannel: false,
    rtp: {
      host,
      port: a.port,
      rtcpPort: rtcpMux ? a.port : rtcpAttr ? Number(rtcpAttr) : a.port + 1,
      rtcpMux,
      held,
      ptime: Number.isFinite(ptime) && ptime > 0 ? ptime : undefined,
      profile: proto,
      crypto: proto === 'RTP/SAVP' ? { lines: cryptoLines } : undefined,
      sections: offer.media.map((m) => (m === a ? { audio: true as const } : { audio: false as const, line: `m=${m.type} 0 ${m.proto} ${m.formats.join(' ')}` })),
    },
  };
}

/** What our side of a plain-RTP session says about itself. */
export interface RtpLocal {
  /** The address written into o= and c=: `externalAddress` behind NAT, else the bound one. */
  address: string;
  port: number;
  sessionId: string;
  version: number;
  /** Our `a=crypto` value (tag, suite, our key) for RTP/SAVP. */
  crypto?: string;
  /** Override of the plan's direction (hold: RFC 3264 §8.4). */
  direction?: Direction;
}

const RTPMAP: Record<CodecName, string> = { opus: 'opus/48000/2', pcmu: 'PCMU/8000', pcma: 'PCMA/8000', g722: 'G722/8000' };

/** Our answer (or offer) for a plain-RTP audio stream: RFC 3264 §6 / §5, RFC 4566 syntax. */
export function rtpSdp(plan: RtpAnswerPlan, local: RtpLocal): string {
  const a = plan.audio;
  const formats = [a.payloadType, ...(a.telephoneEvent ? [a.telephoneEvent.payloadType] : [])];
  const lines = sessionLines(local);
  for (const s of plan.rtp.sections) {
    if (!s.audio) {
      lines.push(s.line);
      continue;
    }
    lines.push(`m=audio ${local.port} ${plan.rtp.profile} ${formats.join(' ')}`);
    lines.push(`a=rtpmap:${a.payloadType} ${RTPMAP[a.codec]}`);
    if (a.fmtp) lines.push(`a=fmtp:${a.payloadType} ${a.fmtp}`);
    if (a.telephoneEvent) {
      lines.push(`a=rtpmap:${a.telephoneEvent.payloadType} telephone-event/${a.telephoneEvent.clockRate}`, `a=fmtp:${a.telephoneEvent.payloadType} 0-16`);
    }
    // We send 20 ms packets whatever the offer's ptime (RFC 3264 §6.1: it is the answerer's receive wish).
    lines.push('a=ptime:20');
    if (plan.rtp.rtcpMux) lines.push('a=rtcp-mux');
    if (local.crypto) lines.push(`a=crypto:${local.crypto}`);
    // RFC 5888 §9.1: an offered mid is echoed.
    if (a.mid) lines.push(`a=mid:${a.mid}`);
    lines.push(`a=${local.direction ?? a.direction}`);
  }
  return `${lines.join('\r\n')}\r\n`;
}

/** Payload types of our own offers: the static ones (RFC 3551), and dynamic ones for the rest. */
const OFFER_PT: Record<CodecName, number> = { pcmu: 0, pcma: 8, g722: 9, opus: 111 };

/**
 * Our offer for a plain-RTP audio stream (RFC 3264 §5), for an INVITE that came without one
 * (RFC 3261 §13.2.1 late offer): every codec the trunk takes, in its order, telephone-event at
 * 8 kHz (PCMU, PCMA, G.722) and 48 kHz (Opus), 20 ms packets.
 */
export function rtpOfferSdp(codecs: readonly CodecName[], local: Omit<RtpLocal, 'crypto' | 'direction'>): string {
  const te = [...(codecs.some((c) => c !== 'opus') ? [[101, 8000]] : []), ...(codecs.includes('opus') ? [[102, 48000]] : [])] as [number, number][];
  const lines = [
    ...sessionLines(local),
    `m=audio ${local.port} RTP/AVP ${[...codecs.map((c) => OFFER_PT[c]), ...te.map(([pt]) => pt)].join(' ')}`,
    ...codecs.map((c) => `a=rtpmap:${OFFER_PT[c]} ${RTPMAP[c]}`),
    ...te.flatMap(([pt, rate]) => [`a=rtpmap:${pt} telephone-event/${rate}`, `a=fmtp:${pt} 0-16`]),
    'a=ptime:20',
    'a=sendrecv',
  ];
  return `${lines.join('\r\n')}\r\n`;
}

/** v=, o=, s=, c=, t= of our descriptions (RFC 8866 §5): one address for the session and its audio. */
function sessionLines(local: Pick<RtpLocal, 'address' | 'sessionId' | 'version'>): string[] {
  const ip = local.address.includes(':') ? 'IP6' : 'IP4';
  return ['v=0', `o=voxgate ${local.sessionId} ${local.version} IN ${ip} ${local.address}`, 's=voxgate', `c=IN ${ip} ${local.address}`, 't=0 0'];
}
