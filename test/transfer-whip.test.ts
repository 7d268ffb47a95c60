/**
 * A WHIP caller reaches a human: the agent's transfer('sip:alice@…') on a call from a WHIP
 * publisher (no SIP on the caller's side) makes voxgate call Alice's registered JsSIP browser
 * as a UAC and, once she answers, bridge the caller's leg to hers; the agent leaves. Two
 * Chromium instances with different fake microphones: the caller's plays 440 Hz, Alice's
 * 660 Hz; the in-process probe agent plays 550 Hz when told to.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test, type TestContext } from 'node:test';
import type { Page } from 'playwright-core';
import { TransferError, type Agent, type AgentSession } from '../src/agent/agent.js';
import { toneShare } from '../src/audio/test-signals.js';
import { analyseRemoteAudio, launchChromium, publishFromPage, type TestBrowser } from './helpers/chromium.js';
import { ADMIN_TOKEN, adminSessions, startGateway, waitFor, within, type TestGateway } from './helpers/gateway.js';
import { decodeOpusStream, toneWav } from './helpers/media.js';
import { listenConnected, type NdcListener } from './helpers/ndc-publisher.js';
import { pageEvents, preparePage, type SipPageEvent } from './helpers/sip-browser.js';

const DOMAIN = 'voxgate.test';
const ALICE = { user: 'alice', password: 'alice-secret' };
/** Configured, never registered. */
const BOB = { user: 'bob', password: 'bob-secret' };
const CALLER_TOKEN = 'whip-caller-token-0123456789';
const CALLER_HZ = 440;
const ALICE_HZ = 660;
const AGENT_HZ = 550;
const AGENT_RATE = 16000;

type Sip = {
  vgSip: {
    jssip(ws: string, u: string, p: string, d: string, auto: boolean): Promise<{ ok: boolean; cause?: string; status?: number }>;
    incoming(policy: 'answer' | 'ring' | number): void;
    stop(): Promise<void> | void;
    state: { session?: { connection?: RTCPeerConnection } };
  };
};

type ListedSession = {
  id: string;
  source: string;
  state: string;
  codec: string | null;
  mode: string;
  pipeline: string | null;
  legs: { role: string; kind: string; codec: string | null }[];
  listeners: { id: string; track: string; packetsSent: number }[];
};

/** What the probe agent saw of one session, in order. */
type Probe = { session: AgentSession; events: string[]; transferredTo?: string; ended?: string; loudFrames: number };

/** `seconds` of the agent's tone at its rate (a whole number of cycles per 100 ms). */
function agentTone(seconds: number): Int16Array {
  const out = new Int16Array(Math.round(seconds * AGENT_RATE));
  for (let i = 0; i < out.length; i++) out[i] = Math.round(8000 * Math.sin((2 * Math.PI * AGENT_HZ * i) / AGENT_RATE));
  return out;
}



/** How much of a signal each party's tone is. */
const toneShares = (pcm: Int16Array, rate: number) => ({ caller: toneShare(pcm, CALLER_HZ, rate), alice: toneShare(pcm, ALICE_HZ, rate), agent: toneShare(pcm, AGENT_HZ, rate) });

const shown = (s: Record<string, number>) => Object.entries(s).map(([k, v]) => `${k} ${(v * 100).toPrecision(3)} %`).join(', ');


/** Resolves with the TransferError `p` rejects with; fails if it resolves or rejects otherwise. */
async function transferError(p: Promise<void>, what: string): Promise<TransferError> {
  try {
    await within(p, 15_000, what);
  } catch (err) {
    assert.ok(err instanceof TransferError, `${what}: rejected with ${String(err)}, not a TransferError`);
    return err;
  }
  assert.fail(`${what}: the transfer resolved`);
}

/** The page hears a tone within 30 Hz of `hz`, well above the rest of its spectrum. */
async function hears(page: Page, hz: number, what: string): Promise<{ peakHz: number; peakOverMedianDb: number }> {
  return waitFor(
    what,
    async () => {
      const a = await analyseRemoteAudio(page, 800);
      return Math.abs(a.peakHz - hz) < 30 && a.peakOverMedianDb > 20 ? a : undefined;
    },
    15_000,
  );
}

describe('A WHIP caller reaches a human: transfer() bridges it to a registered JsSIP browser', () => {
  let tg: TestGateway;
  let callerChrome: TestBrowser;
  let aliceChrome: TestBrowser;
  let alice: Page;
  const probes: Probe[] = [];

  before(async () => {
    const agent: Agent = {
      name: 'probe',
      sampleRate: AGENT_RATE,
      attach(session) {
        const p: Probe = { session, events: [], loudFrames: 0 };
        probes.push(p);
        session.on('transferred', (to) => {
          p.events.push(`transferred ${to}`);
          p.transferredTo = to;
        });
        session.on('ended', (r) => {
          p.events.push(`ended ${r}`);
          p.ended = r;
        });
        // Frames with the caller's tone in them (its fake microphone plays 440 Hz).
        session.on('frame', (f) => {
          let sum = 0;
          for (const x of f.samples) sum += x * x;
          if (Math.sqrt(sum / f.samples.length) > 500) p.loudFrames++;
        });
      },
    };
    tg = await startGateway(
      {
        sources: [{ name: 'web-caller', kind: 'browser', token: CALLER_TOKEN, agent: 'probe', maxSessions: 5 }],
        sip: { domain: DOMAIN, users: [ALICE, BOB] },
      },
      { agents: { probe: () => agent } },
    );
    [callerChrome, aliceChrome] = await Promise.all([launchChromium(`${tg.url}/healthz`, toneWav(CALLER_HZ, 30)), launchChromium(`${tg.url}/healthz`, toneWav(ALICE_HZ, 30))]);
    alice = await aliceChrome.browser.newPage();
    await alice.addInitScript('window.__name = (fn) => fn;');
    await alice.goto(`${tg.url}/`);
    await preparePage(alice);
    const ws = `${tg.url.replace('http', 'ws')}/sip`;
    const reg = await alice.evaluate(({ ws, u, p, d }) => (window as unknown as Sip).vgSip.jssip(ws, u, p, d, true), { ws, u: ALICE.user, p: ALICE.password, d: DOMAIN });
    assert.deepEqual(reg, { ok: true });
  });

  after(async () => {
    if (alice) await alice.evaluate(() => (window as unknown as Sip).vgSip.stop()).catch(() => undefined);
    await callerChrome?.close();
    await aliceChrome?.close();
    await tg?.stop();
  });

  function audit(action: string, session: string): Record<string, unknown>[] {
    return readFileSync(tg.auditPath, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((e) => e.action === action && e.session === session);
  }

  async function listed(id: string): Promise<ListedSession | undefined> {
    return (await adminSessions(tg.url)).find((s) => s.id === id) as unknown as ListedSession | undefined;
  }

  /** The roles of the call's parties (listeners are legs too; they are left out). */
  const parties = (s: ListedSession) => s.legs.map((l) => l.role).filter((r) => !r.startsWith('listener:')).sort();

  const aliceEvents = (): Promise<SipPageEvent[]> => pageEvents(alice);

  /**
   * A fresh page in the caller's browser publishes sendrecv to WHIP and gets the probe agent;
   * the page (and its session, if the test has not ended it) goes when the test ends.
   */
  async function whipCaller(t: TestContext): Promise<{ page: Page; location: string; probe: Probe }> {
    const page = await callerChrome.browser.newPage();
    await page.addInitScript('window.__name = (fn) => fn;');
    await page.goto(`${tg.url}/healthz`);
    const had = probes.length;
    const r = await publishFromPage(page, `${tg.url}/whip`, { token: CALLER_TOKEN, trickle: false, direction: 'sendrecv' });
    assert.equal(r.status, 201);
    assert.equal(r.connectionState, 'connected');
    const location = r.location!;
    t.after(async () => {
      await fetch(location, { method: 'DELETE', headers: { Authorization: `Bearer ${CALLER_TOKEN}` } }).catch(() => undefined);
      await page.close();
    });
    const probe = await waitFor('the probe agent to be attached', () => probes[had]);
    assert.ok(location.endsWith(`/whip/${probe.session.callId}`), `Location ${location} names the session ${probe.session.callId}`);
    // The agent hears the caller before anything is transferred.
    await waitFor('the caller heard by the agent', () => probe.loudFrames > 10, 15_000);
    return { page, location, probe };
  }

  /** A recvonly WHEP listener on the call (admin token), closed when the test ends. */
  async function listen(t: TestContext, id: string, track: 'mix' | 'agent' | 'caller'): Promise<NdcListener> {
    const l = await listenConnected(`${tg.url}/whep/${id}?track=${track}`, ADMIN_TOKEN);
    t.after(() => l.close());
    return l;
  }

  test('Alice answers: the caller is bridged to her (forwarded Opus), the agent leaves with transferred, both hear each other and the WHEP listeners hear the call; DELETE sends Alice a BYE', async (t) => {
    await alice.evaluate(() => (window as unknown as Sip).vgSip.incoming('answer'));
    const { page, location, probe } = await whipCaller(t);
    const id = probe.session.callId;
    const mix = await listen(t, id, 'mix');
    const other = await listen(t, id, 'agent');

    // Before: the caller talks with the agent, and hears it.
    const before = (await listed(id))!;
    assert.deepEqual(parties(before), ['agent', 'caller']);
    assert.equal(before.mode, 'agent');
    // 5 s of tone: it is still playing when the transfer is made.
    const atPlay = other.received.length;
    probe.session.play(agentTone(5));
    await hears(page, AGENT_HZ, 'the agent\'s 550 Hz at the WHIP page');
    // The listener's other-party track is the agent's tone (still playing when the transfer starts).
    await waitFor('1.5 s of the agent track on the listener', () => other.received.length > atPlay + 75, 10_000);
    const agentBefore = toneShares(decodeOpusStream(other.received.slice(atPlay + 25, atPlay + 75)), 48000);
    t.diagnostic(`the other party's track before: ${shown(agentBefore)}`);
    assert.ok(agentBefore.agent > 0.9, `the other party's track before the transfer: ${shown(agentBefore)}`);

    const target = `sip:alice@${DOMAIN}`;
    const seen = (await aliceEvents()).length;
    await within(probe.session.transfer(target), 20_000, 'the transfer to resolve');
    const atTransfer = { mix: mix.received.length, other: other.received.length };

    // Alice's JsSIP was called by voxgate as the agent, and the call is confirmed (our ACK).
    const incoming = (await aliceEvents()).slice(seen).find((e) => e.type === 'incoming');
    assert.equal(incoming?.from, `sip:agent@${DOMAIN}`);
    await waitFor('Alice\'s call to be confirmed', async () => (await aliceEvents()).slice(seen).some((e) => e.type === 'in:confirmed'));
    // voxgate offered her the caller's codec (Opus) and its telephone-event first, then what it can transcode to.
    const offer = await alice.evaluate(() => (window as unknown as Sip).vgSip.state.session!.connection!.remoteDescription!.sdp);
    const pts = /^m=audio \d+ [A-Z/]+ ([\d ]+)$/m.exec(offer)?.[1]!.trim().split(' ') ?? [];
    const codecs = pts.map((pt) => new RegExp(`^a=rtpmap:${pt} (\\S+)$`, 'm').exec(offer)?.[1]);
    assert.deepEqual(codecs, ['opus/48000/2', 'telephone-event/48000', 'G722/8000', 'telephone-event/8000', 'PCMU/8000', 'PCMA/8000'], `the INVITE's offer:\n${offer}`);
    // Her browser took the first: the legs are forwarded (checked in /api/sessions below).

    // The agent was told, then its session ended; transfer() resolved after both.
    assert.deepEqual(probe.events, [`transferred ${target}`, 'ended transferred']);

    const now = (await listed(id))!;
    assert.equal(now.id, id);
    assert.deepEqual(parties(now), ['callee', 'caller']);
    assert.equal(now.mode, 'forward');
    assert.equal(now.state, 'connected');
    assert.equal(now.legs.find((l) => l.role === 'callee')!.codec, 'opus');
    assert.match(now.pipeline ?? '', /^caller RTP -> forwarded \(opus\) -> RTP callee; callee RTP -> forwarded -> RTP caller$/);
    assert.equal(now.listeners.length, 2, 'both listeners stay on the call');

    // Both ways, as tones: the caller hears Alice's 660 Hz, Alice hears the caller's 440 Hz.
    const atCaller = await hears(page, ALICE_HZ, 'Alice\'s 660 Hz at the WHIP page');
    const atAlice = await hears(alice, CALLER_HZ, 'the caller\'s 440 Hz at Alice\'s page');
    t.diagnostic(`the WHIP page hears ${atCaller.peakHz.toFixed(0)} Hz (${atCaller.peakOverMedianDb.toFixed(0)} dB over the median), Alice ${atAlice.peakHz.toFixed(0)} Hz (${atAlice.peakOverMedianDb.toFixed(0)} dB)`);

    // The listeners kept receiving; from 1 s to 3 s after the transfer, the mix carries both
    // people and nothing of the agent (its tone would still be playing), and the other party's
    // track is Alice alone.
    await waitFor('3 s of listener packets after the transfer', () => mix.received.length > atTransfer.mix + 150 && other.received.length > atTransfer.other + 150, 15_000);
    const mixed = toneShares(decodeOpusStream(mix.received.slice(atTransfer.mix + 50, atTransfer.mix + 150)), 48000);
    assert.ok(mixed.caller > 0.01 && mixed.alice > 0.01, `mix: ${shown(mixed)}`);
    assert.ok(mixed.caller + mixed.alice > 0.9, `mix: ${shown(mixed)}`);
    assert.ok(mixed.agent < 1e-3, `mix: ${shown(mixed)}`);
    const heard = toneShares(decodeOpusStream(other.received.slice(atTransfer.other + 50, atTransfer.other + 150)), 48000);
    t.diagnostic(`after the transfer: mix ${shown(mixed)}; the other party's track ${shown(heard)}`);
    assert.ok(heard.alice > 0.9, `the other party's track: ${shown(heard)}`);
    assert.ok(heard.caller < 1e-3 && heard.agent < 1e-3, `the other party's track: ${shown(heard)}`);

    const ok = audit('sip.transfer', id);
    assert.equal(ok.length, 1);
    assert.equal(ok[0]!.outcome, 'ok');
    assert.equal(ok[0]!.target, target);
    assert.equal(ok[0]!.status, 200);
    assert.equal(ok[0]!.mode, 'forward');

    // The WHIP caller hangs up: voxgate sends Alice the BYE, and the call is gone.
    const del = await page.evaluate(async ({ location, token }) => (await fetch(location, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } })).status, { location, token: CALLER_TOKEN });
    assert.equal(del, 200);
    const ended = await waitFor('Alice\'s call to end', async () => (await aliceEvents()).slice(seen).find((e) => e.type === 'in:ended'));
    assert.equal(ended.originator, 'remote', 'ended by voxgate\'s BYE');
    assert.equal(ended.cause, 'Terminated');
    assert.equal(await listed(id), undefined);
    assert.deepEqual(audit('session.ended', id).map((e) => e.reason), ['deleted']);
    assert.equal(tg.gw.calls.size, 0);
  });

  for (const status of [486, 603]) {
    test(`Alice refuses with ${status}: transfer() rejects with a TransferError ${status}, the caller stays with the agent and hears it`, async (t) => {
      await alice.evaluate((s) => (window as unknown as Sip).vgSip.incoming(s), status);
      const { page, probe } = await whipCaller(t);
      const id = probe.session.callId;
      const target = `sip:alice@${DOMAIN}`;
      const seen = (await aliceEvents()).length;

      const err = await transferError(probe.session.transfer(target), 'the refused transfer');
      assert.equal(err.status, status);

      // It rang in Alice's page, and her JsSIP refused it.
      const events = (await aliceEvents()).slice(seen);
      assert.equal(events.find((e) => e.type === 'incoming')?.from, `sip:agent@${DOMAIN}`);
      assert.ok(events.some((e) => e.type === 'in:failed' && e.originator === 'local' && e.cause === 'Rejected'), JSON.stringify(events));

      // The caller keeps the agent: the agent still hears the caller, and the caller hears the agent.
      assert.deepEqual(probe.events, []);
      assert.equal(probe.session.ended, false);
      const loud = probe.loudFrames;
      await waitFor('the caller still heard by the agent', () => probe.loudFrames > loud + 10, 10_000);
      probe.session.play(agentTone(3));
      await hears(page, AGENT_HZ, 'the agent\'s 550 Hz at the WHIP page after the refusal');

      const s = (await listed(id))!;
      assert.deepEqual(parties(s), ['agent', 'caller']);
      assert.equal(s.mode, 'agent');
      assert.equal(s.state, 'connected');
      const failed = audit('sip.transfer', id);
      assert.equal(failed.length, 1);
      assert.equal(failed[0]!.outcome, 'error');
      assert.equal(failed[0]!.status, status);
      assert.equal(failed[0]!.target, target);
      assert.equal(tg.gw.calls.size, 1, 'nothing of the refused call is left in the call table');
    });
  }

  test('an unregistered user: transfer(\'sip:bob@…\') rejects with 480 without ringing anyone, and the caller keeps the agent', async (t) => {
    await alice.evaluate(() => (window as unknown as Sip).vgSip.incoming('answer'));
    const { page, probe } = await whipCaller(t);
    const id = probe.session.callId;
    const seen = (await aliceEvents()).length;

    const err = await transferError(probe.session.transfer(`sip:bob@${DOMAIN}`), 'the transfer to bob');
    assert.equal(err.status, 480);
    assert.deepEqual(audit('sip.invite', id), [], 'no INVITE was sent for it');
    assert.deepEqual((await aliceEvents()).slice(seen), [], 'nothing reached Alice');
    const failed = audit('sip.transfer', id);
    assert.deepEqual(failed.map((e) => [e.outcome, e.status, e.target]), [['error', 480, `sip:bob@${DOMAIN}`]]);

    assert.deepEqual(probe.events, []);
    const s = (await listed(id))!;
    assert.deepEqual(parties(s), ['agent', 'caller']);
    assert.equal(s.mode, 'agent');
    probe.session.play(agentTone(3));
    await hears(page, AGENT_HZ, 'the agent\'s 550 Hz at the WHIP page');
  });
});
