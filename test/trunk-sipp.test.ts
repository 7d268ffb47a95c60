import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import type { Agent, AgentSession } from '../src/agent/agent.js';
import type { Call } from '../src/call/call.js';
import { decodeG711 } from '../src/audio/g711.js';
import { concatPcm, rms, toneShare } from '../src/audio/test-signals.js';
import { FakeClock } from '../src/core/clock.js';
import type { ConfigInput } from '../src/core/config.js';
import { startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { writeRtpPcap, type RtpPcap } from './helpers/pcap.js';
import { runSipp, sipBody, sipHeader, sipHeaders, SIPP_EXIT, sippWire, startSipp, type SippResult, type SippWireMessage } from './helpers/sipp.js';

/**
 * Inbound SIP trunk calls (src/sip-calls/trunk/inbound.ts) from SIPp playing a carrier, over
 * UDP and TCP: identification by address and by digest, refusals, ringing until the agent is
 * ready, CANCEL, hold, session timers, a lost ACK, RTP into the agent, and bad datagrams.
 * Everything is asserted on what SIPp logged on the wire (-trace_msg) and on the audit log.
 */

const CARRIER_A = '+15551230000';
const SLOW_NUMBER = '+15551230001';
const HELD_NUMBER = '+15551230002';
const PROBE_NUMBER = '+15551230003';
const SPEECH_NUMBER = '+15551230004';
const CARRIER_B = '+15551239999';
const UNKNOWN_NUMBER = '+15550000000';
/** uac-invite-refused.xml's keys when the INVITE is an ordinary PCMU offer. */
const PLAIN_OFFER = { offer_pt: '0', offer_rtpmap: 'PCMU/8000', header_a: 'Subject: e2e', header_b: 'Subject: e2e' };

// ---------------------------------------------------------------------------------------------
// Agents the tests hand the calls to.

interface AgentCall {
  session: AgentSession;
  attachedAt: number;
  frames: Int16Array[];
  ended: string | undefined;
}

/**
 * An in-process agent that records what voxgate hands it. `ready` says when attach() resolves:
 * at once, after a start-up time of its own (ms), or only when the test calls release().
 */
class ProbeAgent implements Agent {
  readonly sampleRate = 8000;
  readonly calls: AgentCall[] = [];
  readonly #held: (() => void)[] = [];

  constructor(
    readonly name: string,
    private readonly ready: 'now' | 'held' | number,
  ) {}

  attach(session: AgentSession): void | Promise<void> {
    const call: AgentCall = { session, attachedAt: Date.now(), frames: [], ended: undefined };
    this.calls.push(call);
    session.on('frame', (f) => call.frames.push(f.samples.slice()));
    session.on('ended', (reason) => (call.ended = reason));
    if (this.ready === 'now') return;
    if (this.ready === 'held') return new Promise<void>((resolve) => this.#held.push(resolve));
    // The agent's own start-up time (connecting to a model, say): what the caller rings through.
    const ms = this.ready;
    return new Promise<void>((resolve) => setTimeout(resolve, ms));
  }

  /** Lets every held attach() resolve. */
  release(): void {
    for (const r of this.#held.splice(0)) r();
  }
}

// ---------------------------------------------------------------------------------------------
// What went over the wire, from SIPp's -trace_msg log.

/** The responses SIPp received to its requests of one method (by CSeq). */
function responses(msgs: SippWireMessage[], cseqMethod: string): SippWireMessage[] {
  return msgs.filter((m) => m.dir === 'received' && m.status !== undefined && m.cseq.endsWith(` ${cseqMethod}`));
}

function describeRun(r: SippResult): string {
  return `exit ${r.code}${r.timedOut ? ' (timed out)' : ''}\n--- errors\n${r.errors}\n--- messages\n${r.messages.slice(-6000)}`;
}

// ---------------------------------------------------------------------------------------------
// The gateway side.

type AuditRecord = Record<string, unknown> & { action: string };

function audit(tg: TestGateway): AuditRecord[] {
  return readFileSync(tg.auditPath, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditRecord);
}

/** Waits for an audit record (the log is written in groups, a moment after the event). */
function auditRecord(tg: TestGateway, what: string, match: (r: AuditRecord) => boolean): Promise<AuditRecord> {
  return waitFor(what, () => audit(tg).find(match), 5000);
}

function sipListener(tg: TestGateway, protocol: 'UDP' | 'TCP'): { remote: string; port: number } {
  const l = tg.gw.sipListening().find((x) => x.protocol === protocol);
  assert.ok(l, `voxgate listens for SIP over ${protocol}`);
  return { remote: `127.0.0.1:${l.port}`, port: l.port };
}

/** The live call SIPp (this pid; its first call's Call-ID is `1-<pid>@<local ip>`) made, if any. */
function sippCall(tg: TestGateway, sippPid: number | undefined): Call | undefined {
  return [...tg.gw.calls.values()].find((c) => c.sipCallId === `1-${sippPid}@127.0.0.1`);
}

/** The state of that call's SIP dialog: 'answered' until its ACK, then 'confirmed'. */
function dialogStateOf(tg: TestGateway, sippPid: number | undefined): string | undefined {
  const call = sippCall(tg, sippPid);
  return call ? tg.gw.sipCalls.ctx.dialogs.current(call)?.state : undefined;
}

const listen = (): NonNullable<NonNullable<ConfigInput['sip']>['listen']> => [
  { transport: 'udp', host: '127.0.0.1', port: 0 },
  { transport: 'tcp', host: '127.0.0.1', port: 0 },
];

// ---------------------------------------------------------------------------------------------
// Speech measurements (8 kHz PCM).

/** A 20 ms frame's RMS above this is speech (the sentence is normalised to -3 dBFS peak). */
const SPEECH_RMS = 1000;

/** RMS of each 20 ms (160-sample) part of a signal. */
function envelope(pcm: Int16Array, frame = 160): number[] {
  const out: number[] = [];
  for (let at = 0; at + frame <= pcm.length; at += frame) out.push(rms(pcm.subarray(at, at + frame)));
  return out;
}

/**
 * The Pearson correlation of `source` against `heard` at the lag (in envelope steps, `heard`
 * later by that much) where it is highest; `heard` is taken as 0 outside itself, so the whole
 * source is always compared.
 */
function bestEnvelopeMatch(source: number[], heard: number[]): { r: number; lag: number } {
  const n = source.length;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  let best = { r: -1, lag: 0 };
  for (let lag = -Math.floor(n / 4); lag <= heard.length - Math.floor(n * 0.75); lag++) {
    const h = source.map((_, i) => heard[i + lag] ?? 0);
    const ms = mean(source);
    const mh = mean(h);
    let sxy = 0;
    let sxx = 0;
    let syy = 0;
    for (let i = 0; i < n; i++) {
      sxy += (source[i]! - ms) * (h[i]! - mh);
      sxx += (source[i]! - ms) ** 2;
      syy += (h[i]! - mh) ** 2;
    }
    const r = sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : 0;
    if (r > best.r) best = { r, lag };
  }
  return best;
}

/** Power spectrum of a signal: Hann-windowed 256-point DFTs, half-overlapped, summed; bin k is k*rate/256 Hz. */
function powerSpectrum(pcm: Int16Array): Float64Array {
  const size = 256;
  const power = new Float64Array(size / 2 + 1);
  const hann = Float64Array.from({ length: size }, (_, i) => 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / size));
  const cos = Float64Array.from({ length: size }, (_, i) => Math.cos((2 * Math.PI * i) / size));
  const sin = Float64Array.from({ length: size }, (_, i) => Math.sin((2 * Math.PI * i) / size));
  const x = new Float64Array(size);
  for (let at = 0; at + size <= pcm.length; at += size / 2) {
    for (let i = 0; i < size; i++) x[i] = pcm[at + i]! * hann[i]!;
    for (let k = 0; k <= size / 2; k++) {
      let re = 0;
      let im = 0;
      for (let i = 0; i < size; i++) {
        const j = (k * i) % size;
        re += x[i]! * cos[j]!;
        im -= x[i]! * sin[j]!;
      }
      power[k]! += re * re + im * im;
    }
  }
  return power;
}

/** The share of a signal's energy between `lo` and `hi` Hz. */
function bandShare(pcm: Int16Array, lo: number, hi: number, rate: number): number {
  const p = powerSpectrum(pcm);
  const hz = rate / 2 / (p.length - 1);
  let band = 0;
  let total = 0;
  p.forEach((v, k) => {
    total += v;
    if (k * hz >= lo && k * hz <= hi) band += v;
  });
  return total > 0 ? band / total : 0;
}

/** The `width` Hz band that holds the most of a signal's energy: its centre and its share (near 1 for a tone). */
function peakBandShare(pcm: Int16Array, width: number, rate: number): { hz: number; share: number } {
  const p = powerSpectrum(pcm);
  const binHz = rate / 2 / (p.length - 1);
  const bins = Math.max(1, Math.round(width / binHz));
  const total = p.reduce((a, b) => a + b, 0);
  let best = { hz: 0, share: 0 };
  for (let k = 0; k + bins <= p.length; k++) {
    let sum = 0;
    for (let j = k; j < k + bins; j++) sum += p[j]!;
    if (total > 0 && sum / total > best.share) best = { hz: Math.round((k + bins / 2) * binHz), share: sum / total };
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// Test peers that are not SIPp.

/** A plain UDP socket on 127.0.0.1 that keeps what it receives. */
class UdpPeer {
  readonly received: string[] = [];

  private constructor(readonly socket: Socket) {
    socket.on('message', (m) => this.received.push(m.toString('latin1')));
  }

  static async open(): Promise<UdpPeer> {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    return new UdpPeer(s);
  }

  get port(): number {
    return this.socket.address().port;
  }

  send(data: Buffer | string, port: number): Promise<void> {
    return new Promise((resolve, reject) => this.socket.send(typeof data === 'string' ? Buffer.from(data, 'latin1') : data, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
  }

  /** Resolves with the first datagram received that matches (waiting for it). */
  next(what: string, match: (text: string) => boolean, ms = 5000): Promise<string> {
    return waitFor(what, () => this.received.find(match), ms);
  }

  close(): Promise<void> {
    return new Promise((r) => this.socket.close(() => r()));
  }
}

/**
 * A UDP relay between SIPp and voxgate that removes voxgate's SHA-256 Proxy-Authenticate.
 * Why: voxgate offers SHA-256 then MD5 (RFC 8760 §2: each algorithm its own challenge, the
 * preferred first), and SIPp 3.6.1 reads only the first challenge and computes only MD5 (it
 * fails the call with "createAuthHeader: authentication must use MD5 or AKAv1-MD5"). Everything
 * else passes byte for byte; what voxgate sent is kept as it was, for the assertions.
 */
class Md5ChallengeRelay {
  /** Datagrams from voxgate, unchanged. */
  readonly fromVoxgate: string[] = [];
  #sipp: number | undefined;

  private constructor(
    readonly socket: Socket,
    private readonly voxgatePort: number,
  ) {
    socket.on('message', (m, from) => {
      if (from.port === voxgatePort) {
        const text = m.toString('latin1');
        this.fromVoxgate.push(text);
        if (this.#sipp === undefined) return;
        const md5Only = text.replace(/^Proxy-Authenticate:[^\r\n]*algorithm=SHA-256[^\r\n]*\r\n/gim, '');
        socket.send(Buffer.from(md5Only, 'latin1'), this.#sipp, '127.0.0.1');
      } else {
        this.#sipp = from.port;
        socket.send(m, voxgatePort, '127.0.0.1');
      }
    });
  }

  static async open(voxgatePort: number): Promise<Md5ChallengeRelay> {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    return new Md5ChallengeRelay(s, voxgatePort);
  }

  get remote(): string {
    return `127.0.0.1:${this.socket.address().port}`;
  }

  close(): Promise<void> {
    return new Promise((r) => this.socket.close(() => r()));
  }
}

/** A request text for the UDP peer: `via` is the whole top Via value. */
function udpRequest(method: string, uri: string, via: string, extra: string[] = []): string {
  return [
    `${method} ${uri} SIP/2.0`,
    `Via: ${via}`,
    'Max-Forwards: 70',
    `From: <sip:carrier@127.0.0.1>;tag=${randomBytes(4).toString('hex')}`,
    `To: <${uri}>`,
    `Call-ID: ${randomBytes(8).toString('hex')}@e2e`,
    `CSeq: 1 ${method}`,
    ...extra,
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

// =============================================================================================

describe('trunk calls from SIPp to an address-listed trunk (carrier-a, 127.0.0.1/32)', () => {
  let tg: TestGateway;
  const slow = new ProbeAgent('slow', 1500);
  const held = new ProbeAgent('held', 'held');
  const probe = new ProbeAgent('probe', 'now');
  const listener = new ProbeAgent('listener', 'now');
  let media: string;
  /** The sentence as sent (8 kHz µ-law, telephone band), and the pcap of it. */
  let speechUlaw: Buffer;
  let speechPcap: RtpPcap;

  before(async () => {
    media = mkdtempSync(join(tmpdir(), 'voxgate-trunk-sipp-'));
    // A 1 kHz tone, µ-law, 3 s: what rtp_stream sends.
    execFileSync('sox', ['-n', '-r', '8000', '-c', '1', '-t', 'ul', join(media, 'tone-1k.ul'), 'synth', '3', 'sine', '1000']);
    // A spoken sentence (2.8 s), as a carrier sends it: 8 kHz µ-law, band-limited to 300-3400 Hz,
    // then packetised into a pcap of RTP (PT 0, 20 ms a packet): what play_pcap_audio replays.
    execFileSync('espeak-ng', ['-v', 'en-us', '-w', join(media, 'speech.wav'), 'The quick brown fox jumps over the lazy dog.']);
    execFileSync('sox', [join(media, 'speech.wav'), '-t', 'ul', '-r', '8000', '-c', '1', join(media, 'speech.ul'), 'sinc', '300-3400', 'norm', '-3']);
    speechUlaw = readFileSync(join(media, 'speech.ul'));
    speechPcap = writeRtpPcap(join(media, 'speech.pcap'), speechUlaw, { payloadType: 0 });
    tg = await startGateway(
      {
        sip: {
          listen: listen(),
          rtp: { portMin: 32000, portMax: 32199 },
          // The numbers of one carrier, each to its agent (sip.agents by number).
          agents: { [SLOW_NUMBER]: 'slow', [HELD_NUMBER]: 'held', [PROBE_NUMBER]: 'probe', [SPEECH_NUMBER]: 'listener' },
          trunks: [
            { name: 'carrier-a', inbound: { numbers: [CARRIER_A, SLOW_NUMBER, HELD_NUMBER, PROBE_NUMBER, SPEECH_NUMBER], allowedAddresses: ['127.0.0.1/32'], agent: 'echo' }, codecs: ['pcmu', 'pcma'] },
          ],
        },
      },
      { agents: { slow: () => slow, held: () => held, probe: () => probe, listener: () => listener } },
    );
  });
  after(async () => {
    held.release();
    await tg?.stop();
    if (media) rmSync(media, { recursive: true, force: true });
  });

  test('RFC 3261 §13.2.1: an INVITE without SDP (a PBX\'s delayed offer) gets our offer in the 200, and the ACK\'s answer starts the call', async () => {
    const { remote } = sipListener(tg, 'UDP');
    const r = await runSipp({ scenario: 'uac-late-offer.xml', remote, service: CARRIER_A, pauseMs: 500, timeoutMs: 10_000 });
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    const msgs = sippWire(r.messages);
    const ok = responses(msgs, 'INVITE').find((m) => m.status === 200)!;
    assert.match(sipBody(ok.text), /^m=audio \d+ RTP\/AVP 0 8 101\s*$/m, 'the trunk\'s codecs in its order, then telephone-event');
    assert.deepEqual(responses(msgs, 'BYE').map((m) => m.status), [200]);
    const invited = await auditRecord(tg, 'the late-offer sip.invite record', (a) => a.action === 'sip.invite' && a.outcome === 'ok' && a.offer === 'late');
    assert.equal(invited.codec, 'pcmu', 'the codec the answer chose');
    const ended = await auditRecord(tg, 'its session.ended record', (a) => a.action === 'session.ended' && a.session === invited.session);
    assert.equal(ended.reason, 'bye');
  });

  for (const transport of ['u1', 't1'] as const) {
    const name = transport === 'u1' ? 'UDP' : 'TCP';
    test(`a call over ${name}: 180 before a 200 with a PCMU RTP/AVP answer on 127.0.0.1, BYE gets 200, audited`, async () => {
      const { remote } = sipListener(tg, name);
      const r = await runSipp({ scenario: 'uac-call-bye.xml', remote, transport, service: CARRIER_A, pauseMs: 700, timeoutMs: 10_000 });
      assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
      const msgs = sippWire(r.messages);
      assert.ok(msgs.length > 0 && r.messages.includes(`${name} message received`), `SIPp talked over ${name}`);
      const invite = responses(msgs, 'INVITE');
      const ringing = invite.findIndex((m) => m.status === 180);
      const ok = invite.findIndex((m) => m.status === 200);
      assert.ok(ringing >= 0, 'a 180 came');
      assert.ok(ok > ringing, `the 180 came before the 200: ${invite.map((m) => m.status).join(', ')}`);
      const answer = sipBody(invite[ok]!.text);
      assert.equal(sipHeader(invite[ok]!.text, 'Content-Type'), 'application/sdp');
      assert.match(answer, /^c=IN IP4 127\.0\.0\.1\s*$/m);
      assert.match(answer, /^m=audio (\d+) RTP\/AVP 0(?: \d+)*\s*$/m, 'PCMU (0) is the answer’s first format');
      assert.match(answer, /^a=rtpmap:0 PCMU\/8000\s*$/m);
      const port = Number(/^m=audio (\d+)/m.exec(answer)![1]);
      assert.ok(port >= 32000 && port <= 32199 && port % 2 === 0, `RTP port ${port} is an even port of sip.rtp`);
      const bye = responses(msgs, 'BYE');
      assert.deepEqual(bye.map((m) => m.status), [200]);
      // The ACK stopped the 200 (over UDP, a copy would come 500 ms after it; SIPp waits 700 ms).
      const ack = msgs.find((m) => m.dir === 'sent' && m.method === 'ACK')!;
      assert.equal(invite.filter((m) => m.status === 200 && m.at > ack.at).length, 0, 'no copy of the 200 after the ACK');

      const invited = await auditRecord(tg, 'the sip.invite audit record', (a) => a.action === 'sip.invite' && a.outcome === 'ok' && a.transport === name && typeof a.remote === 'string' && a.trunk === 'carrier-a' && a.number === CARRIER_A);
      assert.equal(invited.status, 200);
      assert.equal(invited.codec, 'pcmu');
      assert.equal(invited.sourceKind, 'sip-trunk');
      const ended = await auditRecord(tg, 'the session.ended audit record', (a) => a.action === 'session.ended' && a.session === invited.session);
      assert.equal(ended.reason, 'bye');
      assert.equal(ended.source, 'trunk:carrier-a');
    });
  }

  test('the BYE and the end of a trunk call are audited as a trunk call (sourceKind sip-trunk), not as SIP over WebSocket', async () => {
    const r = await runSipp({ scenario: 'uac-call-bye.xml', remote: sipListener(tg, 'UDP').remote, service: CARRIER_A, pauseMs: 200, timeoutMs: 10_000 });
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    const sippAt = `127.0.0.1:${r.args[r.args.indexOf('-p') + 1]}`;
    const invited = await auditRecord(tg, 'the sip.invite record', (a) => a.action === 'sip.invite' && a.outcome === 'ok' && a.remote === sippAt);
    assert.equal(invited.sourceKind, 'sip-trunk');
    const bye = await auditRecord(tg, 'the sip.bye record', (a) => a.action === 'sip.bye' && a.session === invited.session);
    const callEnded = await auditRecord(tg, 'the sip.call.ended record', (a) => a.action === 'sip.call.ended' && a.session === invited.session);
    // src/sip/sip-service.ts audit() stamps `sourceKind: 'sip-ws'` on every record that names none, and
    // party-dialog.ts / agent-uas.ts name none: a phone call over UDP reads as a WebSocket call.
    assert.deepEqual([bye.sourceKind, callEnded.sourceKind], ['sip-trunk', 'sip-trunk']);
  });

  test('an unknown number from the listed address gets 404 naming the number, audited', async () => {
    const r = await runSipp({ scenario: 'uac-invite-refused.xml', remote: sipListener(tg, 'UDP').remote, service: UNKNOWN_NUMBER, keys: PLAIN_OFFER, timeoutMs: 10_000 });
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    const finals = responses(sippWire(r.messages), 'INVITE').filter((m) => m.status! >= 200);
    assert.equal(finals[0]?.status, 404, describeRun(r));
    assert.match(finals[0]!.first, /^SIP\/2\.0 404 Not Found.*\+15550000000/);
    const rec = await auditRecord(tg, 'the 404 audit record', (a) => a.action === 'sip.invite' && a.status === 404);
    assert.equal(rec.outcome, 'error');
    assert.equal(rec.number, UNKNOWN_NUMBER);
  });

  test('an offer of G.729 only gets 488 (no common codec), audited', async () => {
    const r = await runSipp({ scenario: 'uac-invite-refused.xml', remote: sipListener(tg, 'UDP').remote, service: CARRIER_A, keys: { ...PLAIN_OFFER, offer_pt: '18', offer_rtpmap: 'G729/8000' }, timeoutMs: 10_000 });
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    const final = responses(sippWire(r.messages), 'INVITE').find((m) => m.status! >= 200);
    assert.equal(final?.status, 488, describeRun(r));
    assert.match(final!.first, /g729/i, 'the reason says what was offered');
    const rec = await auditRecord(tg, 'the 488 audit record', (a) => a.action === 'sip.invite' && a.status === 488);
    assert.equal(rec.trunk, 'carrier-a');
  });

  test('Session-Expires: 30 with Supported: timer gets 422 with Min-SE: 90', async () => {
    const r = await runSipp({
      scenario: 'uac-invite-refused.xml',
      remote: sipListener(tg, 'UDP').remote,
      service: CARRIER_A,
      keys: { ...PLAIN_OFFER, header_a: 'Session-Expires: 30', header_b: 'Supported: timer' },
      timeoutMs: 10_000,
    });
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    const final = responses(sippWire(r.messages), 'INVITE').find((m) => m.status! >= 200);
    assert.equal(final?.status, 422, describeRun(r));
    assert.equal(sipHeader(final!.text, 'Min-SE'), '90');
    // RFC 4028 §6 names it; voxgate's reason table (src/sip/build.ts REASONS) has no 422, so it says "Unknown".
    assert.equal(final!.first, 'SIP/2.0 422 Session Interval Too Small');
  });

  test('the caller hears 180 until the agent is ready: the 200 comes only after its 1.5 s attach', async () => {
    const r = await runSipp({ scenario: 'uac-call-bye.xml', remote: sipListener(tg, 'UDP').remote, service: SLOW_NUMBER, pauseMs: 200, timeoutMs: 10_000 });
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    const msgs = sippWire(r.messages);
    const invite = msgs.find((m) => m.dir === 'sent' && m.method === 'INVITE')!;
    const ringing = responses(msgs, 'INVITE').find((m) => m.status === 180);
    const ok = responses(msgs, 'INVITE').find((m) => m.status === 200);
    assert.ok(ringing && ok, describeRun(r));
    assert.ok(ringing.at - invite.at < 500, `ringing started at once (${(ringing.at - invite.at).toFixed(0)} ms after the INVITE)`);
    assert.ok(ok.at - ringing.at >= 1400, `the 200 came ${(ok.at - ringing.at).toFixed(0)} ms after the 180; the agent took 1500 ms to attach`);
    assert.equal(slow.calls.length, 1);
    assert.equal(slow.calls[0]!.session.details.trunk, 'carrier-a');
    assert.equal(slow.calls[0]!.session.details.to, SLOW_NUMBER);
  });

  test('CANCEL while the agent is still attaching: 200 to the CANCEL, 487 to the INVITE, the session ends cancelled', async () => {
    const r = await runSipp({ scenario: 'uac-cancel.xml', remote: sipListener(tg, 'UDP').remote, service: HELD_NUMBER, pauseMs: 500, timeoutMs: 10_000 });
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    const msgs = sippWire(r.messages);
    assert.deepEqual(responses(msgs, 'CANCEL').map((m) => m.status), [200]);
    const finals = responses(msgs, 'INVITE').filter((m) => m.status! >= 200);
    assert.deepEqual(finals.map((m) => m.status), [487]);
    assert.equal(held.calls.length, 1, 'the agent was attaching when the CANCEL came');
    const call = held.calls[0]!;
    await waitFor('the agent session to end', () => call.ended);
    assert.equal(call.ended, 'cancelled');
    const ended = await auditRecord(tg, 'the session.ended record', (a) => a.action === 'session.ended' && a.session === call.session.callId);
    assert.equal(ended.reason, 'cancelled');
    held.release();
  });

  test('hold and resume by re-INVITE: sendonly is answered recvonly, sendrecv is answered sendrecv', async () => {
    const r = await runSipp({ scenario: 'uac-reinvite-hold.xml', remote: sipListener(tg, 'UDP').remote, service: CARRIER_A, pauseMs: 800, timeoutMs: 10_000 });
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    const msgs = sippWire(r.messages);
    const okTo = (cseq: string) => msgs.filter((m) => m.dir === 'received' && m.status === 200 && m.cseq === cseq);
    const direction = (m: SippWireMessage) => /^a=(sendrecv|sendonly|recvonly|inactive)\s*$/m.exec(sipBody(m.text))?.[1];
    const version = (m: SippWireMessage) => Number(/^o=\S+ \S+ (\d+)/m.exec(sipBody(m.text))?.[1]);
    const [first, hold, resume] = [okTo('1 INVITE')[0], okTo('2 INVITE')[0], okTo('3 INVITE')[0]];
    assert.ok(first && hold && resume, describeRun(r));
    assert.equal(direction(first), 'sendrecv');
    assert.equal(direction(hold), 'recvonly');
    assert.equal(direction(resume), 'sendrecv');
    // RFC 3264 §8: each new answer raises the o= version.
    assert.ok(version(hold) > version(first) && version(resume) > version(hold), `o= versions ${version(first)}, ${version(hold)}, ${version(resume)}`);
    assert.deepEqual(responses(msgs, 'BYE').map((m) => m.status), [200]);

    // §13.3.1.4: the 2xx to the re-INVITE is repeated only until its ACK. SIPp ACKs at once and
    // then waits 800 ms; a copy in that time means the ACK did not stop the retransmissions.
    const holdAck = msgs.find((m) => m.dir === 'sent' && m.cseq === '2 ACK')!;
    const afterAck = okTo('2 INVITE').filter((m) => m.at > holdAck.at);
    assert.equal(afterAck.length, 0, `the 200 to the hold re-INVITE came ${afterAck.length} more time(s) after its ACK, ${afterAck.map((m) => `${(m.at - holdAck.at).toFixed(0)} ms`).join(', ')} later`);
  });

  test('a lost ACK over UDP: the 200 is repeated (T1, then doubling) while no ACK comes; BYE still ends the call', async () => {
    const r = await runSipp({ scenario: 'uac-no-ack-bye.xml', remote: sipListener(tg, 'UDP').remote, service: CARRIER_A, pauseMs: 2000, timeoutMs: 10_000 });
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    const msgs = sippWire(r.messages);
    const byeAt = msgs.find((m) => m.dir === 'sent' && m.method === 'BYE')!.at;
    const copies = responses(msgs, 'INVITE').filter((m) => m.status === 200 && m.at < byeAt);
    assert.ok(copies.length >= 2, `${copies.length} copies of the 200 in the 2 s without an ACK`);
    const gaps = copies.slice(1).map((m, i) => m.at - copies[i]!.at);
    // §13.3.1.4 / §17.2.1: T1 (500 ms), then 1 s.
    assert.ok(Math.abs(gaps[0]! - 500) < 150, `first repeat after ${gaps[0]!.toFixed(0)} ms (T1 = 500)`);
    if (gaps.length > 1) assert.ok(Math.abs(gaps[1]! - 1000) < 200, `second repeat ${gaps[1]!.toFixed(0)} ms after the first (2*T1)`);
    assert.ok(copies.every((m) => m.text === copies[0]!.text), 'each copy is the same 200');
    assert.deepEqual(responses(msgs, 'BYE').map((m) => m.status), [200]);
  });

  test('RTP from SIPp (rtp_stream, a 1 kHz tone in PCMU) reaches the agent as the tone', async () => {
    const r = await runSipp({
      scenario: 'uac-call-rtp.xml',
      remote: sipListener(tg, 'UDP').remote,
      service: PROBE_NUMBER,
      keys: { audio: `${join(media, 'tone-1k.ul')},-1,0` },
      pauseMs: 2000,
      timeoutMs: 10_000,
    });
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    assert.equal(probe.calls.length, 1);
    const call = probe.calls[0]!;
    await waitFor('the agent session to end', () => call.ended);
    const loud = call.frames.filter((f) => rms(f) > 3000);
    assert.ok(loud.length >= 50, `${loud.length} of ${call.frames.length} frames carry the tone (2 s of it is 100)`);
    const pcm = concatPcm(loud);
    const share = toneShare(pcm, 1000, 8000);
    assert.ok(share > 0.9, `${(share * 100).toFixed(1)} % of the energy is at 1 kHz`);
    assert.ok(toneShare(pcm, 400, 8000) < 0.1, 'and not at 400 Hz');
    const ended = await auditRecord(tg, 'the session.ended record', (a) => a.action === 'session.ended' && a.session === call.session.callId);
    assert.ok(Number(ended.packets) >= 50, `${String(ended.packets)} RTP packets counted`);
  });

  test('RTP from a pcap of PCMU speech (play_pcap_audio) reaches the agent as that speech', async (t) => {
    const r = await runSipp({
      scenario: 'uac-call-pcap.xml',
      remote: sipListener(tg, 'UDP').remote,
      service: SPEECH_NUMBER,
      keys: { pcap: join(media, 'speech.pcap') },
      // The pause after the ACK waits for the capture to be played out.
      pauseMs: speechPcap.durationMs + 700,
      timeoutMs: 15_000,
    });
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    assert.match(r.stdout, new RegExp(`npkts ${speechPcap.packets}\\b`), 'SIPp read every packet of the pcap');
    assert.equal(listener.calls.length, 1);
    const call = listener.calls[0]!;
    await waitFor('the agent session to end', () => call.ended);

    const source = decodeG711(speechUlaw, 'pcmu');
    const heard = concatPcm(call.frames);
    const sourceLoud = envelope(source).filter((e) => e > SPEECH_RMS).length;
    const loud = call.frames.filter((f) => rms(f) > SPEECH_RMS);
    assert.ok(loud.length >= sourceLoud * 0.9, `${loud.length} of ${call.frames.length} frames carry speech (the sentence has ${sourceLoud} of ${speechPcap.packets})`);

    const loudPcm = concatPcm(loud);
    const band = bandShare(loudPcm, 300, 3400, 8000);
    assert.ok(band > 0.9, `${(band * 100).toFixed(1)} % of the energy is in the speech band, 300-3400 Hz`);
    const peak = peakBandShare(loudPcm, 100, 8000);
    assert.ok(peak.share < 0.3, `not one tone: the strongest 100 Hz band (${peak.hz} Hz) holds ${(peak.share * 100).toFixed(1)} % of the energy`);
    assert.ok(toneShare(loudPcm, 1000, 8000) < 0.2, 'and it is not the 1 kHz tone');

    // The very sentence: its 20 ms loudness envelope, found in what the agent heard.
    const match = bestEnvelopeMatch(envelope(source), envelope(heard));
    assert.ok(match.r >= 0.7, `the envelope of what the agent heard matches the sentence's: r = ${match.r.toFixed(3)} at ${match.lag * 20} ms`);
    const reversed = bestEnvelopeMatch(envelope(source).reverse(), envelope(heard));
    t.diagnostic(`${loud.length}/${call.frames.length} speech frames (source ${sourceLoud}); ${(band * 100).toFixed(1)} % in 300-3400 Hz; peak 100 Hz band ${peak.hz} Hz ${(peak.share * 100).toFixed(1)} %; envelope r = ${match.r.toFixed(3)} at ${match.lag * 20} ms (reversed ${reversed.r.toFixed(3)})`);
    assert.ok(match.r - reversed.r > 0.2, `and better than the sentence played backwards does (r = ${reversed.r.toFixed(3)})`);

    const ended = await auditRecord(tg, 'the session.ended record', (a) => a.action === 'session.ended' && a.session === call.session.callId);
    assert.ok(Number(ended.packets) >= speechPcap.packets * 0.95, `${String(ended.packets)} of the pcap's ${speechPcap.packets} RTP packets counted`);
  });

  test('bad datagrams (garbage, 65 000 bytes of junk, a forged Via) are survived; replies go to the source; a call still works', async () => {
    const { port } = sipListener(tg, 'UDP');
    const peer = await UdpPeer.open();
    try {
      const uri = `sip:${CARRIER_A}@127.0.0.1:${port}`;
      await peer.send(randomBytes(300), port);
      await peer.send('hello world\r\n\r\n', port);
      await peer.send(Buffer.alloc(65_000, 0x7a), port);
      // The stack takes datagrams in order: once this OPTIONS is answered, the junk has been seen.
      const probeBranch = `z9hG4bK${randomBytes(6).toString('hex')}`;
      await peer.send(udpRequest('OPTIONS', uri, `SIP/2.0/UDP 127.0.0.1:${peer.port};branch=${probeBranch};rport`), port);
      await peer.next('the 200 to OPTIONS', (t) => t.includes(probeBranch));
      const beforeOptions = peer.received.slice(0, peer.received.findIndex((t) => t.includes(probeBranch)));
      assert.ok(beforeOptions.every((t) => /^SIP\/2\.0 400 /.test(t)), `only 400s (or nothing) for the junk: ${beforeOptions.map((t) => t.split('\r\n')[0]).join(' | ')}`);

      // RFC 3581 §4: a Via naming another host, with rport: the response goes to where the request came from.
      const forged = `z9hG4bK${randomBytes(6).toString('hex')}`;
      await peer.send(udpRequest('OPTIONS', uri, `SIP/2.0/UDP 203.0.113.9:5060;branch=${forged};rport`), port);
      const reply = await peer.next('the 200 to the forged-Via OPTIONS', (t) => t.includes(forged));
      assert.match(reply, /^SIP\/2\.0 200 /);
      assert.equal(sipHeader(reply, 'Via'), `SIP/2.0/UDP 203.0.113.9:5060;branch=${forged};received=127.0.0.1;rport=${peer.port}`);

      const forgedInvite = `z9hG4bK${randomBytes(6).toString('hex')}`;
      const invite = udpRequest('INVITE', `sip:${UNKNOWN_NUMBER}@127.0.0.1:${port}`, `SIP/2.0/UDP 203.0.113.9:5060;branch=${forgedInvite};rport`);
      await peer.send(invite, port);
      const refused = await peer.next('the 404 to the forged-Via INVITE', (t) => t.includes(forgedInvite));
      assert.match(refused, /^SIP\/2\.0 404 /);
      // §17.1.1.3: ACK it, in the INVITE's transaction, so it stops repeating.
      const ack = invite
        .replace(/^INVITE /, 'ACK ')
        .replace(/^CSeq: 1 INVITE/m, 'CSeq: 1 ACK')
        .replace(/^To: .*$/m, `To: ${sipHeader(refused, 'To')}`);
      await peer.send(ack, port);
    } finally {
      await peer.close();
    }

    const r = await runSipp({ scenario: 'uac-call-bye.xml', remote: sipListener(tg, 'UDP').remote, service: CARRIER_A, pauseMs: 200, timeoutMs: 10_000 });
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    assert.equal((await fetch(`${tg.url}/healthz`)).status, 200);
  });
});

// =============================================================================================

describe('trunk calls from outside the address lists', () => {
  test('a trunk listing only 192.0.2.0/24 (no digest trunk): an INVITE from 127.0.0.1 gets 403 naming the address, audited', async () => {
    const tg = await startGateway({
      sip: { listen: listen(), rtp: { portMin: 32200, portMax: 32299 }, trunks: [{ name: 'carrier-far', inbound: { numbers: [CARRIER_A], allowedAddresses: ['192.0.2.0/24'], agent: 'echo' } }] },
    });
    try {
      const r = await runSipp({ scenario: 'uac-invite-refused.xml', remote: sipListener(tg, 'UDP').remote, service: CARRIER_A, keys: PLAIN_OFFER, timeoutMs: 10_000 });
      assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
      const final = responses(sippWire(r.messages), 'INVITE').find((m) => m.status! >= 200);
      assert.equal(final?.status, 403, describeRun(r));
      assert.match(final!.first, /^SIP\/2\.0 403 Forbidden \(source address 127\.0\.0\.1 is not allowed\)$/);
      const rec = await auditRecord(tg, 'the 403 audit record', (a) => a.action === 'sip.invite' && a.status === 403);
      assert.equal(rec.outcome, 'error');
      assert.match(String(rec.remote), /^127\.0\.0\.1:\d+$/);
      assert.match(String(rec.reason), /127\.0\.0\.1/);
      assert.equal(tg.gw.calls.size, 0);
    } finally {
      await tg.stop();
    }
  });

  describe('a digest-only trunk (carrier-b)', () => {
    let tg: TestGateway;
    let relay: Md5ChallengeRelay;

    before(async () => {
      tg = await startGateway({
        sip: { listen: listen(), rtp: { portMin: 32300, portMax: 32399 }, trunks: [{ name: 'carrier-b', inbound: { numbers: [CARRIER_B], auth: { user: 'carrier-b', password: 'b-secret' }, agent: 'echo' } }] },
      });
      relay = await Md5ChallengeRelay.open(sipListener(tg, 'UDP').port);
    });
    after(async () => {
      await relay?.close();
      await tg?.stop();
    });

    test('the first INVITE gets 407 with Proxy-Authenticate; with the right password the call goes through', async () => {
      const r = await runSipp({ scenario: 'uac-auth-call-bye.xml', remote: relay.remote, service: CARRIER_B, auth: { user: 'carrier-b', password: 'b-secret' }, pauseMs: 300, timeoutMs: 10_000 });
      assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
      // What voxgate itself sent (before the relay dropped the SHA-256 challenge for SIPp).
      const challenge = relay.fromVoxgate.find((t) => /^SIP\/2\.0 407 /.test(t));
      assert.ok(challenge, 'a 407 came');
      const offered = sipHeaders(challenge, 'Proxy-Authenticate');
      assert.equal(offered.length, 2);
      assert.match(offered[0]!, /^Digest realm="voxgate\.local", nonce="[^"]+", algorithm=SHA-256, qop="auth"$/);
      assert.match(offered[1]!, /algorithm=MD5/);

      const msgs = sippWire(r.messages);
      const second = msgs.find((m) => m.dir === 'sent' && m.cseq === '2 INVITE')!;
      assert.match(sipHeader(second.text, 'Proxy-Authorization') ?? '', /^Digest username="carrier-b",.*algorithm=MD5/);
      const answered = responses(msgs, 'INVITE').filter((m) => m.cseq === '2 INVITE' && m.status! >= 200);
      assert.deepEqual(answered.map((m) => m.status), [200]);
      assert.deepEqual(responses(msgs, 'BYE').map((m) => m.status), [200]);
      const rec = await auditRecord(tg, 'the sip.invite ok record', (a) => a.action === 'sip.invite' && a.outcome === 'ok');
      assert.equal(rec.trunk, 'carrier-b');
    });

    test('a wrong password gets 403, audited', async () => {
      const r = await runSipp({ scenario: 'uac-auth-call-bye.xml', remote: relay.remote, service: CARRIER_B, auth: { user: 'carrier-b', password: 'not-b-secret' }, timeoutMs: 10_000 });
      assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
      const finals = responses(sippWire(r.messages), 'INVITE').filter((m) => m.status! >= 200);
      assert.deepEqual(finals.map((m) => m.status), [407, 403]);
      assert.match(finals[1]!.first, /^SIP\/2\.0 403 Forbidden/);
      const rec = await auditRecord(tg, 'the 403 record', (a) => a.action === 'sip.invite' && a.status === 403);
      assert.equal(rec.outcome, 'error');
      assert.equal(rec.number, CARRIER_B);
      assert.match(String(rec.reason), /wrong password/);
      // Not asserted: `trunk` is null here (the digest-only path refuses before it names a trunk, src/sip-calls/trunk/inbound.ts claims()).
    });
  });
});

// =============================================================================================

/**
 * Timers of 5 to 45 s, without waiting for them: the gateway's signalling clock is a FakeClock
 * (SIP transaction and dialog timers, ringing, session timers) while media runs in real time
 * (GatewayOptions.mediaClock). SIPp keeps its own real clock; its timestamps say nothing here,
 * so the timing is asserted at the gateway, by what it logs as the clock is moved.
 */
describe('trunk timers on a fake signalling clock', () => {
  let tg: TestGateway;
  const clock = new FakeClock(Date.now());
  const lines: Record<string, unknown>[] = [];
  const held = new ProbeAgent('held', 'held');

  before(async () => {
    const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
    tg = await startGateway(
      {
        sip: {
          listen: [{ transport: 'udp', host: '127.0.0.1', port: 0 }],
          rtp: { portMin: 32400, portMax: 32499 },
          trunks: [
            { name: 'carrier-a', inbound: { numbers: [CARRIER_A], allowedAddresses: ['127.0.0.1/32'], agent: 'echo' }, codecs: ['pcmu', 'pcma'] },
            { name: 'carrier-small', maxCalls: 1, inbound: { numbers: [HELD_NUMBER], allowedAddresses: ['127.0.0.1/32'], agent: 'held', ringTimeoutSeconds: 30 } },
          ],
        },
      },
      { clock, log, agents: { held: () => held } },
    );
  });
  after(async () => {
    held.release();
    await tg?.stop();
  });

  test('180 repeats every 5 s while the agent starts; a second call over maxCalls gets 503 + Retry-After; at the ring timeout, 480', async () => {
    const remote = sipListener(tg, 'UDP').remote;
    const first = await startSipp({ scenario: 'uac-invite-refused.xml', remote, service: HELD_NUMBER, keys: PLAIN_OFFER, timeoutMs: 15_000 });
    try {
      await waitFor('the agent to be attaching', () => held.calls.length === 1);
      const second = await runSipp({ scenario: 'uac-invite-refused.xml', remote, service: HELD_NUMBER, keys: PLAIN_OFFER, timeoutMs: 10_000 });
      assert.equal(second.code, SIPP_EXIT.ok, describeRun(second));
      const busy = responses(sippWire(second.messages), 'INVITE').find((m) => m.status! >= 200);
      assert.equal(busy?.status, 503, describeRun(second));
      assert.equal(sipHeader(busy!.text, 'Retry-After'), '5');
      assert.match(busy!.first, /carrier-small/);

      for (let s = 0; s < 30; s += 5) clock.advance(5_000);
      const r = await first.done;
      assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
      const invite = responses(sippWire(r.messages), 'INVITE');
      const rings = invite.filter((m) => m.status === 180);
      // At 0, 5, 10, 15, 20 and 25 s (and maybe at 30 s, the moment the ring timeout fires).
      assert.ok(rings.length >= 6 && rings.length <= 7, `${rings.length} x 180 in 30 s`);
      const final = invite.find((m) => m.status! >= 200);
      assert.equal(final?.status, 480, describeRun(r));
      assert.match(final!.first, /did not start within 30 s/);
      await waitFor('the held session to end', () => held.calls[0]!.ended);
      const rec = await auditRecord(tg, 'the 480 record', (a) => a.action === 'sip.invite' && a.status === 480);
      assert.equal(rec.trunk, 'carrier-small');
    } finally {
      held.release();
      await first.stop();
    }
  });

  test('Session-Expires: 90 from a UAC without timer support: 200 names refresher=uas, and voxgate sends UPDATE at 45 s', async () => {
    const sipp = await startSipp({ scenario: 'uac-session-refresh.xml', remote: sipListener(tg, 'UDP').remote, service: CARRIER_A, pauseMs: 200, timeoutMs: 15_000 });
    try {
      await waitFor('the dialog to be confirmed (ACK in)', () => dialogStateOf(tg, sipp.pid) === 'confirmed');
      const session = sippCall(tg, sipp.pid)!.id;
      const refreshes = () => lines.filter((l) => l.msg === 'SIP session refresh sent');
      clock.advance(44_999);
      assert.equal(refreshes().length, 0, 'no refresh before half the interval');
      clock.advance(1);
      assert.deepEqual(refreshes().map((l) => [l.method, l.interval]), [['UPDATE', 90]]);

      const r = await sipp.done;
      assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
      const msgs = sippWire(r.messages);
      const ok = responses(msgs, 'INVITE').find((m) => m.status === 200)!;
      assert.equal(sipHeader(ok.text, 'Session-Expires'), '90;refresher=uas');
      // §9: a UAC that did not say Supported: timer must not be sent Require: timer.
      assert.equal(sipHeader(ok.text, 'Require'), undefined);
      const update = msgs.find((m) => m.dir === 'received' && m.method === 'UPDATE');
      assert.ok(update, describeRun(r));
      assert.equal(sipHeader(update.text, 'Session-Expires'), '90;refresher=uac');
      assert.equal(sipBody(update.text), '', 'a refresh without a body (RFC 4028 §7.4)');
      assert.deepEqual(responses(msgs, 'BYE').map((m) => m.status), [200]);
      const ended = await auditRecord(tg, 'the session.ended record', (a) => a.action === 'session.ended' && a.session === session);
      assert.equal(ended.reason, 'bye', 'the BYE ended it, not the session timer');
    } finally {
      await sipp.stop();
    }
  });

  test('no ACK for 32 s (64*T1): the 200 is repeated until then, and voxgate ends the call with BYE (Reason: no-ack)', async () => {
    const sipp = await startSipp({ scenario: 'uac-no-ack-wait-bye.xml', remote: sipListener(tg, 'UDP').remote, service: CARRIER_A, timeoutMs: 15_000 });
    try {
      await waitFor('the 200 to be sent', () => dialogStateOf(tg, sipp.pid) === 'answered');
      const endedLogs = () => lines.filter((l) => l.msg === 'session ended' && l.reason === 'no-ack');
      clock.advance(31_999);
      assert.equal(endedLogs().length, 0, 'still waiting for the ACK at 31.999 s');
      clock.advance(1);
      assert.equal(endedLogs().length, 1, 'the call ended at 32 s');

      const r = await sipp.done;
      assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
      const msgs = sippWire(r.messages);
      const copies = responses(msgs, 'INVITE').filter((m) => m.status === 200);
      // §13.3.1.4: at 0, then T1 doubling to T2 (0.5, 1.5, 3.5, 7.5, 11.5, ... 31.5 s): 11 in all.
      assert.equal(copies.length, 11, `${copies.length} copies of the 200`);
      const bye = msgs.find((m) => m.dir === 'received' && m.method === 'BYE');
      assert.ok(bye, describeRun(r));
      assert.equal(sipHeader(bye.text, 'Reason'), 'Q.850;cause=102;text="no-ack"');
      const ended = await auditRecord(tg, 'the session.ended record', (a) => a.action === 'session.ended' && a.reason === 'no-ack');
      assert.equal(ended.durationMs, 32_000);
    } finally {
      await sipp.stop();
    }
  });
});
