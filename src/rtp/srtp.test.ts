import assert from 'node:assert/strict';
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { AesCmKeystream, deriveSessionKeys, MAX_SSRCS, SrtpError, SrtpSession, type SrtpMasterKey, type SrtpSuite } from './srtp.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// RFC 3711 Appendix B.3's master key, which libsrtp's srtp_validate() also uses.
const MASTER: SrtpMasterKey = { key: hex('E1F97A0D3E018BE0D64FA32C06DE4139'), salt: hex('0EC675AD498AFEEBB6960B3AABE6') };
// RFC 3711 B.3: what that master key derives (SRTP labels 0, 1, 2).
const SESSION_KEY = hex('C61E7A93744F39EE10734AFE3FF7A087');
const SESSION_SALT = hex('30CBBC08863D8C85D49DB34A9AE1');
const AUTH_KEY = hex('CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4');

function rtp(seq: number, ssrc = 0xcafebabe, payload: Buffer = Buffer.alloc(160, 0xd5)): Buffer {
  const header = Buffer.alloc(12);
  header[0] = 0x80;
  header.writeUInt16BE(seq, 2);
  header.writeUInt32BE(seq * 160, 4);
  header.writeUInt32BE(ssrc, 8);
  return Buffer.concat([header, payload]);
}

function pair(suite: SrtpSuite = 'AES_CM_128_HMAC_SHA1_80', master: SrtpMasterKey = MASTER): [SrtpSession, SrtpSession] {
  return [new SrtpSession(suite, master), new SrtpSession(suite, master)];
}

test('RFC 3711 B.3: key derivation gives the session key, salt and auth key', () => {
  const keys = deriveSessionKeys(MASTER, 'srtp');
  assert.deepEqual(keys.encryption, SESSION_KEY);
  assert.deepEqual(keys.salt, SESSION_SALT);
  assert.deepEqual(keys.auth, AUTH_KEY);
  const rtcp = deriveSessionKeys(MASTER, 'srtcp');
  assert.notDeepEqual(rtcp.encryption, keys.encryption, 'SRTCP has its own labels 3, 4, 5');
  assert.throws(() => deriveSessionKeys({ key: Buffer.alloc(16), salt: Buffer.alloc(12) }, 'srtp'), RangeError);
});

test('RFC 3711 B.2: the AES-CM keystream for the given key and IV', () => {
  const ks = new AesCmKeystream(hex('2B7E151628AED2A6ABF7158809CF4F3C'), hex('F0F1F2F3F4F5F6F7F8F9FAFBFCFD'));
  const out = Buffer.alloc(0xff02 * 16);
  ks.xor(out, 0, out.length, 0, 0, 0); // SSRC 0, ROC 0, SEQ 0, over zeros
  const block = (i: number) => out.subarray(i * 16, i * 16 + 16).toString('hex').toUpperCase();
  assert.equal(block(0x0000), 'E03EAD0935C95E80E166B16DD92B4EB4');
  assert.equal(block(0x0001), 'D23513162B02D0F72A43A2FE4A5F97AB');
  assert.equal(block(0x0002), '41E95B3BB0A2E8DD477901E4FCA894C0');
  // Counter F0F1...FDFEFF is also NIST SP 800-38A F.5.1's first block: 874D6191... XOR 6BC1BEE2...
  assert.equal(block(0xfeff), 'EC8CDF7398607CB0F2D21675EA9EA1E4');
  assert.equal(block(0xff00), '362B7C3C6773516318A077D7FC5073AE');
  assert.equal(block(0xff01), '6A2CC3787889374FBEB4C81B17BA6C44');
  // The reused cipher keeps no state between packets: the same keystream again.
  const again = Buffer.alloc(32);
  ks.xor(again, 0, 32, 0, 0, 0);
  assert.deepEqual(again, out.subarray(0, 32));
});

// libsrtp test/srtp_driver.c srtp_validate(): AES_CM_128_HMAC_SHA1_80, SSRC 0xcafebabe, SEQ 0x1234.
const LIBSRTP_RTP = hex('800f1234decafbadcafebabe abababababababababababababababab');
const LIBSRTP_SRTP = hex('800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb');
// ... and its SRTCP: SRTCP index 1 (libsrtp numbers its first SRTCP packet 1), tag 80 bits.
const LIBSRTP_RTCP = hex('81c8000bcafebabe abababababababababababababababab');
const LIBSRTP_SRTCP = hex('81c8000bcafebabe 7128035be487b9bdbef89041f977a5a8 80000001 993e08cd54d6c1230798');

test('libsrtp known answer: SRTP with AES_CM_128_HMAC_SHA1_80, and its first 32 bytes for _32', () => {
  const [tx, rx] = pair();
  assert.deepEqual(tx.protectRtp(LIBSRTP_RTP), LIBSRTP_SRTP);
  assert.deepEqual(rx.unprotectRtp(LIBSRTP_SRTP), LIBSRTP_RTP);
  const [tx32, rx32] = pair('AES_CM_128_HMAC_SHA1_32');
  const short = tx32.protectRtp(LIBSRTP_RTP);
  assert.equal(short.length, LIBSRTP_RTP.length + 4, 'a 4-byte tag');
  assert.deepEqual(short, LIBSRTP_SRTP.subarray(0, 32));
  assert.deepEqual(rx32.unprotectRtp(short), LIBSRTP_RTP);
});

test('libsrtp known answer: SRTCP, E=1 and an 80-bit tag with either suite', () => {
  for (const suite of ['AES_CM_128_HMAC_SHA1_80', 'AES_CM_128_HMAC_SHA1_32'] as const) {
    const [tx, rx] = pair(suite);
    assert.deepEqual(rx.unprotectRtcp(LIBSRTP_SRTCP), LIBSRTP_RTCP);
    const first = tx.protectRtcp(LIBSRTP_RTCP);
    assert.equal(first.readUInt32BE(LIBSRTP_RTCP.length), 0x80000000, 'RFC 3711 §3.4: E=1, the first index is 0');
    assert.deepEqual(tx.protectRtcp(LIBSRTP_RTCP), LIBSRTP_SRTCP, 'the second has index 1');
    assert.deepEqual(rx.unprotectRtcp(first), LIBSRTP_RTCP, 'index 0 is below 1 but inside the window');
  }
  // rvoip's libsrtp 2.8.0 interop fixture: a Sender Report whose length field is right.
  const rtcp = hex('80c80006cafebabe abababababababababababababababababababab');
  const srtcp = hex('80c80006cafebabe 7128035be487b9bdbef89041f977a5a8d5efb881 80000001 905c6f4d7932c1caa182');
  assert.deepEqual(new SrtpSession('AES_CM_128_HMAC_SHA1_80', MASTER).unprotectRtcp(srtcp), rtcp);
});

test('the payload after CSRCs and a header extension, at ROC 1, matches an independent AES-CTR and HMAC', () => {
  const ssrc = 0x11223344;
  const payload = randomBytes(37);
  // V=2 X=1 CC=2, SEQ 5; two CSRCs; an RFC 8285 one-byte extension (audio level)
  const header = hex('92000005000000a0 11223344 00000001 00000002 bede0001 107f0000');
  const [tx, rx] = pair();
  tx.protectRtp(rtp(65535, ssrc)); // the next SEQ, 5, wraps: ROC 1
  const packet = Buffer.concat([header, payload]);
  const srtp = tx.protectRtp(packet);

  // RFC 3711 §4.1.1: IV = (k_s·2^16) XOR (SSRC·2^64) XOR (i·2^16), i = ROC·2^16 + SEQ.
  const index = (1n << 16n) | 5n;
  const iv = (BigInt('0x' + SESSION_SALT.toString('hex')) << 16n) ^ (BigInt(ssrc) << 64n) ^ (index << 16n);
  const ivBytes = hex(iv.toString(16).padStart(32, '0'));
  const cipher = createCipheriv('aes-128-ctr', SESSION_KEY, ivBytes).update(payload);
  const authenticated = Buffer.concat([header, cipher]);
  const tag = createHmac('sha1', AUTH_KEY).update(authenticated).update(hex('00000001')).digest().subarray(0, 10);
  assert.deepEqual(srtp, Buffer.concat([authenticated, tag]));

  rx.unprotectRtp(tx.protectRtp(rtp(65534, ssrc)));
  assert.deepEqual(rx.unprotectRtp(srtp), packet, 'the receiver guesses ROC 1 too');
});

test('libsrtp RFC 6904 vector: with a header extension the payload encrypts as without one', () => {
  const packet = hex(`900f1234decafbad cafebabebede0006 17414273a4752627 48220000c8308e46 55996386b395fb00
    abababababababab abababababababab`);
  const out = new SrtpSession('AES_CM_128_HMAC_SHA1_80', MASTER).protectRtp(packet);
  assert.deepEqual(out.subarray(0, 40), packet.subarray(0, 40), 'the header and its extension stay clear');
  assert.deepEqual(out.subarray(40, 56), hex('4e55dc4ce79978d88ca4d215949d2402'));
});

test('a round trip for both suites, a 172-byte PCMU packet and RTP padding', () => {
  for (const suite of ['AES_CM_128_HMAC_SHA1_80', 'AES_CM_128_HMAC_SHA1_32'] as const) {
    const master = { key: randomBytes(16), salt: randomBytes(14) };
    const [tx, rx] = pair(suite, master);
    for (let seq = 100; seq < 200; seq++) {
      const plain = rtp(seq, 0x01020304, randomBytes(160));
      const srtp = tx.protectRtp(plain);
      assert.equal(srtp.length, 172 + (suite.endsWith('80') ? 10 : 4));
      assert.notDeepEqual(srtp.subarray(12, 172), plain.subarray(12));
      assert.deepEqual(rx.unprotectRtp(srtp), plain);
    }
    const padded = Buffer.concat([rtp(200, 0x01020304, Buffer.from([1, 2, 3])), Buffer.from([0, 0, 3])]);
    padded[0] = 0xa0; // RFC 3711 §3.1: the padding is part of the encrypted portion
    assert.deepEqual(rx.unprotectRtp(tx.protectRtp(padded)), padded);
  }
});

test('one flipped bit anywhere fails authentication and leaves the window where it was', () => {
  const [tx, rx] = pair();
  const srtp = tx.protectRtp(rtp(7));
  for (const byte of [1, 3, 11, 12, 100, srtp.length - 1]) {
    const bad = Buffer.from(srtp);
    bad[byte]! ^= 0x10;
    assert.equal(rx.unprotectRtp(bad), 'auth', `byte ${byte}`);
  }
  assert.equal(rx.ssrcCount, 0, 'no state for an SSRC that never authenticated');
  assert.ok(Buffer.isBuffer(rx.unprotectRtp(srtp)), 'the genuine packet is still accepted');
  const [tx32, rx32] = pair('AES_CM_128_HMAC_SHA1_32');
  const short = tx32.protectRtp(rtp(7));
  short[short.length - 1]! ^= 1;
  assert.equal(rx32.unprotectRtp(short), 'auth');
});

test('replay: the same packet twice, one older than the window, out of order inside it once', () => {
  const [tx, rx] = pair();
  const sent = new Map<number, Buffer>();
  for (let seq = 1000; seq <= 1300; seq++) sent.set(seq, tx.protectRtp(rtp(seq)));
  assert.ok(Buffer.isBuffer(rx.unprotectRtp(sent.get(1000)!)));
  assert.equal(rx.unprotectRtp(sent.get(1000)!), 'replay');
  for (const seq of [1010, 1012, 1011, 1005]) assert.ok(Buffer.isBuffer(rx.unprotectRtp(sent.get(seq)!)), `seq ${seq} accepted`);
  for (const seq of [1011, 1005]) assert.equal(rx.unprotectRtp(sent.get(seq)!), 'replay', `seq ${seq} again`);
  assert.ok(Buffer.isBuffer(rx.unprotectRtp(sent.get(1300)!)));
  assert.equal(rx.unprotectRtp(sent.get(1172)!), 'replay', '128 behind the highest is outside the window');
  assert.ok(Buffer.isBuffer(rx.unprotectRtp(sent.get(1173)!)), '127 behind is inside it');
  // A forged packet ahead of the window does not move it: 1174 is still accepted afterwards.
  const forged = Buffer.from(sent.get(1299)!);
  forged.writeUInt16BE(5000, 2);
  assert.equal(rx.unprotectRtp(forged), 'auth');
  assert.ok(Buffer.isBuffer(rx.unprotectRtp(sent.get(1174)!)));
  // A gap after a full window: the slot of 1302 last held 1174; 1302 arriving late is still new.
  for (let seq = 1175; seq <= 1301; seq++) rx.unprotectRtp(tx.protectRtp(rtp(seq)));
  const late = tx.protectRtp(rtp(1302));
  assert.ok(Buffer.isBuffer(rx.unprotectRtp(tx.protectRtp(rtp(1303)))));
  assert.ok(Buffer.isBuffer(rx.unprotectRtp(late)));
});

test('ROC rollover across SEQ 65535 -> 0 on both sides, with reordering across the wrap', () => {
  const [tx, rx] = pair();
  const seqs = [65530, 65531, 65532, 65533, 65534, 65535, 0, 1, 2, 3];
  const sent = seqs.map((seq) => tx.protectRtp(rtp(seq)));
  const order = [0, 1, 2, 3, 4, 6, 5, 7, 9, 8]; // 0 arrives before 65535, 3 before 2
  for (const i of order) assert.deepEqual(rx.unprotectRtp(sent[i]!), rtp(seqs[i]!), `seq ${seqs[i]}`);
  // SEQ 0 was sent with ROC 1: a fresh sender (ROC 0) gives a different ciphertext and tag.
  assert.notDeepEqual(new SrtpSession('AES_CM_128_HMAC_SHA1_80', MASTER).protectRtp(rtp(0)), sent[6]);
  assert.equal(rx.unprotectRtp(sent[5]!), 'replay', '65535 (ROC 0) seen already');
});

test('malformed and short packets are refused, never thrown', () => {
  const rx = new SrtpSession('AES_CM_128_HMAC_SHA1_80', MASTER);
  assert.equal(rx.unprotectRtp(Buffer.alloc(21)), 'short');
  assert.equal(rx.unprotectRtp(Buffer.concat([hex('400012340000000000000001'), Buffer.alloc(20)])), 'malformed', 'version 1');
  assert.equal(rx.unprotectRtp(Buffer.concat([hex('8f0012340000000000000001'), Buffer.alloc(20)])), 'malformed', '15 CSRCs in 32 bytes');
  assert.equal(rx.unprotectRtp(Buffer.concat([hex('900012340000000000000001 bede00ff'), Buffer.alloc(20)])), 'malformed', 'extension past the end');
  assert.equal(rx.unprotectRtcp(Buffer.alloc(21)), 'short');
  assert.equal(rx.unprotectRtcp(Buffer.alloc(40)), 'malformed', 'version 0');
  for (let i = 0; i < 5000; i++) {
    const junk = randomBytes(i % 80);
    if (i % 2) junk[0] = 0x80 | (junk[0]! & 0x3f);
    assert.equal(typeof rx.unprotectRtp(junk), 'string');
    assert.equal(typeof rx.unprotectRtcp(junk), 'string');
  }
  assert.throws(() => rx.protectRtp(Buffer.alloc(8)), SrtpError);
  assert.throws(() => rx.protectRtcp(Buffer.alloc(8)), SrtpError);
});

test(`state is kept for at most ${MAX_SSRCS} SSRCs, and RTP and RTCP of one SSRC share it`, () => {
  const [tx, rx] = pair();
  for (let ssrc = 1; ssrc <= MAX_SSRCS; ssrc++) {
    assert.ok(Buffer.isBuffer(rx.unprotectRtp(tx.protectRtp(rtp(1, ssrc)))));
    const report = hex('80c9000100000000');
    report.writeUInt32BE(ssrc, 4);
    assert.ok(Buffer.isBuffer(rx.unprotectRtcp(tx.protectRtcp(report))));
  }
  assert.equal(rx.ssrcCount, MAX_SSRCS);
  const other = new SrtpSession('AES_CM_128_HMAC_SHA1_80', MASTER);
  assert.equal(rx.unprotectRtp(other.protectRtp(rtp(1, 999))), 'ssrc-limit');
  assert.throws(() => tx.protectRtp(rtp(1, 999)), (e: unknown) => e instanceof SrtpError && e.code === 'ssrc-limit');
  assert.ok(Buffer.isBuffer(rx.unprotectRtp(tx.protectRtp(rtp(2, 3)))), 'known SSRCs carry on');
});

test('SRTCP: round trip, replay, tampering, and an authenticated E=0 packet read as plain', () => {
  const [tx, rx] = pair('AES_CM_128_HMAC_SHA1_32');
  const rr = hex('81c90007deadbeef 01020304 00000000 0000ffff 00000010 00000000 00000000');
  const first = tx.protectRtcp(rr);
  assert.equal(first.length, rr.length + 4 + 10);
  assert.notDeepEqual(first.subarray(8, rr.length), rr.subarray(8));
  assert.deepEqual(rx.unprotectRtcp(first), rr);
  assert.equal(rx.unprotectRtcp(first), 'replay');
  const second = tx.protectRtcp(rr);
  const bad = Buffer.from(second);
  bad[9]! ^= 1;
  assert.equal(rx.unprotectRtcp(bad), 'auth');
  assert.deepEqual(rx.unprotectRtcp(second), rr);
  for (let i = 0; i < 200; i++) tx.protectRtcp(rr);
  assert.ok(Buffer.isBuffer(rx.unprotectRtcp(tx.protectRtcp(rr))));
  assert.equal(rx.unprotectRtcp(second), 'replay', 'now older than the window');

  const keys = deriveSessionKeys(MASTER, 'srtcp');
  const plain = Buffer.concat([rr, hex('000001f4')]); // E=0, index 500
  const tag = createHmac('sha1', keys.auth).update(plain).digest().subarray(0, 10);
  assert.deepEqual(rx.unprotectRtcp(Buffer.concat([plain, tag])), rr);
});
