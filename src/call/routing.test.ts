import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Agent, AgentSession } from '../agent/agent.js';
import { createDecoder } from '../audio/codec.js';
import type { AudioFrame } from '../audio/frame.js';
import { concatPcm, rms, toneSnrDb } from '../audio/test-signals.js';
import type { SourceIdentity } from '../auth/source-auth.js';
import type { CodecName } from '../core/config.js';
import type { MediaFormat } from '../media/endpoint.js';
import type { FanoutListener, ListenTrack } from '../media/fan-out.js';
import { decodeSent, encodeFrames, eventPayload, FarEnd, formatOf, parsed, testEndpoint, testRuntime, toneFrames, type TestRuntime } from '../media/testing.js';
import { parseTelephoneEvent } from '../rtp/dtmf.js';
import type { RtpPacket } from '../rtp/packet.js';
import { FakeMediaTransport } from '../transport/fake.js';
import { AgentLeg } from './agent-leg.js';
import { Call, type EndReason, type LegRole } from './call.js';
import { ListenerLeg } from './listener-leg.js';
import { PartyLeg } from './party-leg.js';

const SOURCE: SourceIdentity = { name: 'studio', kind: 'whip', agent: undefined, codecs: ['pcmu', 'g722', 'opus'], maxSessions: undefined, via: 'token' };
const RATE = 16000;

/** An agent that keeps what reaches it and plays what the test tells it to. */
class ProbeAgent implements Agent {
  readonly name = 'probe';
  readonly sampleRate = RATE;
  session: AgentSession | undefined;
  readonly frames: AudioFrame[] = [];
  readonly digits: string[] = [];
  readonly messages: unknown[] = [];
  readonly ended: string[] = [];
  attach(session: AgentSession): void {
    this.session = session;
    session.on('frame', (f) => this.frames.push(f));
    session.on('dtmf', (d) => this.digits.push(d));
    session.on('message', (m) => this.messages.push(m));
    session.on('ended', (r) => this.ended.push(r));
  }
}

/** A PartyLeg that counts how often it is closed. */
class CountedPartyLeg extends PartyLeg {
  readonly closes: EndReason[] = [];
  override close(reason: EndReason): void {
    this.closes.push(reason);
    super.close(reason);
  }
}

interface Party {
  leg: CountedPartyLeg;
  transport: FakeMediaTransport;
  far: FarEnd;
  format: MediaFormat;
}

function party(rt: TestRuntime, kind: string, format: MediaFormat, ssrc: number, farSsrc: number): Party {
  const { endpoint, transport } = testEndpoint(rt, format, { pcmRate: RATE, ssrc, id: kind });
  return { leg: new CountedPartyLeg(kind, endpoint), transport, far: new FarEnd(format.payloadType, format.clockRate, farSsrc), format };
}

async function agentLeg(call: Call, rt: TestRuntime): Promise<{ leg: AgentLeg; probe: ProbeAgent; sent: unknown[] }> {
  const probe = new ProbeAgent();
  const sent: unknown[] = [];
  const leg = new AgentLeg(probe, call.id, SOURCE, {
    clock: rt.clock,
    sendDtmf: (digits) => call.sendDtmf('agent', digits),
    dial: () => assert.fail('no calls are placed here'),
    hangup: (reason) => call.closeByAgent(reason),
    transfer: () => Promise.reject(new Error('no transfer here')),
    send: (data) => {
      sent.push(data);
      call.message('caller', data);
    },
  });
  await leg.start();
  return { leg, probe, sent };
}

function newCall(rt: TestRuntime): Call {
  return new Call('call-1', SOURCE, rt.clock, 600_000, { pcmRate: RATE });
}

/** The far end of `p` sends `payloads` one per tick while the call runs. */
function speak(rt: TestRuntime, p: Party, payloads: Buffer[]): void {
  for (const pl of payloads) {
    p.transport.receiveRtp(p.far.audio(pl));
    rt.clock.advance(20);
  }
}

function tonePayloads(codec: CodecName, hz: number, frames: number): Buffer[] {
  const rate = codec === 'g722' ? 16000 : codec === 'opus' ? RATE : 8000;
  return encodeFrames(codec, rate, toneFrames(hz, rate, frames));
}


const ROLES: LegRole[] = ['caller', 'callee', 'agent', 'listener:l1'];

/** Every ordered pair (from -> to) for which route() says `to` hears `from`. */
function heard(call: Call): string[] {
  return ROLES.flatMap((from) => ROLES.filter((to) => call.route(from, to)).map((to) => `${from}->${to}`));
}

/** A minimal WHEP listener: what the fan-out hands it. */
class ProbeListener implements FanoutListener {
  readonly kind = 'listener';
  readonly forwarded: RtpPacket[] = [];
  readonly frames: Buffer[] = [];
  readonly closes: EndReason[] = [];
  constructor(
    readonly id: string,
    readonly track: ListenTrack,
    readonly codec: CodecName,
    public passthrough: boolean,
  ) {}
  forward(p: RtpPacket): void {
    this.forwarded.push(p);
  }
  sendFrame(payload: Buffer): void {
    this.frames.push(payload);
  }
  lastMediaAt(): number {
    return 0;
  }
  counters() {
    return { packetsReceived: 0, bytesReceived: 0, packetsSent: this.forwarded.length + this.frames.length, bytesSent: 0 };
  }
  close(reason: EndReason): void {
    this.closes.push(reason);
  }
}

// ---------------------------------------------------------------- who hears whom

test('route(): caller and agent hear each other; listeners hear both; nobody hears itself or a listener', async () => {
  const rt = testRuntime();
  const call = newCall(rt);
  assert.deepEqual(heard(call), [], 'an empty call routes nothing');
  const caller = party(rt, 'whip', formatOf('pcmu'), 1, 2);
  call.addLeg('caller', caller.leg);
  assert.deepEqual(heard(call), [], 'a caller alone hears nobody');
  const { leg } = await agentLeg(call, rt);
  call.addLeg('agent', leg);
  call.addListener(new ProbeListener('l1', 'mix', 'opus', false));
  assert.deepEqual(heard(call), ['caller->agent', 'caller->listener:l1', 'agent->caller', 'agent->listener:l1']);
  assert.equal(call.mode, 'agent');
  call.close('deleted');
});

test('route(): once a callee exists the caller talks with it; the agent hears nobody and nobody hears it', async () => {
  const rt = testRuntime();
  const call = newCall(rt);
  call.addLeg('caller', party(rt, 'whip', formatOf('pcmu'), 1, 2).leg);
  const { leg } = await agentLeg(call, rt);
  call.addLeg('agent', leg);
  call.addLeg('callee', party(rt, 'sip-uac', formatOf('pcmu'), 3, 4).leg);
  call.addListener(new ProbeListener('l1', 'mix', 'opus', false));
  assert.deepEqual(heard(call), ['caller->callee', 'caller->listener:l1', 'callee->caller', 'callee->listener:l1']);
  call.close('deleted');
});

test('route(): a caller and a callee without an agent talk with each other', () => {
  const rt = testRuntime();
  const call = newCall(rt);
  call.addLeg('callee', party(rt, 'sip-uac', formatOf('pcmu'), 3, 4).leg);
  assert.equal(call.mode, 'none', 'a callee alone is wired to nobody');
  call.addLeg('caller', party(rt, 'whip', formatOf('pcmu'), 1, 2).leg);
  assert.deepEqual(heard(call), ['caller->callee', 'callee->caller']);
  assert.throws(() => call.addLeg('caller', party(rt, 'whip', formatOf('pcmu'), 5, 6).leg), /already has a caller leg/);
  call.close('deleted');
});

// ---------------------------------------------------------------- media by mode

test('mode agent: the caller\'s tone reaches the agent as frames, and the agent\'s audio goes out on the caller\'s transport', async () => {
  const rt = testRuntime();
  const call = newCall(rt);
  const caller = party(rt, 'whip', formatOf('pcmu'), 0xc0, 0xc1);
  call.addLeg('caller', caller.leg);
  const { leg, probe } = await agentLeg(call, rt);
  call.addLeg('agent', leg);
  assert.equal(call.mode, 'agent');
  assert.equal(call.describe(), 'RTP -> Jitter(20-200ms) -> PCMU(decode) -> Resample(8k->16k) -> Agent(probe@16k) -> Pacer -> Resample(16k->8k) -> PCMU(encode) -> RTP');
  probe.session!.play(concatPcm(toneFrames(600, RATE, 25)));
  speak(rt, caller, tonePayloads('pcmu', 1000, 25));
  assert.equal(probe.frames.length, 25, 'a frame per packet');
  assert.ok(
    probe.frames.every((f) => f.sampleRate === RATE),
    'at the agent\'s rate',
  );
  const toAgent = concatPcm(probe.frames.slice(2).map((f) => f.samples));
  assert.ok(toneSnrDb(toAgent, 1000, RATE) > 25, `agent hears 1 kHz at ${toneSnrDb(toAgent, 1000, RATE).toFixed(1)} dB`);
  const toCaller = decodeSent('pcmu', 8000, caller.transport.rtp, 0).slice(160 * 2);
  assert.ok(toneSnrDb(toCaller, 600, 8000) > 25, `caller hears 600 Hz at ${toneSnrDb(toCaller, 600, 8000).toFixed(1)} dB`);
  assert.ok(
    parsed(caller.transport.rtp).every((p) => p.ssrc === 0xc0),
    'with the caller endpoint\'s SSRC',
  );
  call.close('deleted');
});

test('mode forward: caller and callee on one codec get each other\'s packets, re-sourced, without decoding', () => {
  const rt = testRuntime();
  const call = newCall(rt);
  const caller = party(rt, 'whip', formatOf('pcmu'), 0xc0, 0xc1);
  const callee = party(rt, 'sip-uac', formatOf('pcmu'), 0xe0, 0xe1);
  call.addLeg('caller', caller.leg);
  call.addLeg('callee', callee.leg);
  assert.equal(call.mode, 'forward');
  assert.equal(call.describe(), 'caller RTP -> forwarded (pcmu) -> RTP callee; callee RTP -> forwarded -> RTP caller');
  const up = tonePayloads('pcmu', 1000, 10);
  const down = tonePayloads('pcmu', 600, 10);
  for (let i = 0; i < 10; i++) {
    caller.transport.receiveRtp(caller.far.audio(up[i]!));
    callee.transport.receiveRtp(callee.far.audio(down[i]!));
    rt.clock.advance(20);
  }
  const atCallee = parsed(callee.transport.rtp);
  const atCaller = parsed(caller.transport.rtp);
  assert.deepEqual(
    atCallee.map((p) => p.payload),
    up,
    'the caller\'s payloads, byte for byte',
  );
  assert.deepEqual(
    atCaller.map((p) => p.payload),
    down,
  );
  assert.ok(atCallee.every((p) => p.ssrc === 0xe0) && atCaller.every((p) => p.ssrc === 0xc0), 'each with the sending endpoint\'s SSRC');
  assert.equal(caller.leg.endpoint.decode || callee.leg.endpoint.decode, false, 'nobody needs PCM: no decoding');
  assert.deepEqual(call.repairs(), { fecRecovered: 0, concealed: 0, decodeErrors: 0, shed: 0 });
  call.close('deleted');
});

test('mode transcode (PCMU caller, G.722 callee): a tone each way is heard on the other transport at its own frequency', () => {
  const rt = testRuntime();
  const call = newCall(rt);
  const caller = party(rt, 'whip', formatOf('pcmu'), 0xc0, 0xc1);
  const callee = party(rt, 'sip-uac', formatOf('g722'), 0xe0, 0xe1);
  call.addLeg('caller', caller.leg);
  call.addLeg('callee', callee.leg);
  assert.equal(call.mode, 'transcode');
  // Both sides at PCMU's 8 kHz: one resampler (G.722's), none on the PCMU side.
  assert.deepEqual([caller.leg.endpoint.pcmRate, callee.leg.endpoint.pcmRate, call.fanout.rate], [8000, 8000, 8000]);
  assert.equal(
    call.describe(),
    'caller RTP -> Jitter(20-200ms) -> PCMU(decode) -> Resample(8k->16k) -> G722(encode) -> RTP callee; callee RTP -> Jitter(20-200ms) -> G722(decode) -> Resample(16k->8k) -> PCMU(encode) -> RTP caller',
  );
  const up = tonePayloads('pcmu', 1000, 30);
  const down = tonePayloads('g722', 600, 30);
  for (let i = 0; i < 30; i++) {
    caller.transport.receiveRtp(caller.far.audio(up[i]!));
    callee.transport.receiveRtp(callee.far.audio(down[i]!));
    rt.clock.advance(20);
  }
  const atCallee = decodeSent('g722', RATE, callee.transport.rtp, 9).slice(320 * 3);
  const atCaller = decodeSent('pcmu', 8000, caller.transport.rtp, 0).slice(160 * 3);
  assert.ok(atCallee.length >= 320 * 20 && atCaller.length >= 160 * 20, 'a packet out per packet in');
  assert.ok(toneSnrDb(atCallee, 1000, RATE) > 20, `callee hears 1 kHz at ${toneSnrDb(atCallee, 1000, RATE).toFixed(1)} dB`);
  assert.ok(toneSnrDb(atCallee, 600, RATE) < 0, 'not its own tone');
  assert.ok(toneSnrDb(atCaller, 600, 8000) > 20, `caller hears 600 Hz at ${toneSnrDb(atCaller, 600, 8000).toFixed(1)} dB`);
  assert.ok(toneSnrDb(atCaller, 1000, 8000) < 0, 'not its own tone');
  const out = parsed(callee.transport.rtp);
  assert.ok(out.every((p, i) => i === 0 || p.timestamp === (out[i - 1]!.timestamp + 160) >>> 0), 'the callee\'s stream is evenly timed');
  call.close('deleted');
});

test('a call with a caller only decodes nothing until a listener joins', () => {
  const rt = testRuntime();
  const call = newCall(rt);
  const caller = party(rt, 'whip', formatOf('pcmu'), 1, 2);
  call.addLeg('caller', caller.leg);
  assert.equal(call.mode, 'none');
  assert.equal(call.describe(), 'RTP -> Jitter(20-200ms) -> PCMU(decode) -> Resample(8k->16k)');
  assert.equal(caller.leg.endpoint.decode, false);
  const l = new ProbeListener('l1', 'caller', 'g722', false);
  call.addListener(l);
  assert.equal(caller.leg.endpoint.decode, true);
  speak(rt, caller, tonePayloads('pcmu', 1000, 10));
  assert.ok(l.frames.length >= 8, 'encoded frames reach the listener');
  call.removeLeg('listener:l1', 'deleted');
  assert.equal(caller.leg.endpoint.decode, false, 'nobody listens: decoding stops');
  assert.deepEqual(l.closes, ['deleted']);
  assert.equal(call.fanout.size, 0);
  call.close('deleted');
});

// ---------------------------------------------------------------- legs that change

test('replaceLeg(caller): the old leg is closed once, the new one is wired to the agent, totals and repairs never go down', async () => {
  const rt = testRuntime();
  const call = newCall(rt);
  const first = party(rt, 'whip', formatOf('pcmu'), 1, 2);
  call.addLeg('caller', first.leg);
  const { leg, probe } = await agentLeg(call, rt);
  call.addLeg('agent', leg);
  const payloads = tonePayloads('pcmu', 1000, 20);
  rt.clock.advance(10);
  for (const [i, p] of payloads.entries()) {
    if (i === 10) first.far.skip();
    else first.transport.receiveRtp(first.far.audio(p));
    rt.clock.advance(20);
  }
  const before = call.totals();
  const repairsBefore = call.repairs();
  assert.equal(before.packetsReceived, 19);
  assert.ok(before.packetsSent > 0 && repairsBefore.concealed >= 1, 'the first leg sent silence and concealed its loss');
  const second = party(rt, 'sip-ws', formatOf('g722'), 3, 4);
  call.replaceLeg('caller', second.leg);
  assert.deepEqual(first.leg.closes, ['transferred']);
  assert.equal(first.transport.state, 'closed');
  const mid = call.totals();
  for (const k of Object.keys(before) as (keyof typeof before)[]) assert.ok(mid[k] >= before[k], `${k} did not go down across the replacement`);
  assert.ok(call.repairs().concealed >= repairsBefore.concealed, 'repairs did not go down');
  assert.equal(call.mode, 'agent');
  const heardBefore = probe.frames.length;
  speak(rt, second, tonePayloads('g722', 800, 20));
  assert.ok(probe.frames.length >= heardBefore + 18, 'the agent hears the new caller');
  const fromNew = concatPcm(probe.frames.slice(heardBefore + 3).map((f) => f.samples));
  assert.ok(toneSnrDb(fromNew, 800, RATE) > 20, 'its 800 Hz tone');
  assert.equal(first.transport.rtp.length, before.packetsSent, 'the old transport got nothing more');
  const after = call.totals();
  assert.equal(after.packetsReceived, 39);
  assert.ok(after.packetsSent > mid.packetsSent, 'the new leg\'s packets add up');
  call.close('deleted');
  assert.deepEqual(first.leg.closes, ['transferred'], 'not closed again with the call');
  assert.deepEqual(second.leg.closes, ['deleted']);
});

test('a callee joins and the agent is removed: the agent session ends with the reason and hears nothing more', async () => {
  const rt = testRuntime();
  const call = newCall(rt);
  const caller = party(rt, 'whip', formatOf('pcmu'), 1, 2);
  call.addLeg('caller', caller.leg);
  const { leg, probe } = await agentLeg(call, rt);
  call.addLeg('agent', leg);
  speak(rt, caller, tonePayloads('pcmu', 1000, 5));
  const heardBefore = probe.frames.length;
  call.addLeg('callee', party(rt, 'sip-uac', formatOf('pcmu'), 3, 4).leg);
  assert.equal(call.mode, 'forward');
  speak(rt, caller, tonePayloads('pcmu', 1000, 5));
  assert.equal(probe.frames.length, heardBefore, 'the agent hears nobody once a callee is there');
  call.removeLeg('agent', 'transferred');
  assert.deepEqual(probe.ended, ['transferred']);
  assert.equal(call.leg('agent'), undefined);
  assert.equal(call.mode, 'forward');
  call.removeLeg('agent', 'transferred');
  assert.deepEqual(probe.ended, ['transferred'], 'removing a leg that left changes nothing');
  call.close('deleted');
  assert.deepEqual(probe.ended, ['transferred']);
});

// ---------------------------------------------------------------- DTMF

function sendDigit(p: Party, event: number, volume = 10, durations = [160, 320, 480]): void {
  const start = p.far.ts;
  for (const [i, d] of durations.entries()) {
    const last = i === durations.length - 1;
    for (let r = 0; r < (last ? 3 : 1); r++) p.transport.receiveRtp(p.far.packet(p.format.telephoneEvent!.payloadType, eventPayload(event, last, d, volume), start, i === 0));
  }
  p.far.ts += durations.at(-1)!;
}

test('DTMF from the caller reaches the agent session and is echoed as a dtmf message on the caller\'s data channel', async () => {
  const rt = testRuntime();
  const call = newCall(rt);
  const caller = party(rt, 'whip', formatOf('pcmu'), 1, 2);
  call.addLeg('caller', caller.leg);
  const { leg, probe } = await agentLeg(call, rt);
  call.addLeg('agent', leg);
  const seen: [LegRole, string][] = [];
  call.on('dtmf', (from, d) => seen.push([from, d]));
  sendDigit(caller, 5);
  sendDigit(caller, 11);
  assert.deepEqual(probe.digits, ['5', '#']);
  assert.deepEqual(
    caller.transport.messages.map((m) => JSON.parse(m) as unknown),
    [
      { type: 'dtmf', digit: '5' },
      { type: 'dtmf', digit: '#' },
    ],
  );
  assert.deepEqual(seen, [
    ['caller', '5'],
    ['caller', '#'],
  ]);
  // The agent's digits go to the caller as RFC 4733.
  call.dtmf('agent', '3');
  rt.clock.advance(200);
  const events = parsed(caller.transport.rtp).filter((p) => p.payloadType === 101);
  assert.deepEqual([...new Set(events.map((e) => parseTelephoneEvent(e.payload)!.event))], [3]);
  call.close('deleted');
});

test('DTMF in transcode mode: the caller\'s digit is sent to the callee as RFC 4733 on its own stream', () => {
  const rt = testRuntime();
  const call = newCall(rt);
  const caller = party(rt, 'whip', formatOf('pcmu'), 1, 2);
  const callee = party(rt, 'sip-uac', formatOf('g722', { telephoneEvent: { payloadType: 96, clockRate: 8000 } }), 3, 4);
  call.addLeg('caller', caller.leg);
  call.addLeg('callee', callee.leg);
  assert.equal(call.mode, 'transcode');
  sendDigit(caller, 9, 7);
  rt.clock.advance(200);
  const events = parsed(callee.transport.rtp).filter((p) => p.payloadType === 96);
  const te = events.map((e) => parseTelephoneEvent(e.payload)!);
  assert.equal(te.length, 4 + 3, 'a 100 ms event of our own: four packets and the end three times');
  assert.ok(
    te.every((e) => e.event === 9 && e.volume === 10),
    'regenerated at our level',
  );
  assert.ok(
    events.every((e) => e.ssrc === 3 && e.timestamp === events[0]!.timestamp),
    'on the callee endpoint\'s stream, one timestamp per event',
  );
  // And back: the callee's digit reaches the caller.
  sendDigit(callee, 2);
  rt.clock.advance(200);
  const back = parsed(caller.transport.rtp).filter((p) => p.payloadType === 101);
  assert.ok(back.length === 7 && back.every((e) => parseTelephoneEvent(e.payload)!.event === 2), 'the callee\'s digit reached the caller');
  call.close('deleted');
});

test('DTMF in forward mode with telephone-event on both legs: the packets themselves are forwarded, not regenerated', () => {
  const rt = testRuntime();
  const call = newCall(rt);
  const caller = party(rt, 'whip', formatOf('pcmu'), 1, 2);
  const callee = party(rt, 'sip-uac', formatOf('pcmu', { telephoneEvent: { payloadType: 96, clockRate: 8000 } }), 3, 4);
  call.addLeg('caller', caller.leg);
  call.addLeg('callee', callee.leg);
  const seen: string[] = [];
  call.on('dtmf', (from, d) => seen.push(`${from}:${d}`));
  const durations = [200, 400, 600, 760];
  sendDigit(caller, 4, 7, durations);
  rt.clock.advance(200);
  const events = parsed(callee.transport.rtp).filter((p) => p.payloadType === 96);
  assert.deepEqual(
    events.map((e) => parseTelephoneEvent(e.payload)),
    [200, 400, 600, 760, 760, 760].map((duration, i) => ({ event: 4, end: i >= 3, volume: 7, duration })),
    'the caller\'s own packets, durations and level',
  );
  assert.deepEqual(seen, ['caller:4'], 'the digit is still reported');
  assert.equal(parsed(callee.transport.rtp).length, events.length, 'no regenerated event besides');
  call.close('deleted');
});

test('DTMF in forward mode where the callee has no telephone-event: nothing to forward or send, the digit is still reported', () => {
  const rt = testRuntime();
  const call = newCall(rt);
  const caller = party(rt, 'whip', formatOf('pcmu'), 1, 2);
  const callee = party(rt, 'sip-uac', formatOf('pcmu', { telephoneEvent: undefined }), 3, 4);
  call.addLeg('caller', caller.leg);
  call.addLeg('callee', callee.leg);
  const seen: string[] = [];
  call.on('dtmf', (from, d) => seen.push(`${from}:${d}`));
  sendDigit(caller, 4);
  rt.clock.advance(200);
  assert.deepEqual(callee.transport.rtp, []);
  assert.deepEqual(seen, ['caller:4']);
  call.dtmf('listener:x', '1');
  assert.deepEqual(seen, ['caller:4', 'listener:x:1'], 'a digit from a role nobody talks with goes nowhere');
  call.close('deleted');
});

// ---------------------------------------------------------------- data channel

test('data channel: JSON from the caller reaches the agent session; anything else is answered with an error', async () => {
  const rt = testRuntime();
  const call = newCall(rt);
  const caller = party(rt, 'whip', formatOf('pcmu'), 1, 2);
  call.addLeg('caller', caller.leg);
  const { leg, probe } = await agentLeg(call, rt);
  call.addLeg('agent', leg);
  caller.transport.receiveMessage('{"type":"hello","n":1}');
  caller.transport.receiveMessage('not json');
  assert.deepEqual(probe.messages, [{ type: 'hello', n: 1 }]);
  assert.deepEqual(
    caller.transport.messages.map((m) => JSON.parse(m) as unknown),
    [{ type: 'error', error: 'messages must be JSON' }],
  );
  probe.session!.send({ type: 'agent-text', text: 'hi' });
  assert.deepEqual(JSON.parse(caller.transport.messages.at(-1)!), { type: 'agent-text', text: 'hi' });
  // With a callee the caller talks with it: the agent no longer gets the caller's messages.
  call.addLeg('callee', party(rt, 'sip-uac', formatOf('pcmu'), 3, 4).leg);
  caller.transport.receiveMessage('{"type":"late"}');
  assert.deepEqual(probe.messages, [{ type: 'hello', n: 1 }]);
  assert.equal(call.message('callee', { a: 1 }), true, 'the fake callee transport has a data channel');
  assert.equal(call.message('listener:nobody', { a: 1 }), false);
  call.close('deleted');
});

test('a party without a data channel: messages to it are refused', () => {
  const rt = testRuntime();
  const call = newCall(rt);
  const { endpoint } = testEndpoint(rt, formatOf('pcmu'), { dataChannel: false, pcmRate: RATE });
  call.addLeg('caller', new PartyLeg('sip-uac', endpoint));
  assert.equal(call.message('caller', { type: 'x' }), false);
  call.close('deleted');
});

// ---------------------------------------------------------------- listeners

test('listeners: one that took the caller\'s codec gets its packets forwarded; the others get encoded caller, agent and mix tracks', async () => {
  const rt = testRuntime();
  const call = newCall(rt);
  const caller = party(rt, 'whip', formatOf('pcmu'), 1, 2);
  call.addLeg('caller', caller.leg);
  const { leg, probe } = await agentLeg(call, rt);
  call.addLeg('agent', leg);
  const events: [string, unknown][] = [];
  call.fanout.on('event', (name, data) => events.push([name, data]));
  // A real ListenerLeg on a fake transport for the forwarded one.
  const lt = new FakeMediaTransport();
  lt.connect();
  const removed: string[] = [];
  const forwarded = new ListenerLeg('l1', 'viewer', 'caller', 'pcmu', 0, 8000, 0x1e, lt, true, (l) => {
    removed.push(l.id);
    call.removeLeg(`listener:${l.id}`, 'deleted');
  });
  call.addListener(forwarded);
  const callerTrack = new ProbeListener('l2', 'caller', 'g722', false);
  const agentTrack = new ProbeListener('l3', 'agent', 'g722', false);
  const mixTrack = new ProbeListener('l4', 'mix', 'g722', false);
  for (const l of [callerTrack, agentTrack, mixTrack]) call.addListener(l);
  assert.deepEqual(events.at(-1), ['viewercount', { viewercount: 4 }]);
  assert.equal(call.listeners().length, 4);
  probe.session!.play(concatPcm(toneFrames(600, RATE, 40)));
  const payloads = tonePayloads('pcmu', 1000, 30);
  speak(rt, caller, payloads);
  // Forwarded: the caller's payloads on the listener's own stream.
  const out = parsed(lt.rtp);
  assert.deepEqual(
    out.map((p) => p.payload),
    payloads,
  );
  assert.ok(out.every((p, i) => p.ssrc === 0x1e && (i === 0 || p.sequenceNumber === ((out[i - 1]!.sequenceNumber + 1) & 0xffff))), 'its own SSRC and sequence');
  assert.equal(forwarded.counters().packetsSent, 30);
  // Encoded: decode each track as its player would.
  const decode = (l: ProbeListener) => {
    const dec = createDecoder('g722', RATE);
    return concatPcm(l.frames.map((f) => dec.decode(f))).slice(320 * 4);
  };
  const c = decode(callerTrack);
  const a = decode(agentTrack);
  const m = decode(mixTrack);
  assert.ok(toneSnrDb(c, 1000, RATE) > 20 && toneSnrDb(c, 600, RATE) < -10, `caller track: the caller only (${toneSnrDb(c, 1000, RATE).toFixed(1)} dB)`);
  assert.ok(toneSnrDb(a, 600, RATE) > 20 && toneSnrDb(a, 1000, RATE) < -10, `agent track: the agent only (${toneSnrDb(a, 600, RATE).toFixed(1)} dB)`);
  assert.ok(toneSnrDb(m, 1000, RATE) > -5 && toneSnrDb(m, 600, RATE) > -5, 'mix track: both');
  assert.ok(rms(m) > 0.9 * rms(c), 'the mix is about as loud as one voice');
  // The call ends: listeners hear 'inactive' first, then their legs close.
  call.close('deleted');
  assert.deepEqual(events.at(-1), ['inactive', {}]);
  assert.equal(lt.state, 'closed');
  assert.deepEqual(removed, ['l1']);
  for (const l of [callerTrack, agentTrack, mixTrack]) assert.deepEqual(l.closes, ['deleted']);
});

test('the caller\'s quality goes to listeners, the caller\'s data channel and the call\'s quality event', async () => {
  const rt = testRuntime();
  const call = newCall(rt);
  const caller = party(rt, 'whip', formatOf('pcmu'), 1, 2);
  call.addLeg('caller', caller.leg);
  const { leg } = await agentLeg(call, rt);
  call.addLeg('agent', leg);
  const fanned: string[] = [];
  call.fanout.on('event', (name) => fanned.push(name));
  const qualities: number[] = [];
  call.on('quality', (q) => qualities.push(q.packets));
  speak(rt, caller, tonePayloads('pcmu', 1000, 260));
  assert.ok(qualities.length >= 1, 'a quality report in 5 s');
  assert.ok(fanned.includes('quality'), 'listeners got it');
  const msgs = caller.transport.messages.map((s) => JSON.parse(s) as { type: string; packets?: number });
  assert.ok(
    msgs.some((q) => q.type === 'quality' && q.packets === qualities.at(-1)),
    'the caller\'s data channel got it',
  );
  call.close('deleted');
});

// ---------------------------------------------------------------- the end

test('close(): every leg closed exactly once with the reason, the call emptied, no endpoint left on the frame clock', async () => {
  const rt = testRuntime();
  const call = newCall(rt);
  const caller = party(rt, 'whip', formatOf('pcmu'), 1, 2);
  const callee = party(rt, 'sip-uac', formatOf('g722'), 3, 4);
  call.addLeg('caller', caller.leg);
  const { leg, probe } = await agentLeg(call, rt);
  call.addLeg('agent', leg);
  call.addLeg('callee', callee.leg);
  const listener = new ProbeListener('l1', 'mix', 'opus', false);
  call.addListener(listener);
  call.markConnected();
  assert.equal(call.state, 'connected');
  assert.equal(rt.frameClock.size, 2);
  const states: string[] = [];
  call.on('state', (s) => states.push(s));
  let legsAtEnd = -1;
  call.on('ended', () => (legsAtEnd = call.legs.size));
  call.close('shutdown');
  call.close('deleted');
  assert.deepEqual([caller.leg.closes, callee.leg.closes, listener.closes, probe.ended], [['shutdown'], ['shutdown'], ['shutdown'], ['shutdown']]);
  assert.equal(legsAtEnd, 4, '"ended" still sees the legs');
  assert.deepEqual(states, ['ended']);
  assert.equal(call.endReason, 'shutdown');
  assert.equal(call.legs.size, 0);
  assert.equal(call.fanout.size, 0, 'the fan-out forgets its listeners too');
  assert.equal(rt.frameClock.size, 0);
  assert.equal(rt.clock.pending, 0, 'no timer left: idle timer and frame clock');
  assert.equal(call.totals().packetsSent, 0, 'an ended call has no legs to count');
  call.removeLeg('caller', 'deleted');
  call.replaceLeg('caller', caller.leg);
  assert.deepEqual(caller.leg.closes, ['shutdown', 'shutdown'], 'a leg given to an ended call is closed at once');
  assert.deepEqual(rt.errors, []);
});

test('the agent hanging up ends the call: agent-hangup, or agent-disconnected when its socket went', async () => {
  for (const [given, reason] of [
    ['bye', 'agent-hangup'],
    ['agent-disconnected', 'agent-disconnected'],
  ] as const) {
    const rt = testRuntime();
    const call = newCall(rt);
    const caller = party(rt, 'whip', formatOf('pcmu'), 1, 2);
    call.addLeg('caller', caller.leg);
    const { leg, probe } = await agentLeg(call, rt);
    call.addLeg('agent', leg);
    const ended: EndReason[] = [];
    call.on('ended', (r) => ended.push(r));
    probe.session!.hangup(given);
    assert.deepEqual(ended, [reason]);
    assert.deepEqual(caller.leg.closes, [reason]);
  }
});

test('lastMediaAt is the latest media of any leg; agent audio does not count', async () => {
  const rt = testRuntime();
  const call = newCall(rt);
  const caller = party(rt, 'whip', formatOf('pcmu'), 1, 2);
  call.addLeg('caller', caller.leg);
  const { leg, probe } = await agentLeg(call, rt);
  call.addLeg('agent', leg);
  probe.session!.play(new Int16Array(RATE));
  rt.clock.advance(100);
  assert.equal(call.lastMediaAt(), 0);
  caller.transport.receiveRtp(caller.far.audio(Buffer.alloc(160, 0xff)));
  assert.equal(call.lastMediaAt(), rt.clock.now());
  assert.equal(caller.leg.remoteAddress, '192.0.2.10:40000');
  call.close('deleted');
});

test('a forwarded call with listeners decodes both sides for the encoded tracks, the callee\'s audio as the other party', () => {
  const rt = testRuntime();
  const call = newCall(rt);
  const caller = party(rt, 'whip', formatOf('pcmu'), 1, 2);
  const callee = party(rt, 'sip-uac', formatOf('pcmu'), 3, 4);
  call.addLeg('caller', caller.leg);
  call.addLeg('callee', callee.leg);
  const passthrough = new ProbeListener('l1', 'caller', 'pcmu', true);
  const other = new ProbeListener('l2', 'agent', 'pcmu', false);
  call.addListener(passthrough);
  call.addListener(other);
  assert.equal(call.mode, 'forward');
  const up = tonePayloads('pcmu', 1000, 20);
  const down = tonePayloads('pcmu', 600, 20);
  for (let i = 0; i < 20; i++) {
    caller.transport.receiveRtp(caller.far.audio(up[i]!));
    callee.transport.receiveRtp(callee.far.audio(down[i]!));
    rt.clock.advance(20);
  }
  assert.deepEqual(
    passthrough.forwarded.map((p) => p.payload),
    up,
  );
  assert.equal(parsed(callee.transport.rtp).length, 20, 'forwarding to the callee goes on');
  const dec = createDecoder('pcmu', RATE);
  const heardOther = concatPcm(other.frames.map((f) => dec.decode(f))).slice(320 * 4);
  assert.ok(toneSnrDb(heardOther, 600, RATE) > 20, `the other party track is the callee (${toneSnrDb(heardOther, 600, RATE).toFixed(1)} dB)`);
  call.close('deleted');
});

test('takeLeg: a party leg moves to another call open, with its counters; the first call no longer hears it', async () => {
  const rt = testRuntime();
  const a = newCall(rt);
  const b = new Call('call-2', SOURCE, rt.clock, 600_000, { pcmRate: RATE });
  const alice = party(rt, 'whip', formatOf('pcmu'), 0xa0, 0xa1);
  const bob = party(rt, 'whip', formatOf('pcmu'), 0xb0, 0xb1);
  a.addLeg('caller', alice.leg);
  b.addLeg('caller', bob.leg);
  await agentLeg(b, rt).then(({ leg }) => b.addLeg('agent', leg));
  speak(rt, bob, tonePayloads('pcmu', 600, 5));
  const before = b.totals().packetsReceived;
  const moved = b.takeLeg('caller')!;
  assert.equal(moved, bob.leg);
  assert.deepEqual(bob.leg.closes, [], 'not closed');
  assert.equal(b.totals().packetsReceived, 0, 'its counters went with it');
  let quality = 0;
  b.on('quality', () => quality++);
  a.addLeg('callee', moved);
  assert.equal(a.mode, 'forward');
  speak(rt, bob, tonePayloads('pcmu', 600, 5));
  assert.equal(a.totals().packetsReceived, before + 5, 'counted once, in the call that has it');
  assert.equal(parsed(alice.transport.rtp).length, 5, "bob's packets reach alice");
  rt.clock.advance(5000);
  assert.equal(quality, 0, 'the first call hears nothing more from the leg it gave away');
  b.close('transferred');
  assert.deepEqual(bob.leg.closes, [], "closing the first call leaves the moved leg alone");
  a.close('deleted');
  assert.deepEqual(bob.leg.closes, ['deleted']);
});

test('forward mode with a listener of the other party only: the caller is not decoded, the callee is, and the listener hears the callee every tick', () => {
  const rt = testRuntime();
  const call = newCall(rt);
  const caller = party(rt, 'whip', formatOf('pcmu'), 0xc0, 0xc1);
  const callee = party(rt, 'sip-uac', formatOf('pcmu'), 0xe0, 0xe1);
  call.addLeg('caller', caller.leg);
  call.addLeg('callee', callee.leg);
  const l = new ProbeListener('l1', 'agent', 'pcmu', false);
  call.addListener(l);
  assert.deepEqual([caller.leg.endpoint.decode, callee.leg.endpoint.decode], [false, true], 'each side decoded only for a track someone hears');
  // Only the callee talks; the caller's jitter buffer has nothing, yet the listener is fed.
  for (const p of tonePayloads('pcmu', 600, 20)) {
    callee.transport.receiveRtp(callee.far.audio(p));
    rt.clock.advance(20);
  }
  const pcm = concatPcm(l.frames.map((f) => createDecoder('pcmu', 8000).decode(f)));
  assert.ok(l.frames.length >= 15, `the listener got ${l.frames.length} frames`);
  assert.ok(toneSnrDb(pcm.subarray(pcm.length / 2), 600, 8000) > 10, "it hears the callee's tone");
  call.close('deleted');
});

test('a replaced caller leg still keeps the call alive until its replacement sends media (the idle timer counts from the last packet of either)', () => {
  const rt = testRuntime();
  const call = new Call('idle-1', SOURCE, rt.clock, 10_000, { pcmRate: RATE });
  const first = party(rt, 'whip', formatOf('pcmu'), 0xa0, 0xa1);
  call.addLeg('caller', first.leg);
  for (let t = 0; t < 9_500; t += 20) {
    first.transport.receiveRtp(first.far.audio(Buffer.alloc(160, 0xff)));
    rt.clock.advance(20);
  }
  const second = party(rt, 'sip-ws', formatOf('pcmu'), 0xb0, 0xb1);
  call.replaceLeg('caller', second.leg);
  rt.clock.advance(1_000); // the first idle check fires: the transferee has sent nothing yet
  assert.equal(call.state === 'ended' ? call.endReason : 'alive', 'alive');
  rt.clock.advance(10_000);
  assert.equal(call.endReason, 'idle-timeout', 'and with no media from anyone it does end');
});
