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
import { METHODS, mutate, rng, template } from '../testing/sip-fuzz.js';

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
