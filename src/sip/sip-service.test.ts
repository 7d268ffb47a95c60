import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Registry } from 'prom-client';
import { AuditLog } from '../audit/audit-log.js';
import { FakeClock } from '../core/clock.js';
import { parseConfig } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { ALLOW, sipAddressOf, userOf, hostOf } from './build.js';
import { parseNameAddr, parseSipUri } from './grammar.js';
import { digestHash, parseAuthParams } from './auth/digest.js';
import { SipMetrics } from './sip-metrics.js';
import { SipService } from './sip-service.js';
import { header, parseSipMessage, serializeSipMessage, type SipResponse } from './message.js';
import { FarEnd, testStack } from '../testing/sip.js';
import { MemoryLocationStore } from '../cluster/memory/location-store.js';
import { FakeSipTransport } from './transport/fake.js';

const dir = mkdtempSync(join(tmpdir(), 'voxgate-sip-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function service() {
  const clock = new FakeClock();
  const audit = new AuditLog(join(dir, `audit-${Math.random()}.jsonl`), clock);
  const config = parseConfig({ sip: { domain: 'voxgate.test', users: [{ user: 'alice', password: 'alice-secret' }] } });
  const sip = new SipService({
    config: config.sip,
    locations: new MemoryLocationStore(),
    clock,
    log: createLogger('silent'),
    audit,
    metrics: new SipMetrics(new Registry(), { bindings: () => 0, flows: () => 0, dialogs: () => 0 }),
  });
  const transport = new FakeSipTransport('WS');
  sip.addTransport(transport);
  const flow = transport.connect();
  return { sip, flow, sent: flow.sent, close: () => (sip.close(), audit.close()) };
}

/** The answers a flow got so far, once the audit log's group commit has run. */
async function answers(sent: string[]): Promise<string[]> {
  // The location store is async and the audit log commits once per event-loop turn.
  for (let i = 0; i < 10 && sent.length === 0; i++) await new Promise((r) => setImmediate(r));
  return sent.splice(0).map((t) => t.split('\r\n')[0]!);
}

function register(to: string, cseq: number, auth?: string): Buffer {
  return Buffer.from(
    [
      'REGISTER sip:voxgate.test SIP/2.0',
      `Via: SIP/2.0/WS abc.invalid;branch=z9hG4bK-r${cseq}`,
      'Max-Forwards: 70',
      `To: ${to}`,
      `From: ${to};tag=f1`,
      'Call-ID: reg-1',
      `CSeq: ${cseq} REGISTER`,
      'Contact: <sip:x@abc.invalid;transport=ws>;expires=600',
      ...(auth ? [`Authorization: ${auth}`] : []),
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n'),
  );
}

test('a REGISTER whose display name contains "@" is challenged (401), not refused as another domain (404), and then registers', async () => {
  const { sip, flow, sent, close } = service();
  const to = '"alice@home" <sip:alice@voxgate.test>';
  flow.deliver(register(to, 1));
  await answers([]);
  const challenge = sent.splice(0)[0]!;
  assert.match(challenge, /^SIP\/2\.0 401 /);
  const md5 = /WWW-Authenticate: (Digest [^\r\n]*algorithm=MD5[^\r\n]*)/.exec(challenge)![1]!;
  const p = parseAuthParams(md5)!;
  const ha1 = digestHash('MD5', 'alice:voxgate.test:alice-secret');
  const response = digestHash('MD5', `${ha1}:${p.get('nonce')}:00000001:c1:auth:${digestHash('MD5', 'REGISTER:sip:voxgate.test')}`);
  const auth = `Digest username="alice", realm="voxgate.test", nonce="${p.get('nonce')}", uri="sip:voxgate.test", response="${response}", algorithm=MD5, qop=auth, cnonce="c1", nc=00000001`;
  flow.deliver(register(to, 2, auth));
  assert.deepEqual(await answers(sent), ['SIP/2.0 200 OK']);
  assert.equal((await sip.registrar.all())[0]?.aor, 'alice');
  close();
});

test('addresses are read with the grammar: display names, escapes, parameters and non-SIP URIs', () => {
  assert.deepEqual(sipAddressOf('"bob@evil.example" <sip:alice@Voxgate.Test;transport=ws>;tag=1'), { user: 'alice', host: 'voxgate.test' });
  assert.equal(userOf('sip:al%69ce@voxgate.test'), 'alice');
  assert.equal(hostOf('<sips:alice@[::1]:5061>'), '[::1]');
  assert.equal(hostOf('sip:voxgate.test'), undefined, 'no user part: not an address of a user');
  assert.equal(userOf('tel:+15551234567'), undefined);
  assert.equal(userOf('"unterminated <sip:alice@x>'), undefined);
  // The one-pattern fast path and the grammar agree on what each reads.
  for (const v of ['<sip:alice@Voxgate.Test>', 'Alice Smith <sip:alice@voxgate.test;transport=ws>;tag=9', '<sips:bob@10.0.0.1:5061>', '<sip:a.b-c_d@x.example>', 'bad name@ <sip:alice@x>']) {
    let full: ReturnType<typeof sipAddressOf>;
    try {
      const uri = parseSipUri(parseNameAddr(v).uri);
      full = { user: uri.user, host: uri.host };
    } catch {
      full = undefined;
    }
    assert.deepEqual(sipAddressOf(v), full, v);
  }
});

test('MESSAGE is not advertised in Allow, and gets 405 with the methods that are', async () => {
  assert.doesNotMatch(ALLOW, /MESSAGE/);
  const { flow, sent, close } = service();
  flow.deliver(
    Buffer.from(
      'MESSAGE sip:alice@voxgate.test SIP/2.0\r\nVia: SIP/2.0/WS abc.invalid;branch=z9hG4bK-m1\r\nMax-Forwards: 70\r\nTo: <sip:alice@voxgate.test>\r\n' +
        'From: <sip:bob@voxgate.test>;tag=b1\r\nCall-ID: m-1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi',
    ),
  );
  const reply = sent.splice(0)[0]!;
  assert.match(reply, /^SIP\/2\.0 405 /);
  assert.match(reply, new RegExp(`Allow: ${ALLOW}\r\n`));
  close();
});

test('§13.3.1.4: over UDP our 2xx to an INVITE is repeated (T1 doubling to T2) until the ACK; over a reliable transport it is sent once', async () => {
  for (const protocol of ['UDP', 'WS'] as const) {
    const stack = testStack({ protocol });
    const t0 = stack.clock.now();
    const times: number[] = [];
    stack.transport.onSend = (_f, text) => text.startsWith('SIP/2.0 200') && times.push(stack.clock.now() - t0);
    stack.sip.calls = {
      invite: (incoming) => incoming.respond(200, { headers: [{ name: 'Contact', value: '<sip:agent@192.0.2.1:5060>' }] }),
      inDialog: () => false,
      ack: () => undefined,
      cancel: () => undefined,
      flowClosed: () => undefined,
    };
    const far = new FarEnd(stack.transport.connect(), 'alice');
    // A flow that registered as alice may call without a fresh challenge.
    far.flow.authenticatedUser = 'alice';
    const invite = far.send('INVITE', 'sip:agent@voxgate.test', [
      { name: 'From', value: '<sip:alice@voxgate.test>;tag=a1' },
      { name: 'To', value: '<sip:agent@voxgate.test>' },
      { name: 'Call-ID', value: `retx-${protocol}` },
    ]);
    stack.clock.advance(8000);
    if (protocol === 'WS') {
      assert.deepEqual(times, [0]);
      stack.close();
      continue;
    }
    assert.deepEqual(times, [0, 500, 1500, 3500, 7500]);
    const ok = parseSipMessage(far.flow.sent.at(-1)!) as SipResponse;
    far.send('ACK', 'sip:agent@192.0.2.1:5060', [
      { name: 'From', value: header(invite, 'From')! },
      { name: 'To', value: header(ok, 'To')! },
      { name: 'Call-ID', value: `retx-${protocol}` },
    ], '', 1);
    stack.clock.advance(30_000);
    assert.deepEqual(times, [0, 500, 1500, 3500, 7500], 'the ACK stopped them');
    stack.close();
  }
});

test('without an ACK the 2xx stops after 64*T1 (the dialog layer then hangs up)', () => {
  const stack = testStack({ protocol: 'UDP' });
  const t0 = stack.clock.now();
  const times: number[] = [];
  stack.transport.onSend = (_f, text) => text.startsWith('SIP/2.0 200') && times.push(stack.clock.now() - t0);
  stack.sip.calls = { invite: (i) => i.respond(200), inDialog: () => false, ack: () => undefined, cancel: () => undefined, flowClosed: () => undefined };
  const far = new FarEnd(stack.transport.connect(), 'alice');
  far.flow.authenticatedUser = 'alice';
  far.send('INVITE', 'sip:agent@voxgate.test', [{ name: 'From', value: '<sip:alice@voxgate.test>;tag=a1' }, { name: 'To', value: '<sip:agent@voxgate.test>' }]);
  stack.clock.advance(60_000);
  assert.deepEqual(times, [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
  stack.close();
});

test('a response whose top Via is not ours is dropped (§18.1.2)', () => {
  const stack = testStack();
  const far = new FarEnd(stack.transport.connect());
  const got: number[] = [];
  stack.sip.sendRequest(far.flow, 'OPTIONS', `OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/WS gw.invalid;branch=z9hG4bKmine\r\nTo: <sip:x@y>\r\nFrom: <sip:a@b>;tag=1\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`, 'z9hG4bKmine', (res) => got.push(res.status));
  const req = far.nextRequest('OPTIONS');
  far.flow.deliver(`SIP/2.0 200 OK\r\nVia: SIP/2.0/WS other.invalid;branch=z9hG4bKmine\r\nTo: <sip:x@y>;tag=2\r\nFrom: <sip:a@b>;tag=1\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`);
  assert.deepEqual(got, []);
  far.respond(req, 200);
  assert.deepEqual(got, [200]);
  stack.close();
});

test('a request whose handling throws is answered through its transaction: retransmissions get the same answer, and the transaction ends', () => {
  const stack = testStack({ protocol: 'UDP' });
  let calls = 0;
  stack.sip.calls = {
    invite: (i) => {
      calls++;
      if (calls === 1) throw new URIError('URI malformed');
      if (calls === 2) throw new Error('a bug of ours');
      i.respond(486);
    },
    inDialog: () => false,
    ack: () => undefined,
    cancel: () => undefined,
    flowClosed: () => undefined,
  };
  const far = new FarEnd(stack.transport.connect(), 'alice');
  far.flow.authenticatedUser = 'alice';
  const invite = far.send('INVITE', 'sip:agent@voxgate.test', [{ name: 'From', value: '<sip:alice@voxgate.test>;tag=a1' }, { name: 'To', value: '<sip:agent@voxgate.test>' }]);
  const first = far.next<SipResponse>('the answer');
  assert.deepEqual([first.status, first.reason], [400, 'Bad Request (a percent-escape that does not decode)']);
  far.flow.deliver(serializeSipMessage(invite)); // a retransmission
  const again = far.next<SipResponse>('the answer again');
  assert.equal(again.status, 400, 'the transaction answered it, the TU did not see it');
  assert.equal(calls, 1);
  // A new request is handled: the 400's transaction did not swallow the branch for ever.
  stack.clock.advance(64 * 500 + 1000);
  far.take();
  far.send('INVITE', 'sip:agent@voxgate.test', [{ name: 'From', value: '<sip:alice@voxgate.test>;tag=a2' }, { name: 'To', value: '<sip:agent@voxgate.test>' }]);
  assert.equal(far.next<SipResponse>('a 500').status, 500);
  far.send('INVITE', 'sip:agent@voxgate.test', [{ name: 'From', value: '<sip:alice@voxgate.test>;tag=a3' }, { name: 'To', value: '<sip:agent@voxgate.test>' }]);
  assert.equal(far.next<SipResponse>('the 486').status, 486);
  stack.close();
});

test('INVITEs answered 407 keep only what their retransmissions need until Timer H: 2,000 with 20 KB headers hold far less than 40 MB', () => {
  setFlagsFromString('--expose_gc');
  const gc = runInNewContext('gc') as () => void;
  const stack = testStack({ protocol: 'WS' });
  const far = new FarEnd(stack.transport.connect(), 'alice');
  const pad = 'x'.repeat(20_000);
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < 2000; i++) {
    far.send('INVITE', 'sip:agent@voxgate.test', [{ name: 'From', value: `<sip:alice@voxgate.test>;tag=p${i}` }, { name: 'To', value: '<sip:agent@voxgate.test>' }, { name: 'X-Pad', value: pad }], pad);
    far.take();
  }
  gc();
  const held = (process.memoryUsage().heapUsed - before) / 1e6;
  // Measured: 48.5 MB when each transaction kept its whole request (a header value, a slice of the
  // message text, kept all of it alive); 8.4 MB now (each keeps its 407 for retransmissions).
  assert.ok(held < 15, `${held.toFixed(1)} MB held by 2,000 challenged INVITEs`);
  stack.close();
});

test('the server transaction table is bounded: past it a new request gets a stateless 503 with Retry-After; once transactions end, requests are served again', () => {
  const stack = testStack({ protocol: 'WS', maxServerTransactions: 3 });
  const far = new FarEnd(stack.transport.connect(), 'alice');
  const invite = (i: number) => far.send('INVITE', 'sip:agent@voxgate.test', [{ name: 'From', value: `<sip:alice@voxgate.test>;tag=c${i}` }, { name: 'To', value: '<sip:agent@voxgate.test>' }]);
  for (let i = 0; i < 3; i++) invite(i);
  assert.deepEqual(far.take().map((m) => (m as SipResponse).status), [407, 407, 407], 'each 407 transaction waits for its ACK (Timer H)');
  invite(3);
  const refused = far.next<SipResponse>('the refusal');
  assert.deepEqual([refused.status, header(refused, 'Retry-After')], [503, '5']);
  stack.clock.advance(64 * 500 + 1);
  invite(4);
  assert.equal(far.next<SipResponse>('a 407 again').status, 407);
  stack.close();
});
