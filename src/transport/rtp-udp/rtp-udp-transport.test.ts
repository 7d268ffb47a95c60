import assert from 'node:assert/strict';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { describe, it, type TestContext } from 'node:test';
import type { RtpSink } from '../../rtp/rtp-counter.js';
import { planRtpAnswer, type RtpAnswerPlan } from '../../sdp/profile-rtp.js';
import { parseSdp } from '../../sdp/sdp.js';
import type { MediaTransportEvents } from '../media-transport.js';
import { RtpTransports } from './factory.js';
import type { RtpUdpTransport } from './rtp-udp-transport.js';
import { Waiter } from '../../testing/waiter.js';

/** A UDP socket on 127.0.0.1 whose datagrams the test awaits in order. */
class Peer {
  readonly received: { data: Buffer; from: RemoteInfo }[] = [];
  #read = 0;
  readonly #waiter = new Waiter();

  constructor(readonly socket: Socket) {
    socket.on('message', (data, from) => {
      this.received.push({ data, from });
      this.#waiter.poke();
    });
  }

  get port(): number {
    return this.socket.address().port;
  }

  send(data: Buffer, port: number): void {
    this.socket.send(data, port, '127.0.0.1');
  }

  async next(timeoutMs = 2000): Promise<{ data: Buffer; from: RemoteInfo }> {
    await this.#waiter.until(() => this.#read < this.received.length, `a datagram on port ${this.port}`, timeoutMs);
    return this.received[this.#read++]!;
  }
}

function bindUdp(port: number): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    s.once('error', () => {
      s.close();
      resolve(undefined);
    });
    s.bind(port, '127.0.0.1', () => resolve(s));
  });
}

async function peer(t: TestContext, port = 0): Promise<Peer> {
  const s = await bindUdp(port);
  assert.ok(s, `could not bind 127.0.0.1:${port}`);
  t.after(() => s.close());
  return new Peer(s);
}

/** A far end's RTP socket and the RTCP one on port + 1 (RFC 3550 §11). */
async function peerPair(t: TestContext): Promise<{ rtp: Peer; rtcp: Peer }> {
  for (let i = 0; i < 50; i++) {
    const rtp = await bindUdp(0);
    if (!rtp) continue;
    const rtcp = await bindUdp(rtp.address().port + 1);
    if (rtcp) {
      t.after(() => {
        rtp.close();
        rtcp.close();
      });
      return { rtp: new Peer(rtp), rtcp: new Peer(rtcp) };
    }
    rtp.close();
  }
  assert.fail('no free RTP/RTCP port pair on 127.0.0.1');
}

function offerPlan(port: number, lines: string[] = []): RtpAnswerPlan {
  const sdp = ['v=0', 'o=carrier 1 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', `m=audio ${port} RTP/AVP 0 101`, 'a=rtpmap:0 PCMU/8000', 'a=rtpmap:101 telephone-event/8000', ...lines].join('\r\n');
  return planRtpAnswer(parseSdp(`${sdp}\r\n`), { codecs: ['pcmu'], encryption: 'allow' });
}

function rtpPacket(seq: number): Buffer {
  const p = Buffer.alloc(12 + 160, 0xff);
  p[0] = 0x80;
  p[1] = 0;
  p.writeUInt16BE(seq, 2);
  p.writeUInt32BE(seq * 160, 4);
  p.writeUInt32BE(0xcafe, 8);
  return p;
}

/** An RTCP receiver report without blocks (RFC 3550 §6.4.2): second byte 201. */
function rtcpPacket(type = 201): Buffer {
  const p = Buffer.alloc(8);
  p[0] = 0x80;
  p[1] = type;
  p.writeUInt16BE(1, 2);
  p.writeUInt32BE(0xcafe, 4);
  return p;
}

/** An RtpSink whose packets the test awaits. */
class Sink implements RtpSink {
  readonly packets: Buffer[] = [];
  readonly #waiter = new Waiter();

  writeRtp(packet: Buffer): void {
    this.packets.push(packet);
    this.#waiter.poke();
  }

  count(n: number, timeoutMs = 2000): Promise<void> {
    return this.#waiter.until(() => this.packets.length >= n, `${n} RTP packets at the sink`, timeoutMs);
  }
}

function event<K extends keyof MediaTransportEvents & string>(transport: RtpUdpTransport, name: K, timeoutMs = 2000): Promise<MediaTransportEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${name}' event in time`)), timeoutMs);
    transport.once(name, (...args) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

function gateway(t: TestContext): RtpTransports {
  const min = 40000 + 2 * Math.floor(Math.random() * 9500);
  const transports = new RtpTransports({ host: '127.0.0.1', min, max: min + 7, quarantineMs: 0, now: () => 0, announcedAddress: '127.0.0.1', sdes: undefined });
  t.after(() => transports.close());
  return transports;
}

async function leg(t: TestContext, lines: string[] = []) {
  const far = await peerPair(t);
  const transports = gateway(t);
  const transport = await transports.answer(offerPlan(far.rtp.port, lines), '127.0.0.1');
  transport.answered();
  const sink = new Sink();
  transport.rtpSink = sink;
  return { far, transports, transport, sink };
}

describe('RtpUdpTransport', () => {
  it('sends nothing before the call is answered (a 180 carries no SDP), and RTP and RTCP after', async (t) => {
    const far = await peerPair(t);
    const transports = gateway(t);
    const transport = await transports.answer(offerPlan(far.rtp.port), '127.0.0.1');
    assert.equal(transport.sendRtp(rtpPacket(1)), false);
    assert.equal(transport.sendRtcp(Buffer.from([0x80, 201, 0, 1, 0, 0, 0, 1])), false);
    transport.answered();
    assert.equal(transport.sendRtp(rtpPacket(1)), true);
  });

  it('answers on a pair from the pool, with our port and address in its SDP', async (t) => {
    const { transport, transports } = await leg(t);
    assert.equal(transport.kind, 'rtp-udp');
    assert.equal(transport.state, 'connecting');
    assert.equal(transports.size, 1);
    assert.equal(transports.pool.portsInUse, 2);
    assert.match(transport.localSdp, new RegExp(`^m=audio ${transport.port} RTP/AVP 0 101\\r$`, 'm'));
    assert.match(transport.localSdp, /^c=IN IP4 127\.0\.0\.1\r$/m);
  });

  it('RTP goes to the SDP address before any packet came in, from the port we receive on (RFC 4961)', async (t) => {
    const { far, transport } = await leg(t);
    assert.equal(transport.sendRtp(rtpPacket(1)), true);
    const got = await far.rtp.next();
    assert.deepEqual(got.data, rtpPacket(1));
    assert.equal(got.from.port, transport.port);
    assert.equal(transport.remoteAddress(), `127.0.0.1:${far.rtp.port}`);
  });

  it('the first RTP from an allowed host latches: connected, handed to the sink, and what we send follows it', async (t) => {
    const { far, transport, sink } = await leg(t);
    const natted = await peer(t);
    const connected = event(transport, 'state');
    natted.send(rtpPacket(1), transport.port);
    assert.deepEqual(await connected, ['connected', undefined]);
    await sink.count(1);
    assert.deepEqual(sink.packets[0], rtpPacket(1));
    assert.equal(transport.state, 'connected');

    // The SDP's own port is now foreign: dropped and counted; the latched source still gets through.
    far.rtp.send(rtpPacket(2), transport.port);
    natted.send(rtpPacket(3), transport.port);
    await sink.count(2);
    assert.deepEqual(sink.packets.map((p) => p.readUInt16BE(2)), [1, 3]);
    assert.equal(transport.counters.foreign, 1);

    assert.equal(transport.sendRtp(rtpPacket(4)), true);
    assert.equal((await natted.next()).data.readUInt16BE(2), 4);
    assert.equal(far.rtp.received.length, 0);
    assert.equal(transport.remoteAddress(), `127.0.0.1:${natted.port}`);
  });

  it('RTCP goes to port + 1 and RTCP arriving on our port + 1 is emitted as rtcp', async (t) => {
    const { far, transport, sink } = await leg(t);
    assert.equal(transport.sendRtcp(rtcpPacket()), true);
    const got = await far.rtcp.next();
    assert.deepEqual(got.data, rtcpPacket());
    assert.equal(got.from.port, transport.port + 1);
    const rtcp = event(transport, 'rtcp');
    far.rtcp.send(rtcpPacket(200), transport.port + 1);
    assert.deepEqual((await rtcp)[0], rtcpPacket(200));
    assert.equal(sink.packets.length, 0);
    assert.equal(far.rtp.received.length, 0);
  });

  it('RFC 5761 §4: with rtcp-mux, RTCP on the RTP port is emitted as rtcp, not handed on as RTP, and ours goes there too', async (t) => {
    const { far, transport, sink } = await leg(t, ['a=rtcp-mux']);
    assert.match(transport.localSdp, /^a=rtcp-mux\r$/m);
    const rtcp = event(transport, 'rtcp');
    far.rtp.send(rtcpPacket(200), transport.port);
    assert.deepEqual((await rtcp)[0], rtcpPacket(200));
    assert.equal(sink.packets.length, 0);
    assert.equal(transport.state, 'connecting');
    far.rtp.send(rtpPacket(1), transport.port);
    await sink.count(1);
    assert.equal(transport.sendRtcp(rtcpPacket()), true);
    const got = await far.rtp.next();
    assert.deepEqual([got.data, got.from.port], [rtcpPacket(), transport.port]);
    assert.equal(far.rtcp.received.length, 0);
  });

  it('an offer that only sends (we answer recvonly) gets no RTP from us, and each packet held back is counted', async (t) => {
    const { transport } = await leg(t, ['a=sendonly']);
    assert.equal(transport.direction, 'recvonly');
    assert.equal(transport.sendRtp(rtpPacket(1)), false);
    assert.equal(transport.sendRtp(rtpPacket(2)), false);
    assert.equal(transport.counters.heldBack, 2);
  });

  it('close releases the ports to the pool, emits closed once, and nothing is sent after', async (t) => {
    const { transport, transports } = await leg(t);
    const states: string[] = [];
    transport.on('state', (s) => states.push(s));
    transport.close();
    transport.close();
    assert.deepEqual(states, ['closed']);
    assert.equal(transport.state, 'closed');
    assert.equal(transports.pool.portsInUse, 0);
    assert.equal(transports.size, 0);
    assert.equal(transport.sendRtp(rtpPacket(1)), false);
    assert.equal(transport.sendRtcp(rtcpPacket()), false);
  });

  it('closing the gateway side closes every leg', async (t) => {
    const { far, transports } = await leg(t);
    await transports.answer(offerPlan(far.rtp.port), '127.0.0.1');
    assert.equal(transports.pool.portsInUse, 4);
    transports.close();
    assert.equal(transports.size, 0);
    assert.equal(transports.pool.portsInUse, 0);
  });

  it('update() to a new address resets the latch: RTP then goes to the new SDP address', async (t) => {
    const { transport, sink } = await leg(t);
    const natted = await peer(t);
    natted.send(rtpPacket(1), transport.port);
    await sink.count(1);
    const moved = await peerPair(t);
    const plan = offerPlan(moved.rtp.port);
    transport.update(plan.rtp, plan.audio.direction, transport.localSdp);
    assert.equal(transport.remoteAddress(), `127.0.0.1:${moved.rtp.port}`);
    assert.equal(transport.sendRtp(rtpPacket(2)), true);
    assert.equal((await moved.rtp.next()).data.readUInt16BE(2), 2);
    assert.equal(natted.received.length, 0);
  });

  it('update() to the same address keeps the latch but takes the new direction', async (t) => {
    const { far, transport, sink } = await leg(t);
    const natted = await peer(t);
    natted.send(rtpPacket(1), transport.port);
    await sink.count(1);
    const hold = offerPlan(far.rtp.port, ['a=sendonly']);
    transport.update(hold.rtp, hold.audio.direction, transport.localSdp);
    assert.equal(transport.sendRtp(rtpPacket(2)), false);
    const resume = offerPlan(far.rtp.port);
    transport.update(resume.rtp, resume.audio.direction, transport.localSdp);
    assert.equal(transport.sendRtp(rtpPacket(3)), true);
    assert.equal((await natted.next()).data.readUInt16BE(2), 3);
  });

  it('onHold: true while the far end sends nothing (its a=inactive or a=recvonly), so the call does not idle out on hold', async (t) => {
    const { far, transport } = await leg(t);
    assert.equal(transport.onHold, false);
    for (const [dir, held] of [['a=inactive', true], ['a=recvonly', true], ['a=sendonly', false], ['a=sendrecv', false]] as const) {
      const plan = offerPlan(far.rtp.port, [dir]);
      transport.update(plan.rtp, plan.audio.direction, transport.localSdp);
      assert.equal(transport.onHold, held, dir);
    }
  });

  it('RFC 3264 §8.4: a c=0.0.0.0 hold sends neither RTP nor RTCP but keeps the latch, and the resume sends to the latched address again', async (t) => {
    const { far, transport, sink } = await leg(t);
    const natted = await peer(t);
    natted.send(rtpPacket(1), transport.port);
    await sink.count(1);
    const held = planRtpAnswer(parseSdp(['v=0', 'o=carrier 1 2 IN IP4 0.0.0.0', 's=-', 'c=IN IP4 0.0.0.0', 't=0 0', `m=audio ${far.rtp.port} RTP/AVP 0`, 'a=rtpmap:0 PCMU/8000', 'a=recvonly', ''].join('\r\n')), { codecs: ['pcmu'], encryption: 'allow' });
    transport.update(held.rtp, held.audio.direction, transport.localSdp);
    assert.equal(transport.sendRtp(rtpPacket(2)), false, 'no RTP to a hold, though our answer is sendonly');
    assert.equal(transport.sendRtcp(Buffer.from([0x81, 201, 0, 1, 0, 0, 0, 1])), false, 'no RTCP either');
    assert.equal(transport.onHold, true);
    const resume = offerPlan(far.rtp.port);
    transport.update(resume.rtp, resume.audio.direction, transport.localSdp);
    assert.equal(transport.sendRtp(rtpPacket(3)), true);
    assert.equal((await natted.next()).data.readUInt16BE(2), 3, 'the latch outlived the hold');
  });
});
