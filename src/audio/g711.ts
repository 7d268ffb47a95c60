/** ITU-T G.711 μ-law and A-law, the classic segment algorithms (as in Sun's g711.c). */

const BIAS = 0x84;
const CLIP = 32635;

export function linearToUlaw(sample: number): number {
  let s = Math.max(-32768, Math.min(32767, sample | 0));
  const sign = s < 0 ? 0x80 : 0;
  if (sign) s = -s;
  if (s > CLIP) s = CLIP;
  s += BIAS;
  let exponent = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (s >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

export function ulawToLinear(u: number): number {
  const v = ~u & 0xff;
  const t = (((v & 0x0f) << 3) + BIAS) << ((v & 0x70) >> 4);
  return v & 0x80 ? BIAS - t : t - BIAS;
}

export function linearToAlaw(sample: number): number {
  let s = Math.max(-32768, Math.min(32767, sample | 0)) >> 3;
  let mask: number;
  if (s >= 0) mask = 0xd5;
  else {
    mask = 0x55;
    s = -s - 1;
  }
  const SEG_END = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];
  let seg = 0;
  while (seg < 8 && s > SEG_END[seg]!) seg++;
  if (seg >= 8) return 0x7f ^ mask;
  let aval = seg << 4;
  aval |= seg < 2 ? (s >> 1) & 0x0f : (s >> seg) & 0x0f;
  return aval ^ mask;
}

export function alawToLinear(a: number): number {
  const v = a ^ 0x55;
  let t = (v & 0x0f) << 4;
  const seg = (v & 0x70) >> 4;
  if (seg === 0) t += 8;
  else if (seg === 1) t += 0x108;
  else t = (t + 0x108) << (seg - 1);
  return v & 0x80 ? t : -t;
}

const ULAW_DECODE = Int16Array.from({ length: 256 }, (_, i) => ulawToLinear(i));
const ALAW_DECODE = Int16Array.from({ length: 256 }, (_, i) => alawToLinear(i));
const ULAW_ENCODE = Uint8Array.from({ length: 65536 }, (_, i) => linearToUlaw(i - 32768));
const ALAW_ENCODE = Uint8Array.from({ length: 65536 }, (_, i) => linearToAlaw(i - 32768));

export function decodeG711(payload: Buffer, law: 'pcmu' | 'pcma'): Int16Array {
  const table = law === 'pcmu' ? ULAW_DECODE : ALAW_DECODE;
  const out = new Int16Array(payload.length);
  for (let i = 0; i < payload.length; i++) out[i] = table[payload[i]!]!;
  return out;
}

export function encodeG711(samples: Int16Array, law: 'pcmu' | 'pcma'): Buffer {
  const table = law === 'pcmu' ? ULAW_ENCODE : ALAW_ENCODE;
  const out = Buffer.allocUnsafe(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = table[samples[i]! + 32768]!;
  return out;
}
