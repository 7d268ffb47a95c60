import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseVia } from '../grammar.js';
import { headerList, parseSipMessage, topVia, TOP_VIA, type SipRequest } from '../message.js';
import { boundSentBy, canonicalHost, hostPort, responseTarget, stampVia } from './received.js';

function request(...vias: string[]): SipRequest {
  const text = [
    'OPTIONS sip:carol@chicago.com SIP/2.0',
    ...vias.map((v) => `Via: ${v}`),
    'Max-Forwards: 70',
    'From: <sip:alice@atlanta.com>;tag=1928301774',
    'To: <sip:carol@chicago.com>',
    'Call-ID: a84b4c76e66710',
    'CSeq: 63104 OPTIONS',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
  return parseSipMessage(text) as SipRequest;
}

describe('stampVia', () => {
  it('RFC 3261 §18.2.1: a sent-by name gets received with the source address', () => {
    const req = request('SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7');
    stampVia(req, { host: '192.0.2.4', port: 5060 });
    assert.equal(headerList(req, 'Via')[0], 'SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7;received=192.0.2.4');
    assert.equal(topVia(req)?.params.get('received'), '192.0.2.4');
  });

  it('RFC 3261 §18.2.1: a sent-by equal to the source is left alone', () => {
    const req = request('SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds7');
    stampVia(req, { host: '192.0.2.4', port: 5060 });
    assert.equal(headerList(req, 'Via')[0], 'SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds7');
  });

  it('RFC 3581 §4 example: rport is filled and received added', () => {
    const req = request('SIP/2.0/UDP 10.1.1.1:4540;rport;branch=z9hG4bKkjshdyff');
    stampVia(req, { host: '192.0.2.1', port: 9988 });
    assert.equal(headerList(req, 'Via')[0], 'SIP/2.0/UDP 10.1.1.1:4540;received=192.0.2.1;rport=9988;branch=z9hG4bKkjshdyff');
    const via = req[TOP_VIA]!;
    assert.equal(via.params.get('rport'), '9988');
    assert.equal(via.params.get('received'), '192.0.2.1');
  });

  it('RFC 3581 §4: with rport, received is added even when it equals the sent-by', () => {
    const req = request('SIP/2.0/UDP 192.0.2.1:9988;branch=z9hG4bKkjshdyff;rport');
    stampVia(req, { host: '192.0.2.1', port: 9988 });
    assert.equal(headerList(req, 'Via')[0], 'SIP/2.0/UDP 192.0.2.1:9988;branch=z9hG4bKkjshdyff;received=192.0.2.1;rport=9988');
  });

  it('only the first value of the first Via line changes; the rest are kept', () => {
    const req = request('SIP/2.0/UDP pc33.atlanta.com;rport;branch=z9hG4bK1, SIP/2.0/UDP proxy.example.com;branch=z9hG4bK2', 'SIP/2.0/TCP p2.example.com;branch=z9hG4bK3');
    stampVia(req, { host: '198.51.100.7', port: 40000 });
    const vias = headerList(req, 'Via');
    assert.deepEqual(vias, [
      'SIP/2.0/UDP pc33.atlanta.com;received=198.51.100.7;rport=40000;branch=z9hG4bK1',
      'SIP/2.0/UDP proxy.example.com;branch=z9hG4bK2',
      'SIP/2.0/TCP p2.example.com;branch=z9hG4bK3',
    ]);
    assert.equal(topVia(req)?.host, 'pc33.atlanta.com');
  });

  it('compares IPv6 properly: brackets, case and zero compression', () => {
    const same = request('SIP/2.0/UDP [2001:DB8:0:0::1]:5060;branch=z9hG4bK1');
    stampVia(same, { host: '2001:db8::1', port: 5060 });
    assert.equal(headerList(same, 'Via')[0], 'SIP/2.0/UDP [2001:DB8:0:0::1]:5060;branch=z9hG4bK1');
    const other = request('SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1');
    stampVia(other, { host: '2001:db8::2', port: 5060 });
    assert.equal(headerList(other, 'Via')[0], 'SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;received=2001:db8::2');
  });

  it('an IPv4 peer seen through a dual-stack socket is its IPv4 address', () => {
    const req = request('SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1');
    stampVia(req, { host: '::ffff:192.0.2.9', port: 5060 });
    assert.equal(headerList(req, 'Via')[0], 'SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1');
    const nat = request('SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1');
    stampVia(nat, { host: '::ffff:192.0.2.9', port: 5060 });
    assert.equal(topVia(nat)?.params.get('received'), '192.0.2.9');
  });

  it('a received already present is replaced, not repeated; quoted parameters survive', () => {
    const req = request('SIP/2.0/UDP 10.0.0.2:5060;received=10.9.9.9;x="a;b";branch=z9hG4bK1');
    stampVia(req, { host: '192.0.2.9', port: 5060 });
    assert.equal(headerList(req, 'Via')[0], 'SIP/2.0/UDP 10.0.0.2:5060;x="a;b";branch=z9hG4bK1;received=192.0.2.9');
  });
});

describe('responseTarget', () => {
  const source = { host: '192.0.2.1', port: 9988 };

  it('RFC 3581 §4: received and rport', () => {
    const via = parseVia('SIP/2.0/UDP 10.1.1.1:4540;received=192.0.2.1;rport=9988;branch=z9hG4bKkjshdyff');
    assert.deepEqual(responseTarget(via, source, false), { host: '192.0.2.1', port: 9988 });
  });

  it('RFC 3261 §18.2.2: received with the sent-by port, or 5060', () => {
    assert.deepEqual(responseTarget(parseVia('SIP/2.0/UDP bobspc.biloxi.com:5070;received=192.0.2.4'), source, false), { host: '192.0.2.4', port: 5070 });
    assert.deepEqual(responseTarget(parseVia('SIP/2.0/UDP bobspc.biloxi.com;received=192.0.2.4'), source, false), { host: '192.0.2.4', port: 5060 });
  });

  it('RFC 3261 §18.2.2: maddr with the sent-by port, or 5060', () => {
    assert.deepEqual(responseTarget(parseVia('SIP/2.0/UDP 10.1.1.1:4540;maddr=239.255.255.1;ttl=15;received=192.0.2.1'), source, false), { host: '239.255.255.1', port: 4540 });
    assert.deepEqual(responseTarget(parseVia('SIP/2.0/UDP 10.1.1.1;maddr=[2001:db8::5]'), source, false), { host: '2001:db8::5', port: 5060 });
  });

  it('RFC 3261 §18.2.2: otherwise the sent-by, 5060 by default; IPv6 without brackets', () => {
    assert.deepEqual(responseTarget(parseVia('SIP/2.0/UDP 192.0.2.4:5072;branch=z9hG4bK1'), source, false), { host: '192.0.2.4', port: 5072 });
    assert.deepEqual(responseTarget(parseVia('SIP/2.0/UDP [2001:db8::9]'), source, false), { host: '2001:db8::9', port: 5060 });
  });

  it('a bare rport (never stamped) does not count as a port', () => {
    assert.deepEqual(responseTarget(parseVia('SIP/2.0/UDP 10.1.1.1:4540;rport'), source, false), { host: '10.1.1.1', port: 4540 });
  });

  it('RFC 3261 §18.2.2: on a reliable transport the answer goes back where the request came from', () => {
    const via = parseVia('SIP/2.0/TCP 10.1.1.1:4540;received=192.0.2.1;rport=1;branch=z9hG4bK1');
    assert.deepEqual(responseTarget(via, { host: '[2001:db8::1]', port: 5061 }, true), { host: '2001:db8::1', port: 5061 });
  });

  it('a stamped request answers where it came from (stampVia then responseTarget)', () => {
    const req = request('SIP/2.0/UDP 10.1.1.1:4540;rport;branch=z9hG4bKkjshdyff');
    stampVia(req, source);
    assert.deepEqual(responseTarget(topVia(req)!, source, false), source);
  });
});

describe('address spellings', () => {
  it('canonicalHost, hostPort and boundSentBy', () => {
    assert.equal(canonicalHost('[2001:DB8::0:1]'), '2001:db8::1');
    assert.equal(canonicalHost('::ffff:127.0.0.1'), '127.0.0.1');
    assert.equal(canonicalHost('Example.COM'), 'example.com');
    assert.equal(canonicalHost('FE80:0::1%eth0'), 'fe80::1%eth0');
    assert.equal(hostPort('2001:db8::1', 5060), '[2001:db8::1]:5060');
    assert.equal(hostPort('[2001:db8::1]', 5060), '[2001:db8::1]:5060');
    assert.equal(hostPort('192.0.2.1', 5060), '192.0.2.1:5060');
    assert.equal(boundSentBy('gw.example.com', 40123), 'gw.example.com:40123');
    assert.equal(boundSentBy('gw.example.com:5060', 40123), 'gw.example.com:5060');
    assert.equal(boundSentBy('127.0.0.1:0', 40123), '127.0.0.1:40123');
    assert.equal(boundSentBy('::1', 40123), '[::1]:40123');
    assert.equal(boundSentBy('[::1]:5062', 40123), '[::1]:5062');
  });
});
