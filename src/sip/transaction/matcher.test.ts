import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSipMessage, type SipRequest, type SipResponse } from '../message.js';
import { cancelledInviteKey, clientKey, serverKey } from './matcher.js';

function req(method: string, opts: { via?: string; toTag?: string; cseqMethod?: string; uri?: string } = {}): SipRequest {
  return parseSipMessage(
    [
      `${method} ${opts.uri ?? 'sip:agent@voxgate.test'} SIP/2.0`,
      `Via: ${opts.via ?? 'SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bKabc'}`,
      'Max-Forwards: 70',
      `To: <sip:agent@voxgate.test>${opts.toTag ? `;tag=${opts.toTag}` : ''}`,
      'From: <sip:alice@voxgate.test>;tag=a1',
      'Call-ID: c1',
      `CSeq: 1 ${opts.cseqMethod ?? method}`,
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n'),
  ) as SipRequest;
}

test('§17.2.3: branch, sent-by and method make the key; an ACK matches its INVITE, a CANCEL is its own and finds the INVITE', () => {
  const invite = serverKey(req('INVITE'));
  assert.equal(invite.legacy, false);
  assert.equal(serverKey(req('INVITE')).key, invite.key, 'a retransmission matches');
  assert.equal(serverKey(req('ACK', { toTag: 't1' })).key, invite.key, 'the ACK of a non-2xx matches the INVITE');
  const cancel = req('CANCEL');
  assert.notEqual(serverKey(cancel).key, invite.key, 'CANCEL is a transaction of its own');
  assert.equal(cancelledInviteKey(cancel), invite.key);
  // The same branch from another sent-by is another client's transaction.
  assert.notEqual(serverKey(req('INVITE', { via: 'SIP/2.0/UDP 192.0.2.6:5060;branch=z9hG4bKabc' })).key, invite.key);
  assert.equal(serverKey(req('INVITE', { via: 'SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKabc' })).key, invite.key, 'the default port is 5060');
  assert.equal(serverKey(req('INVITE', { via: 'SIP/2.0/UDP 192.0.2.5:5080;branch=z9hG4bKabc' })).key === invite.key, false);
  assert.notEqual(serverKey(req('BYE', { toTag: 't1' })).key, invite.key, 'another method, another transaction');
});

test('RFC 2543 fallback without the magic cookie: the Request-URI, tags, Call-ID, CSeq and top Via; an ACK leaves its To tag out', () => {
  const via = 'SIP/2.0/UDP 192.0.2.9:5060;branch=1234';
  const invite = serverKey(req('INVITE', { via }));
  assert.equal(invite.legacy, true);
  assert.equal(serverKey(req('INVITE', { via })).key, invite.key);
  assert.equal(serverKey(req('ACK', { via, toTag: 'ours', cseqMethod: 'ACK' })).key, invite.key);
  assert.equal(cancelledInviteKey(req('CANCEL', { via })), invite.key);
  assert.notEqual(serverKey(req('INVITE', { via: 'SIP/2.0/UDP 192.0.2.9:5060;branch=5678' })).key, invite.key, 'another top Via');
  assert.notEqual(serverKey(req('INVITE', { via, uri: 'sip:bob@voxgate.test' })).key, invite.key, 'another Request-URI');
  const bye = serverKey(req('BYE', { via, toTag: 'x' }));
  assert.notEqual(serverKey(req('BYE', { via, toTag: 'y' })).key, bye.key, 'non-INVITE requests keep their To tag');
});

test('§17.1.3: a response matches by its top branch and CSeq method', () => {
  const res = parseSipMessage('SIP/2.0 200 OK\r\nVia: SIP/2.0/WS gw.invalid;branch=z9hG4bKme\r\nTo: <sip:b@x>;tag=2\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 7 BYE\r\nContent-Length: 0\r\n\r\n') as SipResponse;
  assert.equal(clientKey(res), 'z9hG4bKme|BYE');
  assert.equal(clientKey(res, 'INVITE'), 'z9hG4bKme|INVITE');
});
