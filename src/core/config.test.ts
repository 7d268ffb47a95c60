import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig, parseConfig } from './config.js';

test('an empty configuration gives the documented defaults', () => {
  const c = parseConfig({});
  assert.deepEqual([c.http.host, c.http.port, c.media.udpPort, c.idleTimeoutSeconds, c.limits.maxSessions], ['127.0.0.1', 8080, 50000, 60, 1000]);
});

test('every problem names its field and what is wrong', () => {
  try {
    parseConfig({ http: { port: 'eighty' }, sources: [{ name: 'a b', token: 'short' }, { name: 'x', token: '0123456789abcdef', codecs: ['mp3'] }], iceServers: [{ urls: 'http://x' }], bogus: 1 });
    assert.fail('accepted');
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    const text = e.problems.join('\n');
    assert.match(text, /^http\.port: .*expected number/m);
    assert.match(text, /^sources\.0\.name: use letters/m);
    assert.match(text, /^sources\.0\.token: tokens must be at least 16 characters/m);
    assert.match(text, /^sources\.1\.codecs\.0: /m);
    assert.match(text, /^iceServers\.0\.urls: each url must be a stun:/m);
    assert.match(text, /^\(root\): .*bogus/m);
  }
});

test('duplicate source names are refused', () => {
  assert.throws(() => parseConfig({ sources: [{ name: 'a', token: '0123456789abcdef' }, { name: 'a', token: 'fedcba9876543210' }] }), /sources\.1\.name: duplicate/);
});

test('flags override the file; a bad file says what is wrong with it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-config-'));
  try {
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ http: { port: 9000, host: '0.0.0.0' }, media: { udpPort: 40000 } }));
    const c = loadConfig(file, { httpPort: 9100, udpPort: 40100 });
    assert.deepEqual([c.http.host, c.http.port, c.media.udpPort], ['0.0.0.0', 9100, 40100]);
    writeFileSync(file, '{ not json');
    assert.throws(() => loadConfig(file), /not valid JSON/);
    assert.throws(() => loadConfig(join(dir, 'missing.json')), /cannot read the file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('cluster: a node id, NATS servers and where this node is reached; each problem names its field', () => {
  const ok = parseConfig({ cluster: { nodeId: 'node-a', nats: { servers: ['nats://127.0.0.1:4222', 'tls://nats.example:4443'] }, publicUrl: 'https://node-a.example' } });
  assert.deepEqual([ok.cluster?.nodeId, ok.cluster?.nats.prefix, ok.cluster?.publicUrl], ['node-a', 'voxgate', 'https://node-a.example']);
  assert.equal(parseConfig({}).cluster, undefined, 'no cluster: one node, in memory');
  const problems = (input: unknown) => {
    try {
      parseConfig(input);
      return '';
    } catch (e) {
      return (e as ConfigError).problems.join('\n');
    }
  };
  assert.match(problems({ cluster: { nodeId: 'node a', nats: { servers: ['nats://x:1'] }, publicUrl: 'https://a.example' } }), /^cluster\.nodeId: letters, digits/m);
  assert.match(problems({ cluster: { nodeId: 'a', nats: { servers: [] }, publicUrl: 'https://a.example' } }), /^cluster\.nats\.servers: /m);
  assert.match(problems({ cluster: { nodeId: 'a', nats: { servers: ['http://x:1'] }, publicUrl: 'https://a.example' } }), /^cluster\.nats\.servers\.0: nats:\/\/host:port/m);
  assert.match(problems({ cluster: { nodeId: 'a', nats: { servers: ['nats://x:1'], user: 'u' }, publicUrl: 'https://a.example' } }), /^cluster\.nats\.password: user and password go together/m);
  assert.match(problems({ publicUrl: 'https://lb.example', cluster: { nodeId: 'a', nats: { servers: ['nats://x:1'] } } }), /^cluster\.publicUrl: /m, 'the node\'s own URL, not the load balancer\'s');
  assert.equal(parseConfig({ redirect: { leastLoaded: true }, cluster: { nodeId: 'a', nats: { servers: ['nats://x:1'] }, publicUrl: 'https://a.example' } }).redirect?.leastLoaded, true);
  assert.match(problems({ redirect: { leastLoaded: true } }), /^redirect\.leastLoaded: picks among a fleet/m);
  assert.match(problems({ redirect: {} }), /^redirect: give targets/m);
});
