import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Registry } from 'prom-client';
import { AuditLog } from '../audit/audit-log.js';
import { FakeClock } from '../core/clock.js';
import { parseConfig } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { ALLOW, sipAddressOf, userOf, hostOf } from './build.js';
import { digestHash, parseAuthParams } from './digest.js';
import { SipMetrics } from './sip-metrics.js';
import { SipService } from './sip-service.js';
import type { SipFlow } from './ws-transport.js';

const dir = mkdtempSync(join(tmpdir(), 'voxgate-sip-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function service() {
  const clock = new FakeClock();
  const audit = new AuditLog(join(dir, `audit-${Math.random()}.jsonl`), clock);
  const config = parseConfig({ sip: { domain: 'voxgate.test', users: [{ user: 'alice', password: 'alice-secret' }] } });
  const sip = new SipService({
    config: config.sip,
    origins: ['*'],
    tls: false,
    clock,
    log: createLogger('silent'),
    audit,
    metrics: new SipMetrics(new Registry(), { bindings: () => 0, flows: () => 0, dialogs: () => 0 }),
  });
  const sent: string[] = [];
  const flow: SipFlow = { id: 'f1', remote: '127.0.0.1:5000', transport: 'WS', authenticatedUser: undefined, send: (t) => (sent.push(t), true), close: () => {} };
  return { sip, flow, sent, close: () => (sip.close(), audit.close()) };
}

/** The answers a flow got so far, once the audit log's group commit has run. */
async function answers(sent: string[]): Promise<string[]> {
  await new Promise((r) => setImmediate(r));
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
  sip.receive(flow, register(to, 1));
  await new Promise((r) => setImmediate(r));
  const challenge = sent.splice(0)[0]!;
  assert.match(challenge, /^SIP\/2\.0 401 /);
  const md5 = /WWW-Authenticate: (Digest [^\r\n]*algorithm=MD5[^\r\n]*)/.exec(challenge)![1]!;
  const p = parseAuthParams(md5)!;
  const ha1 = digestHash('MD5', 'alice:voxgate.test:alice-secret');
  const response = digestHash('MD5', `${ha1}:${p.get('nonce')}:00000001:c1:auth:${digestHash('MD5', 'REGISTER:sip:voxgate.test')}`);
  const auth = `Digest username="alice", realm="voxgate.test", nonce="${p.get('nonce')}", uri="sip:voxgate.test", response="${response}", algorithm=MD5, qop=auth, cnonce="c1", nc=00000001`;
  sip.receive(flow, register(to, 2, auth));
  assert.deepEqual(await answers(sent), ['SIP/2.0 200 OK']);
  assert.equal(sip.registrar.all()[0]?.aor, 'alice');
  close();
});

test('addresses are read with the grammar: display names, escapes, parameters and non-SIP URIs', () => {
  assert.deepEqual(sipAddressOf('"bob@evil.example" <sip:alice@Voxgate.Test;transport=ws>;tag=1'), { user: 'alice', host: 'voxgate.test' });
  assert.equal(userOf('sip:al%69ce@voxgate.test'), 'alice');
  assert.equal(hostOf('<sips:alice@[::1]:5061>'), '[::1]');
  assert.equal(hostOf('sip:voxgate.test'), undefined, 'no user part: not an address of a user');
  assert.equal(userOf('tel:+15551234567'), undefined);
  assert.equal(userOf('"unterminated <sip:alice@x>'), undefined);
});

test('MESSAGE is not advertised in Allow, and gets 405 with the methods that are', async () => {
  assert.doesNotMatch(ALLOW, /MESSAGE/);
  const { sip, flow, sent, close } = service();
  sip.receive(
    flow,
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
