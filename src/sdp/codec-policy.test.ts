import assert from 'node:assert/strict';
import { test } from 'node:test';
import { VoxgateError } from '../core/errors.js';
import { planAnswer, type CodecPolicy } from './codec-policy.js';
import { parseSdp } from './sdp.js';

const HEAD = ['v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=fingerprint:sha-256 8B:87:09:8A:5D:C2:F3:33:EF:C5:B1:F6:84:3A:3D:D6:A3:E2:9C:17:4C:E7:46:3B:1B:CE:84:98:DD:8E:AF:7B', 'a=ice-ufrag:abcd', 'a=ice-pwd:0123456789012345678901'];
function offer(media: string[][], group = true): string {
  const mids = media.map((_, i) => String(i));
  return [...HEAD, ...(group ? [`a=group:BUNDLE ${mids.join(' ')}`] : []), ...media.flatMap((m, i) => [m[0]!, `a=mid:${i}`, ...m.slice(1)])].join('\r\n') + '\r\n';
}
const AUDIO = ['m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 126 101', 'a=sendonly', 'a=rtpmap:111 opus/48000/2', 'a=fmtp:111 minptime=10;useinbandfec=1', 'a=rtpmap:0 PCMU/8000', 'a=rtpmap:8 PCMA/8000', 'a=rtpmap:126 telephone-event/8000', 'a=rtpmap:101 telephone-event/48000'];
const VIDEO = ['m=video 9 UDP/TLS/RTP/SAVPF 96', 'a=sendonly', 'a=rtpmap:96 VP8/90000'];
const ingest: CodecPolicy = { codecs: ['opus'], allowSendRecv: false, role: 'ingest' };

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof VoxgateError) return e.code;
    throw e;
  }
  return 'none';
}

test('Opus is chosen with its fmtp, and the telephone-event of the same clock rate', () => {
  const plan = planAnswer(parseSdp(offer([AUDIO])), ingest);
  assert.deepEqual(plan.audio, {
    mid: '0',
    codec: 'opus',
    payloadType: 111,
    clockRate: 48000,
    channels: 2,
    fmtp: 'minptime=10;useinbandfec=1',
    telephoneEvent: { payloadType: 101, clockRate: 48000 },
    direction: 'recvonly',
    offered: 'sendonly',
  });
});

test("the source's preference order wins over the offer's", () => {
  const plan = planAnswer(parseSdp(offer([AUDIO])), { ...ingest, codecs: ['pcma', 'opus'] });
  assert.equal(plan.audio.codec, 'pcma');
  assert.equal(plan.audio.payloadType, 8);
  assert.deepEqual(plan.audio.telephoneEvent, { payloadType: 126, clockRate: 8000 });
});

test('sendrecv offers get recvonly unless the policy allows returning audio', () => {
  const sr = offer([[AUDIO[0]!, 'a=sendrecv', ...AUDIO.slice(2)]]);
  assert.equal(planAnswer(parseSdp(sr), ingest).audio.direction, 'recvonly');
  assert.equal(planAnswer(parseSdp(sr), { ...ingest, allowSendRecv: true }).audio.direction, 'sendrecv');
});

test('video beside audio is answered inactive (OBS always offers video)', () => {
  const plan = planAnswer(parseSdp(offer([AUDIO, VIDEO])), ingest);
  assert.deepEqual(plan.inactive, [{ mid: '1', type: 'video', payloadType: 96, encoding: 'vp8', clockRate: 90000 }]);
});

test('refusals carry stable codes: no audio, two audio, no common codec, wrong direction, not WebRTC, no BUNDLE', () => {
  assert.equal(code(() => planAnswer(parseSdp(offer([VIDEO])), ingest)), 'VG_SDP_NO_AUDIO');
  assert.equal(code(() => planAnswer(parseSdp(offer([AUDIO, AUDIO])), ingest)), 'VG_SDP_TOO_MANY_AUDIO');
  assert.equal(code(() => planAnswer(parseSdp(offer([AUDIO])), { ...ingest, codecs: ['g722'] })), 'VG_SDP_NO_COMMON_CODEC');
  assert.equal(code(() => planAnswer(parseSdp(offer([[AUDIO[0]!, 'a=recvonly', ...AUDIO.slice(2)]])), ingest)), 'VG_SDP_BAD_DIRECTION');
  assert.equal(code(() => planAnswer(parseSdp(offer([['m=audio 9 RTP/AVP 0', 'a=sendonly']])), ingest)), 'VG_SDP_NOT_WEBRTC');
  assert.equal(code(() => planAnswer(parseSdp(offer([AUDIO, VIDEO], false)), ingest)), 'VG_SDP_MALFORMED');
  assert.equal(code(() => planAnswer(parseSdp(offer([AUDIO])), { ...ingest, role: 'egress' })), 'VG_SDP_BAD_DIRECTION');
});

test('a rejected (port 0) audio section does not count as a track', () => {
  const plan = planAnswer(parseSdp(offer([AUDIO, ['m=audio 0 UDP/TLS/RTP/SAVPF 0', 'a=rtpmap:0 PCMU/8000']])), ingest);
  assert.equal(plan.audio.mid, '0');
});
