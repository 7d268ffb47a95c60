import ndc from 'node-datachannel';

const { PeerConnection, Audio } = ndc;

export interface NdcPublisher {
  status: number;
  /** The offer was taken (WHIP 201, SIP 200). */
  accepted: boolean;
  /** The offer we sent (its ICE credentials are what trickle PATCHes must repeat). */
  offer: string;
  headers: Headers;
  answer: string;
  location: string | undefined;
  /** ms from POST sent to 201 received. */
  postMs: number;
  connected: Promise<void>;
  /** Starts sending a 20 ms Opus-sized RTP packet every `intervalMs`. */
  startRtp(intervalMs?: number): void;
  sent(): number;
  /** RTP packets voxgate sent us (sendrecv), in arrival order. */
  received: Buffer[];
  /** RFC 4733: one DTMF event (start, two updates, three end packets). */
  sendDtmf(event: number): void;
  /** Ends the session the offer made, if the exchange says how (WHIP: DELETE; SIP: BYE). */
  undo?(): Promise<unknown>;
  close(): void;
}

export interface PublishOptions {
  direction?: 'SendOnly' | 'SendRecv';
  codecs?: 'opus' | 'pcmu';
  /** Payloads to cycle through (default: 80 bytes of 0x5a). */
  payloads?: Buffer[];
  telephoneEvent?: boolean;
  /** Sequence numbers to skip rather than send (a lossy network). */
  drop?: (seq: number) => boolean;
}

/** What the signalling carried back for an offer: for WHIP the POST's answer, for SIP the INVITE's. */
export interface OfferExchange {
  /** The offer was taken and `answer` is the SDP answer (WHIP 201, SIP 200). */
  accepted: boolean;
  status: number;
  headers: Headers;
  answer: string;
  /** Undoes an accepted offer the client could not apply (WHIP: DELETE the session). */
  undo?(): Promise<unknown>;
}

/**
 * A real WebRTC publisher (libdatachannel, the stack OBS is built on) for tests that need a peer
 * without a browser. One client per publish, never retried: a client that fails to connect is a
 * failure of the test (voxgate's early connectivity checks used to make about 1 in 100 fail in
 * their own setRemoteDescription; see holdCandidates in src/transport/webrtc/peer.ts).
 */
export async function publishWithNdc(
  whipUrl: string,
  token: string,
  opts: PublishOptions = {},
): Promise<NdcPublisher> {
  return publishOnce((offer) => whipPost(whipUrl, token, offer), opts);
}

/**
 * The same peer, its offer carried by `exchange` (a SIP INVITE over WebSocket, say): for calls
 * that are not WHIP. `exchange` is called once, with the client's offer.
 */
export function callWithNdc(exchange: (offer: string) => Promise<OfferExchange>, opts: PublishOptions = {}): Promise<NdcPublisher> {
  return publishOnce(exchange, opts);
}

async function whipPost(whipUrl: string, token: string, offer: string): Promise<OfferExchange> {
  const res = await fetch(whipUrl, { method: 'POST', headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` }, body: offer });
  const location = res.headers.get('Location');
  return {
    accepted: res.status === 201,
    status: res.status,
    headers: res.headers,
    answer: await res.text(),
    ...(location ? { undo: () => fetch(new URL(location, whipUrl), { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } }) } : {}),
  };
}

/** A promise that is already handled, for results the caller may never await. */
function rejected(message: string): Promise<never> {
  const p = Promise.reject(new Error(message));
  p.catch(() => undefined);
  return p;
}

async function publishOnce(exchange: (offer: string) => Promise<OfferExchange>, opts: PublishOptions): Promise<NdcPublisher> {
  const pc = new PeerConnection('pub', { iceServers: [], bindAddress: '127.0.0.1', enableIceUdpMux: false });
  const audio = new Audio('0', opts.direction ?? 'SendOnly');
  const ssrc = (Math.random() * 0xffffffff) >>> 0;
  if (opts.codecs === 'pcmu') audio.addAudioCodec(0, 'PCMU');
  else audio.addOpusCodec(111);
  if (opts.telephoneEvent) audio.addAudioCodec(101, opts.codecs === 'pcmu' ? 'telephone-event/8000' : 'telephone-event/48000');
  audio.addSSRC(ssrc, 'vg-test');
  const track = pc.addTrack(audio);
  const received: Buffer[] = [];
  track.onMessage((m) => {
    const pt = m[1]! & 0x7f;
    if (!(m[1]! >= 192 && m[1]! <= 223) && pt !== 101) received.push(Buffer.from(m));
  });
  // node-datachannel frees a track's native wrapper only from its onClosed callback.
  track.onClosed(() => undefined);
  const gathered = new Promise<void>((resolve) => {
    pc.onGatheringStateChange((s) => s === 'complete' && resolve());
  });
  pc.setLocalDescription();
  await gathered;
  const connected = new Promise<void>((resolve, reject) => {
    pc.onStateChange((s) => {
      if (s === 'connected') resolve();
      if (s === 'failed') reject(new Error('publisher connection failed'));
    });
  });
  connected.catch(() => undefined);
  const t0 = performance.now();
  const res = await exchange(pc.localDescription()!.sdp);
  const postMs = performance.now() - t0;
  if (res.accepted) {
    try {
      pc.setRemoteDescription(res.answer, 'answer');
    } catch (err) {
      // A half-made client: its session is undone, so a failing test leaves nothing behind.
      pc.close();
      await res.undo?.();
      throw err;
    }
  }
  let seq = 0;
  let timer: NodeJS.Timeout | undefined;
  const payloads = opts.payloads ?? [Buffer.alloc(80, 0x5a)];
  return {
    status: res.status,
    accepted: res.accepted,
    offer: pc.localDescription()!.sdp,
    headers: res.headers,
    answer: res.answer,
    location: res.headers.get('location') ?? undefined,
    postMs,
    connected: res.accepted ? connected : rejected(`the offer was answered ${res.status}`),
    ...(res.undo ? { undo: res.undo } : {}),
    startRtp(intervalMs = 20) {
      timer = setInterval(() => {
        if (!track.isOpen()) return;
        if (opts.drop?.(seq)) {
          seq++;
          return;
        }
        const payload = payloads[seq % payloads.length]!;
        const pkt = Buffer.alloc(12 + payload.length);
        pkt[0] = 0x80;
        pkt[1] = opts.codecs === 'pcmu' ? 0 : 111;
        pkt.writeUInt16BE(seq & 0xffff, 2);
        pkt.writeUInt32BE((seq * 960) >>> 0, 4);
        pkt.writeUInt32BE(ssrc, 8);
        payload.copy(pkt, 12);
        seq++;
        track.sendMessageBinary(pkt);
      }, intervalMs);
    },
    sent: () => seq,
    received,
    sendDtmf(event: number) {
      const ts = (seq * 960) >>> 0;
      for (const [end, duration] of [[false, 160], [false, 320], [false, 480], [true, 640], [true, 640], [true, 640]] as const) {
        const pkt = Buffer.alloc(16);
        pkt[0] = 0x80;
        pkt[1] = 101;
        pkt.writeUInt16BE(seq & 0xffff, 2);
        pkt.writeUInt32BE(ts, 4);
        pkt.writeUInt32BE(ssrc, 8);
        pkt[12] = event;
        pkt[13] = (end ? 0x80 : 0) | 10;
        pkt.writeUInt16BE(duration, 14);
        seq++;
        track.sendMessageBinary(pkt);
      }
    },
    close() {
      if (timer) clearInterval(timer);
      track.close();
      pc.close();
    },
  };
}

export interface NdcListener {
  status: number;
  headers: Headers;
  answer: string;
  location: string | undefined;
  offer: string;
  connected: Promise<void>;
  /** RTP packets received from voxgate. */
  received: Buffer[];
  close(): void;
}

type ListenOptions = { codecs?: 'opus' | 'pcmu' | 'opus+pcmu'; direction?: 'RecvOnly' | 'SendOnly' };

/** A real WHEP player (libdatachannel, recvonly). */
export function listenWithNdc(url: string, token: string | undefined, opts: ListenOptions = {}): Promise<NdcListener> {
  return listenOnce(url, token, opts);
}

async function listenOnce(url: string, token: string | undefined, opts: ListenOptions): Promise<NdcListener> {
  const pc = new PeerConnection('listener', { iceServers: [], bindAddress: '127.0.0.1' });
  const audio = new Audio('0', opts.direction ?? 'RecvOnly');
  const codecs = opts.codecs ?? 'opus';
  if (codecs.includes('opus')) audio.addOpusCodec(111);
  if (codecs.includes('pcmu')) audio.addAudioCodec(0, 'PCMU');
  const track = pc.addTrack(audio);
  track.onClosed(() => undefined);
  const received: Buffer[] = [];
  track.onMessage((m) => {
    if (!(m[1]! >= 192 && m[1]! <= 223)) received.push(Buffer.from(m));
  });
  const gathered = new Promise<void>((resolve) => pc.onGatheringStateChange((s) => s === 'complete' && resolve()));
  pc.setLocalDescription();
  await gathered;
  const connected = new Promise<void>((resolve, reject) => {
    pc.onStateChange((s) => {
      if (s === 'connected') resolve();
      if (s === 'failed') reject(new Error('listener connection failed'));
    });
  });
  connected.catch(() => undefined);
  const offer = pc.localDescription()!.sdp;
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp', ...(token ? { Authorization: `Bearer ${token}` } : {}) }, body: offer });
  const body = await res.text();
  if (res.status === 201) pc.setRemoteDescription(body, 'answer');
  return {
    status: res.status,
    headers: res.headers,
    answer: body,
    location: res.headers.get('location') ?? undefined,
    offer,
    connected: res.status === 201 ? connected : rejected(`POST answered ${res.status}`),
    received,
    close() {
      track.close();
      pc.close();
    },
  };
}

/** Reads a server-sent events stream (with a Bearer token) and collects its events. */
export function readSse(url: string, token: string): { events: { event: string; data: unknown }[]; done: Promise<void>; abort(): void } {
  const events: { event: string; data: unknown }[] = [];
  const ac = new AbortController();
  const done = (async () => {
    const res = await fetch(url, { headers: { Authorization: `Bearer ${token}` }, signal: ac.signal });
    if (res.status !== 200) throw new Error(`SSE answered ${res.status}`);
    const decoder = new TextDecoder();
    let buf = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        events.push({ event: /^event: (.*)$/m.exec(block)?.[1] ?? 'message', data: JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? 'null') });
      }
    }
  })().catch((err: unknown) => {
    if ((err as Error).name !== 'AbortError') throw err;
  });
  return { events, done, abort: () => ac.abort() };
}

/** Publishes and waits until connected (10 s at most); a client that does not connect fails the test, its session undone. */
export function publishConnected(whipUrl: string, token: string, opts: PublishOptions = {}): Promise<NdcPublisher> {
  return connectedWithin(publishWithNdc(whipUrl, token, opts));
}

/** As publishConnected, for an offer carried by `exchange` (see callWithNdc). */
export function callConnected(exchange: (offer: string) => Promise<OfferExchange>, opts: PublishOptions = {}): Promise<NdcPublisher> {
  return connectedWithin(callWithNdc(exchange, opts));
}

async function connectedWithin(attempt: Promise<NdcPublisher>): Promise<NdcPublisher> {
  const p = await attempt;
  if (!p.accepted) throw new Error(`the offer was answered ${p.status}: ${p.answer.slice(0, 200)}`);
  try {
    await Promise.race([p.connected, new Promise((_, reject) => setTimeout(() => reject(new Error('not connected within 10 s')), 10_000))]);
    return p;
  } catch (err) {
    p.close();
    await p.undo?.();
    throw err;
  }
}

/** As publishConnected, for WHEP listeners: one client, connected within 10 s or the test fails (its listener deleted). */
export async function listenConnected(url: string, token: string, opts: ListenOptions = {}): Promise<NdcListener> {
  const l = await listenWithNdc(url, token, opts);
  if (l.status !== 201) throw new Error(`POST answered ${l.status}: ${l.answer.slice(0, 200)}`);
  try {
    await Promise.race([l.connected, new Promise((_, reject) => setTimeout(() => reject(new Error('not connected within 10 s')), 10_000))]);
    return l;
  } catch (err) {
    l.close();
    await fetch(l.location!, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } });
    throw err;
  }
}
