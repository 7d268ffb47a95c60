import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { launchChromium, statsOfType, type TestBrowser } from './helpers/chromium.js';
import { startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { conversationWav } from './helpers/media.js';

type Ev = { type: string; index?: number; speechMs?: number; text?: string; label?: string; silenceAfterMs?: number; framesBeforeSilence?: number; mos?: number };

describe('the demo page and the demo agent, in Chromium', () => {
  let tg: TestGateway;
  let chrome: TestBrowser;

  before(async () => {
    // No sources configured: the gateway runs on its dev source, as after a plain `npm start`.
    tg = await startGateway({ sources: [] });
    const wav = conversationWav(
      'three-turns',
      ['The weather is lovely today.', 'Please book a table for two at seven.', 'Thank you, that is all for now.'],
      2.5,
      1,
      40,
    );
    chrome = await launchChromium(`${tg.url}/`, wav);
  });
  after(async () => {
    await chrome?.close();
    await tg?.stop();
  });

  test('Talk: the agent greets, detects three turns and answers each; talking over it silences it within one frame', async () => {
    const page = chrome.page;
    await page.click('#talk');
    await waitFor('the call to connect', () => page.evaluate(() => (window as unknown as { voxgate: { state: string } }).voxgate.state === 'connected'), 15_000);
    const events = () => page.evaluate(() => (window as unknown as { voxgate: { events: Ev[] } }).voxgate.events);
    const all = await waitFor('three answered turns', async () => {
      const ev = await events();
      return ev.filter((e) => e.type === 'agent-text' && e.label?.startsWith('reply-')).length >= 3 ? ev : undefined;
    }, 45_000);

    assert.ok(all.some((e) => e.type === 'agent-text' && e.label === 'greeting'), 'the agent greets');
    const turns = all.filter((e) => e.type === 'turn');
    assert.equal(turns.length, 3, `turns: ${JSON.stringify(turns)}`);
    // espeak-ng speaks each sentence in roughly 1.5-3 s.
    for (const t of turns) assert.ok(t.speechMs! > 1000 && t.speechMs! < 4000, `turn ${t.index}: ${t.speechMs} ms of speech`);
    for (const i of [1, 2, 3]) assert.ok(all.some((e) => e.type === 'agent-text' && e.label === `reply-${i}` && /You spoke for \d\.\d seconds/.test(e.text!)), `reply to turn ${i}`);

    // The caller's sentences start while the agent is still talking: barge-in, then silence.
    const barges = all.filter((e) => e.type === 'barge-in');
    assert.ok(barges.length >= 1, 'the caller talked over the agent');
    const cleared = all.filter((e) => e.type === 'cleared');
    assert.ok(cleared.length >= barges.length);
    // Within one frame: the first frame after clear() is silent (the milliseconds are bench:agent's to measure).
    for (const c of cleared) assert.equal(c.framesBeforeSilence, 0, `${c.framesBeforeSilence} frames of agent audio after clear`);

    // The page received the agent's audio: RTP bytes and audible energy.
    const inbound = (await statsOfType(page, 'inbound-rtp'))[0]!;
    assert.ok((inbound.bytesReceived as number) > 10_000, `inbound ${inbound.bytesReceived} bytes`);
    assert.ok((inbound.totalAudioEnergy as number) > 0.01, `audio energy ${inbound.totalAudioEnergy}`);
    await waitFor('a quality report', async () => (await events()).some((e) => e.type === 'quality' && e.mos! > 4), 10_000);

    // The timeline reads as sentences: marks by name, the reply's text without a bare ellipsis.
    const lines = await page.$$eval('#events li', (els) => els.map((e) => e.textContent ?? ''));
    assert.ok(lines.some((l) => /mark “greeting”: played to the end|mark “greeting”: cleared/.test(l)), `a mark line: ${lines.slice(0, 8).join(' | ')}`);
    assert.ok(lines.some((l) => /agent says: “You said: \[your words, played back\] You spoke for \d\.\d seconds\.”/.test(l)), 'a reply line');
    assert.equal(await page.$eval('#quality', (e) => e.scrollWidth <= e.clientWidth + 1), true, 'the quality line fits its box');

    // The console's timeline of the same call: turns, the barge-in, the greeting's mark by name.
    const [watched] = tg.gw.monitor.snapshot();
    const kinds = new Set(watched!.timeline.map((e) => e.event.type));
    for (const type of ['turn-start', 'turn', 'barge-in', 'cleared', 'agent-text', 'mark']) assert.ok(kinds.has(type), `${type} on the console's timeline: ${[...kinds].join(', ')}`);
    assert.ok(watched!.timeline.some((e) => e.event.type === 'mark' && e.event.name === 'greeting'), 'the greeting mark by name');
    assert.equal(watched!.timeline.filter((e) => e.event.type === 'mark' && e.event.name === 'greeting').length, 1, 'once, not once per report');

    await page.click('#hangup');
    await waitFor('the session to end', async () => tg.gw.calls.size === 0);
  });

  test('a call the gateway ends: the page says why and is ready for the next call', async () => {
    const page = chrome.page;
    await page.click('#talk');
    await waitFor('the call to connect', () => page.evaluate(() => (window as unknown as { voxgate: { state: string } }).voxgate.state === 'connected'), 15_000);
    const [call] = [...tg.gw.calls.values()];
    assert.ok(call);
    const del = await fetch(`${tg.url}/api/sessions/${call.id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${tg.gw.adminToken}` } });
    assert.equal(del.status, 200);
    await waitFor('the page to show the reason', async () => /ended: ended by the operator \(admin\)/.test(await page.$eval('#state', (e) => e.textContent ?? '')), 5_000);
    assert.equal(await page.evaluate(() => (window as unknown as { voxgate: { endReason: string } }).voxgate.endReason), 'admin');
    assert.equal(await page.$eval('#talk', (e) => (e as HTMLButtonElement).disabled), false, 'Talk is ready again');
    assert.equal(await page.$eval('#hangup', (e) => (e as HTMLButtonElement).disabled), true);
    const lines = await page.$$eval('#events li', (els) => els.map((e) => e.textContent ?? ''));
    assert.ok(lines.some((l) => l.includes('call ended: ended by the operator (admin)')), 'the timeline says so');
  });
});
