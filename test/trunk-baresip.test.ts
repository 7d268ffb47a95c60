import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import type { Agent, AgentSession } from '../src/agent/agent.js';
import { decodeG711 } from '../src/audio/g711.js';
import { toneShare } from '../src/audio/test-signals.js';
import type { ConfigInput } from '../src/core/config.js';
import { readWav } from './helpers/media.js';
import { startBaresip, type Baresip, type BaresipOptions } from './helpers/baresip.js';
import { listenConnected } from './helpers/ndc-publisher.js';
import { ADMIN_TOKEN, adminSessions, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { onCleanup } from './helpers/cleanup.js';

/**
 * baresip 1.0 as the carrier's side of a SIP trunk: it dials voxgate's UDP and TLS listeners
 * with the trunk's number, over plain RTP and SDES-SRTP, and we check what went over the wire
 * (its events, its SIP trace, the audio it recorded) and what the agent was told.
 */

const NUMBER = '+15551230000';
const CALLER = '+15557654321';
const TONE_HZ = 1000;

type TrunkConfig = NonNullable<NonNullable<ConfigInput['sip']>['trunks']>[number];

/** An agent whose behaviour each test writes; it records what its sessions saw. */
class ProbeAgent implements Agent {
  readonly name = 'probe';
  readonly sampleRate = 8000;
  readonly sessions: AgentSession[] = [];
  readonly dtmf: string[] = [];
  readonly ended: string[] = [];
  frames = 0;

  /** `onAttach` may return a promise: voxgate keeps the caller ringing until it resolves. */
  constructor(private readonly onAttach: (session: AgentSession) => void | Promise<void> = () => undefined) {}

  attach(session: AgentSession): void | Promise<void> {
    this.sessions.push(session);
    session.on('frame', () => this.frames++);
    session.on('dtmf', (d) => this.dtmf.push(d));
    session.on('ended', (r) => this.ended.push(r));
    return this.onAttach(session);
  }
}

interface TrunkGateway {
  tg: TestGateway;
  udpPort: number;
  tlsPort: number | undefined;
  /** Session end reasons by call id, from the call table. */
  ends: Map<string, string>;
}

/** A gateway with one trunk, `carrier-a`, for NUMBER from 127.0.0.1; stopped by the test's after hook. */
async function startTrunkGateway(t: TestContext, trunk: Partial<TrunkConfig>, opts: { probe?: ProbeAgent; tls?: { cert: string; key: string } } = {}): Promise<TrunkGateway> {
  const listen: NonNullable<NonNullable<ConfigInput['sip']>['listen']> = [{ transport: 'udp', host: '127.0.0.1', port: 0 }];
  if (opts.tls) listen.push({ transport: 'tls', host: '127.0.0.1', port: 0, cert: opts.tls.cert, key: opts.tls.key });
  const probe = opts.probe;
  const tg = await startGateway(
    {
      sip: {
        listen,
        rtp: { portMin: 33000, portMax: 33199 },
        trunks: [{ name: 'carrier-a', inbound: { numbers: [NUMBER], allowedAddresses: ['127.0.0.1/32'], agent: 'echo' }, codecs: ['pcmu'], mediaEncryption: 'allow', ...trunk }],
      },
    },
    probe ? { agents: { probe: () => probe } } : {},
  );
  onCleanup(t, () => tg.stop());
  const ends = new Map<string, string>();
  tg.gw.calls.on('ended', (call, reason) => ends.set(call.id, reason));
  const listening = tg.gw.sipListening();
  const udpPort = listening.find((l) => l.protocol === 'UDP')?.port;
  assert.ok(udpPort, `a UDP listener: ${JSON.stringify(listening)}`);
  const tlsPort = listening.find((l) => l.protocol === 'TLS')?.port;
  if (opts.tls) assert.ok(tlsPort, `a TLS listener: ${JSON.stringify(listening)}`);
  return { tg, udpPort, tlsPort, ends };
}

/** The carrier: baresip calling from CALLER; stopped (and its dir removed) by the test's after hook. */
async function startCarrier(t: TestContext, opts: BaresipOptions = {}): Promise<Baresip> {
  const b = await startBaresip({ user: CALLER, displayName: 'Carrier A', codecs: ['pcmu'], source: { sineHz: TONE_HZ }, ...opts });
  onCleanup(t, () => b.stop());
  return b;
}

/** Waits for CALL_ESTABLISHED; on failure the message carries baresip's log, the SIP trace included. */
async function established(b: Baresip, ms = 10_000): Promise<void> {
  try {
    await b.waitForEvent('CALL_ESTABLISHED', ms);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- baresip log ---\n${b.log()}`);
  }
}


/** After a call: no session, SIP dialog, trunk call or RTP port is left behind. */
async function nothingLeft(tg: TestGateway): Promise<void> {
  const { gw } = tg;
  const left = () => ({
    calls: gw.calls.size,
    dialogs: gw.sipCalls.dialogs,
    trunkCalls: (gw.sipCalls.trunks?.active() ?? []).reduce((n, t) => n + t.calls, 0),
    rtpPorts: gw.rtp.pool.portsInUse,
  });
  await waitFor('the call to leave nothing behind', () => Object.values(left()).every((n) => n === 0), 5000).catch(() => assert.fail(`left behind: ${JSON.stringify(left())}`));
}

/** One series of voxgate_sip_trunk_calls_total, from /metrics. */
async function trunkCallsCounted(tg: TestGateway, outcome: string): Promise<number> {
  const text = await (await fetch(`${tg.url}/metrics`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } })).text();
  const m = new RegExp(`^voxgate_sip_trunk_calls_total\\{[^}]*outcome="${outcome}"[^}]*\\} (\\d+)$`, 'm').exec(text);
  return Number(m?.[1] ?? 0);
}

type AuditRecord = Record<string, unknown> & { action: string };
function audit(tg: TestGateway): AuditRecord[] {
  return readFileSync(tg.auditPath, 'utf8')
    .trim()
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as AuditRecord);
}

/** The one call on the trunk's table now (a trunk call is a session like any other). */
async function theCall(tg: TestGateway): Promise<string> {
  return waitFor('the trunk call in the call table', () => [...tg.gw.calls.values()].find((c) => c.trunk?.name === 'carrier-a')?.id);
}


/** The share of the 1 kHz tone in the last `seconds` of what baresip heard. */
async function toneHeardBack(b: Baresip, seconds: number): Promise<{ share: number; heardSeconds: number }> {
  const wav = readWav(await b.waitForRecording(10_000, 'dec'));
  const tail = wav.samples.subarray(Math.max(0, wav.samples.length - seconds * wav.rate));
  return { share: toneShare(tail, TONE_HZ, wav.rate), heardSeconds: wav.samples.length / wav.rate };
}

/** Resolves after `ms` of established call, measured by baresip's own event time (no fixed sleep before the call is up). */
async function callFor(b: Baresip, ms: number): Promise<void> {
  const up = await b.waitForEvent('CALL_ESTABLISHED', 1);
  const left = up.at + ms - Date.now();
  // Waiting *for a duration of audio* is the point here: the echo needs seconds of tone to measure.
  if (left > 0) await new Promise((r) => setTimeout(r, left));
}

/** One SIP message in baresip's `-s` trace: `ESC[36;1m#`, `<TRANSPORT> <src> -> <dst>`, the message, `ESC[;m`. */
interface TracedSip {
  transport: string;
  from: string;
  to: string;
  text: string;
}
function sipTrace(b: Baresip): TracedSip[] {
  const out: TracedSip[] = [];
  for (const m of b.log().matchAll(/#\n(UDP|TCP|TLS) (\S+) -> (\S+)\n([\s\S]*?)\x1b\[;m/g)) out.push({ transport: m[1]!, from: m[2]!, to: m[3]!, text: m[4]!.replace(/\r\n/g, '\n') });
  return out;
}
/** The messages voxgate sent baresip, as its trace shows them. */
function fromGateway(b: Baresip, port: number): TracedSip[] {
  return sipTrace(b).filter((m) => m.from === `127.0.0.1:${port}`);
}

describe('SIP trunk calls from baresip (a carrier) to an agent', () => {
  test('over UDP the echo agent answers, the 1 kHz tone comes back, and a BYE ends the session as bye', async (t) => {
    const { tg, udpPort, ends } = await startTrunkGateway(t, {});
    const b = await startCarrier(t);
    await b.dial(`sip:${NUMBER}@127.0.0.1:${udpPort};transport=udp`);
    await b.waitForEvent('CALL_RINGING', 10_000).catch((err: Error) => assert.fail(`no 180 Ringing: ${err.message}\n${b.log()}`));
    await established(b);
    const id = await theCall(tg);

    await callFor(b, 3000);
    const since = b.events.length;
    await b.hangup();
    await b.waitForEvent('CALL_CLOSED', 5000, since);

    const heard = await toneHeardBack(b, 2);
    assert.ok(heard.heardSeconds > 2.5, `baresip recorded ${heard.heardSeconds.toFixed(2)} s`);
    assert.ok(heard.share > 0.5, `the 1 kHz tone is ${(heard.share * 100).toFixed(0)} % of the last 2 s baresip heard`);

    const reason = await waitFor('the session to end', () => ends.get(id));
    assert.equal(reason, 'bye');
    const records = audit(tg);
    const invite = records.find((r) => r.action === 'sip.invite' && r.outcome === 'ok');
    assert.ok(invite, `a sip.invite ok record: ${JSON.stringify(records)}`);
    assert.equal(invite.trunk, 'carrier-a');
    assert.equal(invite.number, NUMBER);
    assert.equal(invite.from, CALLER);
    assert.equal(invite.session, id);
    assert.equal(invite.codec, 'pcmu');
    assert.equal(invite.srtp, false);
    const ended = records.find((r) => r.action === 'session.ended' && r.session === id);
    assert.equal(ended?.reason, 'bye');
    assert.equal(await trunkCallsCounted(tg, 'answered'), 1);
    await nothingLeft(tg);
  });

  test('a WHEP listener hears the phone caller: PCMU forwarded from the trunk leg, the 1 kHz tone in it; /api/sessions shows the trunk', async (t) => {
    const { tg, udpPort } = await startTrunkGateway(t, {});
    const b = await startCarrier(t);
    await b.dial(`sip:${NUMBER}@127.0.0.1:${udpPort};transport=udp`);
    await established(b);
    const id = await theCall(tg);
    const listener = await listenConnected(`${tg.url}/whep/${id}`, ADMIN_TOKEN, { codecs: 'pcmu' });
    onCleanup(t, () => listener.close());
    assert.match(listener.answer, /a=rtpmap:0 PCMU\/8000/i, 'the caller track is offered as PCMU, as the phone sends it');
    await waitFor('2 s of the caller at the listener', () => listener.received.length >= 100, 10_000);
    const pcm = decodeG711(Buffer.concat(listener.received.slice(-100).map((p) => p.subarray(12 + (p[0]! & 0x0f) * 4))), 'pcmu');
    const share = toneShare(pcm, TONE_HZ, 8000);
    assert.ok(share > 0.5, `the 1 kHz tone is ${(share * 100).toFixed(0)} % of what the listener heard`);
    const row = (await adminSessions(tg.url)).find((r) => r.id === id);
    assert.deepEqual(row?.trunk, { name: 'carrier-a', direction: 'inbound', from: CALLER, to: NUMBER });
    assert.equal(row?.codec, 'pcmu');
    assert.match(row?.remoteAddress ?? '', /^127\.0\.0\.1:\d+$/, 'the latched media address');
    await b.hangup();
    await nothingLeftAfterListener(tg, listener);
  });

  test("baresip's RFC 4733 digits 1 2 3 # reach the agent in order; the agent sees the trunk and both numbers", async (t) => {
    const probe = new ProbeAgent();
    const { tg, udpPort } = await startTrunkGateway(t, { inbound: { numbers: [NUMBER], allowedAddresses: ['127.0.0.1/32'], agent: 'probe' } }, { probe });
    const b = await startCarrier(t);
    await b.dial(`sip:${NUMBER}@127.0.0.1:${udpPort};transport=udp`);
    await established(b);
    // baresip sends digits with the payload type of our answer: wait until media flows, i.e. the answer is in.
    await waitFor('audio at the agent', () => probe.frames > 5);
    await b.sendDtmf('123#');
    await waitFor('four digits at the agent', () => probe.dtmf.length >= 4, 8000).catch((err: Error) =>
      assert.fail(`${err.message}; got ${JSON.stringify(probe.dtmf)}\n${b.log()}`),
    );
    assert.deepEqual(probe.dtmf, ['1', '2', '3', '#']);

    const s = probe.sessions[0]!;
    assert.equal(probe.sessions.length, 1);
    assert.equal(s.details.to, NUMBER);
    assert.equal(s.details.trunk, 'carrier-a');
    assert.equal(s.details.from, CALLER);
    assert.equal(s.details.callerName, 'Carrier A');
    assert.equal(s.sampleRate, 8000);

    const since = b.events.length;
    await b.hangup();
    await b.waitForEvent('CALL_CLOSED', 5000, since);
    await waitFor('the agent session to end', () => probe.ended[0]);
    assert.deepEqual(probe.ended, ['bye']);
    // The control for the echo tests' measure: this agent plays nothing, so baresip heard no tone.
    const heard = await toneHeardBack(b, 2);
    assert.ok(heard.share < 0.1, `a silent agent, yet the 1 kHz tone is ${(heard.share * 100).toFixed(0)} % of what baresip heard`);
    await nothingLeft(tg);
  });

  test('while the agent starts the caller gets 180 and no media; the 200 follows once attach() resolves', async (t) => {
    let attached = 0;
    // An agent that needs a second to start (a model to load, a socket to open).
    const probe = new ProbeAgent(
      () =>
        new Promise<void>((resolve) =>
          setTimeout(() => {
            attached = Date.now();
            resolve();
          }, 1000),
        ),
    );
    const { tg, udpPort } = await startTrunkGateway(t, { inbound: { numbers: [NUMBER], allowedAddresses: ['127.0.0.1/32'], agent: 'probe' } }, { probe });
    const b = await startCarrier(t);
    await b.dial(`sip:${NUMBER}@127.0.0.1:${udpPort};transport=udp`);
    const ringing = await b.waitForEvent('CALL_RINGING', 5000);
    await established(b);
    const up = await b.waitForEvent('CALL_ESTABLISHED', 1);
    assert.ok(attached > 0 && up.at >= attached, `established ${up.at - ringing.at} ms after the 180; the agent attached after ${attached - ringing.at} ms`);
    await b.waitForEvent('CALL_RTPESTAB', 5000);

    const problems: string[] = [];
    // RFC 3264 §6 and RFC 3960 §3: a 180 without SDP answers nothing; RTP before the 200 is media
    // the caller never agreed to (and a carrier may play it instead of its ringback).
    const rtpAt = b.events.findIndex((e) => e.type === 'CALL_RTPESTAB');
    const upAt = b.events.findIndex((e) => e.type === 'CALL_ESTABLISHED');
    if (rtpAt < upAt) {
      const firstRtp = /^stream: incoming rtp for 'audio' established.*$/m.exec(b.log())?.[0];
      problems.push(`baresip got RTP before the 200 (events ${b.events.map((e) => e.type).join(' ')}; "${firstRtp ?? ''}")`);
    }
    const r180 = fromGateway(b, udpPort).find((m) => m.text.startsWith('SIP/2.0 180 '));
    assert.ok(r180, 'a 180 in the trace');
    // RFC 3261 §12.1.1: a response that creates a dialog (a 1xx with a To tag creates an early one) carries a Contact.
    if (!/^Contact: /m.test(r180.text)) problems.push('the 180 Ringing has no Contact (RFC 3261 §12.1.1)');
    assert.deepEqual(problems, []);

    const since = b.events.length;
    await b.hangup();
    await b.waitForEvent('CALL_CLOSED', 5000, since);
    await nothingLeft(tg);
  });

  test('the agent hanging up sends baresip a BYE and ends the session as agent-hangup', async (t) => {
    let hangupAt = 0;
    const probe = new ProbeAgent((session) => {
      setTimeout(() => {
        hangupAt = Date.now();
        session.hangup('done');
      }, 1000);
    });
    const { tg, udpPort, ends } = await startTrunkGateway(t, { inbound: { numbers: [NUMBER], allowedAddresses: ['127.0.0.1/32'], agent: 'probe' } }, { probe });
    const b = await startCarrier(t);
    await b.dial(`sip:${NUMBER}@127.0.0.1:${udpPort};transport=udp`);
    await established(b);
    const id = await theCall(tg);

    const closed = await b.waitForEvent('CALL_CLOSED', 5000);
    assert.ok(hangupAt > 0 && closed.at >= hangupAt, 'baresip closed the call after the agent hung up');
    // libre reports a BYE from the far end as ECONNRESET.
    assert.match(closed.param ?? '', /reset by peer|bye/i, `CALL_CLOSED (${closed.param ?? ''})\n${b.log()}`);
    const bye = fromGateway(b, udpPort).find((m) => m.text.startsWith('BYE '));
    assert.ok(bye, `voxgate sent baresip a BYE\n${b.log()}`);
    assert.match(bye.text, /^BYE sip:\+15557654321-0x[0-9a-f]+@127\.0\.0\.1:\d+ SIP\/2\.0$/m, 'to the Contact of the INVITE');
    // baresip never sent a BYE of its own.
    assert.equal(sipTrace(b).filter((m) => m.from !== `127.0.0.1:${udpPort}` && m.text.startsWith('BYE ')).length, 0);
    const reason = await waitFor('the session to end', () => ends.get(id));
    assert.equal(reason, 'agent-hangup');
    await waitFor('the agent session to end', () => probe.ended[0]);
    assert.deepEqual(probe.ended, ['agent-hangup']);
    await nothingLeft(tg);
  });

  test('digits the agent sends (4, 2) reach baresip as RFC 4733 telephone-events, in order', async (t) => {
    const sent: boolean[] = [];
    const probe = new ProbeAgent((session) => {
      // Once the caller's audio arrives the answer has been taken: the media path is up both ways.
      session.once('frame', () => sent.push(session.sendDtmf('42')));
    });
    const { tg, udpPort } = await startTrunkGateway(t, { inbound: { numbers: [NUMBER], allowedAddresses: ['127.0.0.1/32'], agent: 'probe' } }, { probe });
    const b = await startCarrier(t);
    await b.dial(`sip:${NUMBER}@127.0.0.1:${udpPort};transport=udp`);
    await established(b);

    const digits = () => b.events.filter((e) => e.type === 'CALL_DTMF_START').map((e) => e.param);
    const ends = () => b.events.filter((e) => e.type === 'CALL_DTMF_END').length;
    // Each digit ends (RFC 4733 §2.5.1.4: the E bit), so baresip raises CALL_DTMF_END for both.
    await waitFor('two digits, started and ended, at baresip', () => digits().length >= 2 && ends() >= 2, 8000).catch((err: Error) =>
      assert.fail(`${err.message}; sendDtmf returned ${JSON.stringify(sent)}, baresip got ${JSON.stringify(digits())} and ${ends()} ends\n${b.log()}`),
    );
    assert.deepEqual(sent, [true]);
    assert.deepEqual(digits(), ['4', '2']);

    const since = b.events.length;
    await b.hangup();
    await b.waitForEvent('CALL_CLOSED', 5000, since);
    await nothingLeft(tg);
  });

  describe('over TLS with SDES-SRTP', () => {
    /** A self-signed P-256 certificate for localhost, in a temp dir removed by the test's after hook. */
    function selfSigned(t: TestContext): { cert: string; key: string } {
      const dir = mkdtempSync(join(tmpdir(), 'voxgate-tls-'));
      onCleanup(t, () => rmSync(dir, { recursive: true, force: true }));
      const cert = join(dir, 'cert.pem');
      const key = join(dir, 'key.pem');
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
      return { cert, key };
    }

    test('a trunk that requires SRTP answers RTP/SAVP with a=crypto and the tone comes back through SRTP both ways', async (t) => {
      const tls = selfSigned(t);
      const { tg, tlsPort, ends } = await startTrunkGateway(t, { mediaEncryption: 'require' }, { tls });
      const b = await startCarrier(t, { mediaEnc: 'srtp-mand' });
      await b.dial(`sip:${NUMBER}@127.0.0.1:${tlsPort};transport=tls`);
      await established(b);
      const id = await theCall(tg);
      // baresip's srtp module keyed the stream from our a=crypto (CALL_MENC: "<secure>,<media>,<suite>").
      const menc = await b.waitForEvent('CALL_MENC', 2000);
      assert.match(menc.param ?? '', /,audio,AES_CM_128_HMAC_SHA1_(80|32)$/);

      // The 200's SDP as baresip received it.
      const ok = fromGateway(b, tlsPort!).find((m) => m.text.startsWith('SIP/2.0 200 ') && /^CSeq: \d+ INVITE$/m.test(m.text));
      assert.ok(ok, `a 200 to the INVITE in baresip's trace\n${b.log()}`);
      assert.equal(ok.transport, 'TLS');
      assert.match(ok.text, /^m=audio \d+ RTP\/SAVP 0 \d+$/m);
      assert.match(ok.text, /^a=crypto:\d+ AES_CM_128_HMAC_SHA1_(80|32) inline:[A-Za-z0-9+/]{40}$/m);
      // RFC 4568 §6.1: the answer keys our direction with a key of our own, never the offerer's.
      const offerKey = /^a=crypto:\d+ \S+ inline:([A-Za-z0-9+/]{40})/m.exec(sipTrace(b).find((m) => m.text.startsWith('INVITE '))?.text ?? '')?.[1];
      const answerKey = /^a=crypto:\d+ \S+ inline:([A-Za-z0-9+/]{40})/m.exec(ok.text)?.[1];
      assert.ok(offerKey && answerKey);
      assert.notEqual(answerKey, offerKey);

      await callFor(b, 3000);
      const since = b.events.length;
      await b.hangup();
      await b.waitForEvent('CALL_CLOSED', 5000, since);

      const heard = await toneHeardBack(b, 2);
      assert.ok(heard.share > 0.5, `the 1 kHz tone is ${(heard.share * 100).toFixed(0)} % of the last 2 s baresip heard (SRTP both ways)`);
      assert.equal(await waitFor('the session to end', () => ends.get(id)), 'bye');
      const invite = audit(tg).find((r) => r.action === 'sip.invite' && r.outcome === 'ok');
      assert.equal(invite?.srtp, true);
      assert.equal(invite?.transport, 'TLS');
      await nothingLeft(tg);
    });

    test('a trunk that requires SRTP refuses a plain RTP/AVP offer with 488', async (t) => {
      const tls = selfSigned(t);
      const { tg, tlsPort } = await startTrunkGateway(t, { mediaEncryption: 'require' }, { tls });
      const b = await startCarrier(t);
      await b.dial(`sip:${NUMBER}@127.0.0.1:${tlsPort};transport=tls`);
      const closed = await b.waitForEvent('CALL_CLOSED', 10_000);
      assert.match(closed.param ?? '', /488/, `CALL_CLOSED (${closed.param ?? ''})\n${b.log()}`);
      assert.equal(b.events.some((e) => e.type === 'CALL_ESTABLISHED'), false);
      const final = fromGateway(b, tlsPort!).filter((m) => /^SIP\/2\.0 [2-6]\d\d /.test(m.text));
      assert.deepEqual(final.map((m) => m.text.split('\n')[0]!.split(' ')[1]), ['488'], 'one final response, 488, and no 200');
      const refused = audit(tg).find((r) => r.action === 'sip.invite' && r.outcome === 'error');
      assert.equal(refused?.status, 488);
      assert.equal(refused?.trunk, 'carrier-a');
      assert.equal(await trunkCallsCounted(tg, '488'), 1);
      await nothingLeft(tg);
    });
  });
});

/** The call ends with the phone's BYE; the listener's leg goes with it. */
async function nothingLeftAfterListener(tg: TestGateway, listener: { close(): void }): Promise<void> {
  await waitFor('the call to end', () => tg.gw.calls.size === 0);
  listener.close();
  await nothingLeft(tg);
}
