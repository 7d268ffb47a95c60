import assert from 'node:assert/strict';
import { test } from 'node:test';
import { holdCandidates } from './peer.js';

const offer = (extra: string[] = []) =>
  ['v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE 0 1', ...extra,
    'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'a=candidate:1 1 UDP 2122317823 192.0.2.1 5000 typ host', 'a=mid:0', 'a=candidate:2 1 UDP 1686052607 198.51.100.7 6000 typ srflx raddr 192.0.2.1 rport 5000', 'a=end-of-candidates',
    'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:1', 'a=candidate:3 1 UDP 2122317823 192.0.2.1 5002 typ host', ''].join('\r\n');

test('the offer goes to the stack without candidates or end-of-candidates; each candidate keeps its section’s mid', () => {
  const held = holdCandidates(offer());
  assert.doesNotMatch(held.sdp, /a=candidate|a=end-of-candidates/);
  assert.match(held.sdp, /a=mid:0\r\n/);
  assert.deepEqual(held.candidates, [
    { candidate: 'candidate:1 1 UDP 2122317823 192.0.2.1 5000 typ host', mid: '0' },
    { candidate: 'candidate:2 1 UDP 1686052607 198.51.100.7 6000 typ srflx raddr 192.0.2.1 rport 5000', mid: '0' },
    { candidate: 'candidate:3 1 UDP 2122317823 192.0.2.1 5002 typ host', mid: '1' },
  ]);
});

test('an ICE-lite offerer never checks, so its offer is left whole', () => {
  const sdp = offer(['a=ice-lite']);
  assert.deepEqual(holdCandidates(sdp), { sdp, candidates: [] });
});
