/**
 * The operator's console in Chromium: a WHIP call from another page appears live, its chart and
 * level meters move, DTMF shows on its timeline, the operator listens to it over WHEP, tries a
 * transfer to a user who is not registered (refused, said so), transfers it to Alice's JsSIP
 * page, hangs it up, and the call moves to the recent-calls table with its reason. Screenshots
 * are taken on the way (test-results/console/) and the DOM checked at each step.
 */
import assert from 'node:assert/strict';
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { analyseRemoteAudio, launchChromium, publishFromPage, type TestBrowser } from './helpers/chromium.js';
import { ADMIN_TOKEN, captureLog, SOURCE_TOKEN, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { toneWav } from './helpers/media.js';
import { preparePage } from './helpers/sip-browser.js';

const DOMAIN = 'voxgate.test';
const ALICE = { user: 'alice', password: 'alice-secret' };
const BOB = { user: 'bob', password: 'bob-secret' };
const SHOTS = join(process.cwd(), 'test-results', 'console');

type Sip = { vgSip: { jssip(ws: string, u: string, p: string, d: string, auto: boolean): Promise<{ ok: boolean }>; stop(): Promise<void> | void } };

/** Reads the console's state in the page (what the DOM was drawn from). */
const consoleState = <T>(page: Page, pick: string): Promise<T> => page.evaluate(`(() => { const s = window.voxgateConsole; return (${pick})(s); })()`) as Promise<T>;
const text = (page: Page, selector: string) => page.locator(selector).innerText();

async function screenshot(page: Page, name: string): Promise<void> {
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  assert.ok(statSync(path).size > 10_000, `${name}.png was written`);
}

describe('the console shows a live call, its chart and timeline, listens, transfers and hangs up', () => {
  let tg: TestGateway;
  let chrome: TestBrowser;
  let caller: Page;
  let alice: Page;
  let sid: string;
  const logged = captureLog();

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    tg = await startGateway({ sources: [{ name: 'browser-widget', kind: 'browser', token: SOURCE_TOKEN, agent: 'echo' }], sip: { domain: DOMAIN, users: [ALICE, BOB] } }, { log: logged.log });
    chrome = await launchChromium(`${tg.url}/healthz`, toneWav(440, 90));
    caller = chrome.page;
    alice = await chrome.browser.newPage();
    await alice.addInitScript('window.__name = (fn) => fn;');
    await alice.goto(`${tg.url}/`);
    await preparePage(alice);
    const reg = await alice.evaluate(({ ws, u, p, d }) => (window as unknown as Sip).vgSip.jssip(ws, u, p, d, true), { ws: `${tg.url.replace('http', 'ws')}/sip`, u: ALICE.user, p: ALICE.password, d: DOMAIN });
    assert.deepEqual(reg, { ok: true });
  });
  after(async () => {
    await alice?.evaluate(() => (window as unknown as Sip).vgSip.stop()).catch(() => undefined);
    await chrome?.close();
    await tg?.stop();
  });

  let page: Page;

  test('without a token the console asks for one; a wrong one is refused and said so', async () => {
    page = await chrome.browser.newPage();
    await page.goto(`${tg.url}/console`);
    assert.equal(await page.locator('#login').isVisible(), true);
    await page.fill('#token', 'not-the-admin-token');
    await page.click('#login button');
    await waitFor('the refusal', async () => (await text(page, '#login-error')).includes('not valid'), 5000);
    assert.equal(await consoleState(page, '(s) => s.status'), 'down');
    await page.fill('#token', ADMIN_TOKEN);
    await page.click('#login button');
    await waitFor('the stream', async () => (await consoleState(page, '(s) => s.status')) === 'live', 5000);
    assert.equal(await page.locator('#login').isVisible(), false);
    assert.match(await text(page, '#live tbody'), /No live calls/);
    // The token stays in this tab (sessionStorage), not in the address bar.
    assert.equal(await page.evaluate(() => sessionStorage.getItem('voxgate.adminToken')), ADMIN_TOKEN);
  });

  test('a WHIP call appears at once, with its kind, source, agent and codec', async () => {
    const r = await publishFromPage(caller, `${tg.url}/whip`, { token: SOURCE_TOKEN, trickle: false, direction: 'sendrecv', dataChannel: true });
    assert.equal(r.status, 201);
    sid = r.location!.split('/').pop()!;
    await waitFor('the row', async () => (await page.locator(`#live tr[data-id="${sid}"]`).count()) === 1, 5000);
    await waitFor('connected', async () => (await page.locator(`#live tr[data-id="${sid}"] td.state`).innerText()) === 'connected', 10_000);
    const cells = await page.locator(`#live tr[data-id="${sid}"] td`).allInnerTexts();
    assert.deepEqual(cells.slice(1, 6), ['whip', 'browser-widget', 'echo', 'opus', 'connected']);
  });

  test('its chart fills with quality points, its meters move, a digit reaches its timeline', async () => {
    await page.click(`#live tr[data-id="${sid}"]`);
    assert.equal(await page.locator('#detail').isVisible(), true);
    // The caller presses 5 (RFC 4733 from Chromium's DTMF sender).
    await caller.evaluate(() => (window as unknown as { vgPc: RTCPeerConnection }).vgPc.getSenders()[0]!.dtmf!.insertDTMF('5', 200));
    await waitFor('the digit on the timeline', async () => (await text(page, '#timeline')).includes('digit 5'), 10_000);
    // Quality comes every 5 s: two points make a line.
    await waitFor('two quality points', async () => (await consoleState<number>(page, '(s) => s.chart.data[0].length')) >= 2, 20_000);
    const [t, mos] = await consoleState<number[][]>(page, '(s) => s.chart.data');
    assert.ok(t![1]! > t![0]!, `points in time order: ${t}`);
    assert.ok(mos!.every((m) => m > 3.5 && m <= 4.5), `MOS on loopback: ${mos}`);
    assert.match(await text(page, '#quality-now'), /^MOS \d\.\d\d · loss 0\.0 %/);
    assert.equal(await page.locator('#chart canvas').count(), 1);
    // The caller's 440 Hz tone in, the echo of it out.
    await waitFor('levels', async () => {
      const l = await consoleState<{ in: number; out: number } | undefined>(page, `(s) => s.calls.get('${sid}').levels`);
      return !!l && l.in > -40 && l.out > -40;
    }, 5000);
    const meters = await page.locator(`#live tr[data-id="${sid}"] meter`).evaluateAll((ms) => ms.map((m) => (m as HTMLMeterElement).value));
    assert.ok(meters.every((v) => v > -40), `row meters ${meters}`);
    assert.match(await text(page, '#level-in-text'), /^-\d+ dBFS$/);
    await screenshot(page, '1-live-call');
  });

  test('Listen plays the call in the page over WHEP; the row counts the listener', async () => {
    await page.click('#listen');
    await waitFor('listening', async () => (await text(page, '#listen')) === 'Stop listening', 10_000);
    await waitFor('one listener', async () => (await page.locator(`#live tr[data-id="${sid}"] td`).nth(7).innerText()) === '1', 5000);
    await page.evaluate(() => {
      (window as unknown as { vgRemote: MediaStream }).vgRemote = (document.getElementById('audio') as HTMLAudioElement).srcObject as MediaStream;
    });
    const heard = await analyseRemoteAudio(page);
    assert.ok(Math.abs(heard.peakHz - 440) < 25, `the console hears ${heard.peakHz.toFixed(0)} Hz`);
    assert.ok(heard.peakOverMedianDb > 30, `tone ${heard.peakOverMedianDb.toFixed(1)} dB over the floor`);
    await screenshot(page, '2-listening');
    await page.click('#listen');
    await waitFor('no listener', async () => (await page.locator(`#live tr[data-id="${sid}"] td`).nth(7).innerText()) === '0', 5000);
  });

  test('a transfer to a user who is not registered is refused, and the page says why', async () => {
    await page.fill('#transfer-to', BOB.user);
    await page.click('#transfer');
    await waitFor('the refusal', async () => (await text(page, '#message')).length > 0, 10_000);
    assert.match(await text(page, '#message'), /The transfer to bob failed: 480 /);
    assert.match(await text(page, '#timeline'), /transfer to bob: failed \(480 /);
    assert.equal(tg.gw.calls.get(sid)?.state, 'connected', 'the caller stays with the agent');
  });

  test('a transfer to Alice (registered, JsSIP) connects her; the timeline says so', async () => {
    const users = await page.locator('#users option').evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value));
    assert.ok(users.some((u) => u.includes('alice')), `registered users offered: ${users}`);
    await page.fill('#transfer-to', ALICE.user);
    await page.click('#transfer');
    await waitFor('transferred', async () => (await text(page, '#message')) === 'transferred to alice', 15_000).catch(async (err: Error) => {
      // Where it stopped: the page's message, what Alice's JsSIP saw, what the gateway logged.
      const seen = await alice.evaluate(() => (window as unknown as { vgSip: { state: { events: unknown[] } } }).vgSip.state.events);
      throw new Error(`${err.message}; message ${JSON.stringify(await text(page, '#message'))}; Alice saw ${JSON.stringify(seen)}; gateway: ${JSON.stringify(logged.lines.slice(-15).map((l) => l.msg))}`);
    });
    assert.match(await text(page, '#timeline'), /transfer to alice: connected/);
    await waitFor('the row without the agent', async () => (await page.locator(`#live tr[data-id="${sid}"] td`).nth(3).innerText()) === '–', 5000);
    // The bridged call's chart now carries Alice's side too (her stream's MOS with the caller's next point).
    await waitFor('a point with the callee', async () => (await consoleState<number | null>(page, '(s) => s.calls.get(\'' + sid + '\').series.at(-1).calleeMos ?? null')) !== null, 15_000);
    assert.match(await text(page, '#quality-now'), /· callee MOS \d\.\d\d · loss \d+\.\d %$/);
    const calleeMos = await consoleState<(number | null)[]>(page, '(s) => s.chart.data[6]');
    assert.ok(calleeMos.some((m) => m !== null && m > 3 && m <= 4.5), `callee MOS on the chart: ${calleeMos}`);
  });

  test('Hang up ends the call; it leaves the live table and heads the recent calls with its reason', async () => {
    await page.click('#hangup');
    await waitFor('the row gone', async () => (await page.locator(`#live tr[data-id="${sid}"]`).count()) === 0, 5000);
    const first = page.locator('#recent tbody tr').first();
    assert.equal(await first.getAttribute('data-id'), sid);
    assert.equal(await first.locator('td.reason').innerText(), 'ended by the operator (admin)');
    assert.match(await text(page, '#detail-title'), /ended: ended by the operator \(admin\)/);
    assert.equal(await page.locator('#hangup').isDisabled(), true);
    assert.match(await text(page, '#live tbody'), /No live calls/);
    assert.deepEqual(await consoleState(page, '(s) => s.recent[0].reason'), 'admin');
    // The caller's page was told too.
    await waitFor('the caller told', () => caller.evaluate(() => (window as unknown as { vgMessages: { type?: string; reason?: string }[] }).vgMessages.some((m) => m.type === 'ended' && m.reason === 'admin')), 5000);
    await screenshot(page, '3-ended');
  });

  test('a console opened afterwards starts from the snapshot: the call is in its recent calls', async () => {
    const fresh = await chrome.browser.newPage();
    await fresh.goto(`${tg.url}/console#token=${ADMIN_TOKEN}`);
    await waitFor('the stream', async () => (await consoleState(fresh, '(s) => s.status')) === 'live', 5000);
    assert.equal(new URL(fresh.url()).hash, '', 'the token left the address bar');
    assert.equal(await fresh.locator('#recent tbody tr').first().getAttribute('data-id'), sid);
    await fresh.close();
  });

  test("the demo page opened with #token= (no dev token here) publishes with that source's token", async () => {
    const demo = await chrome.browser.newPage();
    await demo.goto(`${tg.url}/#token=${SOURCE_TOKEN}`);
    await demo.click('#talk');
    await waitFor('the call to connect', () => demo.evaluate(() => (window as unknown as { voxgate: { state: string } }).voxgate.state === 'connected'), 15_000);
    assert.equal(await demo.locator('#tokenrow').isVisible(), false, 'nothing to type');
    const [call] = [...tg.gw.calls.values()];
    assert.equal(call?.source.name, 'browser-widget');
    await demo.click('#hangup');
    await waitFor('the call to end', async () => tg.gw.calls.size === 0);
    await demo.close();
  });
});
