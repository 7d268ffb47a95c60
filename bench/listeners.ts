/** A child process holding N real WHEP players (node-datachannel, recvonly), driven over IPC by bench/whep.ts. */
import ndc from 'node-datachannel';

const { PeerConnection, Audio } = ndc;
type Pc = InstanceType<typeof PeerConnection>;
const players: { pc: Pc; track: ReturnType<Pc['addTrack']>; received: number; connected: boolean }[] = [];

async function listen(url: string, token: string): Promise<void> {
  const pc = new PeerConnection('player', { iceServers: [], bindAddress: '127.0.0.1' });
  const audio = new Audio('0', 'RecvOnly');
  audio.addOpusCodec(111);
  const track = pc.addTrack(audio);
  const p = { pc, track, received: 0, connected: false };
  track.onClosed(() => undefined);
  track.onMessage((m) => {
    if (!(m[1]! >= 192 && m[1]! <= 223)) p.received++;
  });
  pc.onStateChange((s) => {
    if (s === 'connected') p.connected = true;
  });
  await new Promise<void>((r) => {
    pc.onGatheringStateChange((s) => s === 'complete' && r());
    pc.setLocalDescription();
  });
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` }, body: pc.localDescription()!.sdp });
  const answer = await res.text();
  if (res.status !== 201) {
    process.send!({ type: 'error', message: `POST answered ${res.status}: ${answer.slice(0, 120)}` });
    pc.close();
    return;
  }
  try {
    pc.setRemoteDescription(answer, 'answer');
    players.push(p);
  } catch (err) {
    process.send!({ type: 'error', message: String(err) });
    pc.close();
  }
}

process.on('message', async (msg: { cmd: string; url?: string; token?: string; n?: number }) => {
  if (msg.cmd === 'start') {
    for (let i = 0; i < msg.n!; i++) await listen(msg.url!, msg.token!);
    const deadline = Date.now() + 30_000;
    while (players.some((p) => !p.connected) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    process.send!({ type: 'ready', connected: players.filter((p) => p.connected).length });
  } else if (msg.cmd === 'count') {
    process.send!({ type: 'count', received: players.map((p) => p.received) });
  } else if (msg.cmd === 'exit') {
    for (const p of players) {
      p.track.close();
      p.pc.close();
    }
    setTimeout(() => process.exit(0), 200);
  }
});
process.send!({ type: 'hello' });
