import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from '../core/logger.js';
import { AgentRegistry } from './registry.js';

const registry = () => new AgentRegistry('echo', createLogger('silent'));

test("the echo runs at the caller's codec's own rate (a PCMU phone at 8 kHz: nothing resampled), 48 kHz when it is not told", () => {
  const r = registry();
  assert.equal(r.resolve('echo', { naturalRate: 8000 }).sampleRate, 8000);
  assert.equal(r.resolve('echo', { naturalRate: 16000 }).sampleRate, 16000);
  assert.equal(r.resolve('echo', { naturalRate: 48000 }).sampleRate, 48000);
  assert.equal(r.resolve('echo').sampleRate, 48000);
  assert.equal(r.resolve(undefined, { naturalRate: 8000 }).sampleRate, 8000, 'the default agent gets the hint too');
});

test('{ type: "echo", sampleRate } fixes the rate, as a real agent has one; a rate agents cannot have is refused with the field named', () => {
  const r = registry();
  assert.equal(r.resolve({ type: 'echo', sampleRate: 16000 }, { naturalRate: 8000 }).sampleRate, 16000);
  assert.equal(r.resolve({ type: 'echo' }, { naturalRate: 8000 }).sampleRate, 8000);
  assert.deepEqual(r.problems([['sip.trunks.0.inbound.agent', { type: 'echo', sampleRate: 11025 }]]), ['sip.trunks.0.inbound.agent: sampleRate: 8000, 16000, 24000 or 48000']);
});

test('a { type: "worker" } agent without `cluster` is refused at start-up, saying what to configure', () => {
  assert.deepEqual(registry().problems([['sources.0.agent', { type: 'worker', name: 'support' }]]), [
    "sources.0.agent: an agent of type 'worker' runs on agent workers over NATS: configure `cluster` (cluster.nats.servers)",
  ]);
});
