import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CodecJob, CodecResult } from '../audio/codec-job.js';
import { CodecPool, type CodecChannel } from '../audio/codec-pool.js';
import type { AudioFrame } from '../audio/frame.js';
import { rms, toneSnrDb } from '../audio/test-signals.js';
import type { CodecName } from '../core/config.js';
import { parseTelephoneEvent } from '../rtp/dtmf.js';
import { parseRtp } from '../rtp/packet.js';
import { buildReceiverReport, ntpMiddle, parseRtcp } from '../rtp/rtcp.js';
import type { Quality } from './endpoint.js';
import type { FrameSource } from './frames.js';
import { decodeSent, encodeFrames, eventPayload, FarEnd, formatOf, parsed, testEndpoint, testRuntime, toneFrames } from './testing.js';

function concat(frames: readonly AudioFrame[]): Int16Array {
  const out = new Int16Array(frames.reduce((n, f) => n + f.samples.length, 0));
  let at = 0;
  for (const f of frames) {
    out.set(f.samples, at);
    at += f.samples.length;
  }
  return out;
}

/** A pulled source as a test plays it: frames queued by the test, voided on demand, what went out recorded. */
class QueueSource implements FrameSource {
  readonly queue: Int16Array[] = [];
  readonly void = new Set<Int16Array>();
  readonly sentLog: (Int16Array | undefined)[] = [];
  next(): Int16Array | undefined {
    return this.queue.shift();
  }
  voided(frame: Int16Array): boolean {
    return this.void.has(frame);
  }
  sent(frame: Int16Array | undefined): void {
    this.sentLog.push(frame);
  }
  describe(): string {
    return 'Queue';
  }
}

/** A codec pool whose answers the test hands back when it likes, as a codec thread would (results computed at once). */
class HeldPool extends CodecPool {
  readonly #held: { deliver: () => void; done: (r: CodecResult) => void }[] = [];
  constructor() {
    super(0);
  }
  override open(codec: CodecName, rate: number, encode: boolean): CodecChannel {
    const ch = super.open(codec, rate, encode);
    const run = ch.run.bind(ch);
    ch.run = (job: CodecJob, done) => run(job, (r) => this.#held.push({ deliver: () => done(r), done }));
    return ch;
  }
  release(index: number): void {
    this.#held.splice(index, 1)[0]!.deliver();
  }
  shed(index: number): void {
    this.#held.splice(index, 1)[0]!.done({ samples: undefined, decodeError: false, encoded: undefined, shed: true });
  }
}

/** A codec pool that counts the frames it is asked to encode (the CPU the idle path saves). */
class CountingPool extends CodecPool {
  encodes = 0;
  jobs = 0;
  constructor() {
    super(0);
  }
  override open(codec: CodecName, rate: number, encode: boolean): CodecChannel {
    const ch = super.open(codec, rate, encode);
    const run = ch.run.bind(ch);
    ch.run = (job: CodecJob, done) => {
      this.jobs++;
      if (job.encode) this.encodes++;
      run(job, done);
    };
    return ch;
  }
}

// ---------------------------------------------------------------- receive

test('PCMU packets of a 1 kHz tone come out as 20 ms frames at the PCM rate, carrying the tone, timed by their RTP timestamps', () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'), { pcmRate: 16000 });
  endpoint.decode = true;
  const frames: AudioFrame[] = [];
  endpoint.onFrame = (f) => frames.push(f);
  const far = new FarEnd(0, 8000);
  const payloads = encodeFrames('pcmu', 8000, toneFrames(1000, 8000, 30));
  for (const [i, p] of payloads.entries()) {
    // The sender paused 40 ms (DTX) after frame 20: the frame times follow its timestamps.
    if (i === 20) far.ts += 2 * far.frameUnits;
    transport.receiveRtp(far.audio(p));
    rt.clock.advance(20);
  }
  assert.equal(frames.length, 30);
  assert.ok(
    frames.every((f) => f.sampleRate === 16000 && f.samples.length === 320),
    '20 ms at 16 kHz each',
  );
  assert.deepEqual(
    frames.map((f) => f.timestampMs),
    Array.from({ length: 30 }, (_, i) => i * 20 + (i >= 20 ? 40 : 0)),
  );
  const snr = toneSnrDb(concat(frames.slice(2)), 1000, 16000);
  assert.ok(snr > 25, `1 kHz tone decoded at ${snr.toFixed(1)} dB SNR`);
  assert.deepEqual(endpoint.repairs, { fecRecovered: 0, concealed: 0, decodeErrors: 0, shed: 0 });
  assert.equal(endpoint.received.packets, 30);
  assert.equal(endpoint.received.bytes, 30 * (12 + 160));
  assert.equal(endpoint.ingressLatencies.length, 30);
  assert.ok(endpoint.ingressLatencies.every((ms) => ms === 20), 'each frame was played one jitter-buffer frame after it arrived');
  assert.equal(endpoint.lastMediaAt(), rt.clock.now() - 20);
  endpoint.close();
});

test('G.722 packets of a 1 kHz tone decode to 16 kHz frames with the tone', () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('g722'), { pcmRate: 16000 });
  endpoint.decode = true;
  const frames: AudioFrame[] = [];
  endpoint.onFrame = (f) => frames.push(f);
  const far = new FarEnd(9, 8000);
  for (const p of encodeFrames('g722', 16000, toneFrames(1000, 16000, 25))) {
    transport.receiveRtp(far.audio(p));
    rt.clock.advance(20);
  }
  assert.equal(frames.length, 25);
  const snr = toneSnrDb(concat(frames.slice(3)), 1000, 16000);
  assert.ok(snr > 25, `G.722 tone at ${snr.toFixed(1)} dB SNR`);
  endpoint.close();
});

test('a lost packet is concealed and counted once; the frames around it keep their times', () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'));
  endpoint.decode = true;
  const frames: AudioFrame[] = [];
  endpoint.onFrame = (f) => frames.push(f);
  const far = new FarEnd(0, 8000);
  const payloads = encodeFrames('pcmu', 8000, toneFrames(1000, 8000, 12));
  // Packets arrive half a frame before the tick that plays the one before them.
  rt.clock.advance(10);
  for (const [i, p] of payloads.entries()) {
    if (i === 6) far.skip();
    else transport.receiveRtp(far.audio(p));
    rt.clock.advance(20);
  }
  rt.clock.advance(20);
  assert.equal(endpoint.repairs.concealed, 1);
  assert.equal(frames.length, 12, 'eleven decoded frames and one concealed');
  assert.ok(rms(frames[6]!.samples) > 0, 'the concealed frame is a fade of the last one, not a hole');
  assert.ok(rms(frames[6]!.samples) < rms(frames[5]!.samples), 'fading');
  assert.deepEqual(
    frames.map((f) => f.timestampMs),
    [0, 20, 40, 60, 80, 100, 120, 140, 160, 180, 200, 220],
    'the concealed frame takes the lost one\'s time',
  );
  assert.equal(endpoint.rtp.stats.lost, 1, 'the receiver statistics see the loss too');
  endpoint.close();
});

test('an undecodable payload is counted in decodeErrors and concealed; the stream goes on', () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('opus'), { pcmRate: 16000 });
  endpoint.decode = true;
  const frames: AudioFrame[] = [];
  endpoint.onFrame = (f) => frames.push(f);
  const far = new FarEnd(111, 48000);
  const good = encodeFrames('opus', 16000, toneFrames(1000, 16000, 6));
  for (const [i, p] of good.entries()) {
    transport.receiveRtp(far.audio(i === 3 ? Buffer.from([0xff, 0xff, 0xff]) : p));
    rt.clock.advance(20);
  }
  assert.equal(endpoint.repairs.decodeErrors, 1);
  assert.equal(endpoint.repairs.concealed, 0, 'a rejected payload is not a lost packet');
  assert.equal(frames.length, 6, 'the bad packet still yields a (concealed) frame');
  assert.ok(
    frames.every((f) => f.samples.length === 320),
    '20 ms frames',
  );
  endpoint.close();
});

test('packets of another payload type are counted as received but neither decoded nor forwarded', () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'));
  endpoint.decode = true;
  const frames: AudioFrame[] = [];
  const forwarded: number[] = [];
  endpoint.onFrame = (f) => frames.push(f);
  endpoint.onPacket = (p) => forwarded.push(p.payloadType);
  const far = new FarEnd(13, 8000); // comfort noise, not negotiated
  for (let i = 0; i < 5; i++) {
    transport.receiveRtp(far.audio(Buffer.from([40])));
    rt.clock.advance(20);
  }
  assert.equal(endpoint.received.packets, 5);
  assert.equal(endpoint.received.bytes, 5 * 13);
  assert.deepEqual(frames, []);
  assert.deepEqual(forwarded, []);
  assert.equal(endpoint.rtp.stats.received, 0, 'not part of the stream the reports describe');
  endpoint.close();
});

test('packets that are not RTP version 2, or shorter than a header, are not even counted', () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'));
  const far = new FarEnd(0, 8000);
  const v1 = far.audio(Buffer.alloc(160, 0xff));
  v1[0] = 0x40;
  transport.receiveRtp(v1);
  transport.receiveRtp(Buffer.from([0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]));
  assert.deepEqual(endpoint.received, { packets: 0, bytes: 0, firstArrival: 0, lastArrival: 0 });
  // A version-2 packet whose header does not parse (a CSRC list past its end) is counted, then dropped.
  const truncated = Buffer.from([0x83, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
  transport.receiveRtp(truncated);
  assert.equal(endpoint.received.packets, 1);
  assert.equal(endpoint.rtp.stats.received, 0);
  endpoint.close();
});

test('a new SSRC starts a new stream: fresh sequence space (no false loss), frame times run on', () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'));
  endpoint.decode = true;
  const frames: AudioFrame[] = [];
  endpoint.onFrame = (f) => frames.push(f);
  const payloads = encodeFrames('pcmu', 8000, toneFrames(1000, 8000, 20));
  const first = new FarEnd(0, 8000, 0xaaaa, { seq: 100, ts: 1000 });
  const second = new FarEnd(0, 8000, 0xbbbb, { seq: 50_000, ts: 3_000_000_000 });
  for (const [i, p] of payloads.entries()) {
    transport.receiveRtp((i < 10 ? first : second).audio(p));
    rt.clock.advance(20);
  }
  rt.clock.advance(5000);
  assert.equal(endpoint.rtp.remoteSsrc, 0xbbbb);
  assert.equal(endpoint.rtp.stats.received, 10, 'statistics of the new stream only');
  assert.equal(endpoint.rtp.stats.lost, 0, 'a sequence jump to another source is not loss');
  assert.equal(endpoint.quality?.lost, 0);
  const times = frames.map((f) => f.timestampMs);
  assert.deepEqual(times.slice(0, 20), Array.from({ length: 20 }, (_, i) => 20 * i), 'the new stream\'s frames run on from the old one\'s');
  assert.ok(
    times.every((t, i) => i === 0 || t > times[i - 1]!),
    `frame times never go back, concealment after the end included: ${times.join(',')}`,
  );
  endpoint.close();
});

test('nothing is decoded while decode is off: no frames, no jitter buffering, no codec work', () => {
  const pool = new CountingPool();
  const rt = testRuntime({ codecs: pool });
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'));
  let frames = 0;
  endpoint.onFrame = () => frames++;
  const ticks: unknown[] = [];
  endpoint.on('tick', (r) => ticks.push(r));
  const far = new FarEnd(0, 8000);
  for (const p of encodeFrames('pcmu', 8000, toneFrames(1000, 8000, 10))) {
    transport.receiveRtp(far.audio(p));
    rt.clock.advance(20);
  }
  assert.equal(frames, 0);
  assert.equal(pool.jobs, 0, 'the codec was never run');
  assert.ok(ticks.length >= 9 && ticks.every((r) => r === undefined), 'ticks still come, with nothing decoded (listeners hear the other side)');
  assert.equal(endpoint.jitter.stats.pushed, 0);
  assert.equal(endpoint.received.packets, 10, 'still counted');
  assert.equal(endpoint.rtp.stats.received, 10, 'still in the receiver statistics');
  endpoint.close();
});

test('RFC 4733 events from the far end: one dtmf per event, never decoded as audio', () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'));
  endpoint.decode = true;
  const digits: string[] = [];
  endpoint.on('dtmf', (d) => digits.push(d));
  const forwarded: boolean[] = [];
  endpoint.onPacket = (_p, event) => forwarded.push(event);
  const far = new FarEnd(0, 8000);
  const start = far.ts;
  // '7' for 60 ms, the end packet three times, then '#'.
  for (const [d, end] of [
    [160, false],
    [320, false],
    [480, true],
    [480, true],
    [480, true],
  ] as const) {
    transport.receiveRtp(far.packet(101, eventPayload(7, end, d), start, d === 160));
    rt.clock.advance(20);
  }
  transport.receiveRtp(far.packet(101, eventPayload(11, true, 160), start + 2000, true));
  rt.clock.advance(20);
  assert.deepEqual(digits, ['7', '#']);
  assert.equal(endpoint.jitter.stats.pushed, 0, 'events never reach the jitter buffer');
  assert.deepEqual(forwarded, [true, true, true, true, true, true]);
  assert.equal(endpoint.rtp.stats.lost, 0, 'events share the sequence space and are counted in it');
  endpoint.close();
});

test('audio after an RFC 4733 event plays on time: the event packets are not concealed as lost audio', () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'));
  endpoint.decode = true;
  const frames: AudioFrame[] = [];
  endpoint.onFrame = (f) => frames.push(f);
  const far = new FarEnd(0, 8000);
  const payloads = encodeFrames('pcmu', 8000, toneFrames(1000, 8000, 20));
  rt.clock.advance(10);
  for (let i = 0; i < 5; i++) {
    transport.receiveRtp(far.audio(payloads[i]!));
    rt.clock.advance(20);
  }
  // A 100 ms digit as browsers send it: four packets, then the end packet three times in one frame.
  const start = far.ts;
  for (let f = 1; f <= 5; f++) {
    const end = f === 5;
    for (let r = 0; r < (end ? 3 : 1); r++) transport.receiveRtp(far.packet(101, eventPayload(1, end, f * 160), start, f === 1));
    far.ts += far.frameUnits;
    rt.clock.advance(20);
  }
  const before = Math.max(...endpoint.ingressLatencies);
  for (let i = 5; i < 20; i++) {
    transport.receiveRtp(far.audio(payloads[i]!));
    rt.clock.advance(20);
  }
  const audio = frames.filter((f) => rms(f.samples) > 5000);
  assert.equal(audio.length, 20, 'every audio packet was played');
  assert.deepEqual(
    audio.slice(5).map((f) => f.timestampMs),
    Array.from({ length: 15 }, (_, i) => 200 + 20 * i),
    'at its RTP time, after the event',
  );
  const after = endpoint.ingressLatencies.slice(-15);
  assert.ok(
    after.every((ms) => ms <= before),
    `no delay added by the digit: ${before} ms before, ${after.join(',')} after`,
  );
  assert.ok(endpoint.repairs.concealed <= 5, `${endpoint.repairs.concealed} frames concealed for a 5-frame event`);
  assert.equal(endpoint.rtp.stats.lost, 0);
  endpoint.close();
});

// ---------------------------------------------------------------- send

test('a pulled source is encoded and sent one packet per tick, sequence +1 and timestamp +1 frame, with our SSRC', () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'), { ssrc: 0xcafe });
  const source = new QueueSource();
  const tones = toneFrames(1000, 8000, 10);
  source.queue.push(...tones);
  endpoint.source = source;
  rt.clock.advance(200);
  const sent = parsed(transport.rtp);
  assert.equal(sent.length, 10);
  for (const [i, p] of sent.entries()) {
    assert.equal(p.ssrc, 0xcafe);
    assert.equal(p.payloadType, 0);
    assert.equal(p.marker, false);
    if (i > 0) {
      assert.equal(p.sequenceNumber, (sent[i - 1]!.sequenceNumber + 1) & 0xffff);
      assert.equal(p.timestamp, (sent[i - 1]!.timestamp + 160) >>> 0);
    }
  }
  const heard = decodeSent('pcmu', 8000, transport.rtp, 0);
  assert.ok(toneSnrDb(heard, 1000, 8000) > 30, 'the far end hears the tone');
  assert.deepEqual(source.sentLog, tones, 'the source is told each frame went out');
  assert.equal(endpoint.rtp.packetsSent, 10);
  assert.equal(endpoint.rtp.octetsSent, 1600);
  endpoint.close();
});

test('a quiet source: exactly five silent frames are encoded, then the last silent packet is resent every tick', () => {
  const pool = new CountingPool();
  const rt = testRuntime({ codecs: pool });
  const { endpoint, transport } = testEndpoint(rt, formatOf('opus'), { pcmRate: 16000 });
  const source = new QueueSource();
  source.queue.push(...toneFrames(1000, 16000, 3));
  endpoint.source = source;
  rt.clock.advance(3 * 20);
  assert.equal(pool.encodes, 3);
  rt.clock.advance(20 * 20);
  assert.equal(pool.encodes, 3 + 5, 'five frames of silence, then no encoder work');
  const sent = parsed(transport.rtp);
  assert.equal(sent.length, 23, 'a packet every tick all the same');
  const silent = sent.slice(3);
  const last = silent[4]!.payload;
  assert.ok(
    silent.slice(5).every((p) => p.payload.equals(last)),
    'the fifth silent packet is what is resent',
  );
  assert.ok(
    sent.every((p, i) => i === 0 || p.timestamp === (sent[i - 1]!.timestamp + 960) >>> 0),
    'resent packets still advance the timestamp',
  );
  assert.ok(rms(decodeSent('opus', 16000, transport.rtp.slice(8), 111)) < 50, 'and decode to silence');
  assert.deepEqual(source.sentLog.slice(3), Array(20).fill(undefined), 'the source is told silence went out');
  // Talk again: encoded at once.
  source.queue.push(...toneFrames(1000, 16000, 1));
  rt.clock.advance(20);
  assert.equal(pool.encodes, 9);
  endpoint.close();
});

test('a frame the source voided (barge-in) goes out as silence, not as the voided audio', () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'));
  const source = new QueueSource();
  endpoint.source = source;
  rt.clock.advance(20); // one silent frame first: the silent packet exists
  const tones = toneFrames(1000, 8000, 3);
  source.queue.push(...tones);
  source.void.add(tones[1]!);
  const sentFrames: (Int16Array | undefined)[] = [];
  endpoint.on('tick', (_r, sent) => sentFrames.push(sent));
  rt.clock.advance(60);
  const sent = parsed(transport.rtp);
  assert.equal(sent.length, 4);
  assert.ok(sent[2]!.payload.equals(sent[0]!.payload), 'the voided frame was replaced by the silent packet');
  assert.ok(!sent[1]!.payload.equals(sent[0]!.payload) && !sent[3]!.payload.equals(sent[0]!.payload), 'the others are the tone');
  assert.deepEqual(source.sentLog.slice(1), [tones[0], undefined, tones[2]]);
  assert.deepEqual(sentFrames, [tones[0], undefined, tones[2]], 'listeners do not hear it either');
  endpoint.close();
});

test('sendFrame encodes a pushed frame and sends it at once; timestamps never repeat between ticks', () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('g722'), { pcmRate: 16000 });
  const tones = toneFrames(1000, 16000, 12);
  for (const f of tones.slice(0, 2)) endpoint.sendFrame(f);
  assert.equal(transport.rtp.length, 2, 'sent without waiting for a tick');
  for (const f of tones.slice(2)) {
    rt.clock.advance(20);
    endpoint.sendFrame(f);
  }
  const sent = parsed(transport.rtp);
  assert.equal(sent.length, 12);
  assert.ok(
    sent.every((p, i) => i === 0 || (p.sequenceNumber === ((sent[i - 1]!.sequenceNumber + 1) & 0xffff) && p.timestamp === (sent[i - 1]!.timestamp + 160) >>> 0)),
    'sequence +1 and timestamp +1 frame, between ticks too',
  );
  const heard = decodeSent('g722', 16000, transport.rtp, 9).slice(2 * 320);
  assert.ok(toneSnrDb(heard, 1000, 16000) > 25, 'the far end hears the tone');
  endpoint.close();
});

test('forward() rewrites SSRC and sequence numbers, keeps the sender spacing, and marks a new source', () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'), { ssrc: 0x5150 });
  const a = new FarEnd(0, 8000, 0xa, { seq: 65_534, ts: 4_294_967_000 });
  const b = new FarEnd(0, 8000, 0xb, { seq: 7, ts: 42 });
  const payload = (n: number) => Buffer.alloc(160, n);
  const send = (far: FarEnd, n: number) => endpoint.forward(parseRtp(far.audio(payload(n))), false);
  send(a, 1);
  rt.clock.advance(20);
  send(a, 2);
  a.ts += 3 * 160; // a 60 ms gap in the sender's stream (DTX)
  rt.clock.advance(20);
  send(a, 3);
  rt.clock.advance(20);
  send(b, 4);
  rt.clock.advance(20);
  send(b, 5);
  rt.clock.advance(2000);
  send(b, 6); // back after a long pause
  const out = parsed(transport.rtp);
  assert.deepEqual(
    out.map((p) => p.payload[0]),
    [1, 2, 3, 4, 5, 6],
  );
  assert.ok(
    out.every((p) => p.ssrc === 0x5150 && p.payloadType === 0),
    'our SSRC',
  );
  assert.ok(out.every((p, i) => i === 0 || p.sequenceNumber === ((out[i - 1]!.sequenceNumber + 1) & 0xffff)), 'our own sequence, across the sender wrap and the source change');
  const dts = out.map((p, i) => (i === 0 ? 0 : (p.timestamp - out[i - 1]!.timestamp) >>> 0));
  assert.equal(dts[1], 160);
  assert.equal(dts[2], 4 * 160, 'the gap is kept');
  assert.ok(dts[3]! > 0 && dts[3]! < 0x8000_0000, 'a new source continues forward on our timeline');
  assert.equal(dts[4], 160);
  assert.deepEqual(
    out.map((p) => p.marker),
    [true, false, false, true, false, true],
  );
  endpoint.close();
});

test('forward() maps telephone-events to our telephone-event payload type, and drops them where we negotiated none', () => {
  const rt = testRuntime();
  const withTe = testEndpoint(rt, formatOf('pcmu', { telephoneEvent: { payloadType: 96, clockRate: 8000 } }));
  const without = testEndpoint(rt, formatOf('pcmu', { telephoneEvent: undefined }));
  const far = new FarEnd(0, 8000);
  const audio = parseRtp(far.audio(Buffer.alloc(160, 0xff)));
  const ev = parseRtp(far.packet(101, eventPayload(3, false, 160), far.ts, true));
  for (const { endpoint } of [withTe, without]) {
    endpoint.forward(audio, false);
    endpoint.forward(ev, true);
  }
  assert.deepEqual(
    parsed(withTe.transport.rtp).map((p) => p.payloadType),
    [0, 96],
  );
  assert.deepEqual(parsed(withTe.transport.rtp)[1]!.payload, eventPayload(3, false, 160));
  assert.deepEqual(
    parsed(without.transport.rtp).map((p) => p.payloadType),
    [0],
  );
  withTe.endpoint.close();
  without.endpoint.close();
});

test('sendDtmf: RFC 4733 packets share the start timestamp, marker on the first, end bit three times; no audio meanwhile, then audio resumes', () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'));
  const source = new QueueSource();
  source.queue.push(...toneFrames(1000, 8000, 30));
  endpoint.source = source;
  rt.clock.advance(40);
  assert.equal(endpoint.sendDtmf('9', 100), true);
  assert.equal(endpoint.sendDtmf('x'), false, 'not a DTMF digit');
  rt.clock.advance(200);
  const sent = parsed(transport.rtp);
  const events = sent.filter((p) => p.payloadType === 101);
  assert.equal(events.length, 4 + 3);
  assert.ok(events.every((e) => e.timestamp === events[0]!.timestamp), 'one timestamp for the whole event');
  assert.deepEqual(
    events.map((e) => e.marker),
    [true, false, false, false, false, false, false],
  );
  const te = events.map((e) => parseTelephoneEvent(e.payload)!);
  assert.deepEqual(
    te.map((e) => [e.event, e.end, e.duration]),
    [
      [9, false, 160],
      [9, false, 320],
      [9, false, 480],
      [9, false, 640],
      [9, true, 800],
      [9, true, 800],
      [9, true, 800],
    ],
  );
  const firstEvent = sent.indexOf(events[0]!);
  const lastEvent = sent.indexOf(events.at(-1)!);
  assert.ok(
    sent.slice(firstEvent, lastEvent + 1).every((p) => p.payloadType === 101),
    'no audio while the event plays',
  );
  assert.equal(events[0]!.timestamp, (sent[firstEvent - 1]!.timestamp + 160) >>> 0, 'the event starts on the next frame time');
  const after = sent.slice(lastEvent + 1);
  assert.ok(after.length >= 4 && after.every((p) => p.payloadType === 0), 'audio resumes');
  assert.ok(after[0]!.timestamp - events[0]!.timestamp >= 800, 'after the event ends');
  assert.ok(
    sent.every((p, i) => i === 0 || p.sequenceNumber === ((sent[i - 1]!.sequenceNumber + 1) & 0xffff)),
    'events and audio share one sequence',
  );
  endpoint.close();
});

test('while a digit plays, pushed and forwarded audio is held back too', () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'));
  endpoint.sendDtmf('1', 40);
  const far = new FarEnd(0, 8000);
  for (let i = 0; i < 3; i++) {
    rt.clock.advance(20);
    endpoint.sendFrame(new Int16Array(160));
    endpoint.forward(parseRtp(far.audio(Buffer.alloc(160, 0xff))), false);
  }
  assert.ok(
    parsed(transport.rtp).every((p) => p.payloadType === 101),
    'only the event went out',
  );
  endpoint.close();
});

test('an endpoint that does not send (recvonly answered) sends no RTP, whatever it is given', () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu', { sends: false }));
  const source = new QueueSource();
  source.queue.push(...toneFrames(1000, 8000, 5));
  endpoint.source = source;
  endpoint.sendFrame(new Int16Array(160));
  endpoint.forward(parseRtp(new FarEnd(0, 8000).audio(Buffer.alloc(160))), false);
  assert.equal(endpoint.sendDtmf('5'), false, 'no telephone-event sender without sending');
  rt.clock.advance(200);
  assert.deepEqual(transport.rtp, []);
  assert.equal(source.queue.length, 0, 'the source is still drained (listeners may hear it)');
  endpoint.close();
});

test('a transport that is not connected takes nothing: the SR counts only what was sent', () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'), { connect: false });
  endpoint.source = new QueueSource();
  rt.clock.advance(100);
  assert.equal(endpoint.rtp.packetsSent, 0);
  transport.connect();
  rt.clock.advance(100);
  assert.equal(endpoint.rtp.packetsSent, transport.rtp.length);
  assert.equal(transport.rtp.length, 5);
  endpoint.close();
});

// ---------------------------------------------------------------- RTCP

test('RTCP: an RR every 5 s before we sent anything, an SR after, with the packet and octet counts of what was sent', () => {
  const rt = testRuntime({ start: 0 });
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'), { ssrc: 0x77 });
  const far = new FarEnd(0, 8000, 0x99);
  for (let t = 0; t < 250; t++) {
    transport.receiveRtp(far.audio(Buffer.alloc(160, 0xff)));
    rt.clock.advance(20);
  }
  assert.equal(transport.rtcp.length, 1, 'one report in the first 5 s');
  const [rr] = parseRtcp(transport.rtcp[0]!);
  assert.equal(rr!.type, 'rr');
  assert.equal(rr!.ssrc, 0x77);
  assert.equal(rr!.type === 'rr' && rr!.reports[0]!.ssrc, 0x99, 'with a block about the far end');
  const source = new QueueSource();
  endpoint.source = source;
  rt.clock.advance(5000);
  assert.equal(transport.rtcp.length, 2);
  const [sr] = parseRtcp(transport.rtcp[1]!);
  assert.equal(sr!.type, 'sr');
  if (sr!.type !== 'sr') return;
  assert.equal(sr.sender.packets, transport.rtp.length);
  assert.equal(
    sr.sender.octets,
    parsed(transport.rtp).reduce((n, p) => n + p.payload.length, 0),
  );
  assert.equal(sr.sender.packets, 250);
  endpoint.close();
});

test('RTCP: the RTT comes from a report block about our SSRC (LSR/DLSR), and quality carries it with a MOS', () => {
  const rt = testRuntime({ start: 0 });
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'), { ssrc: 0x77 });
  endpoint.source = new QueueSource();
  const qualities: Quality[] = [];
  endpoint.on('quality', (q) => qualities.push(q));
  const far = new FarEnd(0, 8000, 0x99);
  const tick = () => {
    transport.receiveRtp(far.audio(Buffer.alloc(160, 0xff)));
    rt.clock.advance(20);
  };
  for (let i = 0; i < 250; i++) tick();
  const [sr] = parseRtcp(transport.rtcp.at(-1)!);
  assert.equal(sr!.type, 'sr');
  if (sr!.type !== 'sr') return;
  const srAt = rt.clock.now();
  // The far end holds our SR 1 s, the network takes 40 ms each way.
  const block = (ssrc: number) => ({ ssrc, fractionLost: 0, cumulativeLost: 0, highestSeq: endpoint.rtp.seq, jitter: 0, lsr: ntpMiddle(sr.sender.ntpSec, sr.sender.ntpFrac), dlsr: 65536 });
  for (let i = 0; i < 54; i++) tick();
  assert.equal(rt.clock.now(), srAt + 1080);
  transport.receiveRtcp(buildReceiverReport(0x99, 'far', [block(0x1234)]));
  assert.equal(endpoint.rtp.rttMs, undefined, 'a block about someone else says nothing of our RTT');
  transport.receiveRtcp(buildReceiverReport(0x99, 'far', [block(0x77)]));
  assert.ok(Math.abs(endpoint.rtp.rttMs! - 80) < 1, `RTT ${endpoint.rtp.rttMs} ms`);
  while (qualities.length < 2) tick();
  const q = qualities.at(-1)!;
  assert.ok(Math.abs(q.rttMs! - 80) < 1, `quality RTT ${q.rttMs}`);
  assert.equal(q.lost, 0);
  assert.equal(q.packets, endpoint.rtp.stats.received);
  assert.ok(q.mos > 4 && q.mos <= 4.5, `MOS ${q.mos}`);
  assert.equal(qualities[0]!.rttMs, null, 'before any report of us, no RTT');
  assert.equal(endpoint.quality, q);
  assert.equal(q.at, new Date(rt.clock.now()).toISOString());
  endpoint.close();
});

test('quality reflects loss: a MOS lower than a clean stream', () => {
  const rt = testRuntime({ start: 0 });
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'));
  const far = new FarEnd(0, 8000);
  for (let i = 0; i < 250; i++) {
    if (i % 10 === 5) far.skip();
    else transport.receiveRtp(far.audio(Buffer.alloc(160, 0xff)));
    rt.clock.advance(20);
  }
  const q = endpoint.quality!;
  assert.equal(q.lost, 25);
  assert.equal(q.lossPercent, 10);
  assert.ok(q.mos < 3.5, `MOS ${q.mos} at 10 % loss`);
  endpoint.close();
});

// ---------------------------------------------------------------- close

test('close() leaves the frame clock, detaches from the transport and sends nothing more', () => {
  const rt = testRuntime();
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'));
  const other = testEndpoint(rt, formatOf('pcmu'));
  assert.equal(rt.frameClock.size, 2);
  const source = new QueueSource();
  endpoint.source = source;
  endpoint.decode = true;
  rt.clock.advance(100);
  const rtp = transport.rtp.length;
  const rtcp = transport.rtcp.length;
  endpoint.close();
  endpoint.close();
  assert.equal(rt.frameClock.size, 1);
  assert.equal(transport.rtpSink, undefined);
  assert.equal(endpoint.source, undefined);
  transport.receiveRtcp(Buffer.alloc(8));
  endpoint.sendFrame(new Int16Array(160));
  endpoint.forward(parseRtp(new FarEnd(0, 8000).audio(Buffer.alloc(160))), false);
  assert.equal(endpoint.sendDtmf('1'), false, 'a closed endpoint takes no digit');
  rt.clock.advance(10_000);
  assert.equal(transport.rtp.length, rtp);
  assert.equal(transport.rtcp.length, rtcp);
  other.endpoint.close();
  assert.equal(rt.frameClock.size, 0);
  assert.equal(rt.clock.pending, 0, 'no timer left');
  assert.deepEqual(rt.errors, []);
});

test('codec answers that come later (a codec thread): a shed tick is counted and sends nothing, an answer after close() is dropped', () => {
  const pool = new HeldPool();
  const rt = testRuntime({ codecs: pool });
  const { endpoint, transport } = testEndpoint(rt, formatOf('pcmu'));
  endpoint.decode = true;
  const source = new QueueSource();
  endpoint.source = source;
  const frames: AudioFrame[] = [];
  endpoint.onFrame = (f) => frames.push(f);
  const far = new FarEnd(0, 8000);
  transport.receiveRtp(far.audio(Buffer.alloc(160, 0x80)));
  rt.clock.advance(20);
  assert.equal(transport.rtp.length, 0, 'nothing goes out before the codec answers');
  pool.release(0);
  assert.equal(transport.rtp.length, 1);
  assert.equal(frames.length, 1);
  // Overload: the thread sheds the next tick; both directions skip it.
  transport.receiveRtp(far.audio(Buffer.alloc(160, 0x80)));
  rt.clock.advance(20);
  pool.shed(0);
  assert.equal(endpoint.repairs.shed, 1);
  assert.equal(transport.rtp.length, 1);
  assert.equal(frames.length, 1);
  assert.equal(source.sentLog.length, 1, 'the source is not told anything went out');
  // A barge-in between taking the frame and the codec's answer: the frame is not heard.
  const [speech] = toneFrames(1000, 8000, 1);
  source.queue.push(speech!);
  rt.clock.advance(20);
  source.void.add(speech!);
  pool.release(0);
  assert.ok(parseRtp(transport.rtp.at(-1)!).payload.equals(parseRtp(transport.rtp[0]!).payload), 'the silent packet went out instead');
  assert.equal(source.sentLog.at(-1), undefined);
  // The endpoint closes with a tick still at the codec.
  rt.clock.advance(20);
  const before = transport.rtp.length;
  endpoint.close();
  pool.release(0);
  assert.equal(transport.rtp.length, before);
  assert.equal(frames.length, 2);
});

test('describeIn/describeOut print the stages of each half', () => {
  const rt = testRuntime({ maxJitterMs: 120 });
  const { endpoint } = testEndpoint(rt, formatOf('pcmu'), { pcmRate: 16000 });
  assert.equal(endpoint.describeIn(), 'RTP -> Jitter(20-120ms) -> PCMU(decode) -> Resample(8k->16k)');
  assert.equal(endpoint.describeOut(), 'Resample(16k->8k) -> PCMU(encode) -> RTP');
  assert.equal(endpoint.describe(), 'RTP -> Jitter(20-120ms) -> PCMU(decode) -> Resample(8k->16k) | PCM@16k -> Resample(16k->8k) -> PCMU(encode) -> RTP');
  assert.equal(endpoint.codecThread, 'inline');
  endpoint.close();
});
