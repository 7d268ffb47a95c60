/**
 * The Twilio Media Streams adapter against a test agent server built with `ws` that checks
 * every message of the protocol, sends audio, marks and clear, and sees DTMF.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { OpusEncoder } from '../src/testing/opus.js';
import { WebSocketServer, type WebSocket } from 'ws';
import { decodeG711, encodeG711 } from '../src/audio/g711.js';
import { rms, tone, toneSnrDb } from '../src/audio/test-signals.js';
import { parseRtp } from '../src/rtp/packet.js';
import { publishConnected, publishWithNdc } from './helpers/ndc-publisher.js';
import { SOURCE_TOKEN, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';

type Msg = Record<string, unknown> & { event: string; sequenceNumber?: string; streamSid?: string };

/** 20 ms Opus frames of a tone, as a browser would send. */
function opusTone(hz: number, frames: number): Buffer[] {
  const enc = new OpusEncoder(48000, 1);
  const pcm = tone(hz, 48000, 960 * frames, 12000);
  return Array.from({ length: frames }, (_, f) => enc.encode(Buffer.from(pcm.buffer, f * 1920, 1920)));
}

/**
 * Counts the caller's received Opus packets that carry a tone, decoding them in arrival order
 * with one decoder (Opus is stateful) as far as asked.
 */
class TonePackets {
  readonly #dec = new OpusEncoder(48000, 1);
  #flags: boolean[] = [];
  end = 0;
  bestSnrDb = -Infinity;
  constructor(
    private readonly packets: Buffer[],
    private readonly hz: number,
  ) {}
  /** Decodes up to `n` (earlier packets are decoded but not counted after skipTo). */
  #decode(n: number): void {
    for (; this.end < n; this.end++) {
      const pcm = new Int16Array(this.#dec.decode(parseRtp(this.packets[this.end]!).payload).buffer.slice(0));
      const snr = rms(pcm) > 1000 ? toneSnrDb(pcm, this.hz, 48000) : -Infinity;
      this.bestSnrDb = Math.max(this.bestSnrDb, snr);
      this.#flags.push(snr > 6);
    }
  }
  skipTo(n: number): void {
    this.#decode(n);
    this.#flags = this.#flags.map(() => false);
  }
  /** Tone packets among the first `n` received (after skipTo). */
  count(n: number): number {
    this.#decode(n);
    return this.#flags.slice(0, n).filter(Boolean).length;
  }
}

/** A Media Streams agent: records what it gets; `sockets` gives the test control of each call. */
class TestAgentServer {
  readonly wss: WebSocketServer;
  readonly calls: { ws: WebSocket; messages: Msg[] }[] = [];
  constructor() {
    this.wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    this.wss.on('connection', (ws) => {
      const call = { ws, messages: [] as Msg[] };
      this.calls.push(call);
      ws.on('message', (d) => call.messages.push(JSON.parse(d.toString()) as Msg));
    });
  }
  /**
   * The agent connection for one WHIP session, found by the session id the start message
   * carries. Not by order: a publisher that publishConnected replaced also had its call.
   */
  callFor(location: string): Promise<{ ws: WebSocket; messages: Msg[] }> {
    const session = location.split('/').pop();
    return waitFor(`the agent connection for ${session}`, () =>
      this.calls.find((c) => (c.messages[1] as { start?: { customParameters?: Record<string, string> } } | undefined)?.start?.customParameters?.session === session),
    );
  }
  get url(): string {
    return `ws://127.0.0.1:${(this.wss.address() as { port: number }).port}/stream`;
  }
  close(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    return new Promise((r) => this.wss.close(() => r()));
  }
}

describe('Twilio Media Streams adapter', () => {
  let agent: TestAgentServer;
  let tg: TestGateway;
  let silent: Server;
  let silentPort: number;
  /** An agent whose handshakes wait until the test lets them through. */
  let slow: WebSocketServer;
  /** Handshakes the slow agent server holds: each is answered (true) by its test, or refused in after() so nothing waits for ever. */
  const held: ((ok: boolean) => void)[] = [];
  const slowCalls: { ws: WebSocket; messages: Msg[] }[] = [];

  before(async () => {
    agent = new TestAgentServer();
    await new Promise((r) => agent.wss.once('listening', r));
    // A TCP server that accepts and never answers the WebSocket handshake.
    silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    silentPort = (silent.address() as { port: number }).port;
    slow = new WebSocketServer({ port: 0, host: '127.0.0.1', verifyClient: (_info, done) => held.push((ok) => (ok ? done(true) : done(false, 503))) });
    slow.on('connection', (ws) => {
      const call = { ws, messages: [] as Msg[] };
      slowCalls.push(call);
      ws.on('message', (d) => call.messages.push(JSON.parse(d.toString()) as Msg));
    });
    await new Promise((r) => slow.once('listening', r));
    tg = await startGateway({
      sources: [
        { name: 'phone-widget', kind: 'browser', token: SOURCE_TOKEN, agent: { type: 'twilio-stream', url: agent.url, customParameters: { tenant: 'acme' } } },
        { name: 'dead-agent', kind: 'browser', token: 'dead-agent-token-0123456789', agent: { type: 'twilio-stream', url: `ws://127.0.0.1:${silentPort}/`, connectTimeoutMs: 500 } },
        { name: 'slow-agent', kind: 'browser', token: 'slow-agent-token-0123456789', agent: { type: 'twilio-stream', url: `ws://127.0.0.1:${(slow.address() as { port: number }).port}/`, connectTimeoutMs: 20_000 } },
      ],
    });
  });
  after(async () => {
    for (const answer of held.splice(0)) answer(false); // a test that failed before answering its handshake
    await tg?.stop();
    await agent?.close();
    silent?.close();
    for (const c of slow?.clients ?? []) c.terminate();
    await new Promise((r) => slow?.close(r));
  });

  test('every message is exact; the agent hears the caller, is heard back, gets DTMF, marks and clear work, stop ends it', async () => {
    const pub = await publishConnected(`${tg.url}/whip`, SOURCE_TOKEN, { direction: 'SendRecv', payloads: opusTone(1000, 50), telephoneEvent: true });
    pub.startRtp();
    const call = await agent.callFor(pub.location!);
    await waitFor('100 media messages', () => call.messages.filter((m) => m.event === 'media').length >= 100);

    // connected first, without a sequence number; then start with sequenceNumber "1".
    assert.deepEqual(call.messages[0], { event: 'connected', protocol: 'Call', version: '1.0.0' });
    const start = call.messages[1] as Msg & { start: Record<string, unknown> };
    assert.equal(start.event, 'start');
    assert.equal(start.sequenceNumber, '1');
    assert.match(start.streamSid!, /^MZ[0-9a-f]{32}$/);
    assert.equal((start.start as { streamSid: string }).streamSid, start.streamSid);
    assert.match(start.start.accountSid as string, /^AC[0-9a-f]{32}$/);
    assert.match(start.start.callSid as string, /^CA[0-9a-f]{32}$/);
    assert.deepEqual(start.start.tracks, ['inbound']);
    assert.deepEqual(start.start.mediaFormat, { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 });
    assert.equal((start.start.customParameters as Record<string, string>).tenant, 'acme');
    assert.equal((start.start.customParameters as Record<string, string>).source, 'phone-widget');

    // media: string sequence numbers continuing the count, chunks from "1", 160 bytes of μ-law each.
    const media = call.messages.filter((m) => m.event === 'media') as (Msg & { media: { track: string; chunk: string; timestamp: string; payload: string } })[];
    media.forEach((m, i) => {
      assert.equal(m.streamSid, start.streamSid);
      assert.equal(m.media.track, 'inbound');
      assert.equal(m.media.chunk, String(i + 1));
      assert.match(m.media.timestamp, /^\d+$/);
      assert.equal(Buffer.from(m.media.payload, 'base64').length, 160);
    });
    call.messages.slice(1).forEach((m, i) => assert.equal(m.sequenceNumber, String(i + 1)));
    // The caller's 1 kHz tone arrives as 1 kHz μ-law.
    // Judged per 100 ms over the last second, by the median: the publisher loops one second of
    // Opus, and the loop's seam (a decoder meeting the stream's first packets again) may fall in it.
    const snrs = Array.from({ length: 10 }, (_, w) => {
      const pcm = decodeG711(Buffer.concat(media.slice(-50 + w * 5, w === 9 ? undefined : -45 + w * 5).map((m) => Buffer.from(m.media.payload, 'base64'))), 'pcmu');
      return toneSnrDb(pcm, 1000, 8000);
    }).sort((a, b) => a - b);
    const median = (snrs[4]! + snrs[5]!) / 2;
    assert.ok(median > 15, `agent hears the tone (median SNR ${median.toFixed(1)} dB; per 100 ms ${snrs.map((x) => x.toFixed(0)).join(' ')})`);

    // DTMF from the caller.
    pub.sendDtmf(5);
    const dtmf = await waitFor('dtmf', () => call.messages.find((m) => m.event === 'dtmf')) as Msg & { dtmf: unknown };
    assert.deepEqual(dtmf.dtmf, { track: 'inbound_track', digit: '5' });

    // The agent speaks 1 s of 440 Hz, then a mark: the mark comes back once that second has
    // been played, which the caller can tell from what it received by the time the mark came.
    const sid = start.streamSid;
    const speech = encodeG711(tone(440, 8000, 8000, 12000), 'pcmu');
    const heard = new TonePackets(pub.received, 440);
    heard.skipTo(pub.received.length);
    call.ws.send(JSON.stringify({ event: 'media', streamSid: sid, media: { payload: speech.toString('base64') } }));
    call.ws.send(JSON.stringify({ event: 'mark', streamSid: sid, mark: { name: 'greeting-done' } }));
    const mark = (await waitFor('the mark echo', () => call.messages.find((m) => m.event === 'mark'), 5000)) as Msg & { mark: { name: string } };
    assert.equal(mark.mark.name, 'greeting-done');
    const beforeMark = heard.count(pub.received.length);
    // 50 frames of tone; the first one or two are the encoder ramping up from silence.
    assert.ok(beforeMark >= 45, `the caller had received ${beforeMark} of the 50 tone frames when the mark came back`);
    await waitFor('a few more packets', () => pub.received.length > heard.end + 25);
    assert.ok(heard.count(pub.received.length) - beforeMark <= 3, 'no more than the frames in flight arrive after the mark');
    // What the caller heard is the agent's 440 Hz, decoded from voxgate's Opus RTP.
    assert.ok(heard.bestSnrDb > 10, `caller hears 440 Hz (SNR ${heard.bestSnrDb.toFixed(1)} dB)`);

    // Barge-in: 10 s queued, a mark, then clear while it plays: the mark is echoed as soon as
    // the audio is dropped, after a handful of frames instead of 500.
    const long = encodeG711(tone(440, 8000, 80000, 12000), 'pcmu');
    const long0 = heard.count(pub.received.length);
    call.ws.send(JSON.stringify({ event: 'media', streamSid: sid, media: { payload: long.toString('base64') } }));
    call.ws.send(JSON.stringify({ event: 'mark', streamSid: sid, mark: { name: 'long-speech' } }));
    await waitFor('the long speech to start playing', () => heard.count(pub.received.length) > long0 + 2);
    const atClear = heard.count(pub.received.length);
    call.ws.send(JSON.stringify({ event: 'clear', streamSid: sid }));
    await waitFor('the cleared mark', () => call.messages.find((m) => m.event === 'mark' && (m as unknown as { mark: { name: string } }).mark.name === 'long-speech'), 5000);
    const played = heard.count(pub.received.length) - long0;
    assert.ok(heard.count(pub.received.length) - atClear < 15 && played < 40, `a cleared mark comes back at once (${played} of 500 frames played)`);

    // Garbage from the agent is ignored; the call goes on.
    call.ws.send('this is not json');
    call.ws.send(JSON.stringify({ event: 'dance' }));
    const n = call.messages.length;
    await waitFor('media to keep flowing', () => call.messages.length > n + 10);

    // DELETE: the agent gets stop with the same sids, then the socket closes.
    assert.equal((await fetch(pub.location!, { method: 'DELETE', headers: { Authorization: `Bearer ${SOURCE_TOKEN}` } })).status, 200);
    const stop = (await waitFor('stop', () => call.messages.find((m) => m.event === 'stop'))) as Msg & { stop: unknown };
    assert.deepEqual(stop.stop, { accountSid: start.start.accountSid, callSid: start.start.callSid });
    await waitFor('the socket to close', () => call.ws.readyState === call.ws.CLOSED);
    pub.close();
  });

  test('an agent socket that closes mid-call ends the call with agent-disconnected, audited', async () => {
    const pub = await publishConnected(`${tg.url}/whip`, SOURCE_TOKEN, { direction: 'SendRecv', payloads: opusTone(1000, 50) });
    pub.startRtp();
    const call = await agent.callFor(pub.location!);
    await waitFor('media', () => call.messages.some((m) => m.event === 'media'));
    call.ws.close();
    const id = pub.location!.split('/').pop()!;
    await waitFor('the call to end', async () => (await fetch(pub.location!)).status === 404);
    const ended = readFileSync(tg.auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; session: string; reason: string }).find((r) => r.action === 'session.ended' && r.session === id);
    assert.equal(ended?.reason, 'agent-disconnected');
    pub.close();
  });

  test('an agent socket that never answers fails the call with agent-failed', async () => {
    const pub = await publishWithNdc(`${tg.url}/whip`, 'dead-agent-token-0123456789', { direction: 'SendRecv' });
    assert.equal(pub.status, 201);
    const id = pub.location!.split('/').pop()!;
    await waitFor('the call to end', async () => (await fetch(pub.location!)).status === 404, 5000);
    const ended = readFileSync(tg.auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; session: string; reason: string }).find((r) => r.action === 'session.ended' && r.session === id);
    assert.equal(ended?.reason, 'agent-failed');
    pub.close();
  });

  test('an agent socket that opens after its call ended gets stop and is closed', async () => {
    const pub = await publishWithNdc(`${tg.url}/whip`, 'slow-agent-token-0123456789', { direction: 'SendRecv' });
    assert.equal(pub.status, 201);
    await waitFor('the agent handshake to arrive', () => held.length === 1);
    assert.equal((await fetch(pub.location!, { method: 'DELETE', headers: { Authorization: 'Bearer slow-agent-token-0123456789' } })).status, 200);
    held.shift()!(true);
    const call = await waitFor('the agent socket to open', () => slowCalls[0]);
    await waitFor('the socket to be closed by voxgate', () => call.ws.readyState === call.ws.CLOSED);
    assert.deepEqual(call.messages.map((m) => m.event), ['stop']);
    assert.match(JSON.stringify(call.messages[0]), /"callSid":"CA[0-9a-f]{32}"/);
    pub.close();
  });
});
