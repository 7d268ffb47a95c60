import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCSeq, parseNameAddr, parseSipUri, parseVia } from './grammar.js';
import { header, headerList, parseSipMessage, serializeSipMessage, SipParseError, type SipRequest } from './message.js';

const crlf = (s: string) => s.replace(/\r?\n/g, '\r\n');

// RFC 4475 §3.1.1.1 "wsinv": folding, escaped quotes, LWS everywhere, compact and long forms,
// unknown headers and parameters, odd case, leading zeros. Test vector from RFC 4475.
const WSINV = crlf(`INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : 150
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.3
s=-
c=IN IP4 192.0.2.4
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
`);

test('RFC 4475 wsinv parses to the right values', () => {
  const m = parseSipMessage(WSINV) as SipRequest;
  assert.equal(m.kind, 'request');
  assert.equal(m.method, 'INVITE');
  assert.equal(m.uri, 'sip:vivekg@chair-dnrc.example.com;unknownparam');
  const to = parseNameAddr(header(m, 'to')!);
  assert.equal(to.uri, 'sip:vivekg@chair-dnrc.example.com');
  assert.equal(to.params.get('tag'), '1918181833n');
  const from = parseNameAddr(header(m, 'From')!);
  assert.equal(from.displayName, 'J Rosenberg \\"');
  assert.equal(from.params.get('tag'), '98asjd8');
  assert.equal(header(m, 'Max-Forwards'), '0068');
  assert.deepEqual(parseCSeq(header(m, 'CSeq')!), { seq: 9, method: 'INVITE' });
  const vias = headerList(m, 'Via').map(parseVia);
  assert.deepEqual(vias.map((v) => [v.protocol, v.transport, v.host, v.params.get('branch')]), [
    ['SIP/2.0', 'UDP', '192.0.2.2', '390skdjuw'],
    ['SIP/2.0', 'TCP', 'spindle.example.com', 'z9hG4bK9ikj8'],
    ['SIP/2.0', 'UDP', '192.168.255.111', 'z9hG4bK30239'],
  ]);
  assert.equal(header(m, 'Subject'), '');
  assert.equal(header(m, 'NewFangledHeader'), 'newfangled value continued newfangled value');
  assert.equal(header(m, 'UnknownHeaderWithUnusualValue'), ';;,,;;,;');
  const contact = parseNameAddr(headerList(m, 'Contact')[0]!);
  assert.equal(contact.displayName, 'Quoted string ""');
  assert.deepEqual([...contact.params], [['newparam', 'newvalue'], ['secondparam', null], ['q', '0.33']]);
  assert.equal(m.body.length, 150);
  assert.ok(m.body.toString().startsWith('v=0\r\n'));
  // Serializing and parsing again keeps every header (Content-Length is written last, from the body).
  const again = parseSipMessage(serializeSipMessage(m));
  const withoutLength = (h: { name: string }[]) => h.filter((x) => x.name !== 'Content-Length');
  assert.deepEqual(withoutLength(again.headers), withoutLength(m.headers));
  assert.equal(header(again, 'Content-Length'), '150');
});

const REQ = (first: string, extra = '', cseq = 'OPTIONS') =>
  crlf(`${first}
Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK776asdhds
Max-Forwards: 70
To: <sip:user@example.com>
From: <sip:caller@example.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 314159 ${cseq}
${extra}Content-Length: 0

`);

test('valid RFC 4475-style oddities: semicolon in the user part (semiuri), escapes (esc01), an escaped NUL (escnull), empty and unusual reasons', () => {
  const semi = parseSipMessage(REQ('OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0')) as SipRequest;
  assert.equal(parseSipUri(semi.uri).user, 'user;par=u%40example.net');
  assert.equal(parseSipUri('sip:null-%00-null@example.com').user, 'null-%00-null');
  assert.equal(parseSipUri('sip:sips%3Auser%40example.com@example.net').host, 'example.net');
  const noreason = parseSipMessage(crlf('SIP/2.0 100 \nVia: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\nCall-ID: noreason.asndj203insdf99223ndf\nCSeq: 35 INVITE\nFrom: <sip:user@example.com>;tag=39ansfi3\nTo: <sip:user@example.edu>;tag=902jndnke3\nContent-Length: 0\n\n'));
  assert.equal(noreason.kind === 'response' && noreason.reason, '');
  const unreason = parseSipMessage(crlf('SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое\nVia: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\nCall-ID: unreason.1234ksdfak3j2erwedfsASdf\nCSeq: 35 INVITE\nFrom: sip:user@example.com;tag=11141343\nTo: sip:user@example.edu;tag=2229\nContent-Length: 0\n\n'));
  assert.equal(unreason.kind === 'response' && unreason.status, 200);
  assert.equal(parseNameAddr('sip:user@example.com;tag=11141343').params.get('tag'), '11141343', 'addr-spec parameters belong to the header');
});

test('compact forms, case-insensitive names, repeated and comma-separated headers', () => {
  const m = parseSipMessage(crlf(`REGISTER sip:example.com SIP/2.0
v: SIP/2.0/WSS abc.invalid;branch=z9hG4bKa
v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKb, SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bKc
t: <sip:alice@example.com>
f: "Alice" <sip:alice@example.com>;tag=x
i: reg-1
CSEQ: 1 REGISTER
m: <sip:k3l9@abc.invalid;transport=ws>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000000000001>";reg-id=1;expires=600
k: path, gruu,outbound
l: 0

`));
  assert.deepEqual(headerList(m, 'Via').map((v) => parseVia(v).transport), ['WSS', 'UDP', 'TCP']);
  assert.equal(parseVia(headerList(m, 'Via')[2]!).host, '[2001:db8::1]');
  assert.deepEqual(headerList(m, 'Supported'), ['path', 'gruu', 'outbound']);
  const c = parseNameAddr(headerList(m, 'Contact')[0]!);
  assert.equal(c.params.get('+sip.instance'), '<urn:uuid:00000000-0000-1000-8000-000000000001>');
  assert.equal(c.params.get('reg-id'), '1');
  assert.equal(header(m, 'call-id'), 'reg-1');
});

test('invalid RFC 4475-style messages are refused with a reason and the right status', () => {
  const cases: [string, string | string, RegExp, number?][] = [
    ['ltgtruri', REQ('INVITE <sip:user@example.com> SIP/2.0', '', 'INVITE'), /enclosed in <>/],
    ['lwsruri', REQ('INVITE sip:user@example.com; lr SIP/2.0', '', 'INVITE'), /start line/],
    ['lwsstart', REQ('INVITE  sip:user@example.com  SIP/2.0', '', 'INVITE'), /start line/],
    ['trws', REQ('OPTIONS sip:user@example.com SIP/2.0 '), /start line/],
    ['badvers', REQ('OPTIONS sip:t.watson@example.org SIP/7.0'), /SIP\/7\.0 is not supported/, 505],
    ['mismatch01', REQ('OPTIONS sip:user@example.com SIP/2.0', '', 'INVITE'), /does not match/],
    ['clerr', REQ('OPTIONS sip:user@example.com SIP/2.0').replace('Content-Length: 0', 'Content-Length: 9999'), /exceeds the 0 bytes/],
    ['scalar02', REQ('OPTIONS sip:user@example.com SIP/2.0').replace('Max-Forwards: 70', 'Max-Forwards: -5'), /Max-Forwards/],
    ['scalarlg', REQ('OPTIONS sip:user@example.com SIP/2.0').replace('CSeq: 314159', 'CSeq: 36893488147419103232'), /bad CSeq/],
    ['scalarlg (Max-Forwards 300)', REQ('OPTIONS sip:user@example.com SIP/2.0').replace('Max-Forwards: 70', 'Max-Forwards: 300'), /Max-Forwards/],
    ['quotbal', REQ('OPTIONS sip:user@example.com SIP/2.0').replace('To: <sip:user@example.com>', 'To: "Mr. J. User <sip:j.user@example.com>'), /quoted/],
    ['bigcode', crlf('SIP/2.0 4294967301 better not break the receiver\nVia: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\nCall-ID: bigcode.asdof3uj203asdnf3429uasdhfas3\nCSeq: 3923239 OPTIONS\nFrom: <sip:user@example.com>;tag=39ansfi3\nTo: <sip:user@example.edu>;tag=902jndnke3\nContent-Length: 0\n\n'), /start line/],
    ['no Call-ID', REQ('OPTIONS sip:user@example.com SIP/2.0').replace('Call-ID: a84b4c76e66710\r\n', ''), /missing Call-ID/],
    ['garbage', 'hello world', /start line/],
    ['bad Via', REQ('OPTIONS sip:user@example.com SIP/2.0').replace('SIP/2.0/WS df7jal23ls0d.invalid', 'SIP/2.0 df7jal23ls0d.invalid'), /bad Via/],
    ['empty Via', REQ('OPTIONS sip:user@example.com SIP/2.0').replace(/Via: [^\r]*/, 'Via: '), /empty Via/],
  ];
  for (const [name, text, reason, status] of cases) {
    assert.throws(
      () => parseSipMessage(text),
      (e: unknown) => e instanceof SipParseError && reason.test(e.message) && e.status === (status ?? 400),
      name,
    );
  }
  assert.throws(() => parseSipMessage(REQ('OPTIONS sip:u@example.com SIP/2.0'), { maxBytes: 100 }), (e: unknown) => e instanceof SipParseError && e.status === 413);
});

test('fuzz: mutated messages parse or throw SipParseError, never anything else', () => {
  let seed = 11;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  for (let i = 0; i < 5000; i++) {
    const chars = [...WSINV];
    for (let k = 0; k < 1 + rand(6); k++) {
      const at = rand(chars.length);
      const op = rand(3);
      if (op === 0) chars.splice(at, 1 + rand(5));
      else if (op === 1) chars.splice(at, 0, String.fromCharCode(rand(128)));
      else chars[at] = '\r\n;:,"<>@ \t\\'[rand(13)]!;
    }
    try {
      const m = parseSipMessage(chars.join(''));
      for (const v of headerList(m, 'Via')) parseVia(v);
    } catch (e) {
      assert.ok(e instanceof SipParseError, `${String(e)}`);
    }
  }
});
