import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeUdpPort, waitFor } from './gateway.js';

export interface Coturn {
  port: number;
  secret: string;
  stop(): Promise<void>;
}

/** Debian's coturn on loopback with the TURN REST API secret (`use-auth-secret`). */
export async function startCoturn(): Promise<Coturn> {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-coturn-'));
  const port = await freeUdpPort();
  const relayBase = 40000 + (port % 20000);
  const secret = 'coturn-test-secret-' + port;
  const log = join(dir, 'turn.log');
  const proc: ChildProcess = spawn(
    'turnserver',
    [
      '-n',
      '--listening-ip=127.0.0.1',
      '--relay-ip=127.0.0.1',
      `--listening-port=${port}`,
      `--min-port=${relayBase}`,
      `--max-port=${relayBase + 50}`,
      '--use-auth-secret',
      `--static-auth-secret=${secret}`,
      '--realm=voxgate.test',
      '--no-tls',
      '--no-dtls',
      '--no-cli',
      '--allow-loopback-peers',
      '--fingerprint',
      `--log-file=${log}`,
      '--simple-log',
      '--no-stdout-log',
      `--pidfile=${join(dir, 'turn.pid')}`,
    ],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  await waitFor('coturn to listen', () => {
    try {
      return /listener opened on : 127\.0\.0\.1/.test(readFileSync(log, 'utf8')) || /Total General servers/.test(readFileSync(log, 'utf8'));
    } catch {
      return false;
    }
  });
  return {
    port,
    secret,
    async stop() {
      proc.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
