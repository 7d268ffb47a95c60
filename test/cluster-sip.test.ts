import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { natsServer, type NatsServer } from '../src/testing/nats.js';
import { analyseRemoteAudio, launchChromium, statsOfType, type TestBrowser } from './helpers/chromium.js';
import { startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { toneWav } from './helpers/media.js';
import { offerSdp } from './helpers/offers.js';
import { pageEvents, preparePage } from './helpers/sip-browser.js';
import { answerChallenge, headerList, SipWsClient } from './helpers/sip-ws-client.js';

/**
 * SIP across the fleet (issue 17, build 5): a user's WebSocket stays on the node it reached;
 * the shared location store says which node that is, and a call from a user on another node
 * reaches them through it (the holder relays the dialog's messages over NATS). Two nodes here,
 * in this process, on one nats-server: first at the wire (a bare client on each node: INVITE,
 * 180, 200, ACK, BYE both ways, the socket closing), then JsSIP in Chromium on each with audio
 * end to end.
 */

const DOMAIN = 'fleet.test';
const USERS = [
  { user: 'alice', password: 'alice-secret' },
  { user: 'bob', password: 'bob-secret' },
  { user: 'carol', password: 'carol-secret' },
  { user: 'dave', password: 'dave-secret' },
];

type Sip = { vgSip: { jssip(ws: string, u: string, p: string, d: string, autoAnswer: boolean): Promise<unknown>; jssipCall(to: string): Promise<unknown>; stop(): void } };

describe('SIP calls between users on different nodes', () => {
  let nats: NatsServer;
  let a: TestGateway;
  let b: TestGateway;
  let chrome: TestBrowser | undefined;

  before(async () => {
    nats = await natsServer();
    const node = (nodeId: string) => ({ sip: { domain: DOMAIN, users: USERS }, cluster: { nodeId, nats: { servers: [nats.url] }, publicUrl: `http://${nodeId}.invalid` } });
    a = await startGateway(node('node-a'));
    b = await startGateway(node('node-b'));
    await waitFor('each node to see the other live', () => a.gw.fleet!.nodes.live().length === 2 && b.gw.fleet!.nodes.live().length === 2, 10_000);
  });

  after(async () => {
    await chrome?.close();
    await a?.stop();
    await b?.stop();
    await nats?.stop();
  });

  const invite = (c: SipWsClient, from: string, to: string, callId: string) => c.inviteText({ from, to, domain: DOMAIN, callId, sdp: offerSdp().replace('a=sendonly', 'a=sendrecv') });

  /** The callee's answer to a request it received: copies Via, From, To (with a tag), Call-ID, CSeq. */
  function answer(req: string, status: string, toTag: string, extra: string[] = [], body = ''): string {
    const lines = req.split('\r\n');
    const pick = (name: string) => lines.filter((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`));
    const to = pick('To')[0]!;
    return [
      `SIP/2.0 ${status}`,
      ...pick('Via'),
      ...pick('Record-Route'),
      pick('From')[0]!,
      to.includes(';tag=') ? to : `${to};tag=${toTag}`,
      pick('Call-ID')[0]!,
      pick('CSeq')[0]!,
      ...extra,
      `Content-Length: ${Buffer.byteLength(body)}`,
      '',
      body,
    ].join('\r\n');
  }

  /** A request in the dialog a 200 set up (its lines): to the Contact, through the Record-Route. */
  function inDialog(c: SipWsClient, ok: string[], method: string, cseq: number): string {
    const rr = ok.filter((l) => l.startsWith('Record-Route:')).map((l) => l.slice(14).trim());
    const target = /<([^>]+)>/.exec(ok.find((l) => l.startsWith('Contact:'))!)![1]!;
    return [
      `${method} ${target} SIP/2.0`,
      `Via: SIP/2.0/WS ${c.host};branch=z9hG4bK${randomBytes(6).toString('hex')}`,
      'Max-Forwards: 70',
      ...rr.reverse().map((r) => `Route: ${r}`),
      ok.find((l) => l.startsWith('From:'))!,
      ok.find((l) => l.startsWith('To:'))!,
      ok.find((l) => l.startsWith('Call-ID:'))!,
      `CSeq: ${cseq} ${method}`,
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
  }

  test('a user registered on node A is called by a user on node B: INVITE, ringing, answer and ACK reach her through A, her BYE reaches B; A is in no dialog; a refused call leaves no route; B dropping its stand-in keeps her registration; her socket closing closes it', async () => {
    const alice = await SipWsClient.connect(a.url);
    const bob = await SipWsClient.connect(b.url);
    try {
      assert.equal((await alice.register('alice', 'alice-secret', DOMAIN)).status, 200);
      assert.equal((await bob.register('bob', 'bob-secret', DOMAIN)).status, 200);
      const bindings = await b.gw.sip.registrar.lookup('alice');
      assert.equal(bindings[0]?.node, 'node-a', 'the binding names the node holding the socket');

      const incoming = alice.next((t) => t.startsWith('INVITE '));
      const final = bob.next((t) => /^SIP\/2\.0 200 /.test(t) && t.includes('CSeq: 1 INVITE'));
      const ringing = bob.next((t) => /^SIP\/2\.0 180 /.test(t));
      bob.send(invite(bob, 'bob', 'alice', 'fleet-call-1'));
      const req = await incoming;
      assert.match(req, /^INVITE sip:[0-9a-f]+@[0-9a-f]+\.invalid;transport=ws SIP\/2\.0/, 'addressed to alice\'s registered Contact');
      assert.match(req, /Record-Route: <sip:[^>]+;lr>/);
      alice.send(answer(req, '180 Ringing', 'alice-tag'));
      await ringing;
      const sdp = offerSdp().replace('a=sendonly', 'a=sendrecv');
      alice.send(answer(req, '200 OK', 'alice-tag', [`Contact: <sip:${alice.contactUser}@${alice.host};transport=ws>`, 'Content-Type: application/sdp'], sdp));
      const ok = (await final).split('\r\n');
      assert.ok(ok.some((l) => l.startsWith('To:') && l.includes('tag=alice-tag')));
      assert.equal(a.gw.fleet!.sipRelay!.routes, 1, 'A routes the dialog back to B by its Call-ID');

      // Bob's ACK goes through B (the Record-Route) and A's socket to alice.
      const ack = alice.next((t) => t.startsWith('ACK '));
      bob.send(inDialog(bob, ok, 'ACK', 1));
      await ack;
      assert.deepEqual([a.gw.sipCalls.dialogs, b.gw.sipCalls.dialogs], [0, 1], 'mid-call: A is in no dialog, B has the call');
      // Alice (on A) hangs up: her BYE, in B's dialog, goes to B and on to bob; his 200 comes back.
      const reqLines = req.split('\r\n');
      const aliceBye = [
        `BYE sip:${bob.contactUser}@${bob.host};transport=ws SIP/2.0`,
        `Via: SIP/2.0/WS ${alice.host};branch=z9hG4bK${randomBytes(6).toString('hex')}`,
        'Max-Forwards: 70',
        ...reqLines.filter((l) => l.startsWith('Record-Route:')).map((l) => `Route: ${l.slice(14).trim()}`),
        `From: ${reqLines.find((l) => l.startsWith('To:'))!.slice(3).trim()};tag=alice-tag`,
        `To: ${reqLines.find((l) => l.startsWith('From:'))!.slice(5).trim()}`,
        'Call-ID: fleet-call-1',
        'CSeq: 1 BYE',
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n');
      const bye = bob.next((t) => t.startsWith('BYE '));
      const byeOk = alice.next((t) => /^SIP\/2\.0 200 /.test(t) && t.includes('BYE'));
      alice.send(aliceBye);
      const atBob = await bye;
      assert.match(atBob, /Via: SIP\/2\.0\/WS [^;]+;branch=[^;\r\n]+;received=127\.0\.0\.1/, 'alice\'s Via stamped with where it really came from (her socket on A)');
      bob.send(answer(atBob, '200 OK', 'bob-tag'));
      assert.ok(await byeOk);
      await waitFor('the proxied call gone on B', () => b.gw.sipCalls.dialogs === 0);
      assert.equal(a.gw.fleet!.sipRelay!.routes, 0, 'the route went with the BYE\'s 200');

      // A call alice refuses (486): bob hears it, and no route is left for the failed call.
      const second = alice.next((t) => t.startsWith('INVITE '));
      const busy = bob.next((t) => /^SIP\/2\.0 486 /.test(t));
      bob.send(invite(bob, 'bob', 'alice', 'fleet-call-busy'));
      const req2 = await second;
      const ack2 = alice.next((t) => t.startsWith('ACK ') && t.includes('fleet-call-busy'));
      alice.send(answer(req2, '486 Busy Here', 'alice-tag2'));
      await busy;
      await ack2;
      assert.equal(a.gw.fleet!.sipRelay!.routes, 0, 'the failed call\'s route is gone, its ACK did not bring it back');

      // B dropping its stand-in (as for a node it judged lost) ends what used it, never alice's registration.
      b.gw.fleet!.sipRelay!.nodeLost('node-a');
      assert.equal((await b.gw.sip.registrar.lookup('alice')).length, 1, 'alice stays registered: her socket is on A');
      // Alice's socket closes: B is told, and keeps no stand-in for it.
      const standIns = () => b.gw.fleet!.sipRelay!.transport.flows.size;
      const third = alice.next((t) => t.startsWith('INVITE '));
      bob.send(invite(bob, 'bob', 'alice', 'fleet-call-3'));
      await third;
      assert.equal(standIns(), 1);
      await alice.close();
      await waitFor('the stand-in closed on B', () => standIns() === 0);
    } finally {
      await alice.close();
      await bob.close();
    }
  });

  test('the callee\'s socket on A closes mid-call: B hears of it and sends the caller the BYE the callee no longer can', async () => {
    const carol = await SipWsClient.connect(a.url);
    const dave = await SipWsClient.connect(b.url);
    try {
      assert.equal((await carol.register('carol', 'carol-secret', DOMAIN)).status, 200);
      assert.equal((await dave.register('dave', 'dave-secret', DOMAIN)).status, 200);
      const incoming = carol.next((t) => t.startsWith('INVITE '));
      const final = dave.next((t) => /^SIP\/2\.0 200 /.test(t));
      dave.send(invite(dave, 'dave', 'carol', 'fleet-call-2'));
      const req = await incoming;
      carol.send(answer(req, '200 OK', 'carol-tag', [`Contact: <sip:${carol.contactUser}@${carol.host};transport=ws>`, 'Content-Type: application/sdp'], offerSdp()));
      const ok = (await final).split('\r\n');
      assert.ok(ok.includes('Call-ID: fleet-call-2'));
      const ack = carol.next((t) => t.startsWith('ACK '));
      dave.send(inDialog(dave, ok, 'ACK', 1));
      await ack;
      const bye = dave.next((t) => t.startsWith('BYE '), 10_000);
      await carol.close();
      assert.match(await bye, /Call-ID: fleet-call-2/);
    } finally {
      await carol.close();
      await dave.close();
    }
  });

  test('a digest challenge from node A is answered to node B (a client that reconnected elsewhere): B checks A\'s nonce', async () => {
    const onA = await SipWsClient.connect(a.url);
    const onB = await SipWsClient.connect(b.url);
    try {
      const callId = randomBytes(8).toString('hex');
      const challenged = await onA.request(onA.registerText({ user: 'dave', domain: DOMAIN, callId }));
      assert.equal(challenged.status, 401);
      const authorization = answerChallenge(headerList(challenged, 'WWW-Authenticate').at(-1)!, 'dave', 'dave-secret', 'REGISTER', `sip:${DOMAIN}`);
      const ok = await onB.request(onB.registerText({ user: 'dave', domain: DOMAIN, callId, authorization }));
      assert.equal(ok.status, 200, ok.reason);
    } finally {
      await onA.close();
      await onB.close();
    }
  });

  test('JsSIP in Chromium: alice on node A answers bob calling from node B; the tone crosses browser to browser', async () => {
    chrome = await launchChromium(`${a.url}/healthz`, toneWav(440, 30));
    const page = async () => {
      const p = await chrome!.browser.newPage();
      await p.addInitScript('window.__name = (fn) => fn;');
      await p.goto(`${a.url}/`);
      await preparePage(p);
      return p;
    };
    const alice = await page();
    const bob = await page();
    const ws = (url: string) => `${url.replace(/^http/, 'ws')}/sip`;
    assert.deepEqual(await alice.evaluate(({ w, d }) => (window as unknown as Sip).vgSip.jssip(w, 'alice', 'alice-secret', d, true), { w: ws(a.url), d: DOMAIN }), { ok: true });
    assert.deepEqual(await bob.evaluate(({ w, d }) => (window as unknown as Sip).vgSip.jssip(w, 'bob', 'bob-secret', d, false), { w: ws(b.url), d: DOMAIN }), { ok: true });
    assert.deepEqual(await bob.evaluate((d) => (window as unknown as Sip).vgSip.jssipCall(`sip:alice@${d}`), DOMAIN), { ok: true });
    for (const p of [alice, bob]) {
      await waitFor('audio from the other browser', async () => ((await analyseRemoteAudio(p, 800)).peakHz > 380 ? true : undefined), 15_000);
      assert.ok(((await statsOfType(p, 'inbound-rtp'))[0]!.packetsReceived as number) > 20);
    }
    assert.equal(a.gw.calls.size + b.gw.calls.size, 0, 'no media through either node');
    assert.ok((await pageEvents(bob)).some((e) => e.type === 'out:confirmed' || e.type === 'out:accepted'));
    for (const p of [alice, bob]) {
      await p.evaluate(() => (window as unknown as Sip).vgSip.stop());
      await p.close();
    }
  });
});
