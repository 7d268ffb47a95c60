import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { analyseRemoteAudio, launchChromium, publishFromPage, statsOfType, type TestBrowser } from './helpers/chromium.js';
import { adminSessions, SOURCE_TOKEN, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { toneWav } from './helpers/media.js';

describe('echo agent round trip through Chromium', () => {
  let tg: TestGateway;
  let chrome: TestBrowser;

  before(async () => {
    tg = await startGateway({ sources: [{ name: 'browser-widget', kind: 'browser', token: SOURCE_TOKEN, agent: 'echo' }] });
    chrome = await launchChromium(`${tg.url}/healthz`, toneWav(1000, 10));
  });
  after(async () => {
    await chrome?.close();
    await tg?.stop();
  });

  test('a 1 kHz tone sent sendrecv is heard back at 1 kHz; RTCP flows both ways', async () => {
    const r = await publishFromPage(chrome.page, `${tg.url}/whip`, { token: SOURCE_TOKEN, trickle: false, direction: 'sendrecv', dataChannel: true });
    assert.equal(r.status, 201);
    const id = r.location!.split('/').pop()!;
    const s = await waitFor('the session', async () => (await adminSessions(tg.url)).find((x) => x.id === id));
    assert.match((s as unknown as { pipeline: string }).pipeline, /^RTP -> Jitter\(20-200ms\) -> Opus\(decode@48k, FEC\) -> Agent\(echo@48k\) -> Pacer -> Opus\(encode@48k\) -> RTP$/);

    await waitFor('audio from voxgate', async () => ((await statsOfType(chrome.page, 'inbound-rtp'))[0]?.packetsReceived as number) > 100);
    const heard = await analyseRemoteAudio(chrome.page);
    assert.ok(Math.abs(heard.peakHz - 1000) < 25, `peak at ${heard.peakHz.toFixed(0)} Hz`);
    assert.ok(heard.peakOverMedianDb > 30, `tone stands ${heard.peakOverMedianDb.toFixed(1)} dB over the noise floor`);

    // Our RRs reached Chromium (remote-inbound-rtp), and our SRs too (remote-outbound-rtp).
    await waitFor('Chromium to see our RTCP reports', async () => (await statsOfType(chrome.page, 'remote-inbound-rtp')).length > 0 && (await statsOfType(chrome.page, 'remote-outbound-rtp')).length > 0, 15_000);
    const q = await waitFor('quality figures', async () => (await adminSessions(tg.url)).find((x) => x.id === id && (x as unknown as { quality: unknown }).quality));
    const quality = (q as unknown as { quality: { mos: number; lossPercent: number } }).quality;
    assert.ok(quality.mos > 4, `MOS ${quality.mos}`);
    assert.equal(quality.lossPercent, 0);
  });

  test('a data-channel message that is not JSON gets an error event; the call and its audio go on', async () => {
    const before = ((await statsOfType(chrome.page, 'inbound-rtp'))[0]?.packetsReceived as number) ?? 0;
    await chrome.page.evaluate(() => {
      const dc = (window as unknown as { vgDc: RTCDataChannel }).vgDc;
      dc.send('this is not json {');
      dc.send(JSON.stringify({ hello: 'agent' }));
    });
    const messages = () => chrome.page.evaluate(() => (window as unknown as { vgMessages: { type: string; error?: string; data?: unknown }[] }).vgMessages);
    await waitFor('the error and the echo', async () => {
      const m = await messages();
      return m.some((x) => x.type === 'error') && m.some((x) => x.type === 'echo');
    });
    const m = await messages();
    assert.equal(m.find((x) => x.type === 'error')!.error, 'messages must be JSON');
    assert.deepEqual(m.find((x) => x.type === 'echo')!.data, { hello: 'agent' });
    await waitFor('audio to keep flowing', async () => ((await statsOfType(chrome.page, 'inbound-rtp'))[0]?.packetsReceived as number) > before + 50);
  });
});
