import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { encodeG711 } from '../src/audio/g711.js';
import { tone } from '../src/audio/test-signals.js';
import type { SessionEvent } from '../src/call/session-events.js';
import type { TrunkView } from '../src/call/outbound-types.js';
import { parseSipMessage, type SipResponse } from '../src/sip/message.js';
import { natsServer, type NatsServer } from '../src/testing/nats.js';
import { freeTcpPort } from './helpers/peers.js';
import { ADMIN_TOKEN, adminSessions, freeUdpPort, SOURCE_TOKEN, waitFor, within } from './helpers/gateway.js';
import { callConnected, publishConnected, type NdcPublisher } from './helpers/ndc-publisher.js';
import { trickleFor } from './helpers/offers.js';
import { runSipp, sippWire, startSipp, SIPP_EXIT, type SippProcess } from './helpers/sipp.js';
import { SipWsClient } from './helpers/sip-ws-client.js';
import { serveNode, type VoxgateProcess } from './helpers/voxgate-process.js';

/**
 * Issue 17's fleet in one run: three `voxgate serve` processes (A, B, C) on one nats-server -js,
 * one trunk on all three (SIPp is the carrier: its registrar, and the caller), an event
 * subscriber on `voxgate.events.>`. A WHIP session on A is PATCHed through B and DELETEd through
 * C; a SIP call to the agent on B and a trunk call on C are broadcast like WHIP ones; the trunk's
 * maxCalls holds across nodes; then A is killed with SIGKILL: B and C end A's sessions
 * (`node-lost`), keep their own calls flowing, and the trunk's registration moves to one of them.
 */

const DOMAIN = 'fleet.test';
const NUMBER = '+15550100';
const NODES = ['node-a', 'node-b', 'node-c'] as const;
type NodeId = (typeof NODES)[number];
/** Who is left once A is killed. */
const SURVIVORS = ['node-b', 'node-c'] as const;

interface Node {
  id: NodeId;
  url: string;
  sipPort: number;
  proc: VoxgateProcess;
}

const admin = { Authorization: `Bearer ${ADMIN_TOKEN}` };

async function trunkOf(node: Node): Promise<TrunkView> {
  const res = await fetch(`${node.url}/api/trunks`, { headers: admin });
  assert.equal(res.status, 200);
  return ((await res.json()) as { trunks: TrunkView[] }).trunks[0]!;
}

describe('three nodes, one fleet: sessions, events, limits and a node killed', () => {
  let nats: NatsServer;
  let watcher: NatsConnection;
  let registrar: SippProcess;
  const events: { subject: string; event: SessionEvent }[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-fleet-'));
  const nodes = new Map<NodeId, Node>();
  const publishers: NdcPublisher[] = [];
  const sipClients: SipWsClient[] = [];
  let carrierCall: SippProcess | undefined;
  const node = (id: NodeId) => nodes.get(id)!;

  async function start(id: NodeId, index: number): Promise<Node> {
    const [http, sipPort, udpPort] = [await freeTcpPort(), await freeUdpPort(), await freeUdpPort()];
    const proc = await serveNode(dir, {
      http: { host: '127.0.0.1', port: http },
      media: { udpPort },
      sources: [{ name: 'browser-widget', kind: 'browser', token: SOURCE_TOKEN, codecs: ['opus', 'pcmu'] }],
      admin: { token: ADMIN_TOKEN },
      audit: { path: join(dir, `audit-${id}.jsonl`) },
      log: { level: 'warn' },
      sip: {
        domain: DOMAIN,
        users: [{ user: 'alice', password: 'alice-secret' }],
        listen: [{ transport: 'udp', host: '127.0.0.1', port: sipPort }],
        rtp: { portMin: 38000 + index * 100, portMax: 38099 + index * 100 },
        trunks: [{
          name: 'carrier-a',
          maxCalls: 1,
          codecs: ['pcmu'],
          inbound: { numbers: [NUMBER], allowedAddresses: ['127.0.0.1/32'], agent: 'echo' },
          outbound: { address: `127.0.0.1:${registrar.localPort}`, transport: 'udp', fromUser: 'acct-1', fromHost: 'carrier.test', numbers: [NUMBER], register: { expires: 600 } },
        }],
      },
      cluster: { nodeId: id, nats: { servers: [nats.url] }, publicUrl: `http://127.0.0.1:${http}` },
    }, id);
    return { id, url: proc.ready, sipPort, proc };
  }

  const registers = () => [...registrar.messagesSoFar().matchAll(/^REGISTER [^\n]*\n(?:[^\n]+\n)*?Contact: ([^\r\n]+)/gm)].map((m) => m[1]!);

  before(async () => {
    nats = await natsServer();
    watcher = await connect({ servers: nats.url });
    watcher.subscribe('voxgate.events.>', { callback: (_e, m) => void events.push({ subject: m.subject, event: m.json<SessionEvent>() }) });
    await watcher.flush();
    registrar = await startSipp({ scenario: 'uas-register-any.xml', calls: 2, timeoutMs: 170_000 });
    // A first, so it takes the trunk's registration; then B and C side by side.
    nodes.set('node-a', await start('node-a', 0));
    await waitFor('node A\'s REGISTER at the registrar', () => registers().length === 1, 15_000);
    const [b, c] = await Promise.all([start('node-b', 1), start('node-c', 2)]);
    nodes.set('node-b', b);
    nodes.set('node-c', c);
  });

  after(async () => {
    for (const p of publishers) p.close();
    for (const c of sipClients) await c.close();
    await carrierCall?.stop();
    for (const n of nodes.values()) n.proc.child.kill('SIGKILL');
    await registrar?.stop();
    await watcher?.drain();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const idOf = (p: NdcPublisher) => p.location!.split('/').pop()!;
  const eventsOf = (id: string) => events.filter((e) => (e.event.type === 'created' ? e.event.session.id : e.event.id) === id);
  const lifeOf = (id: string) => eventsOf(id).map((e) => e.subject);
  const ended = (id: string) => eventsOf(id).find((e) => e.event.type === 'ended')?.event as Extract<SessionEvent, { type: 'ended' }> | undefined;
  const sessionsOn = async (n: Node) => (await adminSessions(n.url)) as unknown as { id: string; node: string; state: string; packets?: number; sipCallId: string | null }[];

  test('A holds the trunk\'s registration; B and C show it standby, held by node-a, and do not register', async () => {
    const held = await waitFor('B and C to see A\'s lease', async () => {
      const views = await Promise.all(NODES.map(async (id) => (await trunkOf(node(id))).registration!));
      return views.every((v) => v.heldBy === 'node-a') && views;
    }, 10_000);
    assert.deepEqual(held.map((v) => v.state), ['registered', 'standby', 'standby']);
    assert.equal(registers().length, 1, 'one REGISTER: A\'s');
  });

  test('a WHIP session created on A is PATCHed through B and DELETEd through C, answered as A answers; its created, connected and ended are broadcast', async () => {
    const pub = await publishConnected(`${node('node-a').url}/whip`, SOURCE_TOKEN, { direction: 'SendRecv' });
    publishers.push(pub);
    const id = idOf(pub);
    const via = (n: NodeId) => `${node(n).url}/whip/${id}`;
    await waitFor('connected, in the fleet\'s view from C', async () => (await sessionsOn(node('node-c'))).some((s) => s.id === id && s.state === 'connected'));
    const patch = await fetch(via('node-b'), {
      method: 'PATCH',
      headers: { Authorization: `Bearer ${SOURCE_TOKEN}`, 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': pub.headers.get('etag')! },
      body: trickleFor(pub.offer),
    });
    assert.equal(patch.status, 204, await patch.text());
    const del = await fetch(via('node-c'), { method: 'DELETE', headers: { Authorization: `Bearer ${SOURCE_TOKEN}` } });
    assert.equal(del.status, 200, await del.text());
    await waitFor('its ended event', () => ended(id));
    assert.deepEqual(lifeOf(id), ['voxgate.events.whip.created', 'voxgate.events.whip.connected', 'voxgate.events.whip.ended']);
    assert.deepEqual([ended(id)!.reason, ended(id)!.node], ['deleted', 'node-a']);
    assert.ok(ended(id)!.summary, 'the holder measured its end');
  });

  test('a SIP call to the agent on B (WebSocket signalling, WebRTC media) is broadcast on voxgate.events.sip.*', async () => {
    const alice = await SipWsClient.connect(node('node-b').url);
    sipClients.push(alice);
    assert.equal((await alice.register('alice', 'alice-secret', DOMAIN)).status, 200);
    // A libdatachannel client that fails to connect (see publishWithNdc) is hung up and replaced.
    const call = await callConnected(async (offer) => {
      const ok = await alice.request(alice.inviteText({ from: 'alice', to: 'agent', domain: DOMAIN, callId: `fleet-${randomBytes(4).toString('hex')}`, sdp: offer }));
      if (ok.status === 200) alice.send(alice.inDialogText(ok, 'ACK', 1));
      return { accepted: ok.status === 200, status: ok.status, headers: new Headers(), answer: ok.body.toString(), undo: () => alice.request(alice.inDialogText(ok, 'BYE', 2)) };
    }, { direction: 'SendRecv' });
    publishers.push(call);
    call.startRtp();
    const mine = await waitFor('the call in B\'s sessions', async () => (await sessionsOn(node('node-b'))).find((s) => s.sipCallId?.startsWith('fleet-') && s.state === 'connected'));
    await waitFor('its created and connected on NATS', () => eventsOf(mine.id).length >= 2);
    assert.deepEqual(lifeOf(mine.id), ['voxgate.events.sip.created', 'voxgate.events.sip.connected']);
    assert.equal((eventsOf(mine.id)[0]!.event as Extract<SessionEvent, { type: 'created' }>).session.node, 'node-b');
  });

  test('a carrier\'s call on C is broadcast on voxgate.events.trunk.*; with the trunk\'s one call taken on C, a call to B is refused 503 naming the fleet', async () => {
    const audio = join(dir, 'tone.ul');
    writeFileSync(audio, encodeG711(tone(1000, 8000, 8000 * 10, 12000), 'pcmu'));
    carrierCall = await startSipp({ scenario: 'uac-call-rtp.xml', remote: `127.0.0.1:${node('node-c').sipPort}`, service: NUMBER, keys: { audio: `${audio},-1,0` }, pauseMs: 40_000, timeoutMs: 90_000 });
    const call = await waitFor('the trunk call on C', async () => (await sessionsOn(node('node-c'))).find((s) => s.sipCallId === `1-${carrierCall!.pid}@127.0.0.1` && s.state === 'connected'), 10_000);
    await waitFor('its created and connected on NATS', () => eventsOf(call.id).length >= 2);
    assert.deepEqual(lifeOf(call.id), ['voxgate.events.trunk.created', 'voxgate.events.trunk.connected']);
    const refused = await runSipp({ scenario: 'uac-invite-refused.xml', remote: `127.0.0.1:${node('node-b').sipPort}`, service: NUMBER, keys: { offer_pt: '0', offer_rtpmap: 'PCMU/8000', header_a: 'Subject: e2e', header_b: 'Subject: e2e' }, timeoutMs: 10_000 });
    assert.equal(refused.code, SIPP_EXIT.ok, refused.messages.slice(-3000));
    const final = sippWire(refused.messages).find((m) => m.dir === 'received' && m.status !== undefined && m.status >= 200);
    assert.match(final!.first, /^SIP\/2\.0 503 Service Unavailable \(trunk carrier-a is at its 1 calls across the fleet\)$/);
    assert.equal((await trunkOf(node('node-b'))).calls.inbound, 0, 'the refusal left nothing on B');
  });

  test('A killed (SIGKILL): B and C end A\'s session node-lost within 15 s, keep their own calls flowing, and one of them takes the trunk\'s registration', async () => {
    const onA = await publishConnected(`${node('node-a').url}/whip`, SOURCE_TOKEN, { direction: 'SendRecv' });
    publishers.push(onA);
    onA.startRtp();
    const lost = idOf(onA);
    await waitFor('A\'s session in B\'s and C\'s lists', async () => {
      const [b, c] = await Promise.all([sessionsOn(node('node-b')), sessionsOn(node('node-c'))]);
      return [b, c].every((list) => list.some((s) => s.id === lost && s.node === 'node-a'));
    });
    const own = async (n: NodeId) => (await sessionsOn(node(n))).filter((s) => s.node === n);
    const before = new Map((await Promise.all(SURVIVORS.map(own))).flat().map((s) => [s.id, s.packets ?? 0]));
    assert.equal(before.size, 2, 'B\'s SIP call and C\'s trunk call');

    const killedAt = Date.now();
    node('node-a').proc.child.kill('SIGKILL');
    nodes.delete('node-a');
    await waitFor('A\'s session ended node-lost', () => ended(lost), 15_000);
    assert.ok(Date.now() - killedAt <= 15_000, `within 15 s (${Date.now() - killedAt} ms)`);
    assert.deepEqual([ended(lost)!.reason, ended(lost)!.node, ended(lost)!.summary], ['node-lost', 'node-a', null]);
    assert.equal(eventsOf(lost).filter((e) => e.event.type === 'ended').length, 1, 'ended once, by whichever survivor got there first');
    for (const n of SURVIVORS) {
      const list = await sessionsOn(node(n));
      assert.ok(!list.some((s) => s.node === 'node-a'), `${n} lists nothing of A's`);
    }
    await waitFor('B\'s and C\'s own calls still receiving', async () => {
      const now = (await Promise.all(SURVIVORS.map(own))).flat();
      return now.length === 2 && now.every((s) => s.state === 'connected' && (s.packets ?? 0) > before.get(s.id)! + 25);
    });

    await waitFor('a REGISTER from the new holder', () => registers().length === 2, 25_000);
    assert.ok(Date.now() - killedAt <= 25_000, `the registration moved ${Date.now() - killedAt} ms after the kill`);
    let views = new Map<NodeId, NonNullable<TrunkView['registration']>>();
    const holder = await waitFor('both survivors to agree on the holder', async () => {
      views = new Map(await Promise.all(SURVIVORS.map(async (n) => [n, (await trunkOf(node(n))).registration!] as const)));
      const h = views.get('node-b')!.heldBy;
      return h && h !== 'node-a' && views.get('node-c')!.heldBy === h ? (h as NodeId) : undefined;
    }, 10_000);
    const other = SURVIVORS.find((n) => n !== holder)!;
    await waitFor('the holder registered', async () => (await trunkOf(node(holder))).registration!.state === 'registered', 5000);
    assert.equal(views.get(other)!.state, 'standby');
    assert.match(registers()[1]!, new RegExp(`:${node(holder).sipPort}\\b`), 'the new holder registers its own Contact');
  });

  test('after the kill the survivors\' calls end as usual, broadcast with their quality: the SIP call by the caller\'s BYE, the trunk call by the carrier\'s', async () => {
    const [alice] = sipClients;
    const sip = (await sessionsOn(node('node-b'))).find((s) => s.sipCallId?.startsWith('fleet-'))!; // the one left: a replaced client's call was hung up
    const answered = parseSipMessage(alice!.received.find((t) => t.startsWith('SIP/2.0 200') && t.includes(`Call-ID: ${sip.sipCallId}`))!) as SipResponse;
    assert.equal((await alice!.request(alice!.inDialogText(answered, 'BYE', 2))).status, 200);
    await waitFor('the SIP call\'s ended', () => ended(sip.id));
    assert.equal(ended(sip.id)!.reason, 'bye');
    assert.ok(ended(sip.id)!.summary!.packetsReceived > 0);

    const trunk = (await sessionsOn(node('node-c'))).find((s) => s.sipCallId === `1-${carrierCall!.pid}@127.0.0.1`)!;
    const r = await within(carrierCall!.done, 60_000, 'the carrier\'s BYE');
    assert.equal(r.code, SIPP_EXIT.ok, r.messages.slice(-3000));
    await waitFor('the trunk call\'s ended', () => ended(trunk.id));
    assert.deepEqual(lifeOf(trunk.id), ['voxgate.events.trunk.created', 'voxgate.events.trunk.connected', 'voxgate.events.trunk.ended']);
    assert.equal(ended(trunk.id)!.node, 'node-c');
    assert.ok(ended(trunk.id)!.summary!.packetsReceived > 1000, 'the carrier\'s 40 s of RTP, counted');
  });
});
