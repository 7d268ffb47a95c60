import assert from 'node:assert/strict';
import { test } from 'node:test';
import { transition } from './state.js';

test('a move the table allows returns the new state; any other throws, naming the machine and the move', () => {
  const moves = { idle: ['busy'], busy: ['idle', 'done'], done: [] } as const satisfies Record<string, readonly string[]>;
  type S = keyof typeof moves;
  assert.equal(transition<S>(moves, 'idle', 'busy', 'worker'), 'busy');
  assert.throws(() => transition<S>(moves, 'done', 'idle', 'worker'), /worker: illegal transition done -> idle/);
  assert.throws(() => transition<S>(moves, 'idle', 'done', 'worker'), /idle -> done/);
});
