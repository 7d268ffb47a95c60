import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Dialog } from './dialog.js';
import { header, headerList, parseSipMessage, type SipRequest, type SipResponse } from './message.js';

const INVITE = [
  'INVITE sip:bob@example.test SIP/2.0',
  'Via: SIP/2.0/WS us.invalid;branch=z9hG4bK1',
  'Max-Forwards: 70',
  'From: <sip:agent@example.test>;tag=ours',
  'To: <sip:bob@example.test>',
  'Call-ID: uac-1',
  'CSeq: 7 INVITE',
  'Contact: <sip:agent@us.invalid;transport=ws>',
  'Content-Length: 0',
  '',
  '',
].join('\r\n');

const OK = [
  'SIP/2.0 200 OK',
  'Via: SIP/2.0/WS us.invalid;branch=z9hG4bK1',
  'Record-Route: <sip:p1.invalid;lr>, <sip:p2.invalid;lr>',
  'From: <sip:agent@example.test>;tag=ours',
  'To: <sip:bob@example.test>;tag=theirs',
  'Call-ID: uac-1',
  'CSeq: 7 INVITE',
  'Contact: <sip:b0b@bob.invalid;transport=ws>',
  'Content-Type: application/sdp',
  'Content-Length: 4',
  '',
  'v=0\n',
].join('\r\n');

test('a UAC dialog (RFC 3261 §12.1.2): route set reversed, remote target from the 2xx Contact, ACK with the INVITE CSeq', () => {
  const d = Dialog.uac(parseSipMessage(INVITE) as SipRequest, parseSipMessage(OK) as SipResponse, { protocol: 'WS', sentBy: 'us.invalid' });
  assert.equal(d.remoteTarget, 'sip:b0b@bob.invalid;transport=ws');
  assert.deepEqual(d.routeSet, ['<sip:p2.invalid;lr>', '<sip:p1.invalid;lr>']);
  const ack = parseSipMessage(d.ack(7)) as SipRequest;
  assert.equal(ack.method, 'ACK');
  assert.equal(ack.uri, 'sip:b0b@bob.invalid;transport=ws');
  assert.equal(header(ack, 'CSeq'), '7 ACK');
  assert.equal(header(ack, 'To'), '<sip:bob@example.test>;tag=theirs');
  assert.deepEqual(headerList(ack, 'Route'), ['<sip:p2.invalid;lr>', '<sip:p1.invalid;lr>']);
  const bye = parseSipMessage(d.request('BYE').text) as SipRequest;
  assert.equal(header(bye, 'CSeq'), '8 BYE', 'the next request takes the next CSeq');
  assert.equal(header(bye, 'From'), '<sip:agent@example.test>;tag=ours');
});

test('a UAC dialog accepts the first request from the other side at any CSeq, then only higher ones', () => {
  const d = Dialog.uac(parseSipMessage(INVITE) as SipRequest, parseSipMessage(OK) as SipResponse, { protocol: 'WS', sentBy: 'us.invalid' });
  const req = (seq: number) =>
    parseSipMessage(`BYE sip:agent@us.invalid SIP/2.0\r\nVia: SIP/2.0/WS bob.invalid;branch=z9hG4bK2\r\nFrom: <sip:bob@example.test>;tag=theirs\r\nTo: <sip:agent@example.test>;tag=ours\r\nCall-ID: uac-1\r\nCSeq: ${seq} BYE\r\nContent-Length: 0\r\n\r\n`) as SipRequest;
  assert.ok(d.matches(req(0)));
  assert.equal(d.acceptSeq(req(0)), true);
  assert.equal(d.acceptSeq(req(0)), false);
  assert.equal(d.acceptSeq(req(1)), true);
});
