import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { WorkerLoad } from '../src/agent/worker/protocol.js';
import { natsServer, type NatsServer } from '../src/testing/nats.js';
import { analyseRemoteAudio, launchChromium, publishFromPage, statsOfType, type TestBrowser } from './helpers/chromium.js';
import { adminSessions, SOURCE_TOKEN, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { toneWav } from './helpers/media.js';
import { publishConnected, type NdcPublisher } from './helpers/ndc-publisher.js';
import { offerSdp } from './helpers/offers.js';
import { runVoxgate } from './helpers/voxgate-process.js';
import { SipWsClient } from './helpers/sip-ws-client.js';

/**
 * Agents as a fleet of worker processes (issue 17, build 4): a voxgate node with
 * `{ "type": "worker", "name": "echo" }` agents and two `voxgate worker --agent echo`
 * processes that reach it through nats-server only. Calls go to the worker with room, the
 * agent's audio comes back through NATS (a tone heard by Chromium), a worker killed mid-call
 * ends its calls (agent-disconnected) and no one else's, and with no worker to take a call it
 * is refused: WHIP 503, SIP 480, audited.
 */

const DOMAIN = 'workers.test';

interface WorkerProcess {
  id: string;
  child: ChildProcess;
}

/** `voxgate worker --agent echo`, as an operator runs one; resolves once it serves. */
async function startWorker(natsUrl: string, dir: string, maxCalls: number): Promise<WorkerProcess> {
  const p = await runVoxgate(['worker', '--agent', 'echo', '--nats', natsUrl, '--max-calls', String(maxCalls)], { dir, ready: /voxgate worker (\S+) serving/, what: 'the worker', timeoutMs: 30_000, env: { ...process.env, VOXGATE_LOG_LEVEL: 'warn' } });
  return { id: p.ready, child: p.child };
}

describe('agents on worker processes over NATS', () => {
  let nats: NatsServer;
  let watcher: NatsConnection;
  const loads = new Map<string, WorkerLoad>();
  let tg: TestGateway;
  let chrome: TestBrowser | undefined;
  const workers: WorkerProcess[] = [];
  const publishers: NdcPublisher[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-workers-'));

  before(async () => {
    nats = await natsServer();
    watcher = await connect({ servers: nats.url });
    watcher.subscribe('voxgate.workers.*.load', { callback: (_e, m) => void loads.set(m.json<WorkerLoad>().id, m.json<WorkerLoad>()) });
    tg = await startGateway({
      sources: [{ name: 'browser-widget', kind: 'browser', token: SOURCE_TOKEN, codecs: ['opus'], agent: { type: 'worker', name: 'echo', ringTimeoutSeconds: 2 } }],
      sip: { domain: DOMAIN, users: [{ user: 'alice', password: 'alice-pw' }], agents: { sales: { type: 'worker', name: 'sales', ringTimeoutSeconds: 1 } } },
      cluster: { nodeId: 'node-a', nats: { servers: [nats.url] }, publicUrl: 'http://127.0.0.1:1' },
    });
    workers.push(await startWorker(nats.url, dir, 2), await startWorker(nats.url, dir, 2));
    await waitFor('both workers known to the node', () => tg.gw.fleet!.workers.workersOf('echo').length === 2, 10_000);
  });

  after(async () => {
    await chrome?.close();
    for (const p of publishers) p.close();
    for (const w of workers) w.child.kill('SIGKILL');
    await tg?.stop();
    await watcher?.drain();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const idOf = (p: NdcPublisher) => p.location!.split('/').pop()!;

  test('a browser\'s 1 kHz tone goes to an echo worker and comes back through NATS: Chromium hears 1 kHz', async () => {
    chrome = await launchChromium(`${tg.url}/healthz`, toneWav(1000, 10));
    const r = await publishFromPage(chrome.page, `${tg.url}/whip`, { token: SOURCE_TOKEN, trickle: false, direction: 'sendrecv' });
    assert.equal(r.status, 201);
    const id = r.location!.split('/').pop()!;
    const s = await waitFor('the session', async () => (await adminSessions(tg.url)).find((x) => x.id === id));
    assert.match((s as unknown as { pipeline: string }).pipeline, /-> Agent\(worker:echo@16k\) ->/);
    await waitFor('audio from voxgate', async () => ((await statsOfType(chrome!.page, 'inbound-rtp'))[0]?.packetsReceived as number) > 100, 15_000);
    const heard = await analyseRemoteAudio(chrome.page);
    assert.ok(Math.abs(heard.peakHz - 1000) < 25, `peak at ${heard.peakHz.toFixed(0)} Hz`);
    assert.ok(heard.peakOverMedianDb > 30, `tone stands ${heard.peakOverMedianDb.toFixed(1)} dB over the noise floor`);
    await chrome.page.evaluate(() => (window as unknown as { vgPc: RTCPeerConnection }).vgPc.close());
    await fetch(r.location!, { method: 'DELETE', headers: { Authorization: `Bearer ${SOURCE_TOKEN}` } });
    await waitFor('the workers to report no calls', () => workers.every((w) => loads.get(w.id)?.calls === 0), 5000);
  });

  test('four calls go two to each worker (by load, not to the first); a fifth, with every place taken, is refused 503 after the ring time and audited', async () => {
    for (let i = 0; i < 4; i++) publishers.push(await publishConnected(`${tg.url}/whip`, SOURCE_TOKEN, { direction: 'SendRecv' }));
    await waitFor('two calls on each worker', () => workers.every((w) => loads.get(w.id)?.calls === 2), 5000);
    const started = Date.now();
    const res = await fetch(`${tg.url}/whip`, { method: 'POST', headers: { Authorization: `Bearer ${SOURCE_TOKEN}`, 'Content-Type': 'application/sdp' }, body: offerSdp() });
    assert.equal(res.status, 503);
    assert.ok(Date.now() - started >= 1900, 'after the 2 s ring time');
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    const problem = (await res.json()) as { code: string; detail: string };
    assert.equal(problem.code, 'VG_AGENT_NOT_READY');
    assert.match(problem.detail, /no worker for agent 'echo' accepted the call within 2 s; 2 known/);
    const audit = readFileSync(tg.auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; outcome: string; status: number });
    assert.ok(audit.some((e) => e.action === 'whip.post' && e.outcome !== 'ok' && e.status === 503), 'the refusal is in the audit log');
    assert.equal(tg.gw.calls.size, 4, 'the refused call left nothing behind');
  });

  test('a worker killed (SIGKILL) mid-call: its two calls end agent-disconnected within 2 s; the other worker\'s calls go on', async () => {
    const victim = workers[0]!;
    const ids = publishers.map(idOf);
    const ended = new Map<string, { reason: string; at: number }>();
    for (const id of ids) tg.gw.calls.get(id)!.once('ended', (reason) => void ended.set(id, { reason, at: Date.now() }));
    const killedAt = Date.now();
    victim.child.kill('SIGKILL');
    await waitFor('two calls ended', () => ended.size === 2, 4000);
    for (const [id, e] of ended) {
      assert.equal(e.reason, 'agent-disconnected', id);
      assert.ok(e.at - killedAt <= 2000, `ended ${e.at - killedAt} ms after the kill`);
    }
    const left = ids.filter((id) => !ended.has(id));
    assert.equal(left.length, 2);
    for (const id of left) assert.notEqual(tg.gw.calls.get(id)?.state, 'ended');
    assert.equal(loads.get(workers[1]!.id)?.calls, 2, 'the other worker still has its calls');
    await waitFor('the victim forgotten by the node', () => tg.gw.fleet!.workers.workersOf('echo').length === 1, 3000);
  });

  test('a SIP call to an agent no worker serves is refused 480 after its ring time, with the reason, and audited', async () => {
    const c = await SipWsClient.connect(tg.url);
    try {
      assert.equal((await c.register('alice', 'alice-pw', DOMAIN)).status, 200);
      const sdp = offerSdp().replace('a=sendonly', 'a=sendrecv');
      const invite = c.inviteText({ from: 'alice', to: 'sales', domain: DOMAIN, callId: 'worker-480', sdp });
      const r = await c.request(invite);
      assert.equal(r.status, 480);
      assert.match(r.reason, /no worker for agent 'sales' accepted the call within 1 s/);
      const audit = readFileSync(tg.auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; status: number; target?: string });
      assert.ok(audit.some((e) => e.action === 'sip.invite' && e.status === 480 && e.target === `sip:sales@${DOMAIN}`));
    } finally {
      await c.close();
    }
  });
});
