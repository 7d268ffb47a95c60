import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { ADMIN_TOKEN, adminSessions, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { header, headerList, SipWsClient } from './helpers/sip-ws-client.js';
import { offerSdp } from './helpers/offers.js';
import { parseSipMessage } from '../src/sip/message.js';

const DOMAIN = 'voxgate.test';
let t: TestGateway;

before(async () => {
  t = await startGateway({
    cors: { origins: ['http://app.example'] },
    sip: { domain: DOMAIN, users: [{ user: 'alice', password: 'alice-pw' }, { user: 'bob', password: 'bob-pw' }], maxMessageBytes: 65536 },
  });
});
after(() => t.stop());

async function registrations(): Promise<{ user: string; contact: string; instance: string | null }[]> {
  const res = await fetch(`${t.url}/api/registrations`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
  assert.equal(res.status, 200);
  return ((await res.json()) as { registrations: [] }).registrations;
}

function request(c: SipWsClient, method: string, extra: string[] = [], opts: { uri?: string; toTag?: string; omit?: string } = {}): string {
  const lines = [
    `${method} ${opts.uri ?? `sip:agent@${DOMAIN}`} SIP/2.0`,
    `Via: SIP/2.0/WS ${c.host};branch=z9hG4bK${randomBytes(6).toString('hex')}`,
    'Max-Forwards: 70',
    `To: <sip:agent@${DOMAIN}>${opts.toTag ? `;tag=${opts.toTag}` : ''}`,
    `From: <sip:alice@${DOMAIN}>;tag=${randomBytes(4).toString('hex')}`,
    `Call-ID: ${randomBytes(8).toString('hex')}`,
    `CSeq: ${c.cseq++} ${method}`,
    ...extra,
    'Content-Length: 0',
    '',
    '',
  ];
  return lines.filter((l) => !opts.omit || !l.startsWith(`${opts.omit}:`)).join('\r\n');
}

test('the WebSocket needs the sip subprotocol (echoed) and an allowed Origin', async () => {
  await assert.rejects(SipWsClient.connect(t.url, { protocol: '' }), /upgrade refused: 400/);
  await assert.rejects(SipWsClient.connect(t.url, { origin: 'http://evil.example' }), /upgrade refused: 403/);
  const c = await SipWsClient.connect(t.url, { origin: 'http://app.example' });
  assert.equal(c.ws.protocol, 'sip');
  await c.close();
});

test('libre-based clients (baresip) connect to / : the sip subprotocol is taken there too, and the socket carries SIP', async () => {
  const c = await SipWsClient.connect(t.url, { path: '/' });
  assert.equal(c.ws.protocol, 'sip');
  const res = await c.request(request(c, 'OPTIONS'));
  assert.equal(res.status, 200);
  await c.close();
  await assert.rejects(SipWsClient.connect(t.url, { path: '/', protocol: '' }), /upgrade refused: 400/, 'without the subprotocol, / is no WebSocket endpoint');
  await assert.rejects(SipWsClient.connect(t.url, { path: '/whip' }), /upgrade refused: 404/);
});

test('REGISTER: 401 with SHA-256 then MD5 challenges, 200 with the right password, refused with a wrong one, audited', async () => {
  const c = await SipWsClient.connect(t.url);
  const first = await c.request(c.registerText({ user: 'alice', domain: DOMAIN, callId: 'reg-1' }));
  assert.equal(first.status, 401);
  const challenges = headerList(first, 'WWW-Authenticate');
  assert.equal(challenges.length, 2);
  assert.match(challenges[0]!, /algorithm=SHA-256/);
  assert.match(challenges[1]!, /algorithm=MD5/);

  const wrong = await c.register('alice', 'not-her-password', DOMAIN);
  assert.equal(wrong.status, 401);
  const ok = await c.register('alice', 'alice-pw', DOMAIN);
  assert.equal(ok.status, 200);
  assert.match(header(ok, 'Contact')!, new RegExp(`<sip:${c.contactUser}@${c.host};transport=ws>;expires=600`));
  const regs = await registrations();
  assert.deepEqual(
    regs.map((r) => r.user),
    ['alice'],
  );

  const audit = readFileSync(t.auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const reg = audit.filter((e) => e.action === 'sip.register');
  assert.ok(reg.some((e) => e.outcome === 'error' && e.user === 'alice' && e.reason === 'wrong password' && typeof e.remote === 'string'));
  assert.ok(reg.some((e) => e.outcome === 'ok' && e.user === 'alice' && e.status === 200));
  // Counted by outcome, and the transactions by method and side.
  const metrics = await (await fetch(`${t.url}/metrics`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } })).text();
  const count = (line: RegExp) => Number(line.exec(metrics)?.[1] ?? NaN);
  assert.ok(count(/^voxgate_sip_registrations_total\{outcome="challenged"\} (\d+)$/m) >= 1, metrics);
  assert.ok(count(/^voxgate_sip_registrations_total\{outcome="401"\} (\d+)$/m) >= 1, metrics);
  assert.ok(count(/^voxgate_sip_registrations_total\{outcome="200"\} (\d+)$/m) >= 1, metrics);
  assert.ok(count(/^voxgate_sip_transactions_total\{method="REGISTER",side="server"\} (\d+)$/m) >= 5, metrics);

  // Un-REGISTER (Expires: 0) removes the binding.
  const gone = await c.register('alice', 'alice-pw', DOMAIN, { expires: 0 });
  assert.equal(gone.status, 200);
  assert.equal(header(gone, 'Contact'), undefined);
  assert.deepEqual(await registrations(), []);
  await c.close();
});

test('+sip.instance/reg-id replaces the binding; a closed WebSocket drops its bindings at once', async () => {
  const instance = '8f1c2a3e-0000-4000-8000-000000000001';
  const a = await SipWsClient.connect(t.url);
  assert.equal((await a.register('bob', 'bob-pw', DOMAIN, { instance, regId: 1 })).status, 200);
  // The same client reconnects (new flow, new contact) and registers again before the old socket is noticed.
  const b = await SipWsClient.connect(t.url);
  assert.equal((await b.register('bob', 'bob-pw', DOMAIN, { instance, regId: 1 })).status, 200);
  let regs = await registrations();
  assert.equal(regs.length, 1, 'one binding per instance and reg-id');
  assert.match(regs[0]!.contact, new RegExp(b.host));
  await b.close();
  regs = await waitFor('the binding to go with its socket', async () => ((await registrations()).length === 0 ? [] : undefined));
  assert.deepEqual(regs, []);
  await a.close();
});

test('bad input gets the right answer, and the socket goes on working', async () => {
  const c = await SipWsClient.connect(t.url);
  const other = await SipWsClient.connect(t.url);

  // Garbage text: no request line to answer, so it is dropped; the socket stays open.
  c.send('this is not SIP at all\r\n\r\n');
  c.send(Buffer.from([0xff, 0x00, 0x13, 0x37]));

  // No Call-ID: 400 naming the missing header.
  const noCallIdReply = c.next((m) => m.startsWith('SIP/2.0 '));
  c.send(request(c, 'OPTIONS', [], { omit: 'Call-ID' }));
  assert.match((await noCallIdReply).split('\r\n')[0]!, /^SIP\/2\.0 400 Missing Call-ID$/);

  // 2 MB: 413, answered from the headers alone.
  const big = request(c, 'MESSAGE', ['Content-Type: text/plain']).replace('Content-Length: 0', `Content-Length: ${2 * 1024 * 1024}`) + 'x'.repeat(2 * 1024 * 1024);
  const tooBig = await c.request(big);
  assert.equal(tooBig.status, 413);

  // Max-Forwards 0: 483.
  const hops = await c.request(request(c, 'INVITE', []).replace('Max-Forwards: 70', 'Max-Forwards: 0'));
  assert.equal(hops.status, 483);

  // BYE for a dialog that does not exist: 481.
  const bye = await c.request(request(c, 'BYE', [], { toTag: 'nosuchtag' }));
  assert.equal(bye.status, 481);

  // sips: Request-URI over ws: 416; an unknown method: 501.
  assert.equal((await c.request(request(c, 'OPTIONS', [], { uri: `sips:agent@${DOMAIN}` }))).status, 416);
  assert.equal((await c.request(request(c, 'FROBNICATE', []))).status, 501);

  // An INVITE from someone who never registered is challenged.
  const invite = await c.request(request(c, 'INVITE', []));
  assert.equal(invite.status, 407);
  assert.match(headerList(invite, 'Proxy-Authenticate').at(-1)!, /algorithm=MD5/);

  // Still alive, and so is the other client.
  const options = await c.request(request(c, 'OPTIONS'));
  assert.equal(options.status, 200);
  assert.match(header(options, 'Allow')!, /REFER/);
  assert.equal((await other.request(request(other, 'OPTIONS'))).status, 200);
  await c.close();
  await other.close();
});

test('a fuzz run of mutated messages never breaks the transport', async () => {
  const c = await SipWsClient.connect(t.url);
  const base = Buffer.from(c.registerText({ user: 'alice', domain: DOMAIN, callId: 'fuzz' }));
  let seed = 42;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let i = 0; i < 2000; i++) {
    const m = Buffer.from(base);
    for (let k = 0, edits = 1 + rand(8); k < edits; k++) {
      const at = rand(m.length);
      const op = rand(3);
      if (op === 0) m[at] = rand(256);
      else if (op === 1) m[at] = [0x0d, 0x0a, 0x3a, 0x3b, 0x2c, 0x22, 0x3c, 0x3e, 0x20][rand(9)]!;
      else m.copyWithin(at, rand(m.length));
    }
    c.send(m);
  }
  const ok = await c.request(request(c, 'OPTIONS'));
  assert.equal(ok.status, 200);
  assert.equal(c.closed, false);
  // Every reply to the fuzz is a response (echoing what it could read of the request).
  assert.ok(c.received.length > 100);
  for (const r of c.received) assert.match(r, /^SIP\/2\.0 [1-6]\d\d /);
  await c.close();
});

function inviteText(c: SipWsClient, target: string, from: string, callId: string, sdp: string, extra: string[] = []): string {
  return [
    `INVITE sip:${target}@${DOMAIN} SIP/2.0`,
    `Via: SIP/2.0/WS ${c.host};branch=z9hG4bK${randomBytes(6).toString('hex')}`,
    'Max-Forwards: 70',
    `To: <sip:${target}@${DOMAIN}>`,
    `From: <sip:${from}@${DOMAIN}>;tag=from${from}`,
    `Call-ID: ${callId}`,
    `CSeq: 1 INVITE`,
    `Contact: <sip:${c.contactUser}@${c.host};transport=ws>`,
    ...extra,
    'Content-Type: application/sdp',
    `Content-Length: ${Buffer.byteLength(sdp)}`,
    '',
    sdp,
  ].join('\r\n');
}

test('an agent dialog over a bare client: UPDATE keeps Session-Expires 90, INFO dtmf-relay, re-INVITE hold, BYE, then 481', async () => {
  const c = await SipWsClient.connect(t.url);
  assert.equal((await c.register('alice', 'alice-pw', DOMAIN)).status, 200);
  const sdp = offerSdp().replace('a=sendonly', 'a=sendrecv');
  const ok = await c.request(inviteText(c, 'agent', 'alice', 'agent-dialog-1', sdp, ['Supported: timer', 'Session-Expires: 90']));
  assert.equal(ok.status, 200);
  assert.match(header(ok, 'Session-Expires')!, /^90;refresher=uac$/);
  assert.equal(header(ok, 'Require'), 'timer');
  assert.match(ok.body.toString(), /a=sendrecv/);
  c.send(c.inDialogText(ok, 'ACK', 1));

  const update = await c.request(c.inDialogText(ok, 'UPDATE', 2, ['Supported: timer', 'Session-Expires: 90;refresher=uac']));
  assert.equal(update.status, 200);
  assert.match(header(update, 'Session-Expires')!, /^90/);

  const info = await c.request(c.inDialogText(ok, 'INFO', 3, ['Content-Type: application/dtmf-relay'], 'Signal=4\r\nDuration=160\r\n'));
  assert.equal(info.status, 200);

  const hold = await c.request(c.inDialogText(ok, 'INVITE', 4, ['Content-Type: application/sdp'], sdp.replace('a=sendrecv', 'a=sendonly')));
  assert.equal(hold.status, 200);
  assert.match(hold.body.toString(), /a=recvonly/);
  c.send(c.inDialogText(ok, 'ACK', 4));
  const resume = await c.request(c.inDialogText(ok, 'INVITE', 5, ['Content-Type: application/sdp'], sdp));
  assert.match(resume.body.toString(), /a=sendrecv/);
  c.send(c.inDialogText(ok, 'ACK', 5));

  // A stale CSeq is out of order.
  assert.equal((await c.request(c.inDialogText(ok, 'INFO', 2, ['Content-Type: application/dtmf-relay'], 'Signal=1\r\n'))).status, 500);
  assert.equal((await c.request(c.inDialogText(ok, 'BYE', 6))).status, 200);
  assert.equal((await c.request(c.inDialogText(ok, 'BYE', 7))).status, 481);
  const audit = readFileSync(t.auditPath, 'utf8');
  assert.match(audit, /"action":"sip.bye","outcome":"ok","status":200,"user":"alice"/);
  await c.close();
});

test('a call to a registered user is proxied with Record-Route; CANCEL gets 200 and 487; offline 480, unknown 404', async () => {
  const alice = await SipWsClient.connect(t.url);
  const bob = await SipWsClient.connect(t.url);
  assert.equal((await alice.register('alice', 'alice-pw', DOMAIN)).status, 200);
  assert.equal((await bob.register('bob', 'bob-pw', DOMAIN)).status, 200);

  const forwarded = bob.next((m) => m.startsWith('INVITE '));
  const invite = inviteText(alice, 'bob', 'alice', 'proxied-1', offerSdp());
  const trying = alice.next((m) => m.startsWith('SIP/2.0 100 '));
  alice.send(invite);
  const atBob = parseSipMessage(await forwarded);
  assert.equal(atBob.kind, 'request');
  if (atBob.kind !== 'request') return;
  assert.equal(atBob.uri, `sip:${bob.contactUser}@${bob.host};transport=ws`, 'addressed to the Contact as registered');
  assert.match(header(atBob, 'Record-Route')!, /;lr>$/);
  assert.equal(headerList(atBob, 'Via').length, 2);
  assert.equal(header(atBob, 'Max-Forwards'), '69');
  await trying;

  // bob rings; alice gives up.
  bob.send(`SIP/2.0 180 Ringing\r\n${headerList(atBob, 'Via').map((v) => `Via: ${v}`).join('\r\n')}\r\nFrom: ${header(atBob, 'From')}\r\nTo: ${header(atBob, 'To')};tag=bobtag\r\nCall-ID: proxied-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n`);
  await alice.next((m) => m.startsWith('SIP/2.0 180 '));
  const cancelAtBob = bob.next((m) => m.startsWith('CANCEL '));
  const branch = /branch=([^;\s]+)/.exec(invite)![1]!;
  const cancel = `CANCEL sip:bob@${DOMAIN} SIP/2.0\r\nVia: SIP/2.0/WS ${alice.host};branch=${branch}\r\nMax-Forwards: 70\r\nTo: <sip:bob@${DOMAIN}>\r\nFrom: <sip:alice@${DOMAIN}>;tag=fromalice\r\nCall-ID: proxied-1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n`;
  const terminated = alice.next((m) => m.startsWith('SIP/2.0 487 '));
  const cancelled = await alice.request(cancel);
  assert.equal(cancelled.status, 200);
  const c2 = parseSipMessage(await cancelAtBob);
  // bob answers the CANCEL and ends the INVITE with 487, which reaches alice.
  const vias = headerList(c2, 'Via').map((v) => `Via: ${v}`).join('\r\n');
  bob.send(`SIP/2.0 200 OK\r\n${vias}\r\nFrom: ${header(c2, 'From')}\r\nTo: ${header(c2, 'To')}\r\nCall-ID: proxied-1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n`);
  const ackAtBob = bob.next((m) => m.startsWith('ACK '));
  bob.send(`SIP/2.0 487 Request Terminated\r\n${headerList(atBob, 'Via').map((v) => `Via: ${v}`).join('\r\n')}\r\nFrom: ${header(atBob, 'From')}\r\nTo: ${header(atBob, 'To')};tag=bobtag\r\nCall-ID: proxied-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n`);
  assert.match(await terminated, /^SIP\/2\.0 487 /);
  assert.match(await ackAtBob, /CSeq: 1 ACK/);

  await bob.close();
  const offline = await alice.request(inviteText(alice, 'bob', 'alice', 'proxied-2', offerSdp()));
  assert.equal(offline.status, 480);
  const unknown = await alice.request(inviteText(alice, 'mallory', 'alice', 'proxied-3', offerSdp()));
  assert.equal(unknown.status, 404);
  await alice.close();
});

/** A response from a bare client to a request it received. */
function replyTo(reqText: string, status: string, extra: string[] = [], body = ''): string {
  const req = parseSipMessage(reqText);
  return [
    `SIP/2.0 ${status}`,
    ...headerList(req, 'Via').map((v) => `Via: ${v}`),
    ...headerList(req, 'Record-Route').map((r) => `Record-Route: ${r}`),
    `From: ${header(req, 'From')}`,
    `To: ${header(req, 'To')}${/;tag=/.test(header(req, 'To')!) ? '' : ';tag=bob-tag'}`,
    `Call-ID: ${header(req, 'Call-ID')}`,
    `CSeq: ${header(req, 'CSeq')}`,
    ...extra,
    `Content-Length: ${Buffer.byteLength(body)}`,
    '',
    body,
  ].join('\r\n');
}

test("a caller's REFER of its agent call: 400, 501 and 491 refusals; after a blind hang-up the target's answer still takes the agent; a call that ends while the target rings CANCELs it; a target that disconnects fails it at once", async () => {
  const alice = await SipWsClient.connect(t.url);
  const bob = await SipWsClient.connect(t.url);
  assert.equal((await alice.register('alice', 'alice-pw', DOMAIN)).status, 200);
  assert.equal((await bob.register('bob', 'bob-pw', DOMAIN)).status, 200);
  // alice answers every NOTIFY and BYE voxgate sends her.
  const notifies: string[] = [];
  alice.ws.on('message', (data) => {
    const text = data.toString();
    if (text.startsWith('NOTIFY ')) notifies.push(text);
    if (text.startsWith('NOTIFY ') || text.startsWith('BYE ')) alice.send(replyTo(text, '200 OK'));
  });
  const sdp = offerSdp().replace('a=sendonly', 'a=sendrecv');
  const call = async (callId: string) => {
    const ok = await alice.request(inviteText(alice, 'agent', 'alice', callId, sdp));
    assert.equal(ok.status, 200);
    alice.send(alice.inDialogText(ok, 'ACK', 1));
    return ok;
  };
  const ok = await call('refer-1');
  const refer = (cseq: number, referTo?: string) => alice.request(alice.inDialogText(ok, 'REFER', cseq, referTo ? [`Refer-To: ${referTo}`] : []));
  assert.equal((await refer(2)).status, 400);
  const replaces = await refer(3, `<sip:bob@${DOMAIN}?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>`);
  assert.equal(replaces.status, 501);
  assert.match(replaces.reason, /Replaces/);

  const inviteAtBob = bob.next((m) => m.startsWith('INVITE '));
  const trying = alice.next((m) => m.startsWith('NOTIFY ') && m.includes('SIP/2.0 100 Trying'));
  assert.equal((await refer(4, `<sip:bob@${DOMAIN}>`)).status, 202);
  const n100 = parseSipMessage(await trying);
  assert.equal(header(n100, 'Event'), 'refer;id=4');
  assert.match(header(n100, 'Subscription-State')!, /^active/);
  assert.match(header(n100, 'Content-Type')!, /^message\/sipfrag/);
  const inv = await inviteAtBob;
  const invite = parseSipMessage(inv);
  assert.match(header(invite, 'From')!, new RegExp(`^<sip:agent@${DOMAIN}>;tag=`));
  assert.equal(header(invite, 'To'), `<sip:bob@${DOMAIN}>`);
  assert.match(header(invite, 'Referred-By')!, /alice/);
  assert.match(invite.body.toString(), /a=setup:actpass/);
  assert.match(invite.body.toString(), /a=rtpmap:111 opus\/48000/);
  assert.equal((await refer(5, `<sip:bob@${DOMAIN}>`)).status, 491, 'one transfer at a time');

  const ringing = alice.next((m) => m.startsWith('NOTIFY ') && m.includes('SIP/2.0 180 Ringing'));
  bob.send(replyTo(inv, '180 Ringing'));
  await ringing;
  // A blind transfer: alice leaves before bob answers; the session waits for bob.
  assert.equal((await alice.request(alice.inDialogText(ok, 'BYE', 6))).status, 200);
  const session = (await adminSessions(t.url)).find((s) => s.sipCallId === 'refer-1');
  assert.ok(session, 'the agent session outlives the transferor while the target rings');

  const ack = bob.next((m) => m.startsWith('ACK '));
  const answer = offerSdp().replace('a=sendonly', 'a=sendrecv').replace('a=setup:actpass', 'a=setup:active');
  bob.send(replyTo(inv, '200 OK', [`Contact: <sip:${bob.contactUser}@${bob.host};transport=ws>`, 'Content-Type: application/sdp'], answer));
  const acked = parseSipMessage(await ack);
  assert.equal(header(acked, 'CSeq'), '1 ACK');
  assert.equal(acked.kind === 'request' && acked.uri, `sip:${bob.contactUser}@${bob.host};transport=ws`);
  const moved = await waitFor('the session to carry on with bob', async () => (await adminSessions(t.url)).find((s) => s.id === session.id && s.sipCallId === header(invite, 'Call-ID')));
  assert.equal(moved.state, 'connecting');
  assert.equal(notifies.filter((n) => n.includes('SIP/2.0 200 OK')).length, 0, 'alice hung up: nobody to NOTIFY');
  // bob hangs up in the dialog voxgate started: the call ends.
  const byeFromBob = [
    `BYE sip:agent@${DOMAIN} SIP/2.0`,
    `Via: SIP/2.0/WS ${bob.host};branch=z9hG4bK${randomBytes(6).toString('hex')}`,
    'Max-Forwards: 70',
    `From: ${header(invite, 'To')};tag=bob-tag`,
    `To: ${header(invite, 'From')}`,
    `Call-ID: ${header(invite, 'Call-ID')}`,
    'CSeq: 1 BYE',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
  assert.equal((await bob.request(byeFromBob)).status, 200);
  await waitFor('the session to end', async () => !(await adminSessions(t.url)).some((s) => s.id === session.id));
  const audit = readFileSync(t.auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.ok(audit.some((e) => e.action === 'sip.transfer' && e.outcome === 'ok' && e.session === session.id));
  assert.equal(audit.filter((e) => e.action === 'session.ended' && e.session === session.id).at(-1)?.reason, 'bye');

  // Second call: the agent hangs up while bob rings; voxgate CANCELs bob, NOTIFYs 487, BYEs alice.
  const ok2 = await call('refer-2');
  const invite2 = bob.next((m) => m.startsWith('INVITE '));
  assert.equal((await alice.request(alice.inDialogText(ok2, 'REFER', 2, [`Refer-To: <sip:bob@${DOMAIN}>`]))).status, 202);
  const inv2 = await invite2;
  bob.send(replyTo(inv2, '180 Ringing'));
  const cancel = bob.next((m) => m.startsWith('CANCEL '));
  const terminated = alice.next((m) => m.startsWith('NOTIFY ') && m.includes('SIP/2.0 487'));
  const bye = alice.next((m) => m.startsWith('BYE '));
  const id2 = (await adminSessions(t.url)).find((s) => s.sipCallId === 'refer-2')!.id;
  t.gw.calls.get(id2)!.closeByAgent('agent-hangup');
  const c = parseSipMessage(await cancel);
  assert.equal(headerList(c, 'Via')[0], headerList(parseSipMessage(inv2), 'Via')[0], 'the CANCEL has the INVITE branch');
  assert.match(header(parseSipMessage(await terminated), 'Subscription-State')!, /^terminated/);
  await bye;

  // Third call: bob's WebSocket drops while he rings; alice hears 480 at once and keeps the agent.
  const ok3 = await call('refer-3');
  const invite3 = bob.next((m) => m.startsWith('INVITE '));
  assert.equal((await alice.request(alice.inDialogText(ok3, 'REFER', 2, [`Refer-To: <sip:bob@${DOMAIN}>`]))).status, 202);
  await invite3;
  const gone = alice.next((m) => m.startsWith('NOTIFY ') && m.includes('SIP/2.0 480'));
  await bob.close();
  assert.match(header(parseSipMessage(await gone), 'Subscription-State')!, /^terminated/);
  assert.ok((await adminSessions(t.url)).some((s) => s.sipCallId === 'refer-3'), 'alice keeps the agent');
  assert.equal((await alice.request(alice.inDialogText(ok3, 'BYE', 3))).status, 200);
  await alice.close();
});


test('SIP WebSocket limits: connections in all (503) and per address (429) are capped with Retry-After, and a socket that neither registers nor calls is closed (1008); one that registers stays', async () => {
  const g = await startGateway({ sip: { domain: DOMAIN, users: [{ user: 'alice', password: 'alice-secret' }], ws: { maxConnections: 3, maxConnectionsPerAddress: 2, setupTimeoutSeconds: 1 } } });
  const open: SipWsClient[] = [];
  try {
    open.push(await SipWsClient.connect(g.url), await SipWsClient.connect(g.url));
    await assert.rejects(SipWsClient.connect(g.url), /upgrade refused: 429/, 'a third from 127.0.0.1');
    open.push(await SipWsClient.connect(g.url, { localAddress: '127.0.0.2' }));
    await assert.rejects(SipWsClient.connect(g.url, { localAddress: '127.0.0.2' }), /upgrade refused: 503/, 'a fourth in all');
    const registered = open[0]!;
    assert.equal((await registered.register('alice', 'alice-secret', DOMAIN)).status, 200);
    await waitFor('the idle sockets closed', async () => open[1]!.closed && open[2]!.closed, 5000);
    assert.deepEqual([open[1]!.closeCode, open[1]!.closeReason], [1008, 'register or call within 1 s']);
    assert.equal(registered.closed, false, 'the registered one stays');
    // Their places are free again.
    open.push(await SipWsClient.connect(g.url));
  } finally {
    for (const c of open) await c.close().catch(() => undefined);
    await g.stop();
  }
});
