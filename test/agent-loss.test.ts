import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { OpusEncoder } from '../src/testing/opus.js';
import { tone } from '../src/audio/test-signals.js';
import { ADMIN_TOKEN, adminSessions, SOURCE_TOKEN, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { publishConnected } from './helpers/ndc-publisher.js';

/** One second of a 440 Hz tone as 20 ms Opus packets carrying in-band FEC, as browsers send it. */
function opusWithFec(): Buffer[] {
  const enc = new OpusEncoder(48000, 1);
  enc.applyEncoderCTL(4012, 1); // OPUS_SET_INBAND_FEC
  enc.applyEncoderCTL(4014, 10); // OPUS_SET_PACKET_LOSS_PERC
  const pcm = tone(440, 48000, 48000, 10000);
  return Array.from({ length: 50 }, (_, i) => enc.encode(Buffer.from(pcm.buffer, i * 1920, 1920)));
}

function metric(text: string, line: RegExp): number {
  const m = text.match(line);
  assert.ok(m, `no ${line} in /metrics`);
  return Number(m[1]);
}

describe('lost packets on the way to the agent', () => {
  let tg: TestGateway;
  before(async () => {
    tg = await startGateway({ sources: [{ name: 'browser-widget', kind: 'browser', token: SOURCE_TOKEN, agent: 'echo' }] });
  });
  after(() => tg?.stop());

  test('an isolated lost packet is rebuilt from the next one\'s FEC, counted per session and in /metrics', async () => {
    // Every tenth packet never leaves the sender.
    const pub = await publishConnected(`${tg.url}/whip`, SOURCE_TOKEN, { direction: 'SendRecv', payloads: opusWithFec(), drop: (seq) => seq % 10 === 5 });
    pub.startRtp();
    const id = pub.location!.split('/').pop()!;
    type Audio = { fecRecovered: number; concealed: number; decodeErrors: number; codecThread: string };
    const audio = await waitFor('ten frames rebuilt from FEC', async () => {
      const s = (await adminSessions(tg.url)).find((x) => x.id === id) as unknown as { audio: Audio } | undefined;
      return s && s.audio.fecRecovered >= 10 ? s.audio : undefined;
    });
    assert.equal(audio.decodeErrors, 0);
    assert.equal(audio.codecThread, tg.gw.codecs.threads > 0 ? 'codec thread 0' : 'inline');
    const text = await (await fetch(`${tg.url}/metrics`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } })).text();
    assert.ok(metric(text, /^voxgate_audio_frames_repaired_total\{method="fec"\} (\d+)$/m) >= audio.fecRecovered);
    assert.ok(metric(text, /^voxgate_audio_frames_repaired_total\{method="concealment"\} (\d+)$/m) >= audio.concealed);
    assert.equal(metric(text, /^voxgate_audio_decode_errors_total (\d+)$/m), 0);
    assert.equal(metric(text, /^voxgate_codec_threads (\d+)$/m), tg.gw.codecs.threads);
    // The agent heard the caller throughout: the echo comes back.
    const n = pub.received.length;
    await waitFor('the echo to keep coming', () => pub.received.length > n + 20);
    // Counts of a call that ended stay in the totals.
    assert.equal((await fetch(new URL(pub.location!, tg.url), { method: 'DELETE', headers: { Authorization: `Bearer ${SOURCE_TOKEN}` } })).status, 200);
    pub.close();
    assert.equal((await adminSessions(tg.url)).some((x) => x.id === id), false);
    const after = await (await fetch(`${tg.url}/metrics`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } })).text();
    assert.ok(metric(after, /^voxgate_audio_frames_repaired_total\{method="fec"\} (\d+)$/m) >= audio.fecRecovered);
  });
});
