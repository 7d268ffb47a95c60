/**
 * SDP (RFC 8866) as a plain value: session-level lines and media sections, each keeping
 * its attributes in order. Pure: no I/O; a malformed description is a typed error.
 */
export interface SdpAttribute {
  name: string;
  /** `undefined` for property attributes such as `a=rtcp-mux`. */
  value: string | undefined;
}

export interface SdpMedia {
  type: string; // audio, video, application, ...
  port: number;
  proto: string;
  formats: string[];
  /** Lines other than a= (c=, b=, i=, k=), kept verbatim. */
  lines: string[];
  attributes: SdpAttribute[];
}

export interface SessionDescription {
  /** v=, o=, s=, t=, c= ... lines before the first m=, kept verbatim, excluding a=. */
  lines: string[];
  attributes: SdpAttribute[];
  media: SdpMedia[];
}

export class SdpParseError extends Error {
  constructor(
    message: string,
    readonly line?: number,
  ) {
    super(line === undefined ? message : `line ${line}: ${message}`);
    this.name = 'SdpParseError';
  }
}

const LINE = /^([a-z])=(.*)$/;

export function parseSdp(text: string): SessionDescription {
  if (text.includes('\0')) throw new SdpParseError('contains a NUL byte');
  const rawLines = text.split(/\r?\n/);
  while (rawLines.length && rawLines[rawLines.length - 1] === '') rawLines.pop();
  if (rawLines.length === 0) throw new SdpParseError('empty description');
  const sdp: SessionDescription = { lines: [], attributes: [], media: [] };
  let current: SdpMedia | undefined;
  rawLines.forEach((line, i) => {
    const n = i + 1;
    const m = LINE.exec(line);
    if (!m) throw new SdpParseError(`expected "<type>=<value>", got ${JSON.stringify(line.slice(0, 40))}`, n);
    const [, type, value] = m as unknown as [string, string, string];
    if (i === 0 && type !== 'v') throw new SdpParseError('a description must start with v=', n);
    if (i === 0 && value !== '0') throw new SdpParseError(`unsupported SDP version v=${value}`, n);
    if (type === 'm') {
      current = parseMediaLine(value, n);
      sdp.media.push(current);
    } else if (type === 'a') {
      const colon = value.indexOf(':');
      const attr: SdpAttribute =
        colon < 0 ? { name: value, value: undefined } : { name: value.slice(0, colon), value: value.slice(colon + 1) };
      if (!attr.name) throw new SdpParseError('empty attribute name', n);
      (current ? current.attributes : sdp.attributes).push(attr);
    } else if (current) {
      current.lines.push(line);
    } else {
      sdp.lines.push(line);
    }
  });
  for (const required of ['o', 's', 't']) {
    if (!sdp.lines.some((l) => l.startsWith(`${required}=`))) throw new SdpParseError(`missing the ${required}= line`);
  }
  return sdp;
}

function parseMediaLine(value: string, n: number): SdpMedia {
  const parts = value.split(' ');
  if (parts.length < 4) throw new SdpParseError('m= needs "<media> <port> <proto> <fmt> ..."', n);
  const [type, portText, proto, ...formats] = parts as [string, string, string, ...string[]];
  const port = Number(portText.split('/')[0]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new SdpParseError(`bad port in m= line: ${portText}`, n);
  if (!/^[a-z]+$/i.test(type)) throw new SdpParseError(`bad media type: ${type}`, n);
  return { type, port, proto, formats, lines: [], attributes: [] };
}

export function serializeSdp(sdp: SessionDescription): string {
  const out: string[] = [...sdp.lines, ...sdp.attributes.map(attrLine)];
  for (const m of sdp.media) {
    out.push(`m=${m.type} ${m.port} ${m.proto} ${m.formats.join(' ')}`, ...m.lines, ...m.attributes.map(attrLine));
  }
  return out.join('\r\n') + '\r\n';
}

function attrLine(a: SdpAttribute): string {
  return a.value === undefined ? `a=${a.name}` : `a=${a.name}:${a.value}`;
}

export function attr(list: SdpAttribute[], name: string): string | undefined {
  return list.find((a) => a.name === name)?.value;
}

export function attrs(list: SdpAttribute[], name: string): string[] {
  return list.filter((a) => a.name === name).map((a) => a.value ?? '');
}

export type Direction = 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';

/** RFC 8866 §6.7: media-level direction overrides session-level; the default is sendrecv. */
export function directionOf(sdp: SessionDescription, m: SdpMedia): Direction {
  const find = (list: SdpAttribute[]) =>
    list.find((a) => a.name === 'sendrecv' || a.name === 'sendonly' || a.name === 'recvonly' || a.name === 'inactive')
      ?.name as Direction | undefined;
  return find(m.attributes) ?? find(sdp.attributes) ?? 'sendrecv';
}

export interface RtpMap {
  payloadType: number;
  /** Lower-case encoding name (opus, pcmu, telephone-event, ...). */
  encoding: string;
  clockRate: number;
  channels: number;
  fmtp: string | undefined;
}

/** RFC 3551 static payload types usable without an rtpmap. */
const STATIC_PT: Record<number, Omit<RtpMap, 'payloadType' | 'fmtp'>> = {
  0: { encoding: 'pcmu', clockRate: 8000, channels: 1 },
  8: { encoding: 'pcma', clockRate: 8000, channels: 1 },
  9: { encoding: 'g722', clockRate: 8000, channels: 1 },
};

/** The payload formats of a media section, in the offerer's order of preference. */
export function rtpMaps(m: SdpMedia): RtpMap[] {
  const maps = new Map<number, { encoding: string; clockRate: number; channels: number }>();
  for (const v of attrs(m.attributes, 'rtpmap')) {
    const mm = /^(\d+) ([^/\s]+)\/(\d+)(?:\/(\d+))?/.exec(v);
    if (mm) maps.set(Number(mm[1]), { encoding: mm[2]!.toLowerCase(), clockRate: Number(mm[3]), channels: Number(mm[4] ?? 1) });
  }
  const fmtps = new Map<number, string>();
  for (const v of attrs(m.attributes, 'fmtp')) {
    const sp = v.indexOf(' ');
    if (sp > 0) fmtps.set(Number(v.slice(0, sp)), v.slice(sp + 1));
  }
  const out: RtpMap[] = [];
  for (const f of m.formats) {
    const pt = Number(f);
    if (!Number.isInteger(pt) || pt < 0 || pt > 127) continue;
    const info = maps.get(pt) ?? STATIC_PT[pt];
    if (info) out.push({ payloadType: pt, ...info, fmtp: fmtps.get(pt) });
  }
  return out;
}
