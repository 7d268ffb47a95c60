import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../core/clock.js';
import { RateLimiter } from './rate-limit.js';

test('a burst is allowed, then one request per 1/rate seconds, per address', () => {
  const clock = new FakeClock();
  const rl = new RateLimiter(2, 3, () => clock.now());
  assert.deepEqual([rl.take('a'), rl.take('a'), rl.take('a')], [0, 0, 0]);
  assert.equal(rl.take('a'), 1);
  assert.equal(rl.take('b'), 0, 'other addresses have their own bucket');
  clock.advance(500);
  assert.equal(rl.take('a'), 0);
  assert.ok(rl.take('a') > 0);
});
