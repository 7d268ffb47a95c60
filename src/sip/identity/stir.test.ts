import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ConfigError, parseConfig } from '../../core/config.js';
import { loadStirShaken } from './stir.js';

const dir = mkdtempSync(join(tmpdir(), 'voxgate-stir-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems;
  }
  assert.fail('no ConfigError');
}

test('start-up names the field: a trunk signing or verifying without the top-level section, a key file missing or not P-256, an unreadable trust anchor, an http: certificate URL', () => {
  const trunk = (stirShaken: object) => ({ sip: { listen: [{ transport: 'udp' as const, port: 0 }], trunks: [{ name: 'a', outbound: { address: '192.0.2.1' }, stirShaken }] } });
  assert.match(problems(() => parseConfig(trunk({ sign: true }))).join('\n'), /^sip\.trunks\.0\.stirShaken\.sign: signing needs stirShaken\.sign/m);
  assert.match(problems(() => parseConfig(trunk({ verify: true }))).join('\n'), /^sip\.trunks\.0\.stirShaken\.verify: verification needs stirShaken\.verify/m);
  assert.match(problems(() => parseConfig({ stirShaken: { sign: { privateKey: 'k.pem', certificateUrl: 'http://certs.example/sp.pem' } } })).join('\n'), /^stirShaken\.sign\.certificateUrl: an https:\/\/ URL/m);
  const rsa = join(dir, 'rsa.pem');
  writeFileSync(rsa, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const load = (stirShaken: object) => () => loadStirShaken(parseConfig({ stirShaken }).stirShaken);
  assert.match(problems(load({ sign: { privateKey: join(dir, 'none.pem'), certificateUrl: 'https://certs.example/sp.pem' } })).join('\n'), /^stirShaken\.sign\.privateKey: cannot read/m);
  assert.match(problems(load({ sign: { privateKey: rsa, certificateUrl: 'https://certs.example/sp.pem' } })).join('\n'), /^stirShaken\.sign\.privateKey: .* is not an EC P-256 key/m);
  assert.match(problems(load({ verify: { trustAnchors: [join(dir, 'none.pem')] } })).join('\n'), /^stirShaken\.verify\.trustAnchors\.0: cannot read/m);
});
