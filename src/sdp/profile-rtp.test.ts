import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VoxgateError } from '../core/errors.js';
import { connectionOf, planRtpAnswer, rtpSdp, type RtpAnswerPlan, type RtpPolicy } from './profile-rtp.js';
import { attr, attrs, parseSdp } from './sdp.js';

const allow: RtpPolicy = { codecs: ['pcmu', 'pcma', 'g722', 'opus'], encryption: 'allow' };
const CRYPTO = '1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVzcyAoJHNwb29s';

/** An offer from a carrier: session-level c= (unless `session` is replaced), then the media sections. */
function offer(media: string[][], session: string[] = ['c=IN IP4 203.0.113.5']): string {
  return ['v=0', 'o=carrier 1 1 IN IP4 203.0.113.5', 's=-', ...session, 't=0 0', ...media.flat()].join('\r\n') + '\r\n';
}
const CARRIER = ['m=audio 30000 RTP/AVP 0 8 101', 'a=rtpmap:0 PCMU/8000', 'a=rtpmap:8 PCMA/8000', 'a=rtpmap:101 telephone-event/8000', 'a=fmtp:101 0-16', 'a=ptime:20', 'a=sendrecv'];
const VIDEO = ['m=video 30002 RTP/AVP 96', 'a=rtpmap:96 H264/90000'];

function plan(text: string, policy: RtpPolicy = allow): RtpAnswerPlan {
  return planRtpAnswer(parseSdp(text), policy);
}

function refusal(fn: () => unknown): VoxgateError {
  try {
    fn();
  } catch (e) {
    if (e instanceof VoxgateError) return e;
    throw e;
  }
  assert.fail('the offer was accepted');
}

const local = { address: '198.51.100.10', port: 20000, sessionId: '42', version: 1 };

describe('planRtpAnswer', () => {
  it('a typical carrier offer gets PCMU (the policy order), telephone-event 101 at 8000 and the session-level address', () => {
    const p = plan(offer([CARRIER]));
    assert.deepEqual(p.audio, {
      mid: '',
      codec: 'pcmu',
      payloadType: 0,
      clockRate: 8000,
      channels: 1,
      fmtp: undefined,
      telephoneEvent: { payloadType: 101, clockRate: 8000 },
      direction: 'sendrecv',
      offered: 'sendrecv',
    });
    assert.deepEqual(
      { host: p.rtp.host, port: p.rtp.port, rtcpPort: p.rtp.rtcpPort, rtcpMux: p.rtp.rtcpMux, held: p.rtp.held, ptime: p.rtp.ptime, profile: p.rtp.profile, crypto: p.rtp.crypto },
      { host: '203.0.113.5', port: 30000, rtcpPort: 30001, rtcpMux: false, held: false, ptime: 20, profile: 'RTP/AVP', crypto: undefined },
    );
  });

  it("the trunk's codec order wins over the offer's", () => {
    const p = plan(offer([CARRIER]), { ...allow, codecs: ['pcma', 'pcmu'] });
    assert.equal(p.audio.codec, 'pcma');
    assert.equal(p.audio.payloadType, 8);
  });

  it('RFC 3551 static payload types are understood without an rtpmap', () => {
    const p = plan(offer([['m=audio 30000 RTP/AVP 8 0']]));
    assert.equal(p.audio.codec, 'pcmu');
    assert.equal(p.audio.payloadType, 0);
    assert.equal(p.audio.telephoneEvent, undefined);
    assert.equal(plan(offer([['m=audio 30000 RTP/AVP 9']])).audio.codec, 'g722');
  });

  it('G.722 is payload type 9 at the 8000 Hz RTP clock the SDP states (RFC 3551 §4.5.2), with telephone-event at 8000', () => {
    const p = plan(offer([['m=audio 30000 RTP/AVP 9 0 101', 'a=rtpmap:9 G722/8000', 'a=rtpmap:101 telephone-event/8000']]), { ...allow, codecs: ['g722', 'pcmu'] });
    assert.deepEqual([p.audio.codec, p.audio.payloadType, p.audio.clockRate, p.audio.telephoneEvent], ['g722', 9, 8000, { payloadType: 101, clockRate: 8000 }]);
  });

  it('Opus 111/48000/2 takes the telephone-event at 48000, not the one at 8000', () => {
    const media = ['m=audio 30000 RTP/AVP 111 0 101 102', 'a=rtpmap:111 opus/48000/2', 'a=fmtp:111 useinbandfec=1', 'a=rtpmap:101 telephone-event/8000', 'a=rtpmap:102 telephone-event/48000'];
    const p = plan(offer([media]), { ...allow, codecs: ['opus', 'pcmu'] });
    assert.deepEqual([p.audio.codec, p.audio.payloadType, p.audio.clockRate, p.audio.channels, p.audio.fmtp], ['opus', 111, 48000, 2, 'useinbandfec=1']);
    assert.deepEqual(p.audio.telephoneEvent, { payloadType: 102, clockRate: 48000 });
    const answer = rtpSdp(p, local);
    assert.match(answer, /^m=audio 20000 RTP\/AVP 111 102\r$/m);
    assert.match(answer, /^a=rtpmap:111 opus\/48000\/2\r$/m);
    assert.match(answer, /^a=fmtp:111 useinbandfec=1\r$/m);
    assert.match(answer, /^a=rtpmap:102 telephone-event\/48000\r$/m);
  });

  it('telephone-event at another clock rate only is not used (RFC 4733 §7.1.1)', () => {
    const p = plan(offer([['m=audio 30000 RTP/AVP 0 101', 'a=rtpmap:101 telephone-event/48000']]));
    assert.equal(p.audio.telephoneEvent, undefined);
    const answer = rtpSdp(p, local);
    assert.match(answer, /^m=audio 20000 RTP\/AVP 0\r$/m);
    assert.doesNotMatch(answer, /telephone-event|a=fmtp:101/);
  });

  it('no common codec is VG_SDP_NO_COMMON_CODEC (488), naming what was offered and what is accepted', () => {
    const e = refusal(() => plan(offer([['m=audio 30000 RTP/AVP 18 3 101', 'a=rtpmap:18 G729/8000', 'a=rtpmap:101 telephone-event/8000']])));
    assert.equal(e.code, 'VG_SDP_NO_COMMON_CODEC');
    assert.equal(e.sipStatus, 488);
    assert.match(e.message, /g729\/8000/);
    assert.match(e.message, /payload type 3/);
    assert.doesNotMatch(e.message, /telephone-event/);
    assert.match(e.message, /pcmu\/8000/);
    assert.deepEqual(e.extra.accepted, ['pcmu/8000', 'pcma/8000', 'g722/8000', 'opus/48000']);
    assert.equal(refusal(() => plan(offer([CARRIER]), { ...allow, codecs: ['opus'] })).code, 'VG_SDP_NO_COMMON_CODEC');
  });

  it('profiles: WebRTC, AVP under require, SAVP under none and SAVP without a=crypto are VG_SDP_PROFILE (488)', () => {
    const webrtc = refusal(() => plan(offer([['m=audio 9 UDP/TLS/RTP/SAVPF 0', 'a=rtpmap:0 PCMU/8000']])));
    assert.equal(webrtc.code, 'VG_SDP_PROFILE');
    assert.equal(webrtc.sipStatus, 488);
    assert.match(webrtc.message, /WebSocket/);
    assert.equal(refusal(() => plan(offer([CARRIER]), { ...allow, encryption: 'require' })).code, 'VG_SDP_PROFILE');
    const savp = ['m=audio 30000 RTP/SAVP 0', `a=crypto:${CRYPTO}`];
    assert.equal(refusal(() => plan(offer([savp]), { ...allow, encryption: 'none' })).code, 'VG_SDP_PROFILE');
    assert.equal(refusal(() => plan(offer([['m=audio 30000 RTP/SAVP 0']]))).code, 'VG_SDP_PROFILE');
  });

  it("RTP/SAVP under 'allow' or 'require' keeps the offered a=crypto lines in order", () => {
    const second = '2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj';
    const media = ['m=audio 30000 RTP/SAVP 0', `a=crypto:${CRYPTO}`, `a=crypto:${second}`];
    for (const encryption of ['allow', 'require'] as const) {
      const p = plan(offer([media]), { ...allow, encryption });
      assert.equal(p.rtp.profile, 'RTP/SAVP');
      assert.deepEqual(p.rtp.crypto, { lines: [CRYPTO, second] });
    }
  });

  it('RFC 3264 §6.1: the direction mirrors the offer', () => {
    const dir = (d: string) => plan(offer([['m=audio 30000 RTP/AVP 0', `a=${d}`]])).audio;
    assert.deepEqual([dir('sendonly').direction, dir('sendonly').offered], ['recvonly', 'sendonly']);
    assert.equal(dir('recvonly').direction, 'sendonly');
    assert.equal(dir('inactive').direction, 'inactive');
    assert.equal(dir('sendrecv').direction, 'sendrecv');
    assert.equal(plan(offer([['m=audio 30000 RTP/AVP 0']], ['c=IN IP4 203.0.113.5', 'a=sendonly'])).audio.direction, 'recvonly');
  });

  it('c=0.0.0.0 (RFC 2543 hold) is held, and a sendrecv held offer is answered recvonly', () => {
    const p = plan(offer([['m=audio 30000 RTP/AVP 0']], ['c=IN IP4 0.0.0.0']));
    assert.equal(p.rtp.held, true);
    assert.equal(p.audio.offered, 'sendonly');
    assert.equal(p.audio.direction, 'recvonly');
    assert.equal(plan(offer([['m=audio 30000 RTP/AVP 0', 'a=sendonly']])).rtp.held, false);
  });

  it('RTCP: rtcp-mux uses the RTP port, a=rtcp names its port (RFC 3605), else port + 1 (RFC 3550 §11)', () => {
    const mux = plan(offer([['m=audio 30000 RTP/AVP 0', 'a=rtcp-mux']]));
    assert.deepEqual([mux.rtp.rtcpMux, mux.rtp.rtcpPort], [true, 30000]);
    const rtcp = plan(offer([['m=audio 30000 RTP/AVP 0', 'a=rtcp:5005 IN IP4 203.0.113.5']]));
    assert.deepEqual([rtcp.rtp.rtcpMux, rtcp.rtp.rtcpPort], [false, 5005]);
    assert.equal(plan(offer([['m=audio 30002 RTP/AVP 0']])).rtp.rtcpPort, 30003);
  });

  it('an IPv6 offer is planned to its IN IP6 address', () => {
    const p = plan(offer([['m=audio 30000 RTP/AVP 0']], ['c=IN IP6 2001:db8::5']));
    assert.equal(p.rtp.host, '2001:db8::5');
  });
});

describe('connectionOf', () => {
  it('the media-level c= wins over the session-level one; none at all is undefined', () => {
    const sdp = parseSdp(offer([['m=audio 30000 RTP/AVP 0', 'c=IN IP4 198.51.100.7'], ['m=audio 30002 RTP/AVP 0']]));
    assert.equal(connectionOf(sdp, sdp.media[0]!), '198.51.100.7');
    assert.equal(connectionOf(sdp, sdp.media[1]!), '203.0.113.5');
    const bare = parseSdp(offer([['m=audio 30000 RTP/AVP 0']], []));
    assert.equal(connectionOf(bare, bare.media[0]!), undefined);
    assert.equal(refusal(() => planRtpAnswer(bare, allow)).code, 'VG_SDP_MALFORMED');
  });
});

describe('rtpSdp', () => {
  it('the answer parses back with o=, c=, rtpmap, fmtp:101 0-16, ptime 20 and the direction, and no rtcp-mux unless offered', () => {
    const text = rtpSdp(plan(offer([CARRIER])), local);
    const sdp = parseSdp(text);
    assert.ok(sdp.lines.includes('o=voxgate 42 1 IN IP4 198.51.100.10'));
    assert.ok(sdp.lines.includes('c=IN IP4 198.51.100.10'));
    assert.equal(sdp.media.length, 1);
    const m = sdp.media[0]!;
    assert.deepEqual([m.type, m.port, m.proto, m.formats], ['audio', 20000, 'RTP/AVP', ['0', '101']]);
    assert.deepEqual(attrs(m.attributes, 'rtpmap'), ['0 PCMU/8000', '101 telephone-event/8000']);
    assert.deepEqual(attrs(m.attributes, 'fmtp'), ['101 0-16']);
    assert.equal(attr(m.attributes, 'ptime'), '20');
    assert.ok(m.attributes.some((a) => a.name === 'sendrecv'));
    assert.ok(!m.attributes.some((a) => a.name === 'rtcp-mux'));
    assert.deepEqual(attrs(m.attributes, 'crypto'), []);
  });

  it('rtcp-mux is answered when offered, and the direction written is the mirrored one (or the override)', () => {
    const p = plan(offer([['m=audio 30000 RTP/AVP 0', 'a=rtcp-mux', 'a=sendonly']]));
    const m = parseSdp(rtpSdp(p, local)).media[0]!;
    assert.ok(m.attributes.some((a) => a.name === 'rtcp-mux'));
    assert.ok(m.attributes.some((a) => a.name === 'recvonly'));
    const held = parseSdp(rtpSdp(p, { ...local, direction: 'inactive' })).media[0]!;
    assert.ok(held.attributes.some((a) => a.name === 'inactive'));
    assert.ok(!held.attributes.some((a) => a.name === 'recvonly'));
  });

  it('an RTP/SAVP answer carries our a=crypto on an RTP/SAVP m= line', () => {
    const p = plan(offer([['m=audio 30000 RTP/SAVP 0', `a=crypto:${CRYPTO}`]]));
    const ours = '1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj';
    const m = parseSdp(rtpSdp(p, { ...local, crypto: ours })).media[0]!;
    assert.equal(m.proto, 'RTP/SAVP');
    assert.deepEqual(attrs(m.attributes, 'crypto'), [ours]);
  });

  it('RFC 3264 §6: audio and video offered gets two m= lines in the same order, video refused with port 0', () => {
    for (const order of [[CARRIER, VIDEO], [VIDEO, CARRIER]]) {
      const sdp = parseSdp(rtpSdp(plan(offer(order)), local));
      assert.deepEqual(
        sdp.media.map((m) => [m.type, m.port, m.proto]),
        order.map((m) => (m === VIDEO ? ['video', 0, 'RTP/AVP'] : ['audio', 20000, 'RTP/AVP'])),
      );
    }
  });

  it('an IPv6 address is written IN IP6 in o= and c=', () => {
    const sdp = parseSdp(rtpSdp(plan(offer([['m=audio 30000 RTP/AVP 0']], ['c=IN IP6 2001:db8::5'])), { ...local, address: '2001:db8::10' }));
    assert.ok(sdp.lines.includes('o=voxgate 42 1 IN IP6 2001:db8::10'));
    assert.ok(sdp.lines.includes('c=IN IP6 2001:db8::10'));
  });
});
