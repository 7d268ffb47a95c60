import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TypedEmitter } from './events.js';

class Emitter extends TypedEmitter<{ tick: [n: number]; done: [] }> {
  fire(n: number): void {
    this.emit('tick', n);
  }
  clear(): void {
    this.removeAllListeners();
  }
}

test('listeners run in order; once runs once; off removes either kind', () => {
  const e = new Emitter();
  const seen: string[] = [];
  const a = (n: number) => seen.push(`a${n}`);
  const b = (n: number) => seen.push(`b${n}`);
  e.on('tick', a).once('tick', b);
  e.fire(1);
  e.fire(2);
  assert.deepEqual(seen, ['a1', 'b1', 'a2']);
  e.once('tick', b);
  e.off('tick', b).off('tick', a);
  e.fire(3);
  assert.deepEqual(seen, ['a1', 'b1', 'a2']);
});

test('an emit calls the listeners there were when it began, whatever they add or remove', () => {
  const e = new Emitter();
  const seen: string[] = [];
  const late = () => seen.push('late');
  const second = () => seen.push('second');
  e.on('tick', () => {
    seen.push('first');
    e.off('tick', second);
    e.on('tick', late);
  });
  e.on('tick', second);
  e.fire(1);
  assert.deepEqual(seen, ['first', 'second']);
  seen.length = 0;
  e.fire(2);
  assert.deepEqual(seen, ['first', 'late']);
});

test('a listener that throws is reported and the others still run', () => {
  const e = new Emitter();
  const reported: string[] = [];
  const saved = TypedEmitter.onListenerError;
  TypedEmitter.onListenerError = (event, err) => reported.push(`${event}: ${(err as Error).message}`);
  try {
    let ran = false;
    e.on('tick', () => {
      throw new Error('boom');
    });
    e.on('tick', () => (ran = true));
    e.fire(1);
    assert.equal(ran, true);
    assert.deepEqual(reported, ['tick: boom']);
    e.clear();
    e.fire(2);
    assert.deepEqual(reported, ['tick: boom']);
  } finally {
    TypedEmitter.onListenerError = saved;
  }
});
