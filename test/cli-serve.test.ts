import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { publishConnected } from './helpers/ndc-publisher.js';
import { freeUdpPort, waitFor } from './helpers/gateway.js';



const CLI = ['--import', import.meta.resolve('tsx'), fileURLToPath(new URL('../src/cli/main.ts', import.meta.url))];

function run(args: string[], cwd: string, env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [...CLI, ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // The JSON log goes to stdout: kept, so a failure can show what the gateway said.
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, exited, stderr: () => stderr, stdout: () => stdout };
}

test('`voxgate serve` with no configuration prints a dev token that publishes; SIGTERM drains and exits 0', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-cli-'));
  let started: ReturnType<typeof run> | undefined;
  try {
    const udp = await freeUdpPort();
    const p = (started = run(['serve', '--http-port', '0', '--udp-port', String(udp)], dir, { VOXGATE_CONFIG: '' }));
    // No config file: defaults, a development token, and the audit log in the working directory.
    const banner = await waitFor('the start-up banner', () => /listening on (http:\/\/\S+)[\s\S]*token \(source 'dev'\): (\S+)[\s\S]*admin token for \/api\/sessions: (\S+)/.exec(p.stderr()) ?? undefined);
    const [, url, devToken] = banner as unknown as [string, string, string];
    // http.port 0 picked a free port; the banner names it.
    assert.match(url!, /^http:\/\/127\.0\.0\.1:\d+$/);
    const pub = await publishConnected(`${url}/whip`, devToken!).catch((err: Error) => {
      // The gateway's own log says why (it is a child process: nothing else would show it).
      throw new Error(`${err.message}\n--- voxgate stderr ---\n${p.stderr().slice(-2000)}\n--- voxgate log ---\n${p.stdout().slice(-4000)}`);
    });
    p.child.kill('SIGTERM');
    assert.equal(await p.exited, 0);
    pub.close();
    const audit = readFileSync(join(dir, 'voxgate-audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; reason?: string; session?: string });
    const id = pub.location!.split('/').pop();
    assert.ok(audit.some((r) => r.action === 'session.ended' && r.reason === 'shutdown' && r.session === id), 'the drained session is audited as ended by shutdown');
  } finally {
    // A failed assertion must not leave the gateway running.
    if (started && started.child.exitCode === null) started.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a bad configuration file exits 2 naming the field', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-cli-'));
  try {
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ http: { port: 99999 }, sources: [{ name: 'x', token: 'short' }] }));
    const p = run(['serve', '--config', file], dir);
    assert.equal(await p.exited, 2);
    assert.match(p.stderr(), /http\.port: /);
    assert.match(p.stderr(), /sources\.0\.token: tokens must be at least 16 characters/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
