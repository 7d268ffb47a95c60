import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import type { Agent, AgentSession } from '../src/agent/agent.js';
import { DemoAgent } from '../src/agent/demo-agent.js';
import { SpeechSynthesizer } from '../src/audio/tts.js';
import { createLogger } from '../src/core/logger.js';
import { analyseRemoteAudio, launchChromium, statsOfType, type TestBrowser } from './helpers/chromium.js';
import { ADMIN_TOKEN, adminSessions, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { toneWav } from './helpers/media.js';
import { pageEvents, preparePage } from './helpers/sip-browser.js';

/** `seconds` of a sine at `hz`, 16-bit at `rate`, for the agent to play. */
function tone(hz: number, seconds: number, rate: number): Int16Array {
  const out = new Int16Array(Math.round(seconds * rate));
  for (let i = 0; i < out.length; i++) out[i] = Math.round(8000 * Math.sin((2 * Math.PI * hz * i) / rate));
  return out;
}

const DOMAIN = 'voxgate.test';
const USERS = [
  { user: 'alice', password: 'alice-secret' },
  { user: 'bob', password: 'bob-secret' },
  { user: 'carol', password: 'carol-secret' },
];

type Sip = {
  vgSip: {
    jssip(ws: string, u: string, p: string, d: string, auto: boolean): Promise<{ ok: boolean; cause?: string; status?: number }>;
    jssipCall(target: string): Promise<{ ok: boolean; cause?: string; status?: number }>;
    jssipRefer(target: string): Promise<{ ok: boolean; status?: number }>;
    sipjs(ws: string, u: string, p: string, d: string, auto: boolean): Promise<{ ok: boolean; status?: number }>;
    sipjsCall(target: string): Promise<{ ok: boolean; cause?: string }>;
    dtmf(d: string, t: string): void;
    sipjsDtmf(d: string): Promise<void>;
    hangup(): void;
    closeMedia(): void;
    sipjsHangup(): Promise<void>;
    stop(): Promise<void> | void;
    state: { ua: { _transport: { socket: { _ws: WebSocket } } } };
  };
};

describe('JsSIP and SIP.js in Chromium, over ws://', () => {
  let tg: TestGateway;
  let chrome: TestBrowser;
  let wsUrl: string;
  const tts = new SpeechSynthesizer();
  /** Every agent session the demo agent got, with the digits it heard. */
  const sessions: { session: AgentSession; digits: string[]; ended?: string; transferredTo?: string; loudFrames: number }[] = [];

  before(async () => {
    const log = createLogger('silent');
    const probe = (): Agent => {
      const demo = new DemoAgent(tts, log);
      return {
        name: 'demo',
        sampleRate: demo.sampleRate,
        attach(session) {
          const entry: (typeof sessions)[number] = { session, digits: [], loudFrames: 0 };
          sessions.push(entry);
          session.on('dtmf', (d) => entry.digits.push(d));
          session.on('transferred', (to) => {
            entry.transferredTo = to;
            entry.loudFrames = 0;
          });
          // Frames with the tone in them (every page's fake microphone plays 440 Hz).
          session.on('frame', (f) => {
            let sum = 0;
            for (const x of f.samples) sum += x * x;
            if (Math.sqrt(sum / f.samples.length) > 500) entry.loudFrames++;
          });
          session.on('ended', (r) => (entry.ended = r));
          return demo.attach(session);
        },
      };
    };
    tg = await startGateway({ sip: { domain: DOMAIN, users: USERS } }, { agents: { demo: probe } });
    wsUrl = `${tg.url.replace('http', 'ws')}/sip`;
    chrome = await launchChromium(`${tg.url}/`, toneWav(440, 30));
  });
  after(async () => {
    await chrome?.close();
    await tg?.stop();
    tts.close();
  });

  async function newPage(): Promise<Page> {
    const page = await chrome.browser.newPage();
    await page.addInitScript('window.__name = (fn) => fn;');
    await page.goto(`${tg.url}/`);
    await preparePage(page);
    return page;
  }

  async function registrations(): Promise<{ user: string; flow: string; userAgent: string | null }[]> {
    const res = await fetch(`${tg.url}/api/registrations`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
    return ((await res.json()) as { registrations: [] }).registrations;
  }

  function auditOf(action: string): Record<string, unknown>[] {
    return readFileSync(tg.auditPath, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((e) => e.action === action);
  }

  test('JsSIP: a wrong password fails, the right one registers; it calls the agent, hears it, sends DTMF by INFO and RFC 4733, hangs up', async () => {
    const page = await newPage();
    const bad = await page.evaluate(({ ws, d }) => (window as unknown as Sip).vgSip.jssip(ws, 'alice', 'wrong', d, false), { ws: wsUrl, d: DOMAIN });
    assert.equal(bad.ok, false);
    assert.equal(bad.status, 401);
    await page.evaluate(() => (window as unknown as Sip).vgSip.stop());
    await page.reload();
    await preparePage(page);
    const ok = await page.evaluate(({ ws, d }) => (window as unknown as Sip).vgSip.jssip(ws, 'alice', 'alice-secret', d, false), { ws: wsUrl, d: DOMAIN });
    assert.deepEqual(ok, { ok: true });
    assert.ok((await registrations()).some((r) => r.user === 'alice' && /JsSIP/.test(r.userAgent ?? '')));
    assert.ok(auditOf('sip.register').some((e) => e.outcome === 'error' && e.user === 'alice'));

    const before = sessions.length;
    const call = await page.evaluate((d) => (window as unknown as Sip).vgSip.jssipCall(`sip:agent@${d}`), DOMAIN);
    assert.deepEqual(call, { ok: true });
    const entry = await waitFor('the agent session', () => sessions[before]);
    const listed = await waitFor('the call in /api/sessions', async () => (await adminSessions(tg.url)).find((s) => s.id === entry.session.callId));
    assert.equal(listed.source, 'sip:alice');
    // The demo agent greets the caller: speech energy arrives in the page.
    const heard = await waitFor('the agent to be heard', async () => {
      const a = await analyseRemoteAudio(page, 800);
      return a.rms > 0.005 ? a : undefined;
    }, 15_000);
    assert.ok(heard.rms > 0.005, `rms ${heard.rms}`);

    await page.evaluate(() => (window as unknown as Sip).vgSip.dtmf('5', 'INFO'));
    await waitFor('the INFO digit at the agent', () => entry.digits.includes('5'));
    await page.evaluate(() => (window as unknown as Sip).vgSip.dtmf('7', 'RFC2833'));
    await waitFor('the RFC 4733 digit at the agent', () => entry.digits.includes('7'));

    await page.evaluate(() => (window as unknown as Sip).vgSip.hangup());
    await waitFor('the agent to see the hang-up', () => entry.ended);
    const ended = auditOf('session.ended').at(-1)!;
    assert.equal(ended.reason, 'bye');
    assert.ok(auditOf('sip.invite').some((e) => e.outcome === 'ok' && e.user === 'alice' && e.status === 200));

    // Media that closes without a BYE: after a moment for the BYE, the call ends as peer-closed
    // and voxgate sends the BYE itself.
    const again = sessions.length;
    assert.deepEqual(await page.evaluate((d) => (window as unknown as Sip).vgSip.jssipCall(`sip:agent@${d}`), DOMAIN), { ok: true });
    const second = await waitFor('the second agent session', () => sessions[again]);
    await waitFor('media on the second call', async () => ((await analyseRemoteAudio(page, 400)).rms > 0.005 ? true : undefined), 15_000);
    await page.evaluate(() => (window as unknown as Sip).vgSip.closeMedia());
    await waitFor('the agent to see the call end', () => second.ended);
    assert.equal(auditOf('session.ended').at(-1)!.reason, 'peer-closed');
    await waitFor('our BYE at the page', async () => (await pageEvents(page)).some((e) => e.type === 'out:ended' && e.cause === 'Terminated'));
    await page.evaluate(() => (window as unknown as Sip).vgSip.stop());
    await page.close();
  });

  test('SIP.js: registers, calls the agent and hears it, sends DTMF, hangs up; a wrong password is refused', async () => {
    const page = await newPage();
    const bad = await page.evaluate(({ ws, d }) => (window as unknown as Sip).vgSip.sipjs(ws, 'bob', 'nope', d, false), { ws: wsUrl, d: DOMAIN });
    assert.deepEqual(bad, { ok: false, status: 401 });
    await page.evaluate(() => (window as unknown as Sip).vgSip.stop());
    await page.reload();
    await preparePage(page);
    const ok = await page.evaluate(({ ws, d }) => (window as unknown as Sip).vgSip.sipjs(ws, 'bob', 'bob-secret', d, false), { ws: wsUrl, d: DOMAIN });
    assert.deepEqual(ok, { ok: true });

    const before = sessions.length;
    assert.deepEqual(await page.evaluate((d) => (window as unknown as Sip).vgSip.sipjsCall(`sip:agent@${d}`), DOMAIN), { ok: true });
    const entry = await waitFor('the agent session', () => sessions[before]);
    await waitFor('the agent to be heard', async () => ((await analyseRemoteAudio(page, 800)).rms > 0.005 ? true : undefined), 15_000);
    await page.evaluate(() => (window as unknown as Sip).vgSip.sipjsDtmf('9'));
    await waitFor('the digit at the agent', () => entry.digits.includes('9'));
    await page.evaluate(() => (window as unknown as Sip).vgSip.sipjsHangup());
    await waitFor('the hang-up', () => entry.ended);
    await page.evaluate(() => (window as unknown as Sip).vgSip.stop());
    await page.close();
  });

  test('two browsers call each other through voxgate and exchange audio end to end', async () => {
    const alice = await newPage();
    const bob = await newPage();
    assert.deepEqual(await bob.evaluate(({ ws, d }) => (window as unknown as Sip).vgSip.sipjs(ws, 'bob', 'bob-secret', d, true), { ws: wsUrl, d: DOMAIN }), { ok: true });
    assert.deepEqual(await alice.evaluate(({ ws, d }) => (window as unknown as Sip).vgSip.jssip(ws, 'alice', 'alice-secret', d, false), { ws: wsUrl, d: DOMAIN }), { ok: true });
    const call = await alice.evaluate((d) => (window as unknown as Sip).vgSip.jssipCall(`sip:bob@${d}`), DOMAIN);
    assert.deepEqual(call, { ok: true });
    // Media flows browser to browser (the tone both ways), not through the gateway.
    for (const page of [alice, bob]) {
      await waitFor('audio from the other browser', async () => ((await analyseRemoteAudio(page, 800)).peakHz > 380 ? true : undefined), 15_000);
      const inbound = (await statsOfType(page, 'inbound-rtp'))[0]!;
      assert.ok((inbound.packetsReceived as number) > 20);
    }
    assert.equal(tg.gw.calls.size, 0, 'no media session in the gateway for a proxied call');
    // alice's WebSocket drops mid-call: voxgate sends bob the BYE alice no longer can.
    await alice.evaluate(() => (window as unknown as Sip).vgSip.state.ua._transport.socket._ws.close());
    await waitFor('bob to see the hang-up', async () => (await pageEvents(bob)).some((e) => e.type === 'sipjs:hangup'));
    assert.ok(auditOf('sip.bye').some((e) => e.proxied === true && e.by === 'voxgate' && e.reason === 'flow-closed'));
    for (const p of [alice, bob]) {
      await p.evaluate(() => (window as unknown as Sip).vgSip.stop());
      await p.close();
    }
  });

  test('the agent transfers a caller to a registered user (REFER, NOTIFY sipfrag), and its call ends', async () => {
    const alice = await newPage();
    const carol = await newPage();
    assert.deepEqual(await alice.evaluate(({ ws, d }) => (window as unknown as Sip).vgSip.jssip(ws, 'alice', 'alice-secret', d, true), { ws: wsUrl, d: DOMAIN }), { ok: true });
    assert.deepEqual(await carol.evaluate(({ ws, d }) => (window as unknown as Sip).vgSip.jssip(ws, 'carol', 'carol-secret', d, false), { ws: wsUrl, d: DOMAIN }), { ok: true });
    const before = sessions.length;
    assert.deepEqual(await carol.evaluate((d) => (window as unknown as Sip).vgSip.jssipCall(`sip:agent@${d}`), DOMAIN), { ok: true });
    const entry = await waitFor('the agent session', () => sessions[before]);
    await entry.session.transfer(`sip:alice@${DOMAIN}`);
    const events = await pageEvents(carol);
    assert.ok(events.some((e) => e.type === 'out:refer' && e.target === `sip:alice@${DOMAIN}`));
    await waitFor('carol connected to alice', async () => (await pageEvents(carol)).some((e) => e.type === 'transferred:confirmed'));
    assert.ok((await pageEvents(alice)).some((e) => e.type === 'incoming'));
    await waitFor('the agent call to end', () => entry.ended);
    assert.equal(auditOf('session.ended').at(-1)!.reason, 'transferred');
    await waitFor('audio from alice', async () => ((await analyseRemoteAudio(carol, 800)).peakHz > 380 ? true : undefined), 15_000);
    for (const p of [alice, carol]) {
      await p.evaluate(() => (window as unknown as Sip).vgSip.stop());
      await p.close();
    }
  });

  test('a caller transfers its agent call by REFER: a failing target is NOTIFYed and the call goes on; a registered user gets the agent', async () => {
    const bob = await newPage();
    const carol = await newPage();
    assert.deepEqual(await bob.evaluate(({ ws, d }) => (window as unknown as Sip).vgSip.sipjs(ws, 'bob', 'bob-secret', d, true), { ws: wsUrl, d: DOMAIN }), { ok: true });
    assert.deepEqual(await carol.evaluate(({ ws, d }) => (window as unknown as Sip).vgSip.jssip(ws, 'carol', 'carol-secret', d, false), { ws: wsUrl, d: DOMAIN }), { ok: true });
    const before = sessions.length;
    assert.deepEqual(await carol.evaluate((d) => (window as unknown as Sip).vgSip.jssipCall(`sip:agent@${d}`), DOMAIN), { ok: true });
    const entry = await waitFor('the agent session', () => sessions[before]);

    // alice is known but offline: 202, NOTIFY 100, NOTIFY 480 (terminated); carol keeps the agent.
    assert.deepEqual(await carol.evaluate((d) => (window as unknown as Sip).vgSip.jssipRefer(`sip:alice@${d}`), DOMAIN), { ok: false, status: 480 });
    assert.ok((await pageEvents(carol)).some((e) => e.type === 'refer:requestSucceeded' && e.status === 202));
    assert.ok((await pageEvents(carol)).some((e) => e.type === 'refer:trying' && e.status === 100));
    assert.equal(entry.ended, undefined);
    await waitFor('carol still heard by the agent', () => (entry.loudFrames > 10 ? true : undefined));

    // bob (SIP.js) is registered: voxgate calls him as the agent, and the session moves to him.
    assert.deepEqual(await carol.evaluate((d) => (window as unknown as Sip).vgSip.jssipRefer(`sip:bob@${d}`), DOMAIN), { ok: true });
    assert.ok((await pageEvents(bob)).some((e) => e.type === 'sipjs:answered'));
    assert.equal(entry.transferredTo, `sip:bob@${DOMAIN}`);
    await waitFor('carol to hang up after the transfer', async () => (await pageEvents(carol)).some((e) => e.type === 'out:ended'));
    assert.equal(entry.ended, undefined, 'the agent session goes on');
    assert.equal(sessions.length, before + 1, 'no second agent session');
    // bob hears the agent, and the agent hears bob's tone.
    entry.session.play(tone(660, 3, entry.session.sampleRate));
    await waitFor('the agent heard by bob', async () => {
      const a = await analyseRemoteAudio(bob, 800);
      return Math.abs(a.peakHz - 660) < 30 ? a : undefined;
    }, 15_000);
    await waitFor('bob heard by the agent', () => (entry.loudFrames > 10 ? true : undefined));
    const listed = (await adminSessions(tg.url)).filter((s) => s.id === entry.session.callId);
    assert.equal(listed.length, 1);
    assert.ok(auditOf('sip.refer').some((e) => e.status === 202 && e.user === 'carol' && e.target === `sip:bob@${DOMAIN}`));
    assert.ok(auditOf('sip.transfer').some((e) => e.outcome === 'error' && e.status === 480));
    assert.ok(auditOf('sip.transfer').some((e) => e.outcome === 'ok' && e.target === `sip:bob@${DOMAIN}`));

    await bob.evaluate(() => (window as unknown as Sip).vgSip.sipjsHangup());
    await waitFor('the call to end with bob', () => entry.ended);
    assert.equal(auditOf('session.ended').at(-1)!.reason, 'bye');
    for (const p of [bob, carol]) {
      await p.evaluate(() => (window as unknown as Sip).vgSip.stop());
      await p.close();
    }
  });

  test('browser to browser: bob transfers alice to carol by REFER through the proxy, and alice and carol talk', async () => {
    const [alice, bob, carol] = [await newPage(), await newPage(), await newPage()];
    assert.deepEqual(await alice.evaluate(({ ws, d }) => (window as unknown as Sip).vgSip.jssip(ws, 'alice', 'alice-secret', d, false), { ws: wsUrl, d: DOMAIN }), { ok: true });
    assert.deepEqual(await bob.evaluate(({ ws, d }) => (window as unknown as Sip).vgSip.jssip(ws, 'bob', 'bob-secret', d, true), { ws: wsUrl, d: DOMAIN }), { ok: true });
    assert.deepEqual(await carol.evaluate(({ ws, d }) => (window as unknown as Sip).vgSip.sipjs(ws, 'carol', 'carol-secret', d, true), { ws: wsUrl, d: DOMAIN }), { ok: true });
    assert.deepEqual(await alice.evaluate((d) => (window as unknown as Sip).vgSip.jssipCall(`sip:bob@${d}`), DOMAIN), { ok: true });
    await waitFor('bob in the call', async () => (await pageEvents(bob)).some((e) => e.type === 'in:confirmed'));
    // bob's REFER and alice's NOTIFYs are proxied in the dialog; alice calls carol herself.
    assert.deepEqual(await bob.evaluate((d) => (window as unknown as Sip).vgSip.jssipRefer(`sip:carol@${d}`), DOMAIN), { ok: true });
    assert.ok((await pageEvents(alice)).some((e) => e.type === 'out:refer' && e.target === `sip:carol@${DOMAIN}`));
    await waitFor('alice connected to carol', async () => (await pageEvents(alice)).some((e) => e.type === 'transferred:confirmed'));
    await waitFor('bob to have hung up', async () => (await pageEvents(bob)).some((e) => e.type === 'in:ended'));
    await waitFor('audio from carol', async () => ((await analyseRemoteAudio(alice, 800)).peakHz > 380 ? true : undefined), 15_000);
    assert.ok(auditOf('sip.refer').some((e) => e.proxied === true));
    assert.equal(tg.gw.calls.size, 0, 'no media session in the gateway');
    for (const p of [alice, bob, carol]) {
      await p.evaluate(() => (window as unknown as Sip).vgSip.stop());
      await p.close();
    }
  });

  test('a browser whose socket drops reconnects and re-registers without leaving a stale binding', async () => {
    const page = await newPage();
    assert.deepEqual(await page.evaluate(({ ws, d }) => (window as unknown as Sip).vgSip.jssip(ws, 'carol', 'carol-secret', d, false), { ws: wsUrl, d: DOMAIN }), { ok: true });
    const first = (await registrations()).filter((r) => r.user === 'carol');
    assert.equal(first.length, 1);
    await page.evaluate(() => (window as unknown as Sip).vgSip.state.ua._transport.socket._ws.close());
    const again = await waitFor(
      'a new binding on a new flow',
      async () => {
        const regs = (await registrations()).filter((r) => r.user === 'carol');
        return regs.length === 1 && regs[0]!.flow !== first[0]!.flow ? regs : undefined;
      },
      20_000,
    );
    assert.equal(again.length, 1);
    await page.evaluate(() => (window as unknown as Sip).vgSip.stop());
    await page.close();
  });
});
