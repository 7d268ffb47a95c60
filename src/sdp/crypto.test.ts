import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chooseCrypto, CryptoParseError, formatCrypto, newMasterKey, parseCrypto, type CryptoField } from './crypto.js';
import { attrs, parseSdp } from './sdp.js';

const SUPPORTED = ['AES_CM_128_HMAC_SHA1_80', 'AES_CM_128_HMAC_SHA1_32'];

function refused(value: string, field: CryptoField, message: RegExp): void {
  assert.throws(
    () => parseCrypto(value),
    (e: unknown) => e instanceof CryptoParseError && e.field === field && message.test(e.message),
    value,
  );
}

test('parses the RFC 4568 line with a lifetime of 2^20 and a 4-byte MKI', () => {
  const c = parseCrypto('1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4');
  const bytes = Buffer.from('PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR', 'base64');
  assert.equal(c.tag, 1);
  assert.equal(c.suite, 'AES_CM_128_HMAC_SHA1_80');
  assert.equal(c.keys.length, 1);
  assert.deepEqual(c.keys[0]!.key, bytes.subarray(0, 16));
  assert.deepEqual(c.keys[0]!.salt, bytes.subarray(16, 30));
  assert.equal(c.keys[0]!.lifetime, 1048576);
  assert.deepEqual(c.keys[0]!.mki, { value: 1, length: 4 });
  assert.deepEqual(c.sessionParams, []);
});

test("RFC 4568's example offer: two crypto lines, one with two keys, and a session parameter", () => {
  const sdp = parseSdp(
    [
      'v=0',
      'o=sam 2890844526 2890842807 IN IP4 10.47.16.5',
      's=SRTP Discussion',
      'c=IN IP4 168.2.17.12',
      't=2873397496 2873404696',
      'm=audio 49170 RTP/SAVP 0',
      'a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4 FEC_ORDER=FEC_SRTP',
      'a=crypto:2 F8_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5QUJjZGVm|2^20|1:4;inline:QUJjZGVmMTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5|2^20|2:4 FEC_ORDER=FEC_SRTP',
      '',
    ].join('\r\n'),
  );
  const [first, second] = attrs(sdp.media[0]!.attributes, 'crypto').map(parseCrypto);
  assert.equal(first!.tag, 1);
  assert.deepEqual(first!.sessionParams, ['FEC_ORDER=FEC_SRTP']);
  assert.equal(second!.suite, 'F8_128_HMAC_SHA1_80');
  assert.deepEqual(
    second!.keys.map((k) => [Buffer.concat([k.key, k.salt]).toString(), k.mki?.value]),
    [
      ['123456789ABCDE0123456789ABcdef', 1],
      ['ABcdef123456789ABCDE0123456789', 2],
    ],
  );
  // Neither can be answered by us: both carry an MKI, and F8 is not a suite we run.
  assert.equal(chooseCrypto(attrs(sdp.media[0]!.attributes, 'crypto'), SUPPORTED), undefined);
});

test('formatCrypto writes the 16-byte key and 14-byte salt as one base64 string, and parseCrypto reads it back', () => {
  const master = newMasterKey();
  assert.equal(master.key.length, 16);
  assert.equal(master.salt.length, 14);
  assert.notDeepEqual(newMasterKey().key, master.key, 'random');
  const line = formatCrypto({ tag: 1, suite: 'AES_CM_128_HMAC_SHA1_80', keys: [master], sessionParams: [] });
  assert.equal(line, `1 AES_CM_128_HMAC_SHA1_80 inline:${Buffer.concat([master.key, master.salt]).toString('base64')}`);
  assert.match(line, /^1 AES_CM_128_HMAC_SHA1_80 inline:[A-Za-z0-9+/]{40}$/);
  assert.deepEqual(parseCrypto(line).keys, [master]);
  for (const text of [
    '1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4',
    '7 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1000 WSH=64',
    '2 AES_256_CM_HMAC_SHA1_80 inline:' + Buffer.alloc(46, 7).toString('base64') + '|2:1 KDR=3',
  ]) {
    assert.equal(formatCrypto(parseCrypto(text)), text);
  }
  assert.equal(newMasterKey('AES_256_CM_HMAC_SHA1_80').key.length, 32);
});

test('tabs and runs of spaces separate the fields; the key method is case-insensitive', () => {
  const c = parseCrypto(' 3\tAES_CM_128_HMAC_SHA1_32   INLINE:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR  WSH=128 ');
  assert.equal(c.tag, 3);
  assert.deepEqual(c.sessionParams, ['WSH=128']);
});

test('each malformed part is a CryptoParseError that names it', () => {
  const KEY = 'PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR';
  refused('1 AES_CM_128_HMAC_SHA1_80', 'syntax', /fewer parts/);
  refused(`x AES_CM_128_HMAC_SHA1_80 inline:${KEY}`, 'tag', /1 to 9 digits/);
  refused(`1234567890 AES_CM_128_HMAC_SHA1_80 inline:${KEY}`, 'tag', /1 to 9 digits/);
  refused(`1 AES-CM inline:${KEY}`, 'suite', /not a crypto-suite/);
  refused(`1 NULL_HMAC_SHA1_80 inline:${KEY}`, 'suite', /unknown crypto-suite NULL_HMAC_SHA1_80/);
  refused(`1 AES_CM_128_HMAC_SHA1_80 uri:sip:keys@example.com`, 'key-method', /inline:/);
  refused('1 AES_CM_128_HMAC_SHA1_80 inline:PS1u*CVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR', 'key', /not base64/);
  refused('1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVB', 'key', /not base64/);
  refused('1 AES_CM_128_HMAC_SHA1_80 inline:', 'key', /not base64/);
  const short = Buffer.alloc(24).toString('base64');
  refused(`1 AES_CM_128_HMAC_SHA1_80 inline:${short}`, 'key', /16-byte key and a 14-byte salt, 30 bytes in all; this key is 24 bytes/);
  refused(`1 AES_256_CM_HMAC_SHA1_80 inline:${KEY}`, 'key', /32-byte key .* 30 bytes/);
  refused(`1 AES_CM_128_HMAC_SHA1_80 inline:${KEY}|2^x`, 'lifetime', /"2\^x"/);
  refused(`1 AES_CM_128_HMAC_SHA1_80 inline:${KEY}|0`, 'lifetime', /1 to 2\^48/);
  refused(`1 AES_CM_128_HMAC_SHA1_80 inline:${KEY}|2^49`, 'lifetime', /1 to 2\^48/);
  refused(`1 AES_CM_128_HMAC_SHA1_80 inline:${KEY}|1:0`, 'mki', /1 to 128 bytes/);
  refused(`1 AES_CM_128_HMAC_SHA1_80 inline:${KEY}|1:129`, 'mki', /1 to 128 bytes/);
  refused(`1 AES_CM_128_HMAC_SHA1_80 inline:${KEY}|256:1`, 'mki', /holds the value/);
  refused(`1 AES_CM_128_HMAC_SHA1_80 inline:${KEY}|1:4|2^20`, 'syntax', /\[\|lifetime\]\[\|mki:length\]/);
  refused(`1 AES_CM_128_HMAC_SHA1_80 inline:${KEY}|2^20|2^20|1:4`, 'syntax', /after the key/);
  refused(`1 AES_CM_128_HMAC_SHA1_80 inline:${KEY}|1:4;inline:${KEY}|2:2`, 'mki', /different MKI lengths/);
});

test('chooseCrypto takes the first offered line we can run: our suite, one key, no MKI, ignorable parameters', () => {
  const KEY = 'PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR';
  const offered = [
    `1 AES_256_CM_HMAC_SHA1_80 inline:${Buffer.alloc(46, 1).toString('base64')}`, // not a suite we run
    `2 AES_CM_128_HMAC_SHA1_80 inline:${KEY}|2^20|1:4`, // an MKI
    `3 AES_CM_128_HMAC_SHA1_80 inline:${KEY} UNENCRYPTED_SRTP`, // no encryption
    `4 AES_CM_128_HMAC_SHA1_80 inline:${KEY} KDR=0`, // re-derivation every packet
    `5 AES_CM_128_HMAC_SHA1_80 inline:not-base64`, // malformed: skipped, not thrown
    `6 AES_CM_128_HMAC_SHA1_32 inline:${KEY}|2^31 WSH=64 FEC_ORDER=FEC_SRTP`,
    `7 AES_CM_128_HMAC_SHA1_80 inline:${KEY}`,
  ];
  const chosen = chooseCrypto(offered, SUPPORTED);
  assert.equal(chosen?.tag, 6);
  assert.equal(chosen?.suite, 'AES_CM_128_HMAC_SHA1_32');
  assert.equal(chosen?.keys[0]!.lifetime, 2 ** 31);
  assert.equal(chooseCrypto(offered, ['AES_CM_128_HMAC_SHA1_80'])?.tag, 7, 'only what the caller supports');
  assert.equal(chooseCrypto(offered.slice(0, 5), SUPPORTED), undefined);
  assert.equal(chooseCrypto([], SUPPORTED), undefined);

  // The answer keeps the offered tag and suite and carries a key of our own (RFC 4568 §7.1.2).
  const answer = formatCrypto({ tag: chosen!.tag, suite: chosen!.suite, keys: [newMasterKey(chosen!.suite)], sessionParams: [] });
  assert.match(answer, /^6 AES_CM_128_HMAC_SHA1_32 inline:[A-Za-z0-9+/]{40}$/);
});

test('parseCrypto on mangled lines throws only CryptoParseError', () => {
  const base = '1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4;inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|2:4 WSH=64';
  const alphabet = ' \t|:;^=+/0123456789AZaz_';
  let seed = 1;
  const rand = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  for (let i = 0; i < 5000; i++) {
    const chars = [...base];
    for (let k = 0; k < 1 + rand(4); k++) chars.splice(rand(chars.length), rand(3), alphabet[rand(alphabet.length)]!);
    try {
      parseCrypto(chars.join(''));
    } catch (e) {
      assert.ok(e instanceof CryptoParseError, `${chars.join('')}: ${String(e)}`);
    }
  }
});
