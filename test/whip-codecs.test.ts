import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test, type TestContext } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { analyseRemoteAudio, launchChromium, packetsSent, publishFromPage, statsOfType, type PublishOptions, type PublishResult, type TestBrowser } from './helpers/chromium.js';
import { adminSessions, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { toneWav } from './helpers/media.js';

// Three sources, all answered by the echo agent: OBS-like (default codecs, Opus), and one
// limited to each narrow/wideband G.7xx codec, so voxgate must pick it from Chromium's list.
const OBS_TOKEN = 'obs-studio-token-0123456789';
const PCMA_TOKEN = 'pcma-only-token-0123456789';
const G722_TOKEN = 'g722-only-token-0123456789';

/** One m= section of an SDP, as it went over the wire. */
interface MediaSection {
  type: string;
  port: number;
  formats: string[];
  mid: string | undefined;
  direction: string | undefined;
  bundleOnly: boolean;
  /** a=rtpmap lines: payload type -> encoding name/clock rate[/channels]. */
  rtpmaps: Map<string, string>;
}

function sections(sdp: string): MediaSection[] {
  return sdp
    .split(/\r?\n(?=m=)/)
    .slice(1)
    .map((text) => {
      const lines = text.split(/\r?\n/).filter((l) => l !== '');
      const [type, port, , ...formats] = lines[0]!.slice(2).split(' ');
      const value = (name: string) => lines.find((l) => l.startsWith(`a=${name}:`))?.slice(name.length + 3);
      const rtpmaps = new Map<string, string>();
      for (const l of lines) {
        const m = /^a=rtpmap:(\d+) (\S+)/.exec(l);
        if (m) rtpmaps.set(m[1]!, m[2]!);
      }
      return {
        type: type!,
        port: Number(port),
        formats,
        mid: value('mid'),
        direction: lines.find((l) => /^a=(sendrecv|sendonly|recvonly|inactive)$/.test(l))?.slice(2),
        bundleOnly: lines.includes('a=bundle-only'),
        rtpmaps,
      };
    });
}

/** The rtpmaps of a section that are codecs (RFC 4733 telephone-event rides along, it carries no audio). */
function audioCodecs(m: MediaSection): [string, string][] {
  return [...m.rtpmaps].filter(([, name]) => !name.toLowerCase().startsWith('telephone-event/'));
}

/** Chromium's view of which codec a stream uses: the RTCCodecStats its inbound/outbound-rtp entry points to. */
async function codecOfStream(page: Page, type: 'inbound-rtp' | 'outbound-rtp'): Promise<{ mimeType: string; clockRate: number } | undefined> {
  return page.evaluate(async (type) => {
    const pc = (window as unknown as { vgPc: RTCPeerConnection }).vgPc;
    let codecId: string | undefined;
    const codecs = new Map<string, { mimeType: string; clockRate: number }>();
    (await pc.getStats()).forEach((s: { id: string; type: string; kind?: string; codecId?: string; mimeType?: string; clockRate?: number }) => {
      if (s.type === type && s.kind === 'audio') codecId = s.codecId;
      if (s.type === 'codec') codecs.set(s.id, { mimeType: s.mimeType!, clockRate: s.clockRate! });
    });
    return codecId === undefined ? undefined : codecs.get(codecId);
  }, type);
}

async function audioPacketsReceived(page: Page): Promise<number> {
  return (await statsOfType(page, 'inbound-rtp')).filter((s) => s.kind === 'audio').reduce((n, s) => n + ((s.packetsReceived as number) ?? 0), 0);
}

/** A fresh page on `browser` (its fake microphone), closed when the test ends. */
async function openPage(t: TestContext, browser: Browser, url: string): Promise<Page> {
  const page = await browser.newPage();
  t.after(() => page.close());
  // As launchChromium does: tsx's keepNames wraps page functions in a __name() the page lacks.
  await page.addInitScript('window.__name = (fn) => fn;');
  await page.goto(url);
  return page;
}

/** Publishes from `page`; the session is DELETEd when the test ends, if the test did not already. */
async function publish(t: TestContext, page: Page, tg: TestGateway, opts: PublishOptions): Promise<PublishResult & { id: string }> {
  const r = await publishFromPage(page, `${tg.url}/whip`, opts);
  assert.equal(r.status, 201, `POST /whip answered ${r.status}`);
  t.after(() => fetch(r.location!, { method: 'DELETE', headers: { Authorization: `Bearer ${opts.token}` } }).then((res) => res.body?.cancel()));
  return { ...r, id: r.location!.split('/').pop()! };
}

async function deleteSession(tg: TestGateway, r: PublishResult, token: string): Promise<void> {
  const del = await fetch(r.location!, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } });
  assert.equal(del.status, 200);
  assert.deepEqual(await adminSessions(tg.url), [], 'DELETE leaves no session behind');
}

async function heardTone(page: Page, hz: number): Promise<void> {
  await waitFor('100 audio packets from voxgate', async () => (await audioPacketsReceived(page)) > 100);
  const heard = await analyseRemoteAudio(page);
  assert.ok(Math.abs(heard.peakHz - hz) <= 30, `the echo peaks at ${heard.peakHz.toFixed(0)} Hz, not ${hz} Hz`);
  assert.ok(heard.peakOverMedianDb > 30, `the tone stands only ${heard.peakOverMedianDb.toFixed(1)} dB over the spectrum's median`);
}

describe('WHIP codecs and tracks with Chromium as the publisher', () => {
  let tg: TestGateway;
  let tone440: TestBrowser;
  let tone5k: TestBrowser;

  before(async () => {
    tg = await startGateway({
      sources: [
        { name: 'obs', kind: 'obs', token: OBS_TOKEN, agent: 'echo', maxSessions: 5 },
        { name: 'pcma-phone', kind: 'iot', token: PCMA_TOKEN, agent: 'echo', codecs: ['pcma'], maxSessions: 5 },
        { name: 'g722-phone', kind: 'iot', token: G722_TOKEN, agent: 'echo', codecs: ['g722'], maxSessions: 5 },
      ],
    });
    // Two browsers, because a fake microphone plays one file: 440 Hz fits every codec, 5 kHz
    // only a wideband one (narrowband G.711 stops at 4 kHz, G.722 carries up to 7 kHz).
    tone440 = await launchChromium(`${tg.url}/healthz`, toneWav(440, 30));
    tone5k = await launchChromium(`${tg.url}/healthz`, toneWav(5000, 30));
  });
  after(async () => {
    await tone440?.close();
    await tone5k?.close();
    await tg?.stop();
  });

  describe('an audio+video offer, as OBS sends it', () => {
    test('the video m= line is answered inactive, the audio recvonly with one codec; only the audio RTP reaches voxgate; DELETE frees the session', async (t) => {
      // README: "OBS's video track is answered `inactive`; its Opus audio is taken."
      assert.match(readFileSync(new URL('../README.md', import.meta.url), 'utf8'), /OBS's video track is answered `inactive`/);
      const page = await openPage(t, tone440.browser, `${tg.url}/healthz`);
      const r = await publish(t, page, tg, { token: OBS_TOKEN, trickle: false, direction: 'sendonly', video: true });
      assert.equal(r.connectionState, 'connected');

      const offer = sections(r.offerSdp);
      const answer = sections(r.answerSdp);
      assert.deepEqual(offer.map((m) => [m.type, m.mid, m.direction]), [['audio', '0', 'sendonly'], ['video', '1', 'sendonly']], 'Chromium offered one sendonly audio and one sendonly video track');
      assert.match(r.offerSdp, /\r\na=group:BUNDLE 0 1\r\n/);
      // RFC 3264 §6: the answer has exactly the offer's m= lines, in the same order.
      assert.deepEqual(answer.map((m) => [m.type, m.mid]), offer.map((m) => [m.type, m.mid]));

      // RFC 3264 §6: a stream is refused with port 0, or accepted; accepted with a=inactive it
      // carries no media either way. voxgate accepts it inactive, inside the BUNDLE group (RFC 9143).
      const [audio, video] = answer as [MediaSection, MediaSection];
      assert.equal(video.direction, 'inactive', 'the video m= section is answered a=inactive');
      assert.ok(video.port !== 0 || video.bundleOnly, 'an inactive (accepted) bundled section keeps a port or is bundle-only');
      assert.match(r.answerSdp, /\r\na=group:BUNDLE 0 1\r\n/);
      // RFC 3264 §6.1: an accepted stream answers with formats taken from the offer's.
      assert.ok(video.formats.length > 0 && video.formats.every((pt) => offer[1]!.formats.includes(pt)), `video formats ${video.formats.join(' ')} are among the offer's`);

      assert.equal(audio.direction, 'recvonly', 'a sendonly publisher gets a recvonly answer');
      const codecs = audioCodecs(audio);
      assert.equal(codecs.length, 1, `one audio codec in the answer, got ${codecs.map(([pt, n]) => `${pt} ${n}`).join(', ')}`);
      const [pt, name] = codecs[0]!;
      assert.equal(name.toLowerCase(), 'opus/48000/2');
      assert.equal(offer[0]!.rtpmaps.get(pt)?.toLowerCase(), 'opus/48000/2', 'the answer keeps the offer\'s Opus payload type');

      // What Chromium made of the answer: audio flows one way, video not at all.
      const directions = await page.evaluate(() => (window as unknown as { vgPc: RTCPeerConnection }).vgPc.getTransceivers().map((x) => [x.receiver.track.kind, x.currentDirection]));
      assert.deepEqual(directions, [['audio', 'sendonly'], ['video', 'inactive']]);

      const s = await waitFor('50 RTP packets at voxgate', async () => (await adminSessions(tg.url)).find((x) => x.id === r.id && x.packets >= 50));
      assert.equal(s.codec, 'opus');
      assert.equal(s.source, 'obs');
      assert.equal((s as unknown as { direction: string }).direction, 'recvonly');
      await waitFor('the packet count to keep growing', async () => (await adminSessions(tg.url)).find((x) => x.id === r.id && x.packets >= s.packets + 25));

      // No video reached voxgate (and so the agent): Chromium sent no video packet at all, and
      // voxgate's count matches the audio Chromium sent (±25: in flight, stale stats).
      const videoOut = (await statsOfType(page, 'outbound-rtp')).filter((x) => x.kind === 'video');
      assert.ok(videoOut.every((x) => x.packetsSent === 0), `Chromium sent video packets: ${videoOut.map((x) => x.packetsSent).join(', ')}`);
      const got = (await adminSessions(tg.url)).find((x) => x.id === r.id)!.packets;
      const sent = await packetsSent(page);
      assert.ok(Math.abs(sent - got) <= 25, `voxgate counted ${got} packets for ${sent} audio packets sent`);

      await deleteSession(tg, r, OBS_TOKEN);
    });

    test('with video offered too, a sendrecv audio track hears the echo agent play the 440 Hz tone back', async (t) => {
      const page = await openPage(t, tone440.browser, `${tg.url}/healthz`);
      const r = await publish(t, page, tg, { token: OBS_TOKEN, trickle: false, direction: 'sendrecv', video: true });
      const [audio, video] = sections(r.answerSdp) as [MediaSection, MediaSection];
      assert.deepEqual([audio.type, audio.direction, audioCodecs(audio).length], ['audio', 'sendrecv', 1]);
      assert.deepEqual([video.type, video.direction], ['video', 'inactive']);

      await heardTone(page, 440);
      assert.deepEqual((await statsOfType(page, 'inbound-rtp')).filter((x) => x.kind === 'video'), [], 'nothing came back on the video track');
      assert.ok((await statsOfType(page, 'outbound-rtp')).filter((x) => x.kind === 'video').every((x) => x.packetsSent === 0));
      await deleteSession(tg, r, OBS_TOKEN);
    });
  });

  /** Publishes sendrecv to a source limited to one codec and checks the choice on the wire and in both peers' views. */
  async function publishLimitedTo(t: TestContext, browser: Browser, token: string, encoding: 'PCMA' | 'G722'): Promise<{ page: Page; r: PublishResult & { id: string } }> {
    const page = await openPage(t, browser, `${tg.url}/healthz`);
    const r = await publish(t, page, tg, { token, trickle: false, direction: 'sendrecv' });
    const [offered] = sections(r.offerSdp);
    const offeredCodecs = audioCodecs(offered!).map(([, n]) => n.toLowerCase());
    // Chromium's usual list, Opus first: what voxgate answers is its policy, not the offer's order.
    assert.equal(offeredCodecs[0], 'opus/48000/2');
    for (const c of ['g722/8000', 'pcmu/8000', 'pcma/8000']) assert.ok(offeredCodecs.includes(c), `Chromium offers ${c}`);

    const [audio] = sections(r.answerSdp);
    const codecs = audioCodecs(audio!);
    assert.deepEqual(codecs.map(([, n]) => n), [`${encoding}/8000`], 'the answer\'s single codec rtpmap');
    assert.equal(offered!.rtpmaps.get(codecs[0]![0]), `${encoding}/8000`, 'with the payload type Chromium offered for it');
    assert.equal(audio!.direction, 'sendrecv');

    const expected = { mimeType: `audio/${encoding}`, clockRate: 8000 };
    assert.deepEqual(await waitFor('Chromium to report its sending codec', () => codecOfStream(page, 'outbound-rtp')), expected);
    await waitFor('audio from voxgate', async () => (await audioPacketsReceived(page)) > 0);
    assert.deepEqual(await waitFor('Chromium to report its receiving codec', () => codecOfStream(page, 'inbound-rtp')), expected);
    const s = await waitFor('RTP at voxgate', async () => (await adminSessions(tg.url)).find((x) => x.id === r.id && x.packets > 0));
    assert.equal(s.codec, encoding.toLowerCase());
    return { page, r };
  }

  describe('PCMA end to end', () => {
    test('a PCMA-only source picks PCMA/8000 from Chromium\'s full offer, and the echo agent\'s 440 Hz tone comes back over it', async (t) => {
      const { page, r } = await publishLimitedTo(t, tone440.browser, PCMA_TOKEN, 'PCMA');
      await heardTone(page, 440);
      await deleteSession(tg, r, PCMA_TOKEN);
    });

    test('a 5 kHz tone does not come back over narrowband PCMA', async (t) => {
      const { page, r } = await publishLimitedTo(t, tone5k.browser, PCMA_TOKEN, 'PCMA');
      await waitFor('100 audio packets from voxgate', async () => (await audioPacketsReceived(page)) > 100);
      // 8 kHz sampling carries nothing above 4 kHz. (What does come back is Chromium's own alias
      // of the tone near 3 kHz, from its 48 -> 8 kHz capture path, so only the absence is asserted.)
      const heard = await analyseRemoteAudio(page);
      assert.ok(Math.abs(heard.peakHz - 5000) > 100, `a PCMA call returned a peak at ${heard.peakHz.toFixed(0)} Hz`);
      await deleteSession(tg, r, PCMA_TOKEN);
    });
  });

  describe('G.722 end to end', () => {
    test('a G.722-only source picks G722/8000 from Chromium\'s full offer, and the echo agent\'s 440 Hz tone comes back over it', async (t) => {
      const { page, r } = await publishLimitedTo(t, tone440.browser, G722_TOKEN, 'G722');
      await heardTone(page, 440);
      await deleteSession(tg, r, G722_TOKEN);
    });

    test('G.722 is wideband: a 5 kHz tone, beyond narrowband\'s 4 kHz, comes back at 5 kHz', async (t) => {
      const { page, r } = await publishLimitedTo(t, tone5k.browser, G722_TOKEN, 'G722');
      await heardTone(page, 5000);
      await deleteSession(tg, r, G722_TOKEN);
    });
  });
});
