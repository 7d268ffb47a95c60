import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeG711, encodeG711, linearToUlaw, ulawToLinear } from './g711.js';
import { Resampler } from './resampler.js';
import { concatPcm, rms, tone, toneSnrDb } from './test-signals.js';

const RATES = [8000, 16000, 24000, 48000];

/** Feeds a signal through in 20 ms frames, as the media path does, and skips the filter's settling. */
function resampleStream(r: Resampler, x: Int16Array): Int16Array {
  const frame = r.inRate / 50;
  const parts: Int16Array[] = [];
  for (let i = 0; i < x.length; i += frame) parts.push(r.process(x.subarray(i, i + frame)));
  return concatPcm(parts);
}

for (const from of RATES) {
  for (const to of RATES) {
    if (from === to) continue;
    test(`resampler ${from / 1000}k -> ${to / 1000}k keeps a 1 kHz tone at SNR >= 60 dB, frame by frame`, () => {
      const r = new Resampler(from, to);
      const y = resampleStream(r, tone(1000, from, from)); // one second
      assert.equal(y.length, to, 'exactly one second out');
      const steady = y.subarray(r.delaySamples + to / 50, to - to / 50);
      const snr = toneSnrDb(steady, 1000, to);
      assert.ok(snr >= 60, `SNR ${snr.toFixed(1)} dB`);
      assert.ok(Math.abs(rms(steady) / rms(tone(1000, to, to)) - 1) < 0.01, 'unity gain');
    });
  }
}

test('downsampling: a tone above the new Nyquist does not fold back (< -60 dB)', () => {
  for (const [from, to, hz] of [[48000, 16000, 12000], [48000, 8000, 5000], [16000, 8000, 6000], [48000, 24000, 15000]] as const) {
    const r = new Resampler(from, to);
    const y = resampleStream(r, tone(hz, from, from));
    const level = 20 * Math.log10(rms(y.subarray(r.delaySamples + 200)) / rms(tone(hz, from, from)));
    assert.ok(level < -60, `${hz} Hz ${from}->${to}: ${level.toFixed(1)} dB`);
  }
});

test('upsampling puts no image above the old Nyquist (< -60 dB)', () => {
  const r = new Resampler(8000, 48000);
  const y = resampleStream(r, tone(1000, 8000, 8000));
  // The image of 1 kHz at 8 kHz sampling sits at 7 kHz; measure it in the 48 kHz output.
  const steady = y.subarray(r.delaySamples + 960);
  const image = toneSnrDb(steady, 7000, 48000);
  const level = 10 * Math.log10(1 / (1 + 10 ** (-image / 10)));
  assert.ok(image < -60 || level < -60, `image at 7 kHz: ${image.toFixed(1)} dB`);
});

test('G.711 μ-law and A-law keep a 1 kHz tone at the codec limit (SNR >= 35 dB) and round-trip every code', () => {
  for (const law of ['pcmu', 'pcma'] as const) {
    const x = tone(1000, 8000, 8000, 16000);
    const y = decodeG711(encodeG711(x, law), law);
    const snr = toneSnrDb(y, 1000, 8000);
    assert.ok(snr >= 35, `${law} SNR ${snr.toFixed(1)} dB`);
    for (let code = 0; code < 256; code++) {
      const lin = decodeG711(Buffer.from([code]), law)[0]!;
      const back = encodeG711(Int16Array.of(lin), law)[0]!;
      assert.equal(decodeG711(Buffer.from([back]), law)[0], lin, `${law} code ${code}`);
    }
  }
  // ITU-T G.711 reference points.
  assert.equal(linearToUlaw(0), 0xff);
  assert.equal(ulawToLinear(0x00), -32124);
  assert.equal(ulawToLinear(0x80), 32124);
});

test('G.722 (64 kbit/s) keeps tones across its two sub-bands: 1 kHz >= 40 dB, 6 kHz (2-bit high band) >= 20 dB', async () => {
  const { G722Decoder, G722Encoder } = await import('./g722.js');
  for (const [hz, min] of [[300, 50], [1000, 40], [3000, 35], [6000, 20]] as const) {
    const enc = new G722Encoder();
    const dec = new G722Decoder();
    const x = tone(hz, 16000, 16000, 10000);
    // 20 ms frames: 320 samples -> 160 bytes, as on the wire.
    const y = new Int16Array(16000);
    for (let i = 0; i < 16000; i += 320) {
      const bytes = enc.encode(x.subarray(i, i + 320));
      assert.equal(bytes.length, 160);
      y.set(dec.decode(bytes), i);
    }
    const snr = toneSnrDb(y.subarray(2000), hz, 16000);
    assert.ok(snr >= min, `${hz} Hz: SNR ${snr.toFixed(1)} dB`);
  }
});

test('every codec path delivers 20 ms frames at the agent rate and names itself', async () => {
  const { createDecoder, createEncoder } = await import('./codec.js');
  for (const codec of ['opus', 'pcmu', 'pcma', 'g722'] as const) {
    for (const rate of [8000, 16000, 24000, 48000]) {
      const enc = createEncoder(codec, rate);
      const dec = createDecoder(codec, rate);
      const x = tone(1000, rate, rate / 50);
      let y: Int16Array = new Int16Array(0);
      for (let f = 0; f < 10; f++) y = dec.decode(enc.encode(x));
      assert.equal(y.length, rate / 50, `${codec}@${rate}: ${String(dec)}`);
      assert.equal(dec.conceal().length, rate / 50, `${codec}@${rate} concealment`);
    }
  }
});

test('Opus in-band FEC: lost frames of real speech are rebuilt from the next packet far better than PLC guesses them; without FEC data it falls back to PLC', async () => {
  const { OpusEncoder } = await import('../testing/opus.js');
  const { createDecoder } = await import('./codec.js');
  const { SpeechSynthesizer } = await import('./tts.js');
  const rate = 16000;
  const frame = rate / 50;
  const tts = new SpeechSynthesizer();
  const x = await tts.speak('Hello, this is a test of forward error correction on a voice call.', rate);
  tts.close();
  const encode = (fec: boolean): Buffer[] => {
    const enc = new OpusEncoder(rate, 1);
    enc.applyEncoderCTL(4024, 3001); // OPUS_SET_SIGNAL(voice): SILK, where LBRR lives
    enc.applyEncoderCTL(4002, 24000); // 24 kbit/s
    if (fec) {
      enc.applyEncoderCTL(4012, 1); // OPUS_SET_INBAND_FEC
      enc.applyEncoderCTL(4014, 20); // OPUS_SET_PACKET_LOSS_PERC: the encoder spends bits on it
    }
    const packets: Buffer[] = [];
    for (let i = 0; i + frame <= x.length; i += frame) packets.push(enc.encode(Buffer.from(x.buffer, x.byteOffset + i * 2, frame * 2)));
    return packets;
  };
  // Every 7th frame is lost; the error of what replaces it is summed against the lossless decode.
  const snrDb = (packets: Buffer[], mode: 'fec' | 'plc'): number => {
    const clean = createDecoder('opus', rate);
    const lossy = createDecoder('opus', rate);
    let signal = 0;
    let error = 0;
    for (let i = 0; i < packets.length; i++) {
      const ref = clean.decode(packets[i]!);
      if (i % 7 !== 3 || i + 1 >= packets.length) {
        lossy.decode(packets[i]!);
        continue;
      }
      const got = mode === 'fec' ? lossy.recover!(packets[i + 1]!) : lossy.conceal();
      for (let j = 0; j < frame; j++) {
        signal += ref[j]! ** 2;
        error += (ref[j]! - got[j]!) ** 2;
      }
    }
    return 10 * Math.log10(signal / Math.max(1, error));
  };
  const withFec = encode(true);
  const fec = snrDb(withFec, 'fec');
  const plc = snrDb(withFec, 'plc');
  assert.ok(fec > plc + 6, `FEC ${fec.toFixed(1)} dB vs PLC ${plc.toFixed(1)} dB against the lossless decode`);
  // A sender without useinbandfec: recover() still yields a frame (libopus conceals).
  const noFec = encode(false);
  assert.equal(createDecoder('opus', rate).recover!(noFec[1]!).length, frame);
});
