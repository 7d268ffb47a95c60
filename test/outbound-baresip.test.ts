/**
 * Browsers and agents call phones: baresip 1.0 plays the phones a carrier would reach, behind
 * voxgate's outbound trunks (plain RTP, PCMU over UDP). A JsSIP browser in Chromium dials a
 * number and voxgate bridges it (WebRTC Opus on the browser's leg, PCMU on the phone's); a WHIP
 * caller's agent transfers it to a number; an agent's transfer rings two phones at once.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import type { Agent, AgentSession } from '../src/agent/agent.js';
import { toneShare } from '../src/audio/test-signals.js';
import { analyseRemoteAudio, launchChromium, publishFromPage, type TestBrowser } from './helpers/chromium.js';
import { startBaresip, type Baresip } from './helpers/baresip.js';
import { ADMIN_TOKEN, adminSessions, startGateway, waitFor, within, type TestGateway } from './helpers/gateway.js';
import { readWav, toneWav } from './helpers/media.js';
import { listenConnected } from './helpers/ndc-publisher.js';
import { pageEvents, preparePage } from './helpers/sip-browser.js';

const DOMAIN = 'voxgate.test';
const ALICE = { user: 'alice', password: 'alice-secret', trunks: ['phones'] };
/** A user who may not call out (no trunks). */
const BOB = { user: 'bob', password: 'bob-secret' };
const CALLER_TOKEN = 'whip-caller-token-0123456789';
const PHONE = '+15557654321';
const ROTA = ['+15557650001', '+15557650002'];
const BROWSER_HZ = 440;
const PHONE_HZ = 1000;

type Sip = {
  vgSip: {
    jssip(ws: string, u: string, p: string, d: string, auto: boolean): Promise<{ ok: boolean; cause?: string; status?: number }>;
    jssipCall(target: string): Promise<{ ok: boolean; cause?: string; status?: number }>;
    dtmf(d: string, t: string): void;
    hangup(): void;
    stop(): Promise<void> | void;
  };
};


/** The share of `hz` in the last `seconds` of what a phone heard (its newest `dec` recording). */
async function phoneHeard(b: Baresip, hz: number, seconds = 2): Promise<number> {
  const wav = readWav(await b.waitForRecording(10_000, 'dec'));
  return toneShare(wav.samples.subarray(Math.max(0, wav.samples.length - seconds * wav.rate)), hz, wav.rate);
}

/** The page hears a tone within 30 Hz of `hz`, well above the rest of its spectrum. */
async function hears(page: Page, hz: number, what: string): Promise<void> {
  await waitFor(
    what,
    async () => {
      const a = await analyseRemoteAudio(page, 800);
      return Math.abs(a.peakHz - hz) < 30 && a.peakOverMedianDb > 20 ? a : undefined;
    },
    15_000,
  );
}

/** Waits for a baresip event; a failure carries baresip's log (its SIP trace). */
async function phoneEvent(b: Baresip, type: string, ms = 10_000, since = 0) {
  try {
    return await b.waitForEvent(type, ms, since);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- baresip log ---\n${b.log().slice(-6000)}`);
  }
}

describe('Browsers and agents call phones through an outbound trunk (baresip as the phones)', () => {
  let tg: TestGateway;
  let phone: Baresip;
  let rota: Baresip[];
  let chrome: TestBrowser;
  let page: Page;
  let wsUrl: string;
  /** What the agent should do with each new call. */
  let onCall: (s: AgentSession) => void = () => undefined;

  before(async () => {
    [phone, ...rota] = await Promise.all([
      startBaresip({ user: PHONE, codecs: ['pcmu'], answerMode: 'auto', source: { sineHz: PHONE_HZ } }),
      startBaresip({ user: ROTA[0]!, codecs: ['pcmu'], answerMode: 'manual', source: { sineHz: 1200 } }),
      startBaresip({ user: ROTA[1]!, codecs: ['pcmu'], answerMode: 'manual', source: { sineHz: 1400 } }),
    ]);
    const probe: Agent = {
      name: 'probe',
      sampleRate: 16000,
      attach(session) {
        onCall(session);
      },
    };
    const trunk = (name: string, b: Baresip) => ({ name, codecs: ['pcmu' as const], outbound: { address: `127.0.0.1:${b.sipPort}`, transport: 'udp' as const, numbers: ['+15551230000'] } });
    tg = await startGateway(
      {
        sources: [{ name: 'web-caller', kind: 'browser', token: CALLER_TOKEN, agent: 'probe' }],
        sip: {
          domain: DOMAIN,
          users: [ALICE, BOB],
          listen: [{ transport: 'udp', host: '127.0.0.1', port: 0 }],
          rtp: { portMin: 34000, portMax: 34199 },
          trunks: [trunk('phones', phone), trunk('rota-1', rota[0]!), trunk('rota-2', rota[1]!)],
          // The longest prefix wins: each rota phone has its own trunk, everything else goes to `phones`.
          outboundRoutes: [
            { prefix: '+1', trunk: 'phones' },
            { prefix: ROTA[0]!, trunk: 'rota-1' },
            { prefix: ROTA[1]!, trunk: 'rota-2' },
          ],
        },
      },
      { agents: { probe: () => probe } },
    );
    wsUrl = `${tg.url.replace('http', 'ws')}/sip`;
    chrome = await launchChromium(`${tg.url}/healthz`, toneWav(BROWSER_HZ, 60));
    page = await chrome.browser.newPage();
    await page.addInitScript('window.__name = (fn) => fn;');
    await page.goto(`${tg.url}/`);
    await preparePage(page);
  });

  after(async () => {
    if (page) await page.evaluate(() => (window as unknown as Sip).vgSip.stop()).catch(() => undefined);
    await chrome?.close();
    await tg?.stop();
    await Promise.all([phone, ...(rota ?? [])].map((b) => b?.stop()));
  });

  test('a JsSIP browser dials a number: voxgate bridges it to the phone (Opus to PCMU), audio both ways, DTMF as RFC 4733, either side hangs up', async () => {
    const reg = await page.evaluate(({ ws, d, u, p }) => (window as unknown as Sip).vgSip.jssip(ws, u, p, d, false), { ws: wsUrl, d: DOMAIN, u: ALICE.user, p: ALICE.password });
    assert.deepEqual(reg, { ok: true });
    const call = await within(page.evaluate((n) => (window as unknown as Sip).vgSip.jssipCall(`sip:${n}@voxgate.test`), PHONE), 20_000, 'the call to be answered');
    assert.deepEqual(call, { ok: true }, JSON.stringify(await pageEvents(page)));
    await phoneEvent(phone, 'CALL_ESTABLISHED');
    const [listed] = (await adminSessions(tg.url)).filter((s) => s.trunk?.name === 'phones');
    assert.ok(listed, 'the bridged call is a session in /api/sessions');
    assert.equal(listed.trunk?.to, PHONE);
    await hears(page, PHONE_HZ, "the browser to hear the phone's tone");
    // A WHEP listener hears the bridged call like any other session.
    const listener = await listenConnected(`${tg.url}/whep/${listed.id}`, ADMIN_TOKEN);
    try {
      await waitFor('the WHEP listener to get packets', () => listener.received.length > 20, 10_000);
    } finally {
      listener.close();
    }
    const since = phone.events.length;
    await page.evaluate(() => (window as unknown as Sip).vgSip.dtmf('5', 'RFC2833'));
    const digit = await phoneEvent(phone, 'CALL_DTMF_START', 5000, since);
    assert.equal(digit.param, '5');
    await new Promise((r) => setTimeout(r, 2500)); // seconds of the browser's tone for the phone's recording
    await page.evaluate(() => (window as unknown as Sip).vgSip.hangup());
    await phoneEvent(phone, 'CALL_CLOSED', 10_000, since);
    const share = await phoneHeard(phone, BROWSER_HZ);
    assert.ok(share > 0.5, `the phone heard the browser's ${BROWSER_HZ} Hz (share ${share.toFixed(3)})`);
    await waitFor('the call to end', () => tg.gw.calls.size === 0, 5000);

    // Now the phone hangs up: the browser gets the BYE.
    const second = await within(page.evaluate((n) => (window as unknown as Sip).vgSip.jssipCall(`sip:${n}@voxgate.test`), PHONE), 20_000, 'the second call');
    assert.deepEqual(second, { ok: true });
    const up = phone.events.length;
    await phoneEvent(phone, 'CALL_ESTABLISHED', 10_000, up - 1);
    await phone.hangup();
    await waitFor('the browser to see the BYE', async () => (await pageEvents(page)).filter((e) => e.type === 'out:ended' && e.originator === 'remote').length > 0, 10_000);
    await waitFor('nothing left', () => tg.gw.calls.size === 0 && tg.gw.sipCalls.dialogs === 0 && tg.gw.rtp.pool.portsInUse === 0, 5000);
    const audit = readFileSync(tg.auditPath, 'utf8');
    assert.match(audit, /"for":"phone"/, 'the bridged INVITE is audited');
  });

  test('a user without trunks gets 403 for a number, with a reason phrase JsSIP can parse', async () => {
    const bob = await chrome.browser.newPage();
    await bob.addInitScript('window.__name = (fn) => fn;');
    await bob.goto(`${tg.url}/`);
    await preparePage(bob);
    try {
      assert.deepEqual(await bob.evaluate(({ ws, d, u, p }) => (window as unknown as Sip).vgSip.jssip(ws, u, p, d, false), { ws: wsUrl, d: DOMAIN, u: BOB.user, p: BOB.password }), { ok: true });
      const r = await bob.evaluate((n) => (window as unknown as Sip).vgSip.jssipCall(`sip:${n}@voxgate.test`), PHONE);
      assert.equal(r.ok, false);
      assert.equal(r.status, 403, `${JSON.stringify(r)}\n${readFileSync(tg.auditPath, 'utf8').split('\n').filter((l) => l.includes('invite')).join('\n')}`);
    } finally {
      await bob.evaluate(() => (window as unknown as Sip).vgSip.stop()).catch(() => undefined);
      await bob.close();
    }
  });

  test("the agent transfers a WHIP caller to a number: voxgate dials it on the trunk and the phone hears the caller", async () => {
    const transferred = new Promise<string>((resolve, reject) => {
      onCall = (s) => {
        s.on('transferred', resolve);
        // Once the caller's audio flows, the agent hands it to the phone.
        let frames = 0;
        s.on('frame', () => {
          if (++frames === 25) s.transfer(PHONE).catch(reject);
        });
      };
    });
    const since = phone.events.length;
    const pub = await chrome.browser.newPage();
    await pub.addInitScript('window.__name = (fn) => fn;');
    try {
      await pub.goto(`${tg.url}/healthz`);
      const r = await publishFromPage(pub, `${tg.url}/whip`, { token: CALLER_TOKEN, trickle: false });
      assert.equal(r.status, 201, JSON.stringify(r));
      assert.equal(await within(transferred, 20_000, 'the transfer'), PHONE);
      await phoneEvent(phone, 'CALL_ESTABLISHED', 10_000, since);
      const [s] = await adminSessions(tg.url);
      assert.ok(s, 'the WHIP call is still a session');
      await new Promise((r) => setTimeout(r, 2500));
      await phone.hangup();
      await phoneEvent(phone, 'CALL_CLOSED', 10_000, since);
      const share = await phoneHeard(phone, BROWSER_HZ);
      assert.ok(share > 0.5, `the phone heard the WHIP caller's ${BROWSER_HZ} Hz (share ${share.toFixed(3)})`);
      await waitFor('the call to end when the phone hangs up', () => tg.gw.calls.size === 0, 10_000);
    } finally {
      onCall = () => undefined;
      await pub.close();
    }
  });

  test('a transfer to two numbers rings both; the second answers, the first gets CANCEL', async () => {
    const done = new Promise<void>((resolve, reject) => {
      onCall = (s) => {
        let frames = 0;
        s.on('frame', () => {
          if (++frames === 25) s.transfer(ROTA, { timeoutSeconds: 20 }).then(resolve, reject);
        });
      };
    });
    const [first, second] = rota;
    const marks = [first!.events.length, second!.events.length];
    const pub = await chrome.browser.newPage();
    await pub.addInitScript('window.__name = (fn) => fn;');
    try {
      await pub.goto(`${tg.url}/healthz`);
      const r = await publishFromPage(pub, `${tg.url}/whip`, { token: CALLER_TOKEN, trickle: false });
      assert.equal(r.status, 201);
      await phoneEvent(first!, 'CALL_INCOMING', 15_000, marks[0]);
      await phoneEvent(second!, 'CALL_INCOMING', 15_000, marks[1]);
      await second!.accept();
      await within(done, 15_000, 'the transfer to resolve');
      await phoneEvent(second!, 'CALL_ESTABLISHED', 10_000, marks[1]);
      const closed = await phoneEvent(first!, 'CALL_CLOSED', 10_000, marks[0]);
      assert.doesNotMatch(closed.param ?? '', /establish/i, 'the first phone never answered');
      assert.ok(!first!.events.slice(marks[0]).some((e) => e.type === 'CALL_ESTABLISHED'), 'the first phone was cancelled, not answered');
      await second!.hangup();
      await waitFor('the call to end', () => tg.gw.calls.size === 0, 10_000);
    } finally {
      onCall = () => undefined;
      await pub.close();
    }
  });
});
