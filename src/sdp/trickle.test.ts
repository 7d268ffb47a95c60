import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseTrickleFragment, TrickleParseError } from './trickle.js';

test('RFC 8840 §9 fragment: credentials, candidates with their mid, end-of-candidates', () => {
  const frag = parseTrickleFragment(
    'a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n' +
      'a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\n' +
      'a=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host generation 0 ufrag EsAw network-id 2\r\n' +
      'a=end-of-candidates\r\n',
  );
  assert.equal(frag.ufrag, 'EsAw');
  assert.equal(frag.pwd, 'P2uYro0UCOQ4zxjKXaWCBui1');
  assert.equal(frag.candidates.length, 2);
  assert.deepEqual(frag.candidates[0], { mid: '0', candidate: 'candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1' });
  assert.equal(frag.endOfCandidates, true);
});

test('a fragment that is not sdpfrag lines is an error', () => {
  assert.throws(() => parseTrickleFragment('hello'), TrickleParseError);
});
