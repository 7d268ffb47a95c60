import assert from 'node:assert/strict';
import { OpusEncoder } from '../../src/testing/opus.js';
import { concatPcm } from '../../src/audio/test-signals.js';
import { parseRtp } from '../../src/rtp/packet.js';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const DIR = join(tmpdir(), 'voxgate-test-media');

/** A WAV of espeak-ng speaking `text`, resampled to 48 kHz mono (made once per machine). */
export function speechWav(name: string, text: string): string {
  mkdirSync(DIR, { recursive: true });
  const out = join(DIR, `${name}.wav`);
  if (existsSync(out)) return out;
  const raw = join(DIR, `${name}.raw.wav`);
  execFileSync('espeak-ng', ['-v', 'en-us', '-s', '150', '-w', raw, text]);
  execFileSync('sox', [raw, '-r', '48000', '-c', '1', '-b', '16', out]);
  return out;
}

/** A WAV of a sine tone. */
export function toneWav(hz: number, seconds = 5): string {
  mkdirSync(DIR, { recursive: true });
  const out = join(DIR, `tone-${hz}-${seconds}.wav`);
  if (!existsSync(out)) execFileSync('sox', ['-n', '-r', '48000', '-c', '1', '-b', '16', out, 'synth', String(seconds), 'sine', String(hz), 'vol', '0.5']);
  return out;
}

/** Sentences spoken by espeak-ng with `gapSeconds` of silence between them and a silent tail. */
export function conversationWav(name: string, sentences: string[], gapSeconds: number, leadSeconds: number, tailSeconds: number): string {
  mkdirSync(DIR, { recursive: true });
  const out = join(DIR, `${name}.wav`);
  if (existsSync(out)) return out;
  const parts = sentences.map((s, i) => speechWav(`${name}-s${i}`, s));
  const args: string[] = [];
  const silence = (sec: number, i: string) => {
    const f = join(DIR, `${name}-gap-${i}.wav`);
    execFileSync('sox', ['-n', '-r', '48000', '-c', '1', '-b', '16', f, 'trim', '0', String(sec)]);
    return f;
  };
  args.push(silence(leadSeconds, 'lead'));
  parts.forEach((p, i) => {
    args.push(p);
    if (i < parts.length - 1) args.push(silence(gapSeconds, String(i)));
  });
  args.push(silence(tailSeconds, 'tail'));
  execFileSync('sox', [...args, out]);
  return out;
}

/** RTP packets of one Opus stream (payload type 111), decoded in order as one 48 kHz mono signal. */
export function decodeOpusStream(packets: readonly Buffer[]): Int16Array {
  const dec = new OpusEncoder(48000, 1);
  return concatPcm(
    packets.map((buf) => {
      const p = parseRtp(buf);
      if (p.payloadType !== 111) throw new Error(`payload type ${p.payloadType}, not the Opus the listener offered`);
      const pcm = dec.decode(p.payload);
      return new Int16Array(pcm.buffer, pcm.byteOffset, pcm.length / 2);
    }),
  );
}

/** A 16-bit PCM WAV as one mono signal (channel 0) and its rate. */
export function readWav(path: string): { rate: number; samples: Int16Array } {
  const buf = readFileSync(path);
  assert.equal(buf.toString('ascii', 0, 4), 'RIFF', `${path} is a RIFF file`);
  let rate = 0;
  let channels = 0;
  let bits = 0;
  for (let off = 12; off + 8 <= buf.length; ) {
    const id = buf.toString('ascii', off, off + 4);
    const size = buf.readUInt32LE(off + 4);
    if (id === 'fmt ') {
      channels = buf.readUInt16LE(off + 10);
      rate = buf.readUInt32LE(off + 12);
      bits = buf.readUInt16LE(off + 22);
    } else if (id === 'data') {
      assert.equal(bits, 16, `${path}: 16-bit PCM`);
      const frames = Math.floor(Math.min(size, buf.length - off - 8) / (2 * channels));
      const samples = new Int16Array(frames);
      for (let i = 0; i < frames; i++) samples[i] = buf.readInt16LE(off + 8 + i * 2 * channels);
      return { rate, samples };
    }
    off += 8 + size + (size & 1);
  }
  throw new Error(`${path} has no data chunk`);
}
