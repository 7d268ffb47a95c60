/** Hand-written offers for checks that need no live peer (they are refused before ICE starts). */
export function offerSdp(opts: { audioTracks?: number; codecs?: [number, string][] } = {}): string {
  const codecs = opts.codecs ?? [[111, 'opus/48000/2'], [0, 'PCMU/8000'], [126, 'telephone-event/48000']];
  const n = opts.audioTracks ?? 1;
  const mids = Array.from({ length: n }, (_, i) => String(i));
  const lines = [
    'v=0',
    'o=- 4611731400430051336 2 IN IP4 127.0.0.1',
    's=-',
    't=0 0',
    `a=group:BUNDLE ${mids.join(' ')}`,
    'a=fingerprint:sha-256 8B:87:09:8A:5D:C2:F3:33:EF:C5:B1:F6:84:3A:3D:D6:A3:E2:9C:17:4C:E7:46:3B:1B:CE:84:98:DD:8E:AF:7B',
    'a=ice-ufrag:EsAw',
    'a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1',
  ];
  for (const mid of mids) {
    lines.push(
      `m=audio 9 UDP/TLS/RTP/SAVPF ${codecs.map((c) => c[0]).join(' ')}`,
      'c=IN IP4 0.0.0.0',
      `a=mid:${mid}`,
      'a=sendonly',
      'a=rtcp-mux',
      'a=setup:actpass',
      ...codecs.map(([pt, name]) => `a=rtpmap:${pt} ${name}`),
    );
  }
  return lines.join('\r\n') + '\r\n';
}

export const VIDEO_ONLY_OFFER = [
  'v=0',
  'o=- 1 2 IN IP4 127.0.0.1',
  's=-',
  't=0 0',
  'a=group:BUNDLE 0',
  'a=fingerprint:sha-256 8B:87:09:8A:5D:C2:F3:33:EF:C5:B1:F6:84:3A:3D:D6:A3:E2:9C:17:4C:E7:46:3B:1B:CE:84:98:DD:8E:AF:7B',
  'a=ice-ufrag:EsAw',
  'a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1',
  'm=video 9 UDP/TLS/RTP/SAVPF 96',
  'c=IN IP4 0.0.0.0',
  'a=mid:0',
  'a=sendonly',
  'a=rtcp-mux',
  'a=setup:actpass',
  'a=rtpmap:96 VP8/90000',
].join('\r\n') + '\r\n';

/** An RFC 8840 sdpfrag repeating the offer's ICE credentials, for its first m= section. */
export function trickleFor(offer: string, endOfCandidates = true): string {
  const ufrag = /a=ice-ufrag:(\S+)/.exec(offer)![1];
  const pwd = /a=ice-pwd:(\S+)/.exec(offer)![1];
  const mid = /a=mid:(\S+)/.exec(offer)![1];
  const lines = [`a=ice-ufrag:${ufrag}`, `a=ice-pwd:${pwd}`, 'm=audio 9 UDP/TLS/RTP/SAVPF 0', `a=mid:${mid}`];
  if (endOfCandidates) lines.push('a=end-of-candidates');
  return lines.join('\r\n') + '\r\n';
}
