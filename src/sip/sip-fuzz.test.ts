/**
 * A SIP fuzz run (issue 19) into the stack, on a fake clock so Timer H and J can run out: thousands
 * of mutated requests of every method (headers lost, doubled, given junk and bad %-escapes, start
 * lines and lengths broken, bytes flipped) while a well-behaved client re-registers throughout.
 * No answer is a 5xx but 501 (an unknown method) or 503, the good client never fails, and once the timers have run no
 * transaction is left in the tables.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FarEnd, registerWithDigest, settle, testStack } from '../testing/sip.js';
import { T1 } from './transaction/transaction.js';

const JUNK = ['', ' ', '%', '%zz', '%E0%A4%A', '<', '>', '"', ';', ',', '\t', 'sip:', 'sip:%@voxgate.test', '<sip:%@voxgate.test>', '-1', '4294967296', 'x'.repeat(2000), '\u00ed', 'z9hG4bK'];
const METHODS = ['REGISTER', 'INVITE', 'OPTIONS', 'BYE', 'CANCEL', 'ACK', 'MESSAGE', 'INFO', 'UPDATE', 'REFER', 'NOTIFY', 'PRACK', 'SUBSCRIBE', 'FOO'];

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

function template(method: string, i: number): string[] {
  const sdp = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n';
  return [
    `${method} sip:${method === 'REGISTER' ? '' : 'agent@'}voxgate.test SIP/2.0`,
    `Via: SIP/2.0/WS fuzz.invalid;branch=z9hG4bKfuzz${i}`,
    'Max-Forwards: 70',
    `To: <sip:${method === 'REGISTER' ? 'bob' : 'agent'}@voxgate.test>${i % 5 === 0 ? ';tag=t1' : ''}`,
    `From: <sip:bob@voxgate.test>;tag=f${i}`,
    `Call-ID: fuzz-${i % 50}`,
    `CSeq: ${i} ${method}`,
    'Contact: <sip:bob@fuzz.invalid;transport=ws>',
    ...(method === 'INVITE' ? ['Content-Type: application/sdp', `Content-Length: ${sdp.length}`, '', sdp] : ['Content-Length: 0', '', '']),
  ];
}

function mutate(lines: string[], r: () => number): string {
  const pick = <T>(a: T[]) => a[Math.floor(r() * a.length)]!;
  const out = [...lines];
  const head = out.indexOf('');
  for (let k = 0, n = 1 + Math.floor(r() * 3); k < n; k++) {
    const i = Math.floor(r() * Math.max(1, head));
    const what = Math.floor(r() * 6);
    if (what === 0) out.splice(i, 1);
    else if (what === 1) out.splice(i, 0, out[i]!);
    else if (what === 2) out[i] = out[i]!.replace(/([:;= ])[^:;= ]*$/, (_m, sep: string) => sep + pick(JUNK));
    else if (what === 3) out[i] = out[i]!.replace(/sip:[^@>;\s]*@/, `sip:${pick(JUNK)}@`);
    else if (what === 4) out[i] = out[i]!.slice(0, Math.floor(r() * out[i]!.length));
    else {
      const chars = [...out[i]!];
      chars[Math.floor(r() * chars.length)] = String.fromCharCode(Math.floor(r() * 256));
      out[i] = chars.join('');
    }
  }
  return out.join('\r\n');
}

test('SIP fuzz: 5,000 mutated requests beside a client that re-registers throughout; no 5xx but 501 and 503, and no transaction left once the timers have run', async () => {
  const seed = Number(process.env.FUZZ_SEED ?? 7);
  const r = rng(seed);
  const stack = testStack({ protocol: 'WS' });
  const fuzzer = new FarEnd(stack.transport.connect(), 'bob');
  const good = new FarEnd(stack.transport.connect(), 'alice');
  const statuses = new Map<number, number>();
  let registrations = 0;
  // Read from the status line: an answer echoes the fuzz's broken headers, which need not parse.
  const count = () => {
    for (const text of fuzzer.flow.take()) {
      const status = /^SIP\/2\.0 (\d{3}) /.exec(text)?.[1];
      assert.ok(status, `every reply is a response: ${text.slice(0, 80)}`);
      statuses.set(Number(status), (statuses.get(Number(status)) ?? 0) + 1);
    }
  };
  for (let i = 0; i < 5000; i++) {
    fuzzer.flow.deliver(mutate(template(METHODS[Math.floor(r() * METHODS.length)]!, i), r));
    if (i % 250 === 0) {
      await registerWithDigest(good, 'alice', 'alice-secret'); // throws unless 200
      registrations++;
    }
    if (i % 100 === 0) {
      count();
      await settle();
    }
  }
  count();
  // 501 is RFC 3261 §8.2.1's answer to a method we do not know (FOO), 503 a limit: neither is a fault.
  const bad = [...statuses].filter(([s]) => s >= 500 && s !== 501 && s !== 503);
  assert.deepEqual(bad, [], `seed ${seed}: ${JSON.stringify(Object.fromEntries(statuses))}`);
  assert.equal(registrations, 20);
  assert.ok([...statuses.values()].reduce((a, b) => a + b, 0) > 2000, 'most of the fuzz was answered');
  // Timer H and J (64*T1) run out: every transaction the fuzz made has ended.
  stack.clock.advance(64 * T1 + 1000);
  await settle();
  assert.deepEqual(stack.sip.pending, { server: 0, client: 0, awaitingAck: 0 });
  stack.close();
});
