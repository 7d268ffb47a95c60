import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, parseConfig } from '../../core/config.js';
import { createLogger } from '../../core/logger.js';
import { openCluster } from './cluster.js';

test('a cluster whose NATS cannot be reached stops start-up with one line naming cluster.nats.servers', async () => {
  const cfg = parseConfig({ cluster: { nodeId: 'node-a', nats: { servers: ['nats://127.0.0.1:1'] }, publicUrl: 'https://a.example' } }).cluster!;
  await assert.rejects(openCluster(cfg, 'https://a.example', { now: () => Date.now(), log: createLogger('silent') }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.problems[0]!, /^cluster\.nats\.servers: cannot connect to nats:\/\/127\.0\.0\.1:1 \(.+\); is nats-server running/);
    return true;
  });
});
