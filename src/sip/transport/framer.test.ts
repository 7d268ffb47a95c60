import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { salvageResponse } from '../build.js';
import { contentLength, StreamFramer, type FramedItem } from './framer.js';

function sipMessage(body = '', contentLengthLine = `Content-Length: ${Buffer.byteLength(body)}`): string {
  return [
    'INVITE sip:bob@biloxi.com SIP/2.0',
    'Via: SIP/2.0/TCP pc33.atlanta.com;branch=z9hG4bK776asdhds',
    'Max-Forwards: 70',
    'To: Bob <sip:bob@biloxi.com>',
    'From: Alice <sip:alice@atlanta.com>;tag=1928301774',
    'Call-ID: a84b4c76e66710@pc33.atlanta.com',
    'CSeq: 314159 INVITE',
    ...(contentLengthLine ? [contentLengthLine] : []),
    '',
    body,
  ].join('\r\n');
}

const SDP = 'v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.atlanta.com\r\ns=-\r\nc=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\n';

/** Feeds the chunks and returns every item, messages as text. */
function frame(chunks: (string | Buffer)[], maxMessageBytes = 65536, maxHeaderBytes?: number): (FramedItem | string)[] {
  const framer = new StreamFramer({ maxMessageBytes, maxHeaderBytes });
  return chunks.flatMap((c) => framer.push(Buffer.isBuffer(c) ? c : Buffer.from(c))).map((i) => (i.kind === 'message' ? i.data.toString('utf8') : i));
}

describe('StreamFramer', () => {
  it('RFC 3261 §18.3: one message split at every byte position comes out whole, once', () => {
    const text = sipMessage(SDP) + sipMessage();
    for (let cut = 1; cut < text.length; cut++) {
      assert.deepEqual(frame([text.slice(0, cut), text.slice(cut)]), [sipMessage(SDP), sipMessage()], `cut at ${cut}`);
    }
  });

  it('a message fed one byte at a time comes out whole', () => {
    const text = sipMessage(SDP);
    assert.deepEqual(frame([...Buffer.from(text)].map((b) => Buffer.from([b]))), [text]);
  });

  it('several messages in one chunk come out in order', () => {
    const msgs = [sipMessage(SDP), sipMessage(), sipMessage('hello')];
    assert.deepEqual(frame([msgs.join('')]), msgs);
  });

  it('the compact form l:, any case and whitespace around the colon', () => {
    const compact = sipMessage('hello', 'l : 5');
    assert.deepEqual(frame([compact + compact]), [compact, compact]);
    const spaced = sipMessage('hello', 'CONTENT-length\t:   5  ');
    assert.deepEqual(frame([spaced]), [spaced]);
  });

  it('a body holding CRLFCRLF is taken by its Content-Length', () => {
    const body = 'first\r\n\r\nsecond\r\n\r\n';
    const text = sipMessage(body);
    assert.deepEqual(frame([text, sipMessage()]), [text, sipMessage()]);
  });

  it('RFC 5626 §3.5.1: a CRLFCRLF between messages is a ping; a lone CRLF is skipped', () => {
    const msg = sipMessage();
    assert.deepEqual(frame(['\r\n\r\n']), [{ kind: 'ping' }]);
    assert.deepEqual(frame(['\r\n']), []);
    assert.deepEqual(frame(['\r\n', '\r', '\n' + msg + '\r\n\r\n\r\n\r\n' + msg]), [{ kind: 'ping' }, msg, { kind: 'ping' }, { kind: 'ping' }, msg]);
  });

  it('RFC 3261 §18.3: a message without Content-Length is an error carrying its head, enough to answer 400', () => {
    const text = sipMessage('', '');
    const items = frame([text + sipMessage()]);
    assert.equal(items.length, 1);
    const err = items[0] as FramedItem;
    assert.ok(err !== undefined && typeof err !== 'string' && err.kind === 'error');
    assert.equal(err.code, 'missing-content-length');
    assert.equal(err.status, 400);
    assert.equal(err.head.toString(), text);
    const reply = salvageResponse(err.head, err.status, err.reason);
    assert.match(reply ?? '', /^SIP\/2\.0 400 Missing Content-Length[^\r]*\r\nVia: SIP\/2\.0\/TCP pc33\.atlanta\.com;branch=z9hG4bK776asdhds\r\n/);
    assert.match(reply ?? '', /\r\nCSeq: 314159 INVITE\r\n/);
  });

  it('nothing is framed after an error', () => {
    const framer = new StreamFramer({ maxMessageBytes: 65536 });
    assert.equal(framer.push(Buffer.from(sipMessage('', 'Content-Length: x')))[0]?.kind, 'error');
    assert.equal(framer.failed, true);
    assert.deepEqual(framer.push(Buffer.from(sipMessage())), []);
  });

  it('Content-Length values that disagree, or are not numbers, are bad', () => {
    assert.equal(contentLength('INVITE sip:a@b SIP/2.0\r\nContent-Length: 5\r\nl: 6'), 'bad');
    assert.equal(contentLength('INVITE sip:a@b SIP/2.0\r\nContent-Length: 5\r\nl: 5'), 5);
    assert.equal(contentLength('INVITE sip:a@b SIP/2.0\r\nContent-Length: -1'), 'bad');
    assert.equal(contentLength('INVITE sip:a@b SIP/2.0\r\nContent-Length:\r\n  12'), 12);
    assert.equal(contentLength('INVITE sip:a@b SIP/2.0\r\nX-Content-Length: 12'), undefined);
    // The start line is never a header, whatever it holds.
    assert.equal(contentLength('l: 5 sip:a@b SIP/2.0\r\nCSeq: 1 l'), undefined);
  });

  it('a Content-Length past the largest message is an error (413) before the body is read', () => {
    const text = sipMessage('', 'Content-Length: 70000');
    const items = frame([text], 65536);
    const err = items[0];
    assert.ok(err !== undefined && typeof err !== 'string' && err.kind === 'error');
    assert.equal(err.code, 'message-too-large');
    assert.equal(err.status, 413);
  });

  it('headers past the limit are an error (513) without waiting for their end, with whole lines only', () => {
    const framer = new StreamFramer({ maxMessageBytes: 65536, maxHeaderBytes: 1024 });
    const start = 'OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nCSeq: 1 OPTIONS\r\n';
    assert.deepEqual(framer.push(Buffer.from(start)), []);
    let items: FramedItem[] = [];
    for (let i = 0; i < 40 && items.length === 0; i++) items = framer.push(Buffer.from(`X-Padding-${i}: ${'y'.repeat(40)}`));
    const err = items[0];
    assert.ok(err !== undefined && err.kind === 'error');
    assert.equal(err.code, 'headers-too-long');
    assert.equal(err.status, 513);
    assert.ok(err.head.length <= 1024);
    assert.equal(err.head.toString().slice(-2), '\r\n');
    assert.match(salvageResponse(err.head, err.status, err.reason) ?? '', /^SIP\/2\.0 513 /);
  });

  it('keeps nothing once a message is out, and holds only the incomplete tail', () => {
    const framer = new StreamFramer({ maxMessageBytes: 65536 });
    const text = sipMessage(SDP);
    framer.push(Buffer.from(text + text.slice(0, 10)));
    assert.equal(framer.buffered, 10);
    framer.push(Buffer.from(text.slice(10)));
    assert.equal(framer.buffered, 0);
  });

  it('frames in linear time: 20 000 messages in 7-byte chunks, and in one chunk', () => {
    const one = sipMessage('x'.repeat(200));
    const all = Buffer.from(one.repeat(20_000));
    const started = performance.now();
    const framer = new StreamFramer({ maxMessageBytes: 65536 });
    let count = 0;
    for (let i = 0; i < all.length; i += 7) count += framer.push(all.subarray(i, Math.min(all.length, i + 7))).length;
    count += new StreamFramer({ maxMessageBytes: 65536 }).push(all).length;
    assert.equal(count, 40_000);
    // A re-scan of the buffer per chunk would take minutes here.
    assert.ok(performance.now() - started < 10_000);
  });
});
