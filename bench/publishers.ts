/**
 * A child process holding N real WebRTC publishers (node-datachannel), driven over IPC by
 * bench/whip.ts. Each sends 20 ms Opus frames (a real encoded tone) on one shared 20 ms ticker.
 */
import opus from '@discordjs/opus';
import ndc from 'node-datachannel';

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
}

const frames: Buffer[] = (() => {
  const enc = new opus.OpusEncoder(48000, 1);
  const out: Buffer[] = [];
  for (let f = 0; f < 50; f++) {
    const pcm = Buffer.alloc(960 * 2);
    for (let i = 0; i < 960; i++) pcm.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * (f * 960 + i)) / 48000)), i * 2);
    out.push(enc.encode(pcm));
  }
  return out;
})();

const pubs: Publisher[] = [];
let failures = 0;
let ticker: NodeJS.Timeout | undefined;

let direction: 'SendOnly' | 'SendRecv' = 'SendOnly';

async function publish(url: string, token: string): Promise<Publisher | undefined> {
  const pc = new PeerConnection('bench', { iceServers: [], bindAddress: '127.0.0.1' });
  const audio = new Audio('0', direction);
  audio.addOpusCodec(111);
  const ssrc = (Math.random() * 0xffffffff) >>> 0;
  audio.addSSRC(ssrc, 'bench');
  const track = pc.addTrack(audio);
  track.onClosed(() => undefined);
  track.onMessage(() => undefined); // sendrecv: what voxgate sends back is received and dropped
  const gathered = new Promise<void>((r) => pc.onGatheringStateChange((s) => s === 'complete' && r()));
  const pub: Publisher = { pc, track, ssrc, seq: 0, id: '', postStartedAt: 0, postMs: 0, connected: false };
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
    const payload = frames[p.seq % frames.length]!;
    const pkt = Buffer.allocUnsafe(12 + payload.length);
    pkt[0] = 0x80;
    pkt[1] = 111;
    pkt.writeUInt16BE(p.seq & 0xffff, 2);
    pkt.writeUInt32BE((p.seq * 960) >>> 0, 4);
    pkt.writeUInt32BE(p.ssrc, 8);
    payload.copy(pkt, 12);
    p.seq++;
    p.track.sendMessageBinary(pkt);
  }
}

process.on('message', async (msg: { cmd: string; url?: string; token?: string; n?: number; concurrency?: number; direction?: 'SendOnly' | 'SendRecv' }) => {
  if (msg.cmd === 'start') {
    direction = msg.direction ?? 'SendOnly';
    ticker = setInterval(tick, 20);
    let next = 0;
    const worker = async () => {
      while (next < msg.n!) {
        next++;
        const p = await publish(msg.url!, msg.token!);
        if (p) pubs.push(p);
      }
    };
    await Promise.all(Array.from({ length: msg.concurrency ?? 10 }, worker));
    const deadline = Date.now() + 30_000;
    while (pubs.some((p) => !p.connected) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    process.send!({
      type: 'ready',
      failures,
      publishers: pubs.map((p) => ({ id: p.id, postStartedAt: p.postStartedAt, postMs: p.postMs, connected: p.connected })),
    });
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
