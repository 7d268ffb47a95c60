import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { launchChromium, packetsSent, publishFromPage, type TestBrowser } from './helpers/chromium.js';
import { ADMIN_TOKEN, adminSessions, SOURCE_TOKEN, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import type { Agent } from '../src/agent/agent.js';
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

type PageState = { vgPc: RTCPeerConnection; vgDc: RTCDataChannel; vgMessages: { type: string; reason?: string; n?: number }[] };

describe('a call the gateway ends, seen from Chromium', () => {
  let chrome: TestBrowser;
  // Says two things the moment it is attached, before the caller's data channel can be open.
  const eager: Agent = {
    name: 'eager',
    sampleRate: 16000,
    attach(session) {
      session.send({ type: 'hello', n: 1 });
      session.send({ type: 'hello', n: 2 });
    },
  };
  const gateway = () => startGateway({ sources: [{ name: 'app', kind: 'browser', token: SOURCE_TOKEN, agent: 'eager' }] }, { agents: { eager: () => eager } });

  before(async () => {
    chrome = await launchChromium('about:blank', speechWav('three-sentences', 'Hello voxgate. This is the first sentence. And here is the last one.'));
  });
  after(() => chrome?.close());

  const publish = async (tg: TestGateway) => {
    await chrome.page.goto(`${tg.url}/healthz`);
    const r = await publishFromPage(chrome.page, `${tg.url}/whip`, { token: SOURCE_TOKEN, trickle: false, direction: 'sendrecv', dataChannel: true });
    assert.equal(r.status, 201);
    return r.location!.split('/').pop()!;
  };
  const page = <T>(fn: (w: PageState) => T): Promise<T> => chrome.page.evaluate(`(${fn.toString()})(window)`);

  test('messages sent before the data channel opens are delivered once it does, in order', async (t) => {
    const tg = await gateway();
    t.after(() => tg.stop());
    await publish(tg);
    const hellos = await waitFor('both early messages', async () => {
      const m = await page((w) => w.vgMessages.filter((x) => x.type === 'hello'));
      return m.length === 2 ? m : undefined;
    });
    assert.deepEqual(hellos.map((m) => m.n), [1, 2]);
    await page((w) => w.vgPc.close());
  });

  for (const how of ['admin', 'shutdown'] as const) {
    test(`ended by ${how === 'admin' ? 'the operator (DELETE /api/sessions/:id)' : 'a gateway shutdown'}: the page gets ended {reason}, its data channel closes at once and the gateway lets the peer go`, async (t) => {
      const tg = await gateway();
      t.after(() => tg.stop());
      const id = await publish(tg);
      await waitFor('the data channel open', () => page((w) => w.vgDc.readyState === 'open'));
      if (how === 'admin') assert.equal((await fetch(`${tg.url}/api/sessions/${id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } })).status, 200);
      else await tg.gw.stop();
      const ended = await waitFor('the ended message', async () => (await page((w) => w.vgMessages)).find((m) => m.type === 'ended'), 5_000);
      assert.equal(ended.reason, how);
      // The gateway closed the data channel at once (its reset follows the ended notice)...
      await waitFor('the data channel to close', () => page((w) => w.vgDc.readyState === 'closed'), 2_000);
      // ...and then its peer: nothing answers the browser's consent checks any more (RFC 7675),
      // so the browser's ICE leaves 'connected' (libdatachannel 0.24's DTLS close_notify does not
      // reach the browser, so the browser itself sees no 'closed' before its consent runs out).
      await waitFor('the browser to see the peer gone', async () => {
        const s = await page((w) => w.vgPc.iceConnectionState);
        return s === 'disconnected' || s === 'failed' || s === 'closed';
      }, 15_000);
      assert.equal(tg.gw.calls.size, 0);
    });
  }
});
