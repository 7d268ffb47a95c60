/**
 * application/trickle-ice-sdpfrag (RFC 8840 §9): ICE credentials and candidates per media
 * section. Pure; unknown lines are ignored, malformed structure is an error.
 */
export interface TrickleFragment {
  ufrag: string | undefined;
  pwd: string | undefined;
  candidates: { mid: string | undefined; candidate: string }[];
  endOfCandidates: boolean;
}

export class TrickleParseError extends Error {}

export function parseTrickleFragment(text: string): TrickleFragment {
  const frag: TrickleFragment = { ufrag: undefined, pwd: undefined, candidates: [], endOfCandidates: false };
  let mid: string | undefined;
  let sawMedia = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line) continue;
    if (!/^[a-z]=/.test(line)) throw new TrickleParseError(`expected "<type>=<value>" lines, got ${JSON.stringify(line.slice(0, 40))}`);
    if (line.startsWith('m=')) {
      sawMedia = true;
      mid = undefined;
    } else if (line.startsWith('a=mid:')) {
      mid = line.slice(6);
    } else if (line.startsWith('a=ice-ufrag:')) {
      frag.ufrag = line.slice(12);
    } else if (line.startsWith('a=ice-pwd:')) {
      frag.pwd = line.slice(10);
    } else if (line.startsWith('a=candidate:')) {
      frag.candidates.push({ mid: sawMedia ? mid : undefined, candidate: line.slice(2) });
    } else if (line === 'a=end-of-candidates') {
      frag.endOfCandidates = true;
    }
  }
  return frag;
}
