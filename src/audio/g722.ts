/**
 * ITU-T G.722 SB-ADPCM at 64 kbit/s (mode 1): 16 kHz PCM <-> one byte per two samples.
 * A transcription of the standard's fixed-point blocks (QMF, QUANTL/H, INVQAL/H, LOGSCL/H,
 * SCALEL/H and the pole-zero predictor of block 4), in the layout of the public reference.
 */
const QMF = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];
const Q6 = [0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940, 1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919, 0, 0];
const ILN = [0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 0];
const ILP = [0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32, 0];
const WL = [-60, -30, 58, 172, 334, 538, 1198, 3042];
const RL42 = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
const ILB = [2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834, 2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008];
const QM4 = [0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584, 1200, 0];
const QM6 = [
  -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232, -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776, -2400, -2032, -1688, -1360, -1040, -728,
  24808, 21904, 19008, 16704, 14984, 13512, 12280, 11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776, 2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
const QM2 = [-7408, -1616, 7408, 1616];
const IHN = [0, 1, 0];
const IHP = [0, 3, 2];
const WH = [0, -214, 798];
const RH2 = [2, 1, 2, 1];

const sat = (x: number) => (x > 32767 ? 32767 : x < -32768 ? -32768 : x);

class Band {
  s = 0;
  sp = 0;
  sz = 0;
  r = [0, 0, 0];
  a = [0, 0, 0];
  ap = [0, 0, 0];
  p = [0, 0, 0];
  d = [0, 0, 0, 0, 0, 0, 0];
  b = [0, 0, 0, 0, 0, 0, 0];
  bp = [0, 0, 0, 0, 0, 0, 0];
  sg = [0, 0, 0, 0, 0, 0, 0];
  nb = 0;
  constructor(public det: number) {}

  /** Block 4: reconstruction, pole and zero predictor adaptation, prediction. */
  block4(d: number): void {
    this.d[0] = d;
    this.r[0] = sat(this.s + d);
    this.p[0] = sat(this.sz + d);
    for (let i = 0; i < 3; i++) this.sg[i] = this.p[i]! >> 15;
    // UPPOL2
    const wd1 = sat(this.a[1]! << 2);
    let wd2 = this.sg[0] === this.sg[1] ? -wd1 : wd1;
    if (wd2 > 32767) wd2 = 32767;
    let wd3 = (this.sg[0] === this.sg[2] ? 128 : -128) + (wd2 >> 7) + ((this.a[2]! * 32512) >> 15);
    wd3 = Math.max(-12288, Math.min(12288, wd3));
    this.ap[2] = wd3;
    // UPPOL1
    this.sg[0] = this.p[0]! >> 15;
    this.sg[1] = this.p[1]! >> 15;
    this.ap[1] = sat((this.sg[0] === this.sg[1] ? 192 : -192) + ((this.a[1]! * 32640) >> 15));
    const lim = sat(15360 - this.ap[2]!);
    if (this.ap[1]! > lim) this.ap[1] = lim;
    else if (this.ap[1]! < -lim) this.ap[1] = -lim;
    // UPZERO
    const step = d === 0 ? 0 : 128;
    this.sg[0] = d >> 15;
    for (let i = 1; i < 7; i++) {
      this.sg[i] = this.d[i]! >> 15;
      this.bp[i] = sat((this.sg[i] === this.sg[0] ? step : -step) + ((this.b[i]! * 32640) >> 15));
    }
    // DELAYA
    for (let i = 6; i > 0; i--) {
      this.d[i] = this.d[i - 1]!;
      this.b[i] = this.bp[i]!;
    }
    for (let i = 2; i > 0; i--) {
      this.r[i] = this.r[i - 1]!;
      this.p[i] = this.p[i - 1]!;
      this.a[i] = this.ap[i]!;
    }
    // FILTEP, FILTEZ, PREDIC
    this.sp = sat(((this.a[1]! * sat(this.r[1]! + this.r[1]!)) >> 15) + ((this.a[2]! * sat(this.r[2]! + this.r[2]!)) >> 15));
    let sz = 0;
    for (let i = 6; i > 0; i--) sz += (this.b[i]! * sat(this.d[i]! + this.d[i]!)) >> 15;
    this.sz = sat(sz);
    this.s = sat(this.sp + this.sz);
  }

  /** LOGSCL/SCALEL (low band) or LOGSCH/SCALEH (high band). */
  adaptScale(weight: number, max: number, shift: number): void {
    this.nb = Math.max(0, Math.min(max, ((this.nb * 127) >> 7) + weight));
    const wd1 = (this.nb >> 6) & 31;
    const wd2 = shift - (this.nb >> 11);
    this.det = (wd2 < 0 ? ILB[wd1]! << -wd2 : ILB[wd1]! >> wd2) << 2;
  }
}

export class G722Encoder {
  readonly #x = new Array<number>(24).fill(0);
  readonly #low = new Band(32);
  readonly #high = new Band(8);

  /** 16 kHz PCM (an even number of samples) to G.722 bytes. */
  encode(pcm: Int16Array): Buffer {
    const out = Buffer.allocUnsafe(pcm.length >> 1);
    const x = this.#x;
    for (let j = 0, o = 0; j + 1 < pcm.length; j += 2, o++) {
      for (let i = 0; i < 22; i++) x[i] = x[i + 2]!;
      x[22] = pcm[j]!;
      x[23] = pcm[j + 1]!;
      let even = 0;
      let odd = 0;
      for (let i = 0; i < 12; i++) {
        odd += x[2 * i]! * QMF[i]!;
        even += x[2 * i + 1]! * QMF[11 - i]!;
      }
      const xlow = (even + odd) >> 14;
      const xhigh = (even - odd) >> 14;

      const lo = this.#low;
      const el = sat(xlow - lo.s);
      const wl = el >= 0 ? el : -(el + 1);
      let i = 1;
      for (; i < 30; i++) if (wl < (Q6[i]! * lo.det) >> 12) break;
      const ilow = el < 0 ? ILN[i]! : ILP[i]!;
      const ril = ilow >> 2;
      const dlow = (lo.det * QM4[ril]!) >> 15;
      lo.adaptScale(WL[RL42[ril]!]!, 18432, 8);
      lo.block4(dlow);

      const hi = this.#high;
      const eh = sat(xhigh - hi.s);
      const wh = eh >= 0 ? eh : -(eh + 1);
      const mih = wh >= (564 * hi.det) >> 12 ? 2 : 1;
      const ihigh = eh < 0 ? IHN[mih]! : IHP[mih]!;
      const dhigh = (hi.det * QM2[ihigh]!) >> 15;
      hi.adaptScale(WH[RH2[ihigh]!]!, 22528, 10);
      hi.block4(dhigh);

      out[o] = ((ihigh << 6) | ilow) & 0xff;
    }
    return out;
  }
}

export class G722Decoder {
  readonly #x = new Array<number>(24).fill(0);
  readonly #low = new Band(32);
  readonly #high = new Band(8);

  /** G.722 bytes to 16 kHz PCM, two samples per byte. */
  decode(data: Buffer): Int16Array {
    const out = new Int16Array(data.length * 2);
    const x = this.#x;
    for (let j = 0; j < data.length; j++) {
      const code = data[j]!;
      const ilow = code & 0x3f;
      const ihigh = (code >> 6) & 0x03;

      const lo = this.#low;
      let rlow = lo.s + ((lo.det * QM6[ilow]!) >> 15);
      rlow = Math.max(-16384, Math.min(16383, rlow));
      const ril = ilow >> 2;
      const dlowt = (lo.det * QM4[ril]!) >> 15;
      lo.adaptScale(WL[RL42[ril]!]!, 18432, 8);
      lo.block4(dlowt);

      const hi = this.#high;
      const dhigh = (hi.det * QM2[ihigh]!) >> 15;
      let rhigh = dhigh + hi.s;
      rhigh = Math.max(-16384, Math.min(16383, rhigh));
      hi.adaptScale(WH[RH2[ihigh]!]!, 22528, 10);
      hi.block4(dhigh);

      for (let i = 0; i < 22; i++) x[i] = x[i + 2]!;
      x[22] = rlow + rhigh;
      x[23] = rlow - rhigh;
      let o1 = 0;
      let o2 = 0;
      for (let i = 0; i < 12; i++) {
        o2 += x[2 * i]! * QMF[i]!;
        o1 += x[2 * i + 1]! * QMF[11 - i]!;
      }
      out[2 * j] = sat(o1 >> 11);
      out[2 * j + 1] = sat(o2 >> 11);
    }
    return out;
  }
}
