import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { stirCommand } from './stir.js';

const dir = mkdtempSync(join(tmpdir(), 'voxgate-stir-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await stirCommand(argv, { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

test('voxgate stir: keygen makes a root and a signer; sign prints an Identity header; verify prints each check and exits 0 only when all pass', async () => {
  assert.equal((await run('keygen', '--dir', dir)).code, 0);
  const signed = await run('sign', '--key', join(dir, 'signer.key'), '--x5u', 'https://certs.example/sp.pem', '--orig', '+15551230000', '--dest', '+15557654321', '--attest', 'A');
  assert.equal(signed.code, 0, signed.err);
  const identity = signed.out.trim();
  assert.match(identity, /^[\w-]+\.[\w-]+\.[\w-]+;info=<https:\/\/certs\.example\/sp\.pem>;alg=ES256;ppt=shaken$/);
  const ok = await run('verify', '--identity', identity, '--orig', '+15551230000', '--dest', '+15557654321', '--cert', join(dir, 'signer.pem'));
  assert.equal(ok.code, 0, ok.out);
  assert.match(ok.out, /^ok {5}signature /m);
  assert.match(ok.out, /^TN-Validation-Passed$/m);
  const bad = await run('verify', '--identity', identity, '--orig', '+15550000000', '--dest', '+15557654321', '--cert', join(dir, 'signer.pem'));
  assert.equal(bad.code, 1);
  assert.match(bad.out, /^FAILED orig {6}orig 15551230000 vs presented 15550000000$/m);
  assert.match(bad.out, /TN-Validation-Failed \(enforce mode would answer Invalid Identity Header/);
  assert.equal((await run('sign', '--key', join(dir, 'signer.key'))).code, 2, 'missing arguments: usage');
});
