import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { launchChromium, packetsSent, publishFromPage, type TestBrowser } from './helpers/chromium.js';
import { adminSessions, SOURCE_TOKEN, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { speechWav } from './helpers/media.js';

describe('Chromium publishes speech over WHIP', () => {
  let tg: TestGateway;
  let chrome: TestBrowser;

  before(async () => {
    tg = await startGateway();
    const wav = speechWav('three-sentences', 'Hello voxgate. This is the first sentence. And here is the last one.');
    chrome = await launchChromium(`${tg.url}/healthz`, wav);
  });
  after(async () => {
    await chrome?.close();
    await tg?.stop();
  });

  for (const trickle of [false, true]) {
    test(`publish ${trickle ? 'with trickle PATCH' : 'with all candidates in the offer'}: voxgate receives its RTP, DELETE frees the session`, async () => {
      const r = await publishFromPage(chrome.page, `${tg.url}/whip`, { token: SOURCE_TOKEN, trickle });
      assert.equal(r.status, 201);
      assert.match(r.location ?? '', /^http:\/\/127\.0\.0\.1:\d+\/whip\/[A-Za-z0-9_-]{22}$/, 'Location is absolute');
      assert.match(r.etag ?? '', /^"[^"]+"$/, 'strong, quoted ETag');
      assert.equal(r.connectionState, 'connected');
      if (trickle) assert.deepEqual(r.patchStatuses, [204]);

      const id = r.location!.split('/').pop()!;
      const s = await waitFor('50 RTP packets at voxgate', async () => (await adminSessions(tg.url)).find((x) => x.id === id && x.packets >= 50));
      assert.equal(s.state, 'connected');
      assert.equal(s.codec, 'opus');
      assert.equal(s.source, 'browser-widget');
      assert.match(s.remoteAddress ?? '', /^127\.0\.0\.1:\d+$/);
      // What the browser says it sent and what voxgate counted agree on loopback, within what is
      // in flight and how stale Chromium's cached stats may be (±25 packets, half a second).
      const got = (await adminSessions(tg.url)).find((x) => x.id === id)!.packets;
      const sent = await packetsSent(chrome.page);
      assert.ok(Math.abs(sent - got) <= 25, `voxgate counted ${got} of ${sent} sent packets`);

      const del = await fetch(r.location!, { method: 'DELETE', headers: { Authorization: `Bearer ${SOURCE_TOKEN}` } });
      assert.equal(del.status, 200);
      assert.deepEqual(await adminSessions(tg.url), []);
      await chrome.page.evaluate(() => (window as unknown as { vgPc: RTCPeerConnection }).vgPc.close());
    });
  }

  test('the shared UDP port keeps serving new sessions after others were deleted', async () => {
    const r = await publishFromPage(chrome.page, `${tg.url}/whip`, { token: SOURCE_TOKEN, trickle: false });
    assert.equal(r.status, 201);
    const id = r.location!.split('/').pop()!;
    await waitFor('RTP on the same UDP port', async () => (await adminSessions(tg.url)).find((x) => x.id === id && x.packets > 10));
    const metrics = await (await fetch(`${tg.url}/metrics`)).text();
    assert.match(metrics, /voxgate_sessions_ended_total\{reason="deleted"\} 2/);
    assert.match(metrics, /voxgate_sessions_active 1/);
    assert.match(metrics, /voxgate_rtp_packets_received_total [1-9]\d*/);
    assert.match(metrics, /voxgate_session_setup_seconds_count 3/);
  });
});
