/**
 * voxgate sends no ICE check to an offerer before the offerer has checked it (it cannot have
 * read our answer before that), and libdatachannel publishers, OBS's stack, all connect at the
 * first try. Our early checks used to let a libdatachannel offerer's ICE connect inside its own
 * setRemoteDescription, where its DTLS verified our certificate before it had stored our
 * fingerprint: "unknown CA", then "Got a remote candidate without ICE transport", about one
 * publish in a hundred (bench:whip: 4 of 100).
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import { publishWithNdc, type NdcPublisher } from './helpers/ndc-publisher.js';
import { SOURCE_TOKEN, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { offerSdp } from './helpers/offers.js';

/** RFC 8489 §5: a Binding request (type 0x0001) with the magic cookie. */
function isBindingRequest(msg: Buffer): boolean {
  return msg.length >= 20 && msg.readUInt16BE(0) === 0x0001 && msg.readUInt32BE(4) === 0x2112a442;
}

/** The USERNAME attribute (0x0006) of a STUN message, if it has one. */
function stunUsername(msg: Buffer): string | undefined {
  for (let at = 20; at + 4 <= msg.length; ) {
    const type = msg.readUInt16BE(at);
    const len = msg.readUInt16BE(at + 2);
    if (type === 0x0006) return msg.subarray(at + 4, at + 4 + len).toString('utf8');
    at += 4 + Math.ceil(len / 4) * 4;
  }
  return undefined;
}

describe('ICE checks wait for the offerer', () => {
  let tg: TestGateway;
  let socket: Socket;
  const requests: { at: number; username: string | undefined }[] = [];

  before(async () => {
    tg = await startGateway({ sources: [{ name: 'browser-widget', kind: 'browser', token: SOURCE_TOKEN, maxSessions: 200 }] });
    socket = createSocket('udp4');
    socket.on('message', (msg) => {
      if (isBindingRequest(msg)) requests.push({ at: performance.now(), username: stunUsername(msg) });
    });
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  });
  after(async () => {
    socket?.close();
    await tg?.stop();
  });

  test('an offer whose candidate never checks: no check reaches it for the first second, then checks come as if it had been trickled', async () => {
    const port = socket.address().port;
    // A complete offer (RFC 9725 §4.3.2 lets the client send its candidates in it), pointing at a socket that only listens.
    const offer = offerSdp().replace('a=setup:actpass\r\n', `a=setup:actpass\r\na=candidate:1 1 UDP 2122317823 127.0.0.1 ${port} typ host\r\na=end-of-candidates\r\n`);
    const answeredAt = performance.now();
    const res = await fetch(`${tg.url}/whip`, { method: 'POST', headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${SOURCE_TOKEN}` }, body: offer });
    assert.equal(res.status, 201);
    const ufrag = /a=ice-ufrag:(\S+)/.exec(await res.text())![1]!;
    await new Promise((resolve) => setTimeout(resolve, 800));
    assert.equal(requests.length, 0, `no check before the offerer could have read the answer: ${JSON.stringify(requests)}`);
    // Held back, not dropped: an offerer whose own checks cannot reach us is still found.
    await waitFor('checks to the offer’s candidate', () => requests.length > 0, 5000);
    assert.ok(requests[0]!.at - answeredAt >= 900, `the first check came ${(requests[0]!.at - answeredAt).toFixed(0)} ms after the POST`);
    assert.equal(requests[0]!.username, `EsAw:${ufrag}`, 'RFC 8445 §7.2.2: the check names the offerer’s ufrag, then ours');
    const location = res.headers.get('location')!;
    assert.equal((await fetch(new URL(location, tg.url), { method: 'DELETE', headers: { Authorization: `Bearer ${SOURCE_TOKEN}` } })).status, 200);
  });

  test('100 libdatachannel publishers at once, each with one client and no retry: every one connects', async () => {
    const pubs: NdcPublisher[] = [];
    try {
      for (let i = 0; i < 100; i++) pubs.push(await publishWithNdc(`${tg.url}/whip`, SOURCE_TOKEN));
      assert.ok(pubs.every((p) => p.status === 201));
      const outcomes = await Promise.allSettled(pubs.map((p) => Promise.race([p.connected, new Promise((_, reject) => setTimeout(() => reject(new Error('not connected within 10 s')), 10_000))])));
      const failed = outcomes.filter((o) => o.status === 'rejected');
      assert.equal(failed.length, 0, `${failed.length} of 100 did not connect: ${failed.map((f) => String((f as PromiseRejectedResult).reason)).join('; ')}`);
      await waitFor('100 live sessions', () => tg.gw.calls.size === 100 && [...tg.gw.calls.values()].every((c) => c.state === 'connected'), 10_000);
    } finally {
      for (const p of pubs) {
        p.close();
        await p.undo?.();
      }
    }
  });
});
