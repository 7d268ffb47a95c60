import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { createServer, type Server, type Socket as TcpSocket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { Registry } from 'prom-client';
import { MemoryLocationStore } from '../cluster/memory/location-store.js';
import { FakeClock } from '../core/clock.js';
import { parseConfig } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { newBranch } from './build.js';
import { header, headerList, parseSipMessage, type SipResponse } from './message.js';
import { SipMetrics } from './sip-metrics.js';
import { SipService, type SipAudit } from './sip-service.js';
import { StreamTransport } from './transport/stream.js';
import { UdpTransport } from './transport/udp.js';

const log = createLogger('silent');
const audit: SipAudit = { write: () => undefined, append: (_e, done) => done(undefined) };

/** The stack on real UDP and TCP transports on 127.0.0.1 (ephemeral ports). */
async function stack(t: TestContext): Promise<{ sip: SipService; udp: UdpTransport; tcp: StreamTransport }> {
  const clock = new FakeClock();
  const config = parseConfig({ sip: { domain: 'voxgate.test' } });
  const sip = new SipService({ config: config.sip, locations: new MemoryLocationStore(), clock, log, audit, metrics: new SipMetrics(new Registry(), { bindings: () => 0, flows: () => 0, dialogs: () => 0 }) });
  const udp = await UdpTransport.open({ host: '127.0.0.1', port: 0, sentBy: '127.0.0.1', log, clock });
  const tcp = await StreamTransport.open({ host: '127.0.0.1', port: 0, sentBy: '127.0.0.1', log, clock });
  sip.addTransport(udp);
  sip.addTransport(tcp);
  t.after(() => sip.close());
  return { sip, udp, tcp };
}

async function udpPeer(t: TestContext): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  t.after(() => s.close());
  return s;
}

function options(via: string, extra = ''): string {
  return [
    'OPTIONS sip:voxgate.test SIP/2.0',
    `Via: ${via}`,
    'Max-Forwards: 70',
    'From: <sip:carrier@example.net>;tag=a1',
    'To: <sip:voxgate.test>',
    `Call-ID: opt-${Math.random()}`,
    'CSeq: 1 OPTIONS',
    ...(extra ? [extra] : []),
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

async function nextDatagram(s: Socket): Promise<SipResponse> {
  const [msg] = (await once(s, 'message')) as [Buffer];
  return parseSipMessage(msg) as SipResponse;
}

test('RFC 3581: a UDP request asking rport is answered at its source port, with received and rport filled in its Via', async (t) => {
  const { udp } = await stack(t);
  const peer = await udpPeer(t);
  // The sent-by names another host and port: only received/rport lead back to the peer.
  peer.send(options(`SIP/2.0/UDP 198.51.100.7:5070;branch=${newBranch()};rport`), udp.port, '127.0.0.1');
  const res = await nextDatagram(peer);
  assert.equal(res.status, 200);
  assert.equal(headerList(res, 'Via')[0], `SIP/2.0/UDP 198.51.100.7:5070;branch=${/branch=([^;]+)/.exec(headerList(res, 'Via')[0]!)![1]};received=127.0.0.1;rport=${peer.address().port}`);
});

test('RFC 3261 §18.2.2: without rport the answer goes to received with the sent-by port, not the source port', async (t) => {
  const { udp } = await stack(t);
  const sender = await udpPeer(t);
  const listener = await udpPeer(t);
  sender.send(options(`SIP/2.0/UDP 127.0.0.1:${listener.address().port};branch=${newBranch()}`), udp.port, '127.0.0.1');
  const res = await nextDatagram(listener);
  assert.equal(res.status, 200);
  assert.doesNotMatch(headerList(res, 'Via')[0]!, /received=/, 'the sent-by is the source host: no received is added');
});

test('RFC 3261 §18.1.1: a request over 1300 bytes to a UDP peer goes over TCP to the same address, its Via saying TCP', async (t) => {
  const { sip, udp } = await stack(t);
  // The peer listens on UDP and TCP on one port, as SIP servers do.
  const server: Server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const peer = createSocket('udp4');
  await new Promise<void>((r) => peer.bind(port, '127.0.0.1', r));
  const conns: TcpSocket[] = [];
  server.on('connection', (c) => conns.push(c));
  t.after(() => {
    peer.close();
    for (const c of conns) c.destroy();
    server.close();
  });
  const flow = udp.flowTo({ host: '127.0.0.1', port })!;
  const small = newBranch();
  sip.sendRequest(flow, 'OPTIONS', options(`SIP/2.0/UDP ${udp.sentBy};branch=${small};rport`), small, () => undefined);
  const [datagram] = (await once(peer, 'message')) as [Buffer];
  assert.match(header(parseSipMessage(datagram), 'Via')!, /^SIP\/2\.0\/UDP /, 'a small request stays on UDP');
  const big = newBranch();
  const text = options(`SIP/2.0/UDP ${udp.sentBy};branch=${big};rport`, `X-Padding: ${'x'.repeat(1400)}`);
  const received = new Promise<string>((resolve) => {
    server.once('connection', (c) => {
      let data = '';
      c.on('data', (d: Buffer) => {
        data += d.toString();
        if (data.includes('\r\n\r\n')) resolve(data);
      });
    });
  });
  sip.sendRequest(flow, 'OPTIONS', text, big, () => undefined);
  const overTcp = parseSipMessage(Buffer.from(await received));
  assert.match(header(overTcp, 'Via')!, new RegExp(`^SIP/2\\.0/TCP 127\\.0\\.0\\.1:\\d+;branch=${big}`));
  assert.equal(header(overTcp, 'X-Padding')!.length, 1400);
});
