/**
 * Listen to any call: WHEP (draft-ietf-wish-whep) on a SIP call. A JsSIP caller in Chromium
 * (fake microphone: 440 Hz) talks with an in-process agent that plays 660 Hz; three WHEP
 * listeners hear the caller, the agent and both mixed, and are told when the caller hangs up.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import type { Agent, AgentSession } from '../src/agent/agent.js';
import { toneShare } from '../src/audio/test-signals.js';
import { launchChromium, type TestBrowser } from './helpers/chromium.js';
import { ADMIN_TOKEN, adminSessions, startGateway, waitFor, within, type TestGateway } from './helpers/gateway.js';
import { decodeOpusStream, toneWav } from './helpers/media.js';
import { listenConnected, readSse, type NdcListener } from './helpers/ndc-publisher.js';
import { offerSdp } from './helpers/offers.js';
import { pageEvents, preparePage } from './helpers/sip-browser.js';

const DOMAIN = 'voxgate.test';
const USER = { user: 'alice', password: 'alice-secret' };
const SUPERVISOR = 'supervisor-token-0123456789';
const QA = 'qa-listener-token-0123456789';
const CALLER_HZ = 440;
const AGENT_HZ = 660;
const AGENT_RATE = 16000;

type Sip = {
  vgSip: {
    jssip(ws: string, u: string, p: string, d: string, auto: boolean): Promise<{ ok: boolean; cause?: string; status?: number }>;
    jssipCall(target: string): Promise<{ ok: boolean; cause?: string; status?: number }>;
    hangup(): void;
    stop(): Promise<void> | void;
  };
};

type ListedSession = {
  id: string;
  source: string;
  kind: string;
  state: string;
  codec: string;
  sipCallId: string | null;
  listeners: { id: string; name: string; track: string; codec: string; forwarded: boolean; packetsSent: number }[];
};

/** 3 s of the agent's tone: a whole number of cycles, so chunks queued back to back stay in phase. */
function agentChunk(): Int16Array {
  const out = new Int16Array(3 * AGENT_RATE);
  for (let i = 0; i < out.length; i++) out[i] = Math.round(8000 * Math.sin((2 * Math.PI * AGENT_HZ * i) / AGENT_RATE));
  return out;
}



/** How much of a signal the caller's and the agent's tones are. */
const toneShares = (pcm: Int16Array, rate: number) => ({ caller: toneShare(pcm, CALLER_HZ, rate), agent: toneShare(pcm, AGENT_HZ, rate) });

const pct = (share: number) => `${(share * 100).toPrecision(3)} %`;

function rtpHeaders(received: Buffer[]): { ssrc: number; seq: number; ts: number }[] {
  return received.map((b) => ({ ssrc: b.readUInt32BE(8), seq: b.readUInt16BE(2), ts: b.readUInt32BE(4) }));
}


async function listed(url: string, id: string): Promise<ListedSession | undefined> {
  return (await adminSessions(url)).find((s) => s.id === id) as unknown as ListedSession | undefined;
}

describe('Listen to any call: WHEP on a JsSIP call to an agent', () => {
  let tg: TestGateway;
  let chrome: TestBrowser;
  let page: Page;
  let sid: string;
  /** The probe agent's session and the caller frames it heard. */
  const probe: { session?: AgentSession; frames: Int16Array[]; ended?: string } = { frames: [] };
  const listeners: { track: 'caller' | 'agent' | 'mix'; name: string; token: string; l?: NdcListener; sse?: ReturnType<typeof readSse> }[] = [
    { track: 'caller', name: 'supervisor', token: SUPERVISOR },
    { track: 'agent', name: 'qa', token: QA },
    { track: 'mix', name: 'admin', token: ADMIN_TOKEN },
  ];
  const byTrack = (track: string) => listeners.find((x) => x.track === track)!;

  before(async () => {
    const agent: Agent = {
      name: 'probe',
      sampleRate: AGENT_RATE,
      attach(session) {
        probe.session = session;
        session.on('frame', (f) => probe.frames.push(Int16Array.from(f.samples)));
        session.on('ended', (r) => (probe.ended = r));
        const chunk = agentChunk();
        // Always one chunk queued behind the one playing: a continuous tone.
        const feed = () => {
          session.play(chunk);
          void session.mark('chunk').then((r) => r === 'played' && !session.ended && feed());
        };
        feed();
        feed();
      },
    };
    tg = await startGateway(
      {
        sip: { domain: DOMAIN, users: [USER], agents: { probe: 'probe' } },
        listeners: [
          { name: 'supervisor', token: SUPERVISOR },
          { name: 'qa', token: QA, sources: [`sip:${USER.user}`] },
        ],
      },
      { agents: { probe: () => agent } },
    );
    chrome = await launchChromium(`${tg.url}/healthz`, toneWav(CALLER_HZ, 30));
    page = await chrome.browser.newPage();
    await page.addInitScript('window.__name = (fn) => fn;');
    await page.goto(`${tg.url}/`);
    await preparePage(page);
    const ws = `${tg.url.replace('http', 'ws')}/sip`;
    const reg = await page.evaluate(({ ws, u, p, d }) => (window as unknown as Sip).vgSip.jssip(ws, u, p, d, false), { ws, u: USER.user, p: USER.password, d: DOMAIN });
    assert.deepEqual(reg, { ok: true });
    const call = await page.evaluate((d) => (window as unknown as Sip).vgSip.jssipCall(`sip:probe@${d}`), DOMAIN);
    assert.deepEqual(call, { ok: true });
    const session = await waitFor('the probe agent to be attached', () => probe.session);
    sid = session.callId;
    await waitFor('the SIP call to be connected', async () => (await listed(tg.url, sid))?.state === 'connected', 15_000);

    for (const x of listeners) {
      x.l = await listenConnected(`${tg.url}/whep/${sid}?track=${x.track}`, x.token);
    }
    // Opened once all three listen, so each stream starts with viewercount 3.
    for (const x of listeners) x.sse = readSse(`${x.l!.location}/events`, x.token);
  });

  after(async () => {
    for (const x of listeners) {
      x.sse?.abort();
      x.l?.close();
    }
    if (page) await page.evaluate(() => (window as unknown as Sip).vgSip.stop()).catch(() => undefined);
    await chrome?.close();
    await tg?.stop();
  });

  test('/api/sessions lists the SIP call: source sip:alice, kind sip-ws, connected, Opus, with the Call-ID of JsSIP\'s dialog', async () => {
    const s = (await listed(tg.url, sid))!;
    assert.equal(s.source, `sip:${USER.user}`);
    assert.equal(s.kind, 'sip-ws');
    assert.equal(s.state, 'connected');
    assert.equal(s.codec, 'opus');
    // JsSIP names its RTCSession by the dialog's Call-ID followed by its From tag.
    const jssipId = await page.evaluate(() => (window as unknown as { vgSip: { state: { session: { id: string } } } }).vgSip.state.session.id);
    assert.ok(s.sipCallId && jssipId.startsWith(s.sipCallId), `sipCallId ${s.sipCallId}, JsSIP session ${jssipId}`);
  });

  test('each listener got a 201 with a sendonly Opus answer, a Location under the SIP session and the server-sent-events Link', () => {
    for (const x of listeners) {
      const l = x.l!;
      assert.equal(l.status, 201);
      assert.match(l.location!, new RegExp(`^${tg.url}/whep/${sid}/[A-Za-z0-9_-]{22}$`));
      assert.match(l.answer, /\r\na=sendonly\r\n/);
      assert.match(l.answer, /\r\na=rtpmap:111 opus\/48000\/2\r\n/);
      assert.match(l.headers.get('link')!, new RegExp(`<${l.location}/events>; rel="urn:ietf:params:whep:ext:core:server-sent-events"`));
    }
  });

  test('track=caller carries the caller\'s 440 Hz, forwarded as one continuous stream of our own', async () => {
    const l = byTrack('caller').l!;
    await waitFor('2 s of caller audio', () => l.received.length > 120, 15_000);
    const shares = toneShares(decodeOpusStream(l.received.slice(-100)), 48000);
    assert.ok(shares.caller > 0.9, `caller track: ${pct(shares.caller)} of its energy at ${CALLER_HZ} Hz`);
    assert.ok(shares.agent < 1e-3, `caller track: ${pct(shares.agent)} at ${AGENT_HZ} Hz`);
    const h = rtpHeaders(l.received.slice(-50));
    assert.equal(new Set(h.map((p) => p.ssrc)).size, 1);
    for (let i = 1; i < h.length; i++) assert.equal(h[i]!.seq, (h[i - 1]!.seq + 1) & 0xffff, 'consecutive sequence numbers');
  });

  test('track=agent carries the agent\'s 660 Hz and nothing of the caller', async () => {
    const l = byTrack('agent').l!;
    await waitFor('2 s of agent audio', () => l.received.length > 120, 15_000);
    const shares = toneShares(decodeOpusStream(l.received.slice(-100)), 48000);
    assert.ok(shares.agent > 0.9, `agent track: ${pct(shares.agent)} of its energy at ${AGENT_HZ} Hz`);
    assert.ok(shares.caller < 1e-3, `agent track: ${pct(shares.caller)} at ${CALLER_HZ} Hz`);
    const h = rtpHeaders(l.received.slice(-50));
    assert.equal(new Set(h.map((p) => p.ssrc)).size, 1);
    for (let i = 1; i < h.length; i++) assert.equal((h[i]!.ts - h[i - 1]!.ts) >>> 0, 960, '20 ms per packet');
  });

  test('track=mix carries both tones, and little else', async () => {
    const l = byTrack('mix').l!;
    await waitFor('2 s of mixed audio', () => l.received.length > 120, 15_000);
    const shares = toneShares(decodeOpusStream(l.received.slice(-100)), 48000);
    const both = `${pct(shares.caller)} at ${CALLER_HZ} Hz, ${pct(shares.agent)} at ${AGENT_HZ} Hz`;
    // Each tone is at least 1 % of the mix (the single tracks carry under 0.1 % of the other),
    // and together they are nearly all of it.
    assert.ok(shares.caller > 0.01 && shares.agent > 0.01, `mix track: ${both}`);
    assert.ok(shares.caller + shares.agent > 0.9, `mix track: ${both}`);
  });

  test('the agent hears the caller\'s 440 Hz (the call itself is unchanged by its listeners)', async () => {
    await waitFor('2 s of caller frames at the agent', () => probe.frames.length > 100, 15_000);
    const pcm = Int16Array.from(probe.frames.slice(-50).flatMap((f) => [...f]));
    assert.equal(pcm.length, AGENT_RATE, '20 ms frames at the agent\'s rate');
    const shares = toneShares(pcm, AGENT_RATE);
    assert.ok(shares.caller > 0.9, `the agent hears ${pct(shares.caller)} at ${CALLER_HZ} Hz`);
    assert.ok(shares.agent < 1e-3, `the agent hears ${pct(shares.agent)} of itself`);
  });

  test('/api/sessions lists the three listeners with names, tracks, codecs; only the caller track is forwarded; packetsSent grows', async () => {
    const first = (await listed(tg.url, sid))!;
    const rows = (s: ListedSession) => s.listeners.map((x) => [x.id, x.name, x.track, x.codec, x.forwarded]).sort();
    const expected = listeners.map((x) => [x.l!.location!.split('/').pop()!, x.name, x.track, 'opus', x.track === 'caller']).sort();
    assert.deepEqual(rows(first), expected);
    const later = await waitFor('packetsSent to grow on every listener', async () => {
      const s = (await listed(tg.url, sid))!;
      return s.listeners.every((x) => x.packetsSent > first.listeners.find((y) => y.id === x.id)!.packetsSent) ? s : undefined;
    });
    assert.deepEqual(rows(later), expected);
    // What the gateway counts as sent is what the listeners received, give or take the packets in flight.
    for (const x of later.listeners) {
      const l = listeners.find((y) => y.l!.location!.endsWith(x.id))!.l!;
      assert.ok(x.packetsSent >= l.received.length - 5, `${x.track}: sent ${x.packetsSent}, received ${l.received.length}`);
    }
  });

  test('server-sent events on the SIP call: each listener\'s stream opens with active and viewercount 3', async () => {
    for (const x of listeners) {
      const sse = x.sse!;
      await waitFor(`${x.track}: active and viewercount`, () => sse.events.length >= 2);
      assert.equal(sse.events[0]!.event, 'active');
      assert.deepEqual(sse.events[1], { event: 'viewercount', data: { viewercount: 3 } });
    }
  });

  test('the caller hangs up (BYE): listeners get inactive and are freed; the ended id and an id never seen answer 404', async () => {
    await page.evaluate(() => (window as unknown as Sip).vgSip.hangup());
    await waitFor('JsSIP to see its call end', async () => (await pageEvents(page)).some((e) => e.type === 'out:ended'));
    await within(Promise.all(listeners.map((x) => x.sse!.done)), 10_000, 'the event streams to end');
    for (const x of listeners) {
      assert.equal(x.sse!.events.at(-1)!.event, 'inactive', `${x.track}: the stream ends with inactive`);
    }
    await waitFor('the agent to see the hang-up', () => probe.ended);
    const ended = readFileSync(tg.auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.action === 'session.ended' && e.session === sid);
    assert.deepEqual(ended.map((e) => e.reason), ['bye']);

    for (const x of listeners) {
      assert.equal((await fetch(x.l!.location!, { headers: { Authorization: `Bearer ${x.token}` } })).status, 404, `${x.track}: GET on its Location`);
      assert.equal((await fetch(x.l!.location!, { method: 'DELETE', headers: { Authorization: `Bearer ${x.token}` } })).status, 404, `${x.track}: DELETE on its Location`);
    }
    assert.equal(await listed(tg.url, sid), undefined, 'the call is gone from /api/sessions');

    const offer = offerSdp({ codecs: [[111, 'opus/48000/2']] }).replace('a=sendonly', 'a=recvonly');
    const post = (id: string) => fetch(`${tg.url}/whep/${id}?track=mix`, { method: 'POST', headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${SUPERVISOR}` }, body: offer });
    const again = await post(sid);
    assert.equal(again.status, 404, 'a new listener of the ended SIP call');
    assert.equal(((await again.json()) as { code: string }).code, 'VG_SESSION_NOT_FOUND');
    const unknown = await post(randomBytes(16).toString('base64url'));
    assert.equal(unknown.status, 404, 'a session id never seen');
    assert.equal(unknown.headers.get('retry-after'), null);
  });
});
