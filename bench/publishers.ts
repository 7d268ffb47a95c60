/**
 * A child process holding N real WebRTC publishers (node-datachannel), driven over IPC by
 * bench/whip.ts and bench/agent.ts. Each sends 20 ms frames of a real encoded tone (Opus, or
 * PCMU) on one shared 20 ms ticker, and counts the RTP it receives.
 */
import { OpusEncoder } from '../src/testing/opus.js';
import ndc from 'node-datachannel';
import { encodeG711 } from '../src/audio/g711.js';

const { PeerConnection, Audio } = ndc;
type Pc = InstanceType<typeof PeerConnection>;
type Track = ReturnType<Pc['addTrack']>;

interface Publisher {
  pc: Pc;
  track: Track;
  ssrc: number;
  seq: number;
  id: string;
  postStartedAt: number;
  postMs: number;
  connected: boolean;
  codec: Codec;
  received: number;
}

type Codec = 'opus' | 'pcmu';

const FRAMES: Record<Codec, { pt: number; samples: number; payloads: Buffer[] }> = {
  opus: {
    pt: 111,
    samples: 960,
    payloads: (() => {
      const enc = new OpusEncoder(48000, 1);
      const out: Buffer[] = [];
      for (let f = 0; f < 50; f++) {
        const pcm = Buffer.alloc(960 * 2);
        for (let i = 0; i < 960; i++) pcm.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * (f * 960 + i)) / 48000)), i * 2);
        out.push(enc.encode(pcm));
      }
      return out;
    })(),
  },
  pcmu: {
    pt: 0,
    samples: 160,
    payloads: Array.from({ length: 50 }, (_, f) => encodeG711(Int16Array.from({ length: 160 }, (_x, i) => Math.round(8000 * Math.sin((2 * Math.PI * 440 * (f * 160 + i)) / 8000))), 'pcmu')),
  },
};

const pubs: Publisher[] = [];
let failures = 0;
let ticker: NodeJS.Timeout | undefined;

let direction: 'SendOnly' | 'SendRecv' = 'SendOnly';

async function publish(url: string, token: string, codec: Codec): Promise<Publisher | undefined> {
  const pc = new PeerConnection('bench', { iceServers: [], bindAddress: '127.0.0.1' });
  const audio = new Audio('0', direction);
  if (codec === 'opus') audio.addOpusCodec(111);
  else audio.addAudioCodec(0, 'PCMU/8000');
  const ssrc = (Math.random() * 0xffffffff) >>> 0;
  audio.addSSRC(ssrc, 'bench');
  const track = pc.addTrack(audio);
  track.onClosed(() => undefined);
  const pub: Publisher = { pc, track, ssrc, seq: 0, id: '', postStartedAt: 0, postMs: 0, connected: false, codec, received: 0 };
  // sendrecv: what voxgate sends back is counted (RTP only: RTCP is 192-223 in the second byte) and dropped.
  track.onMessage((m) => {
    const b = m as Buffer;
    if (!(b[1]! >= 192 && b[1]! <= 223)) pub.received++;
  });
  const gathered = new Promise<void>((r) => pc.onGatheringStateChange((s) => s === 'complete' && r()));
  pc.onStateChange((s) => {
    if (s === 'connected') pub.connected = true;
  });
  pc.setLocalDescription();
  await gathered;
  pub.postStartedAt = Date.now();
  const t0 = performance.now();
  const res = await fetch(`${url}/whip`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
    body: pc.localDescription()!.sdp,
  });
  const answer = await res.text();
  pub.postMs = performance.now() - t0;
  if (res.status !== 201) {
    process.send!({ type: 'error', message: `POST answered ${res.status}: ${answer.slice(0, 200)}` });
    pc.close();
    return undefined;
  }
  pub.id = res.headers.get('location')!.split('/').pop()!;
  try {
    pc.setRemoteDescription(answer, 'answer');
  } catch (err) {
    // A client-side failure is reported and counted, not hidden: the publisher is dropped.
    process.send!({ type: 'error', message: `setRemoteDescription: ${(err as Error).message} (state ${pc.state()}, ice ${pc.iceState()})` });
    failures++;
    track.close();
    pc.close();
    return undefined;
  }
  return pub;
}

function tick(): void {
  for (const p of pubs) {
    if (!p.connected || !p.track.isOpen()) continue;
    const f = FRAMES[p.codec];
    const payload = f.payloads[p.seq % f.payloads.length]!;
    const pkt = Buffer.allocUnsafe(12 + payload.length);
    pkt[0] = 0x80;
    pkt[1] = f.pt;
    pkt.writeUInt16BE(p.seq & 0xffff, 2);
    pkt.writeUInt32BE((p.seq * f.samples) >>> 0, 4);
    pkt.writeUInt32BE(p.ssrc, 8);
    payload.copy(pkt, 12);
    p.seq++;
    p.track.sendMessageBinary(pkt);
  }
}

process.on('message', async (msg: { cmd: string; url?: string; token?: string; n?: number; concurrency?: number; direction?: 'SendOnly' | 'SendRecv'; codec?: Codec }) => {
  if (msg.cmd === 'start') {
    // Several starts add publishers (of another codec, on another source) to the ones running.
    direction = msg.direction ?? 'SendOnly';
    ticker ??= setInterval(tick, 20);
    const batch: Publisher[] = [];
    let next = 0;
    const worker = async () => {
      while (next < msg.n!) {
        next++;
        const p = await publish(msg.url!, msg.token!, msg.codec ?? 'opus');
        if (p) batch.push(p);
      }
    };
    await Promise.all(Array.from({ length: msg.concurrency ?? 10 }, worker));
    pubs.push(...batch);
    const deadline = Date.now() + 30_000;
    while (batch.some((p) => !p.connected) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    process.send!({
      type: 'ready',
      failures,
      publishers: batch.map((p) => ({ id: p.id, postStartedAt: p.postStartedAt, postMs: p.postMs, connected: p.connected })),
    });
  } else if (msg.cmd === 'received') {
    process.send!({ type: 'received', received: Object.fromEntries(pubs.map((p) => [p.id, p.received])), sent: Object.fromEntries(pubs.map((p) => [p.id, p.seq])) });
  } else if (msg.cmd === 'stop-rtp') {
    if (ticker) clearInterval(ticker);
    process.send!({ type: 'sent', sent: Object.fromEntries(pubs.map((p) => [p.id, p.seq])) });
  } else if (msg.cmd === 'cpu') {
    process.send!({ type: 'cpu', usage: process.cpuUsage() });
  } else if (msg.cmd === 'exit') {
    for (const p of pubs) {
      p.track.close();
      p.pc.close();
    }
    setTimeout(() => process.exit(0), 200);
  }
});
process.send!({ type: 'hello' });
