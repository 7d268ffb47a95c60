import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createSocket } from 'node:dgram';
import { X509Certificate } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { publishConnected } from './helpers/ndc-publisher.js';
import { freeUdpPort, waitFor } from './helpers/gateway.js';
import { freeTcpPort } from './helpers/peers.js';



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
    const banner = await waitFor('the start-up banner', () => /listening on (http:\/\/\S+)[\s\S]*token \(source 'dev'\): (\S+)[\s\S]*admin token \(the console, \/api\/sessions\): (\S+)/.exec(p.stderr()) ?? undefined);
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

/** `voxgate serve --config` that must not start: its exit code and the lines it printed (no log lines). */
async function refusedStart(dir: string, config: object, extra: string[] = []): Promise<{ code: number | null; lines: string[]; stdout: string }> {
  const file = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify({ log: { level: 'warn' }, ...config }));
  const p = run(['serve', '--config', file, ...extra], dir);
  const code = await p.exited;
  assert.doesNotMatch(p.stderr(), /listening/, 'nothing listens after a failed start-up check');
  return { code, lines: p.stderr().split('\n').filter((l) => l !== '' && !l.startsWith('npm warn')), stdout: p.stdout() };
}

test('start-up checks: a port taken, a TLS file or the audit directory missing, each one line naming the field and exit 2', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const base = () => ({ audit: { path: join(dir, 'audit.jsonl') } });

  await t.test('the media UDP port held by another process', async () => {
    const udpPort = await freeUdpPort();
    const holder = createSocket('udp4');
    await new Promise<void>((r) => holder.bind(udpPort, '127.0.0.1', r));
    try {
      const r = await refusedStart(dir, { ...base(), http: { port: 0 }, media: { udpPort } });
      assert.equal(r.code, 2);
      assert.deepEqual(r.lines, [`voxgate: media.udpPort: UDP port ${udpPort} on 127.0.0.1 is already in use (another voxgate?); stop what holds it or choose another port (--udp-port or media.udpPort)`]);
    } finally {
      holder.close();
    }
  });

  await t.test("a second gateway on the first one's media port, while the first has no call", async () => {
    const udpPort = await freeUdpPort();
    const first = run(['serve', '--http-port', '0', '--udp-port', String(udpPort)], dir, { VOXGATE_CONFIG: '' });
    try {
      await waitFor('the first gateway', () => (/listening on /.test(first.stderr()) ? true : undefined));
      const r = await refusedStart(dir, { ...base(), http: { port: 0 }, media: { udpPort } });
      assert.equal(r.code, 2);
      assert.match(r.lines.join('\n'), new RegExp(`^voxgate: media\\.udpPort: UDP port ${udpPort} on 127\\.0\\.0\\.1 is already in use`));
      assert.equal(r.lines.length, 1);
    } finally {
      first.child.kill('SIGKILL');
    }
  });

  await t.test('the HTTP port taken', async () => {
    const port = await freeTcpPort();
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(port, '127.0.0.1', r));
    try {
      const r = await refusedStart(dir, { ...base(), http: { port }, media: { udpPort: await freeUdpPort() } });
      assert.equal(r.code, 2);
      assert.deepEqual(r.lines, [`voxgate: http.port: TCP port ${port} on 127.0.0.1 is already in use (another voxgate?); stop what holds it or choose another port (--http-port or http.port)`]);
    } finally {
      srv.close();
    }
  });

  await t.test('a TLS certificate file missing', async () => {
    const r = await refusedStart(dir, { ...base(), http: { port: 0, tls: { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') } }, media: { udpPort: await freeUdpPort() } });
    assert.equal(r.code, 2);
    assert.deepEqual(r.lines, [`voxgate: http.tls.cert: cannot read the certificate '${join(dir, 'cert.pem')}': ${join(dir, 'cert.pem')} does not exist; point http.tls.cert at a readable file`]);
  });

  await t.test('the audit directory missing', async () => {
    const path = join(dir, 'no-such-dir', 'audit.jsonl');
    const r = await refusedStart(dir, { audit: { path }, http: { port: 0 }, media: { udpPort: await freeUdpPort() } });
    assert.equal(r.code, 2);
    assert.deepEqual(r.lines, [`voxgate: audit.path: cannot open '${path}' for appending: the directory ${join(dir, 'no-such-dir')} does not exist; create it (mkdir -p ${join(dir, 'no-such-dir')}) or set audit.path to a file in a directory that exists`]);
  });
});

test('SIGTERM to `npm start` stops the gateway itself, not only npm', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-npm-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'voxgate.json');
  writeFileSync(config, JSON.stringify({ http: { port: 0 }, media: { udpPort: await freeUdpPort() }, audit: { path: join(dir, 'audit.jsonl') } }));
  const root = fileURLToPath(new URL('..', import.meta.url));
  const npm = spawn('npm', ['start'], { cwd: root, env: { ...process.env, VOXGATE_CONFIG: config }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  npm.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  npm.stdout.resume();
  const exited = new Promise<number | null>((r) => npm.once('exit', (code) => r(code)));
  try {
    const url = await waitFor('the banner through npm', () => /listening on (http:\/\/\S+)/.exec(stderr)?.[1], 30_000);
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
    npm.kill('SIGTERM');
    assert.equal(await exited, 0, 'npm exits 0 once the gateway has drained');
    await assert.rejects(fetch(`${url}/healthz`), 'nothing serves after SIGTERM');
  } finally {
    if (npm.exitCode === null) npm.kill('SIGKILL');
  }
});

test('the systemd unit in deploy/ passes `systemd-analyze verify` without a warning', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-unit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // Checked as installed: node where this machine has it (the unit says /usr/bin/node, Debian's).
  const unit = readFileSync(fileURLToPath(new URL('../deploy/voxgate.service', import.meta.url)), 'utf8');
  assert.match(unit, /^ExecStart=\/usr\/bin\/node .*\/dist\/cli\/main\.js serve$/m);
  assert.match(unit, /^KillSignal=SIGTERM$/m);
  writeFileSync(join(dir, 'voxgate.service'), unit.replace('/usr/bin/node', process.execPath));
  const verify = spawn('systemd-analyze', ['verify', join(dir, 'voxgate.service')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  verify.stdout.on('data', (d: Buffer) => (out += d.toString()));
  verify.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((r) => verify.once('exit', (c) => r(c)));
  assert.equal(code, 0, out);
  assert.equal(out.trim(), '', 'no warnings');
});

test('--version, --help and serve --help answer on stdout and exit 0; an unknown command exits 2', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-cli-'));
  try {
    const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8')) as { version: string };
    const v = run(['--version'], dir);
    assert.equal(await v.exited, 0);
    assert.equal(v.stdout().trim(), `voxgate ${pkg.version} (Node.js ${process.version})`);
    const help = run(['--help'], dir);
    assert.equal(await help.exited, 0);
    assert.match(help.stdout(), /^usage:\n {2}voxgate serve /m);
    const serveHelp = run(['serve', '--help'], dir);
    assert.equal(await serveHelp.exited, 0);
    for (const flag of ['--config', '--host', '--http-port', '--udp-port', '--dev-tls']) assert.match(serveHelp.stdout(), new RegExp(`^ {2}${flag}\\b`, 'm'), flag);
    const unknown = run(['frobnicate'], dir);
    assert.equal(await unknown.exited, 2);
    assert.match(unknown.stderr(), /usage:/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--dev-tls serves HTTPS with a certificate for this machine, prints its fingerprint, and reuses it next time', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-devtls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const start = async () => {
    const p = run(['serve', '--dev-tls', '--http-port', '0', '--udp-port', String(await freeUdpPort())], dir, { VOXGATE_CONFIG: '' });
    const m = await waitFor('the banner', () => /listening on (https:\/\/\S+)[\s\S]*development certificate \((made now|reused)\), SHA-256 ([0-9A-F:]{95})/.exec(p.stderr()) ?? undefined, 20_000);
    return { p, url: m[1]!, how: m[2]!, fingerprint: m[3]! };
  };
  const first = await start();
  try {
    assert.equal(first.how, 'made now');
    assert.match(first.p.stderr(), /demo page: https:\/\/\S+\/ {3}player: https:\/\/\S+\/player {3}console: https:\/\/\S+\/console/);
    assert.match(first.p.stderr(), /SIP over WebSocket: wss:\/\/\S+\/sip {2}\(domain voxgate\.local, 0 users\)/);
    const certPem = readFileSync(join(dir, 'voxgate-dev-tls', 'cert.pem'));
    const cert = new X509Certificate(certPem);
    assert.equal(cert.fingerprint256, first.fingerprint, 'the banner names the certificate served');
    assert.match(cert.subjectAltName ?? '', /DNS:localhost/);
    assert.match(cert.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
    // A client that trusts exactly that certificate reaches the page over TLS, by name and by address.
    for (const host of ['localhost', '127.0.0.1']) {
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpsRequest({ host: '127.0.0.1', servername: host === 'localhost' ? host : undefined, port: new URL(first.url).port, path: '/', ca: certPem, checkServerIdentity: (_h, c) => (host === 'localhost' ? undefined : c.subjectaltname?.includes('IP Address:127.0.0.1') ? undefined : new Error('no IP SAN')) }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        });
        req.on('error', reject);
        req.end();
      });
      assert.equal(status, 200, host);
    }
  } finally {
    first.p.child.kill('SIGTERM');
    await first.p.exited;
  }
  const second = await start();
  try {
    assert.equal(second.how, 'reused');
    assert.equal(second.fingerprint, first.fingerprint);
  } finally {
    second.p.child.kill('SIGTERM');
    await second.p.exited;
  }
});
