import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect, createServer as netCreateServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it, type TestContext } from 'node:test';
import { connect as tlsConnect, createServer as tlsCreateServer } from 'node:tls';
import { FakeClock } from '../../core/clock.js';
import { createLogger } from '../../core/logger.js';
import { StreamTransport, type StreamTransportOptions } from './stream.js';
import type { SipFlow, SipTransportListener } from './transport.js';
import { Waiter } from '../../testing/waiter.js';

const log = createLogger('silent');

function options(branch = 'z9hG4bK1', body = ''): string {
  return [
    'OPTIONS sip:gw@127.0.0.1 SIP/2.0',
    `Via: SIP/2.0/TCP 127.0.0.1:5999;branch=${branch}`,
    'From: <sip:a@127.0.0.1>;tag=1',
    'To: <sip:gw@127.0.0.1>',
    'Call-ID: c1',
    'CSeq: 1 OPTIONS',
    `Content-Length: ${Buffer.byteLength(body)}`,
    '',
    body,
  ].join('\r\n');
}

const OK = 'SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n';

/** What the transport handed the stack. */
class Inbox implements SipTransportListener {
  readonly received: { flow: SipFlow; text: string }[] = [];
  readonly closedFlows: SipFlow[] = [];
  readonly waiter = new Waiter();

  message(flow: SipFlow, data: Buffer): void {
    this.received.push({ flow, text: data.toString('utf8') });
    this.waiter.poke();
  }

  closed(flow: SipFlow): void {
    this.closedFlows.push(flow);
    this.waiter.poke();
  }

  async messages(n: number): Promise<{ flow: SipFlow; text: string }[]> {
    await this.waiter.until(() => this.received.length >= n, `${n} messages`);
    return this.received.slice(0, n);
  }

  async closes(n: number): Promise<void> {
    await this.waiter.until(() => this.closedFlows.length >= n, `${n} closed flows`);
  }
}

/** Everything a socket receives, as text; `until` waits for it to hold something. */
function reader(socket: Socket): { text: () => string; until: (s: string) => Promise<void>; ended: Promise<void> } {
  let text = '';
  const waiter = new Waiter();
  socket.on('data', (chunk: Buffer) => {
    text += chunk.toString('utf8');
    waiter.poke();
  });
  socket.on('error', () => undefined);
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { text: () => text, until: (s) => waiter.until(() => text.includes(s), JSON.stringify(s.slice(0, 40))), ended };
}

async function open(t: TestContext, opts: Partial<StreamTransportOptions> = {}): Promise<{ stream: StreamTransport; inbox: Inbox }> {
  const stream = await StreamTransport.open({ host: '127.0.0.1', port: 0, sentBy: '127.0.0.1', log, ...opts });
  t.after(() => stream.close());
  const inbox = new Inbox();
  stream.listen(inbox);
  return { stream, inbox };
}

async function client(t: TestContext, port: number): Promise<Socket> {
  const socket = netConnect({ host: '127.0.0.1', port });
  t.after(() => socket.destroy());
  await once(socket, 'connect', { signal: AbortSignal.timeout(3000) });
  return socket;
}

/** A far end that is not a StreamTransport: a plain server recording its connections. */
async function farEnd(t: TestContext): Promise<{ server: Server; port: number; sockets: Socket[]; waiter: Waiter }> {
  const sockets: Socket[] = [];
  const waiter = new Waiter();
  const server = netCreateServer((s) => {
    sockets.push(s);
    waiter.poke();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { server, port: (server.address() as AddressInfo).port, sockets, waiter };
}

describe('StreamTransport over TCP', () => {
  it('listens on an ephemeral port and puts it in its sent-by', async (t) => {
    const { stream } = await open(t);
    assert.ok(stream.port > 0);
    assert.equal(stream.sentBy, `127.0.0.1:${stream.port}`);
    assert.equal(stream.protocol, 'TCP');
    assert.equal(stream.reliable, true);
  });

  it('RFC 3261 §18.3: two messages in one write arrive as two, whole, on the flow of the connection', async (t) => {
    const { stream, inbox } = await open(t);
    const phone = await client(t, stream.port);
    phone.write(options('z9hG4bK1', 'one') + options('z9hG4bK2'));
    const [a, b] = await inbox.messages(2);
    assert.equal(a!.text, options('z9hG4bK1', 'one'));
    assert.equal(b!.text, options('z9hG4bK2'));
    assert.equal(a!.flow, b!.flow);
    assert.equal(a!.flow.remote, `127.0.0.1:${phone.localPort}`);
    assert.equal(stream.flows.get(a!.flow.id), a!.flow);
  });

  it('RFC 3261 §18.3: one message in many writes arrives once, whole, and the answer goes back on the connection', async (t) => {
    const { stream, inbox } = await open(t);
    const phone = await client(t, stream.port);
    const seen = reader(phone);
    const text = options('z9hG4bK1', 'a body\r\n\r\nwith a blank line');
    for (let i = 0; i < text.length; i += 5) await new Promise<void>((resolve) => phone.write(text.slice(i, i + 5), () => resolve()));
    const [m] = await inbox.messages(1);
    assert.equal(m!.text, text);
    assert.equal(m!.flow.send(OK), true);
    await seen.until(OK);
    assert.equal(inbox.received.length, 1);
  });

  it('RFC 3261 §18.2.2: sendTo the address of an accepted connection reuses it', async (t) => {
    const { stream, inbox } = await open(t);
    const phone = await client(t, stream.port);
    const seen = reader(phone);
    phone.write(options());
    const [m] = await inbox.messages(1);
    const flow = stream.sendTo({ host: '127.0.0.1', port: phone.localPort! }, 'NOTIFY-ish\r\n');
    assert.equal(flow, m!.flow);
    await seen.until('NOTIFY-ish');
    assert.equal(stream.flows.size, 1);
  });

  it('sendTo a new address opens one connection, queues what is written until it is up, and takes the answers on it', async (t) => {
    const { stream, inbox } = await open(t);
    const trunk = await farEnd(t);
    const first = stream.sendTo({ host: '127.0.0.1', port: trunk.port }, options('z9hG4bK1'));
    const second = stream.sendTo({ host: '127.0.0.1', port: trunk.port }, options('z9hG4bK2'));
    assert.ok(first);
    assert.equal(second, first);
    assert.equal(first.remote, `127.0.0.1:${trunk.port}`);
    await trunk.waiter.until(() => trunk.sockets.length === 1, 'the connection');
    const seen = reader(trunk.sockets[0]!);
    await seen.until('z9hG4bK2');
    assert.equal(seen.text(), options('z9hG4bK1') + options('z9hG4bK2'));
    trunk.sockets[0]!.write(OK);
    const [m] = await inbox.messages(1);
    assert.equal(m!.flow, first);
    assert.equal(trunk.sockets.length, 1);
    assert.equal(stream.flows.size, 1);
  });

  it('a connection that cannot be opened closes its flow once, and the stack is told', async (t) => {
    const { stream, inbox } = await open(t);
    const gone = await farEnd(t);
    await new Promise<void>((resolve) => gone.server.close(() => resolve()));
    const flow = stream.sendTo({ host: '127.0.0.1', port: gone.port }, options());
    await inbox.closes(1);
    assert.equal(inbox.closedFlows[0], flow);
    assert.equal(stream.flows.size, 0);
    assert.equal(flow?.send(options()), false);
  });

  it('closes a connection idle for idleMs (traffic either way resets it) and tells the stack once', async (t) => {
    const clock = new FakeClock();
    const { stream, inbox } = await open(t, { clock, idleMs: 60_000 });
    const phone = await client(t, stream.port);
    const seen = reader(phone);
    phone.write(options());
    const [m] = await inbox.messages(1);
    clock.advance(50_000);
    m!.flow.send(OK);
    clock.advance(50_000);
    assert.equal(stream.flows.size, 1);
    clock.advance(10_000);
    await seen.ended;
    await inbox.closes(1);
    assert.deepEqual(inbox.closedFlows, [m!.flow]);
    assert.equal(stream.flows.size, 0);
    clock.advance(600_000);
    assert.equal(inbox.closedFlows.length, 1);
  });

  it('RFC 5626 §4.4.1: a CRLFCRLF ping is answered with a CRLF pong and never reaches the stack', async (t) => {
    const { stream, inbox } = await open(t);
    const phone = await client(t, stream.port);
    const seen = reader(phone);
    phone.write('\r\n\r\n');
    await seen.until('\r\n');
    phone.write(options());
    await inbox.messages(1);
    assert.equal(seen.text(), '\r\n');
    assert.equal(inbox.received[0]!.text, options());
  });

  it('RFC 3261 §18.3: a request without Content-Length is answered 400 and its connection closed', async (t) => {
    const { stream, inbox } = await open(t);
    const phone = await client(t, stream.port);
    const seen = reader(phone);
    phone.write(options().replace('Content-Length: 0\r\n', '') + options());
    await seen.ended;
    assert.match(seen.text(), /^SIP\/2\.0 400 Missing Content-Length[^\r]*\r\nVia: SIP\/2\.0\/TCP 127\.0\.0\.1:5999;branch=z9hG4bK1\r\n/);
    await inbox.closes(1);
    assert.equal(inbox.received.length, 0);
  });

  it('a Content-Length past maxMessageBytes is answered 413 and its connection closed', async (t) => {
    const { stream } = await open(t, { maxMessageBytes: 4096 });
    const phone = await client(t, stream.port);
    const seen = reader(phone);
    phone.write(options().replace('Content-Length: 0', 'Content-Length: 5000'));
    await seen.ended;
    assert.match(seen.text(), /^SIP\/2\.0 413 /);
  });

  it('refuses connections beyond maxConnections', async (t) => {
    const { stream, inbox } = await open(t, { maxConnections: 1 });
    const first = await client(t, stream.port);
    first.write(options());
    await inbox.messages(1);
    const second = netConnect({ host: '127.0.0.1', port: stream.port });
    t.after(() => second.destroy());
    await reader(second).ended;
    assert.equal(stream.flows.size, 1);
  });

  it('close tells the stack of every connection at once and leaves no flow behind', async (t) => {
    const { stream, inbox } = await open(t);
    const phone = await client(t, stream.port);
    const seen = reader(phone);
    phone.write(options());
    await inbox.messages(1);
    stream.close();
    assert.equal(stream.flows.size, 0);
    assert.equal(inbox.closedFlows.length, 1);
    await seen.ended;
    assert.equal(stream.sendTo({ host: '127.0.0.1', port: 9 }, options()), undefined);
    assert.equal(inbox.closedFlows.length, 1);
  });
});

describe('StreamTransport over TLS', () => {
  let cert = '';
  let key = '';

  before(() => {
    const dir = mkdtempSync(join(tmpdir(), 'voxgate-tls-'));
    try {
      execFileSync('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=localhost',
        '-addext', 'subjectAltName=DNS:localhost', '-days', '1', '-keyout', join(dir, 'k'), '-out', join(dir, 'c'),
      ], { stdio: 'ignore' });
      cert = readFileSync(join(dir, 'c'), 'utf8');
      key = readFileSync(join(dir, 'k'), 'utf8');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('RFC 3261 §26.3.1: a TLS client sends an OPTIONS and receives the answer', async (t) => {
    const { stream, inbox } = await open(t, { tls: { cert, key } });
    assert.equal(stream.protocol, 'TLS');
    const phone = tlsConnect({ host: '127.0.0.1', port: stream.port, ca: cert, servername: 'localhost' });
    t.after(() => phone.destroy());
    await once(phone, 'secureConnect', { signal: AbortSignal.timeout(3000) });
    const seen = reader(phone);
    phone.write(options());
    const [m] = await inbox.messages(1);
    assert.equal(m!.text, options());
    assert.equal(m!.flow.transport, stream);
    m!.flow.send(OK);
    await seen.until(OK);
  });

  it('sendTo opens a TLS connection checked against the given CA and server name', async (t) => {
    const { stream, inbox } = await open(t, { tls: { cert, key }, tlsClient: { ca: cert, servername: 'localhost' } });
    const received = new Waiter();
    let text = '';
    const server = tlsCreateServer({ cert, key }, (s) => {
      t.after(() => s.destroy());
      s.on('data', (c: Buffer) => {
        text += c.toString();
        received.poke();
        if (text.includes('z9hG4bK2')) s.write(OK);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    const port = (server.address() as AddressInfo).port;
    const flow = stream.sendTo({ host: '127.0.0.1', port }, options('z9hG4bK1'));
    stream.sendTo({ host: '127.0.0.1', port }, options('z9hG4bK2'));
    await received.until(() => text.includes('z9hG4bK2'), 'both requests');
    assert.equal(text, options('z9hG4bK1') + options('z9hG4bK2'));
    const [m] = await inbox.messages(1);
    assert.equal(m!.flow, flow);
  });

  it('a TLS connection to a certificate the CA does not vouch for is closed, and the stack told', async (t) => {
    const { stream, inbox } = await open(t, { tls: { cert, key } });
    const server = tlsCreateServer({ cert, key }, (s) => s.destroy());
    server.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    const flow = stream.sendTo({ host: '127.0.0.1', port: (server.address() as AddressInfo).port }, options());
    await inbox.closes(1);
    assert.equal(inbox.closedFlows[0], flow);
    assert.equal(stream.flows.size, 0);
  });
});
