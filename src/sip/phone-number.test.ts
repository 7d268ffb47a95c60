import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseSipMessage, type SipRequest } from './message.js';
import { callerIdOf, carrierHeaders, diversionOf, e164Of } from './phone-number.js';

const FROM = '"Alice Smith" <sip:+15551230000@carrier.example;user=phone>;tag=a1';

/** An INVITE from a carrier with the given extra header lines (and From). */
function invite(extra: string[], from = FROM): SipRequest {
  const text = [
    'INVITE sip:+15559870000@gw.example SIP/2.0',
    'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds',
    'Max-Forwards: 70',
    `From: ${from}`,
    'To: <sip:+15559870000@gw.example>',
    'Call-ID: a84b4c76e66710@192.0.2.1',
    'CSeq: 1 INVITE',
    ...extra,
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
  const msg = parseSipMessage(Buffer.from(text));
  assert.equal(msg.kind, 'request');
  return msg as SipRequest;
}

describe('e164Of', () => {
  it('reads E.164 from sip: with user=phone, from tel: with visual separators, and from percent-escapes', () => {
    assert.equal(e164Of('sip:+15551230000@carrier.example;user=phone'), '+15551230000');
    assert.equal(e164Of('tel:+1-555-123-0000'), '+15551230000');
    assert.equal(e164Of('tel:+1.555.(123).0000'), '+15551230000');
    assert.equal(e164Of('sip:%2B15551230000@carrier.example'), '+15551230000');
    assert.equal(e164Of('sips:+15551230000@carrier.example'), '+15551230000');
  });

  it('reads bare full-length digits and the 00 international prefix as international', () => {
    assert.equal(e164Of('sip:15551230000@1.2.3.4'), '+15551230000');
    assert.equal(e164Of('sip:0015551230000@x'), '+15551230000');
  });

  it('leaves a number with a phone-context, or a short one, as its digits without +', () => {
    assert.equal(e164Of('tel:1234;phone-context=example.com'), '1234');
    assert.equal(e164Of('tel:15551230000;phone-context=+1'), '15551230000');
    assert.equal(e164Of('sip:1234@pbx.example'), '1234');
  });

  it('is undefined when the user part is not a number', () => {
    assert.equal(e164Of('sip:alice@x'), undefined);
    assert.equal(e164Of('sip:agent@x'), undefined);
    assert.equal(e164Of('sip:x.example'), undefined);
    assert.equal(e164Of('mailto:a@x'), undefined);
    assert.equal(e164Of('sip:+1555123000012345678@x'), undefined);
    assert.equal(e164Of('sip:%ZZ15551230000@x'), undefined);
  });
});

describe('callerIdOf', () => {
  const PAI = 'P-Asserted-Identity: <sip:+15550000001@carrier.example;user=phone>';
  const PPI = 'P-Preferred-Identity: <sip:+15550000002@carrier.example>';
  const RPID = 'Remote-Party-ID: <sip:+15550000003@carrier.example>;party=calling;screen=yes;privacy=off';

  it('RFC 3325 §9.1: P-Asserted-Identity wins over P-Preferred-Identity, Remote-Party-ID and From, in that order', () => {
    const pick = (lines: string[]) => {
      const id = callerIdOf(invite(lines));
      return [id.source, id.number];
    };
    assert.deepEqual(pick([RPID, PPI, PAI]), ['P-Asserted-Identity', '+15550000001']);
    assert.deepEqual(pick([RPID, PPI]), ['P-Preferred-Identity', '+15550000002']);
    assert.deepEqual(pick([RPID]), ['Remote-Party-ID', '+15550000003']);
    assert.deepEqual(pick([]), ['From', '+15551230000']);
  });

  it('From alone gives its number, display name and URI, not withheld', () => {
    assert.deepEqual(callerIdOf(invite([])), {
      number: '+15551230000',
      name: 'Alice Smith',
      privacy: false,
      source: 'From',
      uri: 'sip:+15551230000@carrier.example;user=phone',
    });
  });

  it('of a sip: and a tel: identity in one P-Asserted-Identity, the one with a number is taken', () => {
    const id = callerIdOf(invite(['P-Asserted-Identity: "Alice" <sip:alice@carrier.example>, <tel:+15551230000>']));
    assert.equal(id.number, '+15551230000');
    assert.equal(id.uri, 'tel:+15551230000');
    assert.equal(id.source, 'P-Asserted-Identity');
  });

  it('of a sip: and a tel: identity in two P-Asserted-Identity headers, the one with a number is taken', () => {
    const id = callerIdOf(invite(['P-Asserted-Identity: <sip:alice@carrier.example>', 'P-Asserted-Identity: <tel:+1-555-123-0000>']));
    assert.equal(id.number, '+15551230000');
    assert.equal(id.uri, 'tel:+1-555-123-0000');
  });

  it('a P-Asserted-Identity without a number still wins, with its user part as the number', () => {
    const id = callerIdOf(invite(['P-Asserted-Identity: "Front Desk" <sip:frontdesk@pbx.example>']));
    assert.deepEqual([id.source, id.number, id.name], ['P-Asserted-Identity', 'frontdesk', 'Front Desk']);
  });

  it('a quoted display name with a comma is not split into two identities', () => {
    const id = callerIdOf(invite(['P-Asserted-Identity: "Smith, Alice" <sip:+15551230000@carrier.example>']));
    assert.deepEqual([id.name, id.number], ['Smith, Alice', '+15551230000']);
  });

  it('an unparseable identity header is passed over for the next one', () => {
    const id = callerIdOf(invite(['P-Asserted-Identity: "unterminated <sip:+15550000001@x', PPI]));
    assert.deepEqual([id.source, id.number], ['P-Preferred-Identity', '+15550000002']);
  });

  it('RFC 3323 Privacy: id withholds the number, the name and the URI', () => {
    const id = callerIdOf(invite([PAI, 'Privacy: id']));
    assert.deepEqual(id, { number: 'anonymous', name: undefined, privacy: true, source: 'P-Asserted-Identity', uri: 'sip:anonymous@anonymous.invalid' });
    assert.equal(callerIdOf(invite([PAI, 'Privacy: header;id'])).privacy, true);
    assert.equal(callerIdOf(invite([PAI, 'Privacy: user'])).privacy, true);
    const none = callerIdOf(invite([PAI, 'Privacy: none']));
    assert.deepEqual([none.privacy, none.number], [false, '+15550000001']);
  });

  it('Remote-Party-ID privacy=full withholds the number; privacy=off does not', () => {
    const full = callerIdOf(invite(['Remote-Party-ID: "Bob" <sip:+15550000003@carrier.example>;party=calling;privacy=full']));
    assert.deepEqual([full.source, full.number, full.name, full.privacy], ['Remote-Party-ID', 'anonymous', undefined, true]);
    const off = callerIdOf(invite([RPID]));
    assert.deepEqual([off.number, off.privacy], ['+15550000003', false]);
  });

  it('RFC 3261 §7.3.1: header names are case-insensitive, so a lower-case privacy: id still withholds the caller', () => {
    const id = callerIdOf(invite(['p-asserted-identity: <sip:+15550000001@carrier.example>', 'privacy: id']));
    assert.deepEqual([id.source, id.number, id.privacy], ['P-Asserted-Identity', 'anonymous', true]);
    assert.equal(diversionOf(invite(['DIVERSION: <sip:+15550001111@carrier.example>;reason=no-answer'])).length, 1);
  });

  it('an anonymous From (RFC 3323 sip:anonymous@anonymous.invalid) is anonymous and withheld', () => {
    const id = callerIdOf(invite([], '"Anonymous" <sip:anonymous@anonymous.invalid>;tag=x9'));
    assert.deepEqual([id.number, id.privacy, id.source], ['anonymous', true, 'From']);
  });

  it('a token display name and an addr-spec From without <> are read', () => {
    assert.equal(callerIdOf(invite([], 'Alice <sip:+15551230000@carrier.example>;tag=1')).name, 'Alice');
    const bare = callerIdOf(invite([], 'sip:+15551230000@carrier.example;tag=1'));
    assert.deepEqual([bare.number, bare.name, bare.uri], ['+15551230000', undefined, 'sip:+15551230000@carrier.example']);
  });
});

describe('diversionOf', () => {
  it('RFC 5806: every Diversion value in the order sent, from repeated headers', () => {
    const req = invite(['Diversion: <sip:+15550001111@carrier.example>;reason=unconditional;counter=1', 'Diversion: <sip:+15550002222@carrier.example>;reason=user-busy']);
    assert.deepEqual(diversionOf(req), ['<sip:+15550001111@carrier.example>;reason=unconditional;counter=1', '<sip:+15550002222@carrier.example>;reason=user-busy']);
    assert.deepEqual(diversionOf(invite([])), []);
  });

  it('RFC 5806: a comma-separated Diversion header (diversion-params *(COMMA diversion-params)) is two values', () => {
    const req = invite(['Diversion: <sip:+15550001111@carrier.example>;reason=unconditional, <sip:+15550002222@carrier.example>;reason=user-busy']);
    assert.deepEqual(diversionOf(req), ['<sip:+15550001111@carrier.example>;reason=unconditional', '<sip:+15550002222@carrier.example>;reason=user-busy']);
  });
});

describe('carrierHeaders', () => {
  it('keeps only X-* headers, with their spelling, and joins a repeated one', () => {
    const req = invite(['X-Carrier-Call-Id: abc123', 'User-Agent: carrier-sbc', 'x-lower: 1', 'Subject: hi', 'X-Carrier-Call-Id: def456']);
    assert.deepEqual(carrierHeaders(req), { 'X-Carrier-Call-Id': 'abc123, def456', 'x-lower': '1' });
    assert.deepEqual(carrierHeaders(invite([])), {});
  });

  it('is bounded: at most 32 headers, each value cut at 256 characters', () => {
    const many = Array.from({ length: 40 }, (_, i) => `X-H${i}: ${i}`);
    const out = carrierHeaders(invite([`X-Long: ${'a'.repeat(1000)}`, ...many]));
    assert.equal(Object.keys(out).length, 32);
    assert.equal(out['X-Long']!.length, 256);
    assert.equal(out['X-H30'], '30');
    assert.equal(out['X-H31'], undefined);
  });
});

it('RFC 4694: a user part with its own parameters (npdi, rn) still reads as the called number', () => {
  assert.equal(e164Of('sip:+15551230000;npdi;rn=+15559990000@sbc.example;user=phone'), '+15551230000');
});

it('a 10-digit national number is not taken for an international one', () => {
  assert.equal(e164Of('sip:5551230000@carrier.example'), '5551230000');
});

