/**
 * SIP fuzz over the real transports (issue 19): thousands of mutated requests of every method
 * over a WebSocket and over UDP (a trunk listener), while a well-behaved client re-registers
 * over its own WebSocket throughout. No answer is a 5xx but 501 (an unknown method) or 503 (a
 * limit), the client never fails, and once the transaction timers have run (the signalling
 * clock is a FakeClock; media and sockets are real) no transaction or dialog is left, counted.
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import { FakeClock } from '../src/core/clock.js';
import { T1 } from '../src/sip/transaction/transaction.js';
import { METHODS, mutate, rng, template } from '../src/testing/sip-fuzz.js';
import { startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { SipWsClient } from './helpers/sip-ws-client.js';

const DOMAIN = 'voxgate.test';
const ALICE = { user: 'alice', password: 'alice-secret' };

/** Status lines of what came back, counted by status. */
function tally(into: Map<number, number>, texts: string[]): void {
  for (const text of texts) {
    const status = /^SIP\/2\.0 (\d{3}) /.exec(text)?.[1];
    assert.ok(status, `every reply is a response: ${text.slice(0, 80)}`);
    into.set(Number(status), (into.get(Number(status)) ?? 0) + 1);
  }
}

describe('SIP fuzz over WebSocket and UDP beside a client that re-registers throughout', () => {
  const clock = new FakeClock(Date.now());
  let tg: TestGateway;
  let udp: Socket;
  const fromUdp: string[] = [];

  before(async () => {
    tg = await startGateway(
      {
        sip: {
          domain: DOMAIN,
          users: [ALICE, { user: 'bob', password: 'bob-secret' }],
          listen: [{ transport: 'udp', host: '127.0.0.1', port: 0 }],
          trunks: [{ name: 'carrier-a', inbound: { numbers: ['+15550100'], allowedAddresses: ['127.0.0.1/32'], agent: 'echo' } }],
        },
      },
      { clock },
    );
    udp = createSocket('udp4');
    udp.on('message', (m) => fromUdp.push(m.toString('latin1')));
    await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  });
  after(async () => {
    udp?.close();
    await tg?.stop();
  });

  test('6,000 mutated requests (4,000 over WebSocket, 2,000 over UDP): no 5xx but 501 and 503, every registration succeeds, and no transaction or dialog is left', async () => {
    const seed = Number(process.env.FUZZ_SEED ?? 11);
    const r = rng(seed);
    const port = tg.gw.sipListening().find((l) => l.protocol === 'UDP')!.port;
    const via = `127.0.0.1:${udp.address().port}`;
    const fuzzer = await SipWsClient.connect(tg.url);
    const good = await SipWsClient.connect(tg.url);
    const ws = new Map<number, number>();
    const overUdp = new Map<number, number>();
    let registrations = 0;
    for (let i = 0; i < 6000; i++) {
      const method = METHODS[Math.floor(r() * METHODS.length)]!;
      if (i % 3 === 2) udp.send(mutate(template(method, i, 'UDP', via), r), port, '127.0.0.1');
      else fuzzer.send(mutate(template(method, i), r));
      if (i % 300 === 0) {
        const res = await good.register(ALICE.user, ALICE.password, DOMAIN);
        assert.equal(res.status, 200, `registration ${registrations + 1} amid the fuzz`);
        registrations++;
      }
      // Paced a little: the fuzz is to test answers, not to fill the socket buffers.
      if (i % 50 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    await waitFor('the last answers', async () => {
      const n = fuzzer.received.length;
      await new Promise((resolve) => setTimeout(resolve, 200));
      return fuzzer.received.length === n;
    }, 10_000);
    tally(ws, fuzzer.received);
    tally(overUdp, fromUdp);
    const faults = (m: Map<number, number>) => [...m].filter(([s]) => s >= 500 && s !== 501 && s !== 503);
    assert.deepEqual(faults(ws), [], `seed ${seed}, over WebSocket: ${JSON.stringify(Object.fromEntries(ws))}`);
    assert.deepEqual(faults(overUdp), [], `seed ${seed}, over UDP: ${JSON.stringify(Object.fromEntries(overUdp))}`);
    assert.equal(registrations, 20);
    const answered = (m: Map<number, number>) => [...m.values()].reduce((a, b) => a + b, 0);
    assert.ok(answered(ws) > 1500 && answered(overUdp) > 600, `most of the fuzz was answered: ${answered(ws)} over WebSocket, ${answered(overUdp)} over UDP`);
    assert.equal(good.closed, false, 'the good client’s flow is still open');
    console.log(`answered over WebSocket ${JSON.stringify(Object.fromEntries(ws))}; over UDP ${JSON.stringify(Object.fromEntries(overUdp))}`);

    // Timer H and J (64*T1) run out, and every retransmission the fuzz's unacknowledged answers drew with them.
    for (let t = 0; t < 64 * T1 + 2000; t += T1) clock.advance(T1);
    await waitFor('every transaction ended', () => {
      const p = tg.gw.sip.pending;
      return p.server === 0 && p.client === 0 && p.awaitingAck === 0;
    }, 5000).catch(() => assert.deepEqual(tg.gw.sip.pending, { server: 0, client: 0, awaitingAck: 0 }));
    assert.equal(tg.gw.sipCalls.dialogs, 0, 'no dialog was left by the fuzz');
    assert.equal(tg.gw.calls.size, 0, 'no call was started by the fuzz');
    // The good client is still served after it all.
    assert.equal((await good.register(ALICE.user, ALICE.password, DOMAIN)).status, 200);
    await fuzzer.close();
    await good.close();
  });
});
