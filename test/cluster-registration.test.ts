import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { natsServer, type NatsServer } from '../src/testing/nats.js';
import { freeUdpPort, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { serveNode } from './helpers/voxgate-process.js';
import { startSipp, type SippProcess } from './helpers/sipp.js';

/**
 * A trunk's outbound registration in a fleet (issue 17, build 5): one node holds it (a lease in
 * KV); SIPp is the carrier's registrar. Node A (a real `voxgate serve` process) starts first and
 * registers; node B stands by; A is killed with SIGKILL and B takes the lease and registers
 * with its own Contact.
 */


const trunkConfig = (registrarPort: number) => ({
  listen: [{ transport: 'udp' as const, host: '127.0.0.1', port: 0 }],
  trunks: [{ name: 'carrier-a', codecs: ['pcmu' as const], outbound: { address: `127.0.0.1:${registrarPort}`, transport: 'udp' as const, fromUser: 'acct-1', fromHost: 'carrier.test', numbers: ['+15550100'], register: { expires: 600 } } }],
});

describe('a trunk\'s registration is held by one node and moves when it dies', () => {
  let nats: NatsServer;
  let registrar: SippProcess;
  let a: ChildProcess;
  let b: TestGateway;
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-cluster-reg-'));

  before(async () => {
    nats = await natsServer();
    registrar = await startSipp({ scenario: 'uas-register-any.xml', calls: 2, timeoutMs: 90_000 });
    const cluster = (nodeId: string) => ({ nodeId, nats: { servers: [nats.url] }, publicUrl: `http://${nodeId}.invalid` });
    a = (await serveNode(dir, { http: { host: '127.0.0.1', port: 0 }, media: { udpPort: await freeUdpPort() }, audit: { path: join(dir, 'audit-a.jsonl') }, log: { level: 'warn' }, sip: trunkConfig(registrar.localPort), cluster: cluster('node-a') })).child;
    await waitFor('node A\'s REGISTER at the registrar', () => registers().length === 1, 15_000);
    b = await startGateway({ sip: trunkConfig(registrar.localPort), cluster: cluster('node-b') });
  });

  after(async () => {
    a?.kill('SIGKILL');
    await b?.stop();
    await registrar?.stop();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const registers = () => [...registrar.messagesSoFar().matchAll(/^REGISTER [^\n]*\n(?:[^\n]+\n)*?Contact: ([^\r\n]+)/gm)].map((m) => m[1]!);

  test('A registers and B stands by; A killed (SIGKILL): B takes the lease and registers with its own Contact within 20 s', async () => {
    const lease = 'trunk-registration:carrier-a';
    await waitFor('B to see the lease held', () => b.gw.fleet!.leaseHolder(lease) === 'node-a', 10_000);
    assert.notEqual(b.gw.registrations[0]!.state, 'registered', 'B stands by: it does not register');
    assert.equal(registers().length, 1, 'one REGISTER: only A\'s');
    const killedAt = Date.now();
    a.kill('SIGKILL');
    await waitFor('B\'s REGISTER', () => registers().length === 2, 25_000);
    const ms = Date.now() - killedAt;
    assert.ok(ms <= 20_000, `moved ${ms} ms after the kill`);
    const [first, second] = registers();
    assert.notEqual(second, first, 'B registers its own Contact');
    await waitFor('B registered', () => b.gw.registrations[0]!.state === 'registered', 5000);
    assert.equal(b.gw.fleet!.leaseHolder(lease), 'node-b');
  });
});
