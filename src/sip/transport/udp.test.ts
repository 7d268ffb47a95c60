import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { describe, it, type TestContext } from 'node:test';
import { FakeClock } from '../../core/clock.js';
import { createLogger } from '../../core/logger.js';
import type { SipFlow, SipTransportListener } from './transport.js';
import { isStun, stunBindingSuccess, UdpTransport } from './udp.js';
import { Waiter } from '../../testing/waiter.js';

const log = createLogger('silent');

const OPTIONS = [
  'OPTIONS sip:gw@127.0.0.1 SIP/2.0',
  'Via: SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bK1',
  'From: <sip:a@127.0.0.1>;tag=1',
  'To: <sip:gw@127.0.0.1>',
  'Call-ID: c1',
  'CSeq: 1 OPTIONS',
  'Content-Length: 0',
  '',
  '',
].join('\r\n');

/** What the transport handed the stack, in order; next() waits for the next one. */
class Inbox implements SipTransportListener {
  readonly received: { flow: SipFlow; text: string }[] = [];
  closedCount = 0;
  #read = 0;
  readonly #waiter = new Waiter();

  message(flow: SipFlow, data: Buffer): void {
    this.received.push({ flow, text: data.toString('utf8') });
    this.#waiter.poke();
  }

  closed(): void {
    this.closedCount++;
  }

  async next(timeoutMs = 2000): Promise<{ flow: SipFlow; text: string }> {
    await this.#waiter.until(() => this.#read < this.received.length, 'a message', timeoutMs);
    return this.received[this.#read++]!;
  }
}

async function peer(t: TestContext): Promise<Socket> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  t.after(() => socket.close());
  return socket;
}

async function transport(t: TestContext, opts: Partial<Parameters<typeof UdpTransport.open>[0]> = {}): Promise<{ udp: UdpTransport; inbox: Inbox }> {
  const udp = await UdpTransport.open({ host: '127.0.0.1', port: 0, sentBy: '127.0.0.1', log, ...opts });
  t.after(() => udp.close());
  const inbox = new Inbox();
  udp.listen(inbox);
  return { udp, inbox };
}

async function datagram(socket: Socket): Promise<Buffer> {
  const [data] = (await once(socket, 'message', { signal: AbortSignal.timeout(2000) })) as [Buffer];
  return data;
}

function send(socket: Socket, data: string | Buffer, port: number): void {
  socket.send(data, port, '127.0.0.1');
}

describe('UdpTransport', () => {
  it('binds an ephemeral port and puts it in its sent-by', async (t) => {
    const { udp } = await transport(t);
    assert.ok(udp.port > 0);
    assert.equal(udp.sentBy, `127.0.0.1:${udp.port}`);
    assert.equal(udp.protocol, 'UDP');
    assert.equal(udp.reliable, false);
  });

  it('a datagram reaches the listener on the flow of its source, and the answer goes back to it', async (t) => {
    const { udp, inbox } = await transport(t);
    const phone = await peer(t);
    const phonePort = phone.address().port;
    send(phone, OPTIONS, udp.port);
    const { flow, text } = await inbox.next();
    assert.equal(text, OPTIONS);
    assert.equal(flow.remote, `127.0.0.1:${phonePort}`);
    assert.equal(flow.id, `udp:127.0.0.1:${phonePort}`);
    assert.equal(udp.flows.get(flow.id), flow);
    const answer = datagram(phone);
    assert.equal(flow.send('SIP/2.0 200 OK\r\n\r\n'), true);
    assert.equal((await answer).toString(), 'SIP/2.0 200 OK\r\n\r\n');
  });

  it('sendTo sends to an address through its flow, which the answer comes back on', async (t) => {
    const { udp, inbox } = await transport(t);
    const trunk = await peer(t);
    const arrived = datagram(trunk);
    const flow = udp.sendTo({ host: '127.0.0.1', port: trunk.address().port }, OPTIONS);
    assert.equal((await arrived).toString(), OPTIONS);
    assert.equal(flow?.remote, `127.0.0.1:${trunk.address().port}`);
    send(trunk, OPTIONS, udp.port);
    assert.equal((await inbox.next()).flow, flow);
    assert.equal(udp.flows.size, 1);
  });

  it('RFC 5389 §15.2: a STUN binding request is answered with the source in XOR-MAPPED-ADDRESS, and not handed up', async (t) => {
    const { udp, inbox } = await transport(t);
    const phone = await peer(t);
    const tid = randomBytes(12);
    const request = Buffer.concat([Buffer.from([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]), tid]);
    const answer = datagram(phone);
    send(phone, request, udp.port);
    const res = await answer;
    assert.equal(res.readUInt16BE(0), 0x0101);
    assert.equal(res.readUInt16BE(2), res.length - 20);
    assert.equal(res.readUInt32BE(4), 0x2112a442);
    assert.deepEqual(res.subarray(8, 20), tid);
    assert.equal(res.readUInt16BE(20), 0x0020);
    assert.equal(res[25], 0x01);
    assert.equal(res.readUInt16BE(26) ^ 0x2112, phone.address().port);
    const ip = [...res.subarray(28, 32)].map((b, i) => b ^ res[4 + i]!).join('.');
    assert.equal(ip, '127.0.0.1');
    // A SIP message sent after it is the first thing the stack sees.
    send(phone, OPTIONS, udp.port);
    assert.equal((await inbox.next()).text, OPTIONS);
    assert.equal(inbox.received.length, 1);
  });

  it('RFC 5389 §15.2: an IPv6 source is XORed with the cookie and the transaction id', () => {
    const tid = Buffer.from('000102030405060708090a0b', 'hex');
    const req = Buffer.concat([Buffer.from([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]), tid]);
    assert.equal(isStun(req), true);
    const res = stunBindingSuccess(req, '2001:db8::1', 5060)!;
    assert.equal(res[25], 0x02);
    const key = res.subarray(4, 20);
    const ip = Buffer.from([...res.subarray(28, 44)].map((b, i) => b ^ key[i]!));
    assert.equal(ip.toString('hex'), '20010db8000000000000000000000001');
    assert.equal(stunBindingSuccess(req, '::ffff:192.0.2.1', 5060)![25], 0x01);
  });

  it('RFC 5626 §4.4.1: CRLF keep-alives are dropped; other STUN and garbage never crash it', async (t) => {
    const { udp, inbox } = await transport(t);
    const phone = await peer(t);
    send(phone, '\r\n\r\n', udp.port);
    send(phone, '\r\n', udp.port);
    // A binding indication (0x0011) gets no answer.
    send(phone, Buffer.concat([Buffer.from([0x00, 0x11, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]), randomBytes(12)]), udp.port);
    send(phone, OPTIONS, udp.port);
    assert.equal((await inbox.next()).text, OPTIONS);
    // Anything else is the stack's to refuse, however big (it answers 413 or drops).
    const big = `${OPTIONS}${'x'.repeat(20_000)}`;
    send(phone, big, udp.port);
    assert.equal((await inbox.next()).text, big);
    send(phone, randomBytes(64), udp.port);
    assert.equal((await inbox.next()).text.length > 0, true);
    assert.equal(inbox.received.length, 3);
  });

  it('a listener that throws is logged, and the next datagram still arrives', async (t) => {
    const { udp, inbox } = await transport(t);
    let thrown = false;
    udp.listen({
      message: (flow, data) => {
        if (!thrown) {
          thrown = true;
          throw new Error('stack failure');
        }
        inbox.message(flow, data);
      },
      closed: () => assert.fail('UDP never emits closed'),
    });
    const phone = await peer(t);
    send(phone, 'first', udp.port);
    send(phone, OPTIONS, udp.port);
    assert.equal((await inbox.next()).text, OPTIONS);
    assert.equal(thrown, true);
  });

  it('forgets a flow after 10 minutes without traffic and makes it again, with the same id, when the peer sends', async (t) => {
    const clock = new FakeClock();
    const { udp, inbox } = await transport(t, { clock });
    const phone = await peer(t);
    send(phone, OPTIONS, udp.port);
    const { flow } = await inbox.next();
    clock.advance(540_000);
    // A CRLF keep-alive counts as traffic; another peer's message shows it has been read.
    const other = await peer(t);
    send(phone, '\r\n\r\n', udp.port);
    send(other, OPTIONS, udp.port);
    await inbox.next();
    clock.advance(540_000);
    assert.equal(udp.flows.get(flow.id), flow);
    clock.advance(120_000);
    assert.equal(udp.flows.size, 0);
    assert.equal(inbox.closedCount, 0);
    send(phone, OPTIONS, udp.port);
    const again = await inbox.next();
    assert.notEqual(again.flow, flow);
    assert.equal(again.flow.id, flow.id);
    assert.equal(udp.flows.get(flow.id), again.flow);
  });

  it('keeps at most maxFlows, forgetting the least recently active', async (t) => {
    const { udp, inbox } = await transport(t, { maxFlows: 2 });
    const [a, b, c] = [await peer(t), await peer(t), await peer(t)];
    send(a, OPTIONS, udp.port);
    const fa = (await inbox.next()).flow;
    send(b, OPTIONS, udp.port);
    const fb = (await inbox.next()).flow;
    send(a, OPTIONS, udp.port);
    await inbox.next();
    send(c, OPTIONS, udp.port);
    const fc = (await inbox.next()).flow;
    assert.deepEqual([...udp.flows.keys()].sort(), [fa.id, fc.id].sort());
    assert.equal(udp.flows.has(fb.id), false);
  });

  it('refuses to send a message larger than maxDatagramBytes, and sends nothing once closed', async (t) => {
    const { udp } = await transport(t, { maxDatagramBytes: 1300 });
    const trunk = await peer(t);
    const flow = udp.sendTo({ host: '127.0.0.1', port: trunk.address().port }, 'x'.repeat(1301))!;
    assert.equal(flow.send('x'.repeat(1301)), false);
    udp.close();
    assert.equal(flow.send('x'), false);
    assert.equal(udp.sendTo({ host: '127.0.0.1', port: trunk.address().port }, 'x'), undefined);
    assert.equal(udp.flows.size, 0);
  });

  it('open rejects when the address is taken', async (t) => {
    const { udp } = await transport(t);
    await assert.rejects(UdpTransport.open({ host: '127.0.0.1', port: udp.port, sentBy: '127.0.0.1', log }), /EADDRINUSE/);
  });
});
