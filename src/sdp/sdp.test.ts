import assert from 'node:assert/strict';
import { test } from 'node:test';
import { directionOf, parseSdp, rtpMaps, SdpParseError, serializeSdp } from './sdp.js';

// An offer as Chromium 156 sends it for one sendonly audio track (candidates trimmed).
const CHROMIUM_OFFER = [
  'v=0',
  'o=- 7614219274584779017 2 IN IP4 127.0.0.1',
  's=-',
  't=0 0',
  'a=group:BUNDLE 0',
  'a=extmap-allow-mixed',
  'a=msid-semantic: WMS',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126',
  'c=IN IP4 0.0.0.0',
  'a=rtcp:9 IN IP4 0.0.0.0',
  'a=candidate:3442447574 1 udp 2122260223 127.0.0.1 53421 typ host generation 0 network-id 1',
  'a=ice-ufrag:f3Zq',
  'a=ice-pwd:Jx1VYlgdUkVDZAaZiuQYwFbg',
  'a=ice-options:trickle',
  'a=fingerprint:sha-256 1D:9E:5B:7E:0E:1C:9E:13:64:7A:5E:0B:6C:9E:A4:2B:09:2C:79:7C:2F:8F:61:9B:D5:84:3E:C3:48:5E:38:0A',
  'a=setup:actpass',
  'a=mid:0',
  'a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level',
  'a=sendonly',
  'a=msid:- 2d7e6e0f-9b8a-4d33-a4c5-6b1f1e6a6a1f',
  'a=rtcp-mux',
  'a=rtcp-rsize',
  'a=rtpmap:111 opus/48000/2',
  'a=rtcp-fb:111 transport-cc',
  'a=fmtp:111 minptime=10;useinbandfec=1',
  'a=rtpmap:63 red/48000/2',
  'a=fmtp:63 111/111',
  'a=rtpmap:9 G722/8000',
  'a=rtpmap:0 PCMU/8000',
  'a=rtpmap:8 PCMA/8000',
  'a=rtpmap:13 CN/8000',
  'a=rtpmap:110 telephone-event/48000',
  'a=rtpmap:126 telephone-event/8000',
  'a=ssrc:3735928559 cname:Zx8n3c1n2mC0yq1a',
].join('\r\n') + '\r\n';

test('parses a Chromium offer: session lines, one audio section, its attributes in order', () => {
  const sdp = parseSdp(CHROMIUM_OFFER);
  assert.equal(sdp.media.length, 1);
  const m = sdp.media[0]!;
  assert.equal(m.type, 'audio');
  assert.equal(m.port, 9);
  assert.equal(m.proto, 'UDP/TLS/RTP/SAVPF');
  assert.deepEqual(m.formats, ['111', '63', '9', '0', '8', '13', '110', '126']);
  assert.deepEqual(m.lines, ['c=IN IP4 0.0.0.0']);
  assert.equal(directionOf(sdp, m), 'sendonly');
  assert.deepEqual(sdp.attributes.find((a) => a.name === 'group'), { name: 'group', value: 'BUNDLE 0' });
  assert.deepEqual(m.attributes.find((a) => a.name === 'rtcp-mux'), { name: 'rtcp-mux', value: undefined });
});

test('rtpMaps lists formats in offer order with clock rate, channels and fmtp', () => {
  const maps = rtpMaps(parseSdp(CHROMIUM_OFFER).media[0]!);
  assert.deepEqual(maps[0], { payloadType: 111, encoding: 'opus', clockRate: 48000, channels: 2, fmtp: 'minptime=10;useinbandfec=1' });
  assert.deepEqual(
    maps.map((m) => `${m.payloadType}:${m.encoding}/${m.clockRate}`),
    ['111:opus/48000', '63:red/48000', '9:g722/8000', '0:pcmu/8000', '8:pcma/8000', '13:cn/8000', '110:telephone-event/48000', '126:telephone-event/8000'],
  );
});

test('static payload types 0, 8 and 9 need no rtpmap (RFC 3551)', () => {
  const sdp = parseSdp('v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\n');
  assert.deepEqual(rtpMaps(sdp.media[0]!).map((m) => m.encoding), ['pcmu', 'pcma']);
});

test('serialize(parse(x)) keeps every line', () => {
  assert.equal(serializeSdp(parseSdp(CHROMIUM_OFFER)), CHROMIUM_OFFER);
});

test('direction: media level overrides session level; the default is sendrecv', () => {
  const sdp = parseSdp('v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=recvonly\r\nm=audio 9 RTP/AVP 0\r\nm=audio 9 RTP/AVP 0\r\na=inactive\r\n');
  assert.equal(directionOf(sdp, sdp.media[0]!), 'recvonly');
  assert.equal(directionOf(sdp, sdp.media[1]!), 'inactive');
  const plain = parseSdp('v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n');
  assert.equal(directionOf(plain, plain.media[0]!), 'sendrecv');
});

test('malformed descriptions are typed errors naming the line', () => {
  const cases: [string, RegExp][] = [
    ['', /empty/],
    ['o=- 1 1 IN IP4 x\r\n', /line 1: a description must start with v=/],
    ['v=1\r\n', /unsupported SDP version/],
    ['v=0\r\nnonsense\r\n', /line 2: expected/],
    ['v=0\r\no=- 1 1 IN IP4 x\r\ns=-\r\nt=0 0\r\nm=audio\r\n', /line 5: m= needs/],
    ['v=0\r\no=- 1 1 IN IP4 x\r\ns=-\r\nt=0 0\r\nm=audio 99999 RTP/AVP 0\r\n', /bad port/],
    ['v=0\r\ns=-\r\nt=0 0\r\n', /missing the o= line/],
    ['v=0\r\no=- 1 1 IN IP4 x\r\ns=-\r\nt=0 0\r\na=\r\n', /empty attribute name/],
    ['v=0\u0000', /NUL/],
  ];
  for (const [text, re] of cases) {
    assert.throws(() => parseSdp(text), (e: unknown) => e instanceof SdpParseError && re.test(e.message), JSON.stringify(text));
  }
});

test('fuzz: mutated offers either parse or throw SdpParseError, never anything else', () => {
  let seed = 7;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  for (let i = 0; i < 3000; i++) {
    const chars = [...CHROMIUM_OFFER];
    for (let k = 0; k < 1 + rand(8); k++) {
      const at = rand(chars.length);
      const op = rand(3);
      if (op === 0) chars.splice(at, 1);
      else if (op === 1) chars.splice(at, 0, String.fromCharCode(rand(128)));
      else chars[at] = String.fromCharCode(rand(256));
    }
    try {
      const sdp = parseSdp(chars.join(''));
      for (const m of sdp.media) rtpMaps(m);
    } catch (e) {
      assert.ok(e instanceof SdpParseError, String(e));
    }
  }
});
