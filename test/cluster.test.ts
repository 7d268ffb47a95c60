import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { SessionEvent } from '../src/call/session-events.js';
import { natsServer, type NatsServer } from '../src/testing/nats.js';
import { freeTcpPort } from './helpers/peers.js';
import { ADMIN_TOKEN, adminSessions, freeUdpPort, SOURCE_TOKEN, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { listenConnected, publishConnected, readSse, type NdcListener, type NdcPublisher } from './helpers/ndc-publisher.js';
import { trickleFor } from './helpers/offers.js';
import { serveNode } from './helpers/voxgate-process.js';

/**
 * Two voxgate nodes on one nats-server -js (issue 17): node A a real `voxgate serve` process,
 * node B in this process. A WHIP session on A is in the fleet's directory (B finds it, with its
 * node) and its life is broadcast on NATS; A killed with SIGKILL: B marks A's sessions ended
 * (`node-lost`, within 15 s) and keeps its own call flowing.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SUPERVISOR = 'cluster-supervisor-token-0123456789';

interface NodeProcess {
  url: string;
  child: ChildProcess;
  stderr(): string;
}

/** `voxgate serve` on a config file, as an operator runs a node; resolves once it listens. */
async function startNode(dir: string, config: object): Promise<NodeProcess> {
  const p = await serveNode(dir, config);
  return { url: p.ready, child: p.child, stderr: p.stderr };
}

describe('a fleet of two nodes on NATS JetStream', () => {
  let nats: NatsServer;
  let watcher: NatsConnection;
  const events: { subject: string; event: SessionEvent }[] = [];
  let a: NodeProcess;
  let b: TestGateway;
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-cluster-'));
  const publishers: NdcPublisher[] = [];
  const listeners: NdcListener[] = [];

  before(async () => {
    nats = await natsServer();
    watcher = await connect({ servers: nats.url });
    watcher.subscribe('voxgate.events.>', { callback: (_e, m) => void events.push({ subject: m.subject, event: m.json<SessionEvent>() }) });
    await watcher.flush();
    const cluster = (nodeId: string, publicUrl: string) => ({ nodeId, nats: { servers: [nats.url] }, publicUrl });
    const aPort = await freeTcpPort();
    a = await startNode(dir, {
      http: { host: '127.0.0.1', port: aPort },
      media: { udpPort: await freeUdpPort() },
      sources: [{ name: 'browser-widget', kind: 'browser', token: SOURCE_TOKEN, codecs: ['opus', 'pcmu'] }],
      audit: { path: join(dir, 'audit-a.jsonl') },
      log: { level: 'warn' },
      listeners: [{ name: 'supervisor', token: SUPERVISOR }],
      admin: { token: ADMIN_TOKEN },
      cluster: cluster('node-a', `http://127.0.0.1:${aPort}`),
    });
    b = await startGateway({ listeners: [{ name: 'supervisor', token: SUPERVISOR }], cluster: cluster('node-b', 'https://node-b.voice.example') });
  });

  after(async () => {
    for (const p of publishers) p.close();
    for (const l of listeners) l.close();
    a?.child.kill('SIGKILL');
    await b?.stop();
    await watcher?.drain();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const idOf = (p: NdcPublisher) => p.location!.split('/').pop()!;
  const eventsOf = (id: string) => events.filter((e) => (e.event.type === 'created' ? e.event.session.id : e.event.id) === id);

  test('a WHIP session on node A is in the fleet directory as node-a\'s, seen from node B, and its created and connected are broadcast on voxgate.events.whip.*', async () => {
    const pub = await publishConnected(`${a.url}/whip`, SOURCE_TOKEN, { direction: 'SendRecv' });
    publishers.push(pub);
    const id = idOf(pub);
    const rec = await waitFor('the session in B\'s view of the directory', async () => (await b.gw.directory.lookup(id))?.state === 'connected' && b.gw.directory.lookup(id));
    assert.deepEqual([rec!.node, rec!.kind, rec!.source], ['node-a', 'whip', 'browser-widget']);
    await waitFor('created and connected on NATS', () => eventsOf(id).length >= 2);
    assert.deepEqual(eventsOf(id).map((e) => e.subject), ['voxgate.events.whip.created', 'voxgate.events.whip.connected']);
    const connected = eventsOf(id)[1]!.event as Extract<SessionEvent, { type: 'connected' }>;
    assert.deepEqual([connected.node, connected.kind], ['node-a', 'whip']);
    assert.ok(connected.setupMs >= 0);
  });

  test('a WHEP POST to B for a call on A is redirected (307) to A\'s publicUrl, where the listener hears the caller; so is the player page', async () => {
    const [pub] = publishers;
    pub!.startRtp();
    const id = idOf(pub!);
    const res = await fetch(`${b.url}/whep/${id}?track=caller`, { method: 'POST', redirect: 'manual', headers: { Authorization: `Bearer ${SUPERVISOR}`, 'Content-Type': 'application/sdp' }, body: 'v=0\r\n' });
    assert.equal(res.status, 307);
    assert.equal(res.headers.get('location'), `${a.url}/whep/${id}?track=caller`);
    const l = await listenConnected(res.headers.get('location')!, SUPERVISOR);
    listeners.push(l);
    await waitFor('the caller\'s packets at the listener, from A', () => l.received.length > 20);
    const head = await fetch(`${b.url}/whep/${id}`, { method: 'HEAD', redirect: 'manual' });
    assert.deepEqual([head.status, head.headers.get('location')], [307, `${a.url}/whep/${id}`], 'HEAD too: the holder says whether it can be heard');
    const page = await fetch(`${b.url}/player?session=${id}`, { redirect: 'manual' });
    assert.deepEqual([page.status, page.headers.get('location')], [307, `${a.url}/player?session=${id}`]);
    assert.equal((await fetch(`${b.url}/player?session=nobody`)).status, 200, 'a session nobody holds: B serves the page itself');
  });

  test('PATCH and DELETE of a session A holds, sent to B, are carried to A over NATS and answered as A answers (status, body, ETag); the DELETE ends it', async () => {
    const pub = await publishConnected(`${a.url}/whip`, SOURCE_TOKEN, { direction: 'SendRecv' });
    publishers.push(pub);
    const id = idOf(pub);
    await waitFor('the session in the directory', async () => (await b.gw.directory.lookup(id))?.state === 'connected');
    const via = (base: string) => `${base}/whip/${id}`;
    const auth = { Authorization: `Bearer ${SOURCE_TOKEN}`, 'Content-Type': 'application/trickle-ice-sdpfrag' };
    const ask = async (base: string, headers: Record<string, string>) => {
      const r = await fetch(via(base), { method: 'PATCH', headers, body: trickleFor(pub.offer) });
      return { status: r.status, type: r.headers.get('content-type'), etag: r.headers.get('etag'), body: await r.text() };
    };
    const direct = await ask(a.url, auth);
    const forwarded = await ask(b.url, auth);
    assert.equal(direct.status, 428, 'no If-Match: 428 from A itself');
    assert.deepEqual(forwarded, direct, 'and the same answer through B');
    const ok = await ask(b.url, { ...auth, 'If-Match': pub.headers.get('etag')! });
    assert.equal(ok.status, 204, ok.body);
    const del = await fetch(via(b.url), { method: 'DELETE', headers: { Authorization: `Bearer ${SOURCE_TOKEN}` } });
    assert.equal(del.status, 200, await del.text());
    await waitFor('the session ended on A, as the directory says', async () => (await b.gw.directory.lookup(id))?.endReason === 'deleted');
    const gone = await fetch(via(b.url), { method: 'DELETE', headers: { Authorization: `Bearer ${SOURCE_TOKEN}` } });
    assert.equal(gone.status, 404, 'an ended session is nobody\'s: B answers itself');
  });

  test('/api/sessions on B lists the fleet: A\'s session with node-a, B\'s own with node-b and its media counters', async () => {
    const ours = await publishConnected(`${b.url}/whip`, SOURCE_TOKEN, { direction: 'SendRecv' });
    publishers.push(ours);
    ours.startRtp();
    const onA = idOf(publishers[0]!);
    const rows = await waitFor('both sessions listed', async () => {
      const r = (await adminSessions(b.url)) as unknown as { id: string; node: string; state: string; packets?: number }[];
      return r.length === 2 && r.every((x) => x.state === 'connected') && r;
    });
    const byId = new Map(rows.map((r) => [r.id, r]));
    assert.equal(byId.get(onA)?.node, 'node-a');
    assert.equal(byId.get(onA)?.packets, undefined, 'another node\'s counters are its own');
    assert.equal(byId.get(idOf(ours))?.node, 'node-b');
    assert.equal(typeof byId.get(idOf(ours))?.packets, 'number');
  });

  test("B's console stream (/api/events) shows A's sessions: in its snapshot, then A's next call begins and ends; an admin transfer sent to B is answered by A", async () => {
    const sse = readSse(`${b.url}/api/events`, ADMIN_TOKEN);
    let pub: NdcPublisher | undefined; // not in `publishers`: the tests after this one count on its last being B's
    try {
      await waitFor('the snapshot', async () => sse.events.length > 0);
      const snap = sse.events[0]!.data as { node: string; calls: { session: { id: string } }[]; fleet: { id: string; node: string }[] };
      assert.equal(snap.node, 'node-b');
      assert.ok(snap.fleet.some((r) => r.id === idOf(publishers[0]!) && r.node === 'node-a'), "A's live session in B's snapshot");
      assert.ok(snap.calls.some((c) => c.session.id === idOf(publishers.at(-1)!)), "B's own call (the test before's) with its chart");
      pub = await publishConnected(`${a.url}/whip`, SOURCE_TOKEN, { direction: 'SendRecv' });
      const id = idOf(pub);
      const fleetOf = (type: string) => sse.events.some((e) => e.event === 'fleet' && (e.data as { event: SessionEvent }).event.type === type && JSON.stringify(e.data).includes(id));
      await waitFor('created and connected from node-a', async () => fleetOf('created') && fleetOf('connected'));
      // A has no SIP users: its answer (409, the SIP status) comes back through B unchanged.
      const transfer = await fetch(`${b.url}/api/sessions/${id}/transfer`, { method: 'POST', headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ to: 'bob' }) });
      const problem = (await transfer.json()) as { detail: string; sipStatus: number };
      assert.equal(transfer.status, 409, problem.detail);
      assert.match(problem.detail, /^The transfer to bob failed: \d{3} /);
      assert.equal((await fetch(`${b.url}/api/sessions/${id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } })).status, 200);
      await waitFor('ended from node-a', async () => fleetOf('ended'));
    } finally {
      sse.abort();
      pub?.close();
    }
  });

  test('node A killed (SIGKILL): B ends A\'s sessions as node-lost within 15 s and broadcasts it; B\'s own call keeps flowing', async () => {
    const ours = publishers.at(-1)!; // B's own, from the listing test
    const onA = (await b.gw.directory.list({ node: 'node-a' })).map((r) => r.id);
    assert.equal(onA.length, 1, 'the session of the first test');
    const killedAt = Date.now();
    a.child.kill('SIGKILL');
    await waitFor('A\'s session ended node-lost', async () => (await b.gw.directory.lookup(onA[0]!))?.endReason === 'node-lost', 15_000);
    assert.ok(Date.now() - killedAt <= 15_000, `within 15 s (${Date.now() - killedAt} ms)`);
    await waitFor('the node-lost end on NATS', () => eventsOf(onA[0]!).some((e) => e.event.type === 'ended'));
    const end = eventsOf(onA[0]!).find((e) => e.event.type === 'ended')!;
    assert.equal(end.subject, 'voxgate.events.whip.ended');
    assert.deepEqual([(end.event as Extract<SessionEvent, { type: 'ended' }>).reason, (end.event as Extract<SessionEvent, { type: 'ended' }>).node, (end.event as Extract<SessionEvent, { type: 'ended' }>).summary], ['node-lost', 'node-a', null]);
    // B's own call: still in the directory as live, its packets still rising.
    const mine = b.gw.calls.get(idOf(ours))!;
    assert.equal((await b.gw.directory.lookup(idOf(ours)))?.state, 'connected');
    const before = mine.totals().packetsReceived;
    await waitFor('B\'s call to keep receiving', () => mine.totals().packetsReceived > before + 10);
    assert.deepEqual((await b.gw.directory.list()).map((r) => r.id), [idOf(ours)]);
  });

  test('a node restarted under the same nodeId ends what its previous run left claimed (node-restarted); SIGTERM stops it cleanly', async () => {
    // What a run killed before any survivor noticed would leave: a live record of node-a's.
    const leftover = { id: 'left-over-by-node-a', kind: 'whip', node: 'node-a', source: 'browser-widget', sourceKind: 'browser', state: 'connected' as const, createdAt: Date.now() };
    assert.equal(await b.gw.directory.claim(leftover), true);
    const again = await startNode(dir, { http: { host: '127.0.0.1', port: 0 }, media: { udpPort: await freeUdpPort() }, sources: [], audit: { path: join(dir, 'audit-a2.jsonl') }, log: { level: 'warn' }, cluster: { nodeId: 'node-a', nats: { servers: [nats.url] }, publicUrl: 'http://127.0.0.1:1' } });
    const rec = await b.gw.directory.lookup(leftover.id);
    assert.deepEqual([rec?.state, rec?.endReason], ['ended', 'node-restarted'], 'ended before the node said it listens');
    await waitFor('node-a live again, to B', () => b.gw.fleet!.nodes.live().some((n) => n.nodeId === 'node-a'));
    const exited = new Promise<number | null>((r) => again.child.once('exit', (code) => r(code)));
    again.child.kill('SIGTERM');
    assert.equal(await exited, 0, again.stderr());
    await waitFor('node-a gone from the fleet', async () => {
      await b.gw.fleet!.nodes.tick();
      return !b.gw.fleet!.nodes.live().some((n) => n.nodeId === 'node-a');
    });
  });

  test('voxgate audit verify --nats checks every node\'s chain in the fleet\'s stream: node-a (its records up to its SIGKILL) and node-b intact; a forged record fails it', async () => {
    const verify = () =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'audit', 'verify', '--nats', nats.url], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
        child.once('exit', (code) => resolve({ code, out }));
      });
    await waitFor('B\'s records published', () => b.gw.fleet!.auditStream!.backlog === 0);
    const ok = await verify();
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /^node-a: \d+ records, chain intact( \(2 chains: the file was started again\))?$/m, 'its records up to the SIGKILL, no gap');
    assert.match(ok.out, /^node-b: \d+ records, chain intact$/m);
    watcher.publish('voxgate.audit.node-b', JSON.stringify({ seq: 999, time: new Date().toISOString(), action: 'whip.delete', outcome: 'ok', prev: '0'.repeat(64), hash: '1'.repeat(64) }));
    await watcher.flush();
    const bad = await verify();
    assert.equal(bad.code, 1, bad.out);
    assert.match(bad.out, /^node-b: chain broken at record \d+ of \d+: prev does not match/m);
  });
});
