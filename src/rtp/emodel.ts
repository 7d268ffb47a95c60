/**
 * ITU-T G.107 E-model, simplified for a one-way audio path as G.107 Annex/G.113 allow:
 * R = 93.2 − Id − Ie,eff, with Id from the one-way delay and Ie,eff from the codec's
 * equipment impairment Ie and packet-loss robustness Bpl (G.113 Appendix I values).
 */
export interface CodecImpairment {
  ie: number;
  bpl: number;
}

export const CODEC_IMPAIRMENT: Record<string, CodecImpairment> = {
  pcmu: { ie: 0, bpl: 25.1 }, // G.711 with PLC (G.113 I.3)
  pcma: { ie: 0, bpl: 25.1 },
  g722: { ie: 0, bpl: 25.1 },
  opus: { ie: 0, bpl: 20 }, // no G.113 entry; treated like a PLC-protected wideband codec
};

/** Delay impairment Id (G.107 §7.5, Ta = Tr/2 = T; echo terms are negligible with echo control). */
export function delayImpairment(oneWayMs: number): number {
  const d = Math.max(0, oneWayMs);
  return 0.024 * d + (d > 177.3 ? 0.11 * (d - 177.3) : 0);
}

/** Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl + Bpl) (G.107 §7.6, random loss, BurstR = 1). */
export function effectiveEquipmentImpairment(codec: CodecImpairment, lossPercent: number): number {
  const ppl = Math.max(0, lossPercent);
  return codec.ie + ((95 - codec.ie) * ppl) / (ppl + codec.bpl);
}

export function rFactor(oneWayMs: number, lossPercent: number, codec: CodecImpairment): number {
  return 93.2 - delayImpairment(oneWayMs) - effectiveEquipmentImpairment(codec, lossPercent);
}

/** G.107 Annex B: MOS_CQE from R. */
export function mosFromR(r: number): number {
  if (r <= 0) return 1;
  if (r >= 100) return 4.5;
  return 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6;
}

export function mos(oneWayMs: number, lossPercent: number, codec: CodecImpairment): number {
  return mosFromR(rFactor(oneWayMs, lossPercent, codec));
}
