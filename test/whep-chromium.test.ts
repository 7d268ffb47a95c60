import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { analyseRemoteAudio, launchChromium, publishFromPage, type TestBrowser } from './helpers/chromium.js';
import { ADMIN_TOKEN, SOURCE_TOKEN, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { toneWav } from './helpers/media.js';

const LISTENER = 'supervisor-token-0123456789';

describe('Chromium hears a live session over WHEP, on the player page', () => {
  let tg: TestGateway;
  let chrome: TestBrowser;
  let sid: string;

  before(async () => {
    tg = await startGateway({
      sources: [{ name: 'browser-widget', kind: 'browser', token: SOURCE_TOKEN, agent: 'echo' }],
      listeners: [{ name: 'supervisor', token: LISTENER }],
    });
    // The publisher plays a 1 kHz tone; the echo agent sends it back, so every track carries it.
    chrome = await launchChromium(`${tg.url}/healthz`, toneWav(1000, 30));
    const r = await publishFromPage(chrome.page, `${tg.url}/whip`, { token: SOURCE_TOKEN, trickle: false, direction: 'sendrecv' });
    assert.equal(r.status, 201);
    sid = r.location!.split('/').pop()!;
  });
  after(async () => {
    await chrome?.close();
    await tg?.stop();
  });

  for (const track of ['caller', 'agent', 'mix'] as const) {
    test(`track=${track}: the player finds the 1 kHz tone and the server-sent events`, async () => {
      const page = await chrome.browser.newPage();
      await page.addInitScript('window.__name = (fn) => fn;');
      await page.goto(`${tg.url}/player?session=${sid}&track=${track}#token=${LISTENER}`);
      await page.click('#play');
      await waitFor('the player to connect', () => page.evaluate(() => (window as unknown as { voxgatePlayer: { state: string } }).voxgatePlayer.state === 'connected'), 15_000);
      const heard = await analyseRemoteAudio(page);
      assert.ok(Math.abs(heard.peakHz - 1000) < 25, `${track}: peak at ${heard.peakHz.toFixed(0)} Hz`);
      assert.ok(heard.peakOverMedianDb > 30, `${track}: tone ${heard.peakOverMedianDb.toFixed(1)} dB over the floor`);
      const events = await page.evaluate(() => (window as unknown as { voxgatePlayer: { events: { event: string }[] } }).voxgatePlayer.events.map((e) => e.event));
      assert.equal(events[0], 'active');
      assert.ok(events.includes('viewercount'));
      await page.click('#stop');
      await page.close();
    });
  }

  test('after the players stop, the admin view shows the session with no listener left', async () => {
    await waitFor('no listeners left', async () => tg.gw.whep.resources.size === 0);
    const res = await fetch(`${tg.url}/api/sessions`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
    const [s] = ((await res.json()) as { sessions: { id: string; listeners: unknown[] }[] }).sessions;
    assert.equal(s!.id, sid);
    assert.deepEqual(s!.listeners, []);
  });
});
