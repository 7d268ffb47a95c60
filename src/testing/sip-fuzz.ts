/**
 * Mutated SIP requests for fuzz runs (issue 19): the unit run into the stack on a fake clock
 * (src/sip/sip-fuzz.test.ts) and the e2e run over a real WebSocket and UDP (test/sip-fuzz.test.ts).
 */
const JUNK = ['', ' ', '%', '%zz', '%E0%A4%A', '<', '>', '"', ';', ',', '\t', 'sip:', 'sip:%@voxgate.test', '<sip:%@voxgate.test>', '-1', '4294967296', 'x'.repeat(2000), '\u00ed', 'z9hG4bK'];
export const METHODS = ['REGISTER', 'INVITE', 'OPTIONS', 'BYE', 'CANCEL', 'ACK', 'MESSAGE', 'INFO', 'UPDATE', 'REFER', 'NOTIFY', 'PRACK', 'SUBSCRIBE', 'FOO'];

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

/** A well-formed request of `method` to voxgate.test, over `transport` (its Via), numbered `i`. */
export function template(method: string, i: number, transport: 'WS' | 'UDP' = 'WS', via = 'fuzz.invalid'): string[] {
  const sdp = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n';
  return [
    `${method} sip:${method === 'REGISTER' ? '' : 'agent@'}voxgate.test SIP/2.0`,
    `Via: SIP/2.0/${transport} ${via};branch=z9hG4bKfuzz${i}`,
    'Max-Forwards: 70',
    `To: <sip:${method === 'REGISTER' ? 'bob' : 'agent'}@voxgate.test>${i % 5 === 0 ? ';tag=t1' : ''}`,
    `From: <sip:bob@voxgate.test>;tag=f${i}`,
    `Call-ID: fuzz-${i % 50}`,
    `CSeq: ${i} ${method}`,
    `Contact: <sip:bob@${via};transport=${transport.toLowerCase()}>`,
    ...(method === 'INVITE' ? ['Content-Type: application/sdp', `Content-Length: ${sdp.length}`, '', sdp] : ['Content-Length: 0', '', '']),
  ];
}

/** One to three mutations: a header line lost, doubled, given junk or a bad %-escape, cut short, or a byte flipped. */
export function mutate(lines: string[], r: () => number): string {
  const pick = <T>(a: T[]) => a[Math.floor(r() * a.length)]!;
  const out = [...lines];
  const head = out.indexOf('');
  for (let k = 0, n = 1 + Math.floor(r() * 3); k < n; k++) {
    const i = Math.floor(r() * Math.max(1, head));
    const what = Math.floor(r() * 6);
    if (what === 0) out.splice(i, 1);
    else if (what === 1) out.splice(i, 0, out[i]!);
    else if (what === 2) out[i] = out[i]!.replace(/([:;= ])[^:;= ]*$/, (_m, sep: string) => sep + pick(JUNK));
    else if (what === 3) out[i] = out[i]!.replace(/sip:[^@>;\s]*@/, `sip:${pick(JUNK)}@`);
    else if (what === 4) out[i] = out[i]!.slice(0, Math.floor(r() * out[i]!.length));
    else {
      const chars = [...out[i]!];
      chars[Math.floor(r() * chars.length)] = String.fromCharCode(Math.floor(r() * 256));
      out[i] = chars.join('');
    }
  }
  return out.join('\r\n');
}
