import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { natsServer, type NatsServer } from '../src/testing/nats.js';
import { OTHER_TOKEN, SOURCE_TOKEN, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { publishConnected, type NdcPublisher } from './helpers/ndc-publisher.js';
import { offerSdp } from './helpers/offers.js';

/**
 * A source's maxSessions counted across the fleet (issue 17, build 5): `ward-7-mic` may have 2
 * sessions; one on node A and one on node B fill it, and a third is refused on either node
 * (429, as on one node) until one ends.
 */
describe('a source\'s maxSessions holds across nodes', () => {
  let nats: NatsServer;
  let a: TestGateway;
  let b: TestGateway;
  const publishers: NdcPublisher[] = [];

  before(async () => {
    nats = await natsServer();
    const node = (nodeId: string) => ({ cluster: { nodeId, nats: { servers: [nats.url] }, publicUrl: `http://${nodeId}.invalid` } });
    a = await startGateway(node('node-a'));
    b = await startGateway(node('node-b'));
    await waitFor('each node to see the other', () => a.gw.fleet!.nodes.live().length === 2 && b.gw.fleet!.nodes.live().length === 2, 10_000);
  });

  after(async () => {
    for (const p of publishers) p.close();
    await a?.stop();
    await b?.stop();
    await nats?.stop();
  });

  const post = (url: string) => fetch(`${url}/whip`, { method: 'POST', headers: { Authorization: `Bearer ${OTHER_TOKEN}`, 'Content-Type': 'application/sdp' }, body: offerSdp() });

  test('one session on A and one on B fill ward-7-mic\'s two; a third is 429 on either node, naming the fleet; after a DELETE one fits again', async () => {
    publishers.push(await publishConnected(`${a.url}/whip`, OTHER_TOKEN));
    publishers.push(await publishConnected(`${b.url}/whip`, OTHER_TOKEN));
    for (const url of [a.url, b.url]) {
      const res = await post(url);
      assert.equal(res.status, 429);
      const problem = (await res.json()) as { code: string; detail: string };
      assert.equal(problem.code, 'VG_SOURCE_SESSION_LIMIT');
      assert.match(problem.detail, /maximum of 2 sessions across the fleet/);
    }
    assert.deepEqual([a.gw.calls.size, b.gw.calls.size], [1, 1], 'the refusals left nothing behind');
    const other = await publishConnected(`${a.url}/whip`, SOURCE_TOKEN);
    publishers.push(other);
    assert.equal(other.status, 201, 'another source is not limited by it');
    const del = await fetch(publishers[1]!.location!, { method: 'DELETE', headers: { Authorization: `Bearer ${OTHER_TOKEN}` } });
    assert.equal(del.status, 200);
    await waitFor('the place given back', async () => (await a.gw.fleet!.limits.count('source:ward-7-mic')) === 1);
    publishers.push(await publishConnected(`${a.url}/whip`, OTHER_TOKEN));
    assert.equal(a.gw.calls.size, 3);
  });
});
