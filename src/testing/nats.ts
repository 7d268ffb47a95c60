/**
 * Test support (imported by *.test.ts and bench only): Debian's `nats-server -js` on loopback,
 * on a port of its own choosing (`-p -1`), with JetStream storage in a fresh directory, so each
 * test file has a server nobody else writes to.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';

export interface NatsServer {
  /** `nats://127.0.0.1:<port>`. */
  url: string;
  port: number;
  /** The server's stderr so far (its log), for a failure report. */
  log(): string;
  /** SIGKILL, as a crash: JetStream state on disk stays for a restart on the same port. */
  kill(): Promise<void>;
  /** SIGTERM, then the store directory is removed. */
  stop(): Promise<void>;
}

const LISTENING = /Listening for client connections on 127\.0\.0\.1:(\d+)/;

/** Starts `nats-server -js`; resolves once it accepts clients. Extra arguments go last (e.g. `--user`). */
export async function natsServer(extraArgs: string[] = []): Promise<NatsServer> {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-nats-'));
  const child: ChildProcess = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', '-1', '-sd', dir, ...extraArgs], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nats-server did not listen within 10 s:\n${log.slice(-2000)}`)), 10_000);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`nats-server could not start (apt-get install nats-server): ${err.message}`));
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`nats-server exited (${code}) before listening:\n${log.slice(-2000)}`));
      });
      child.stderr!.on('data', (d: Buffer) => {
        log = (log + d.toString()).slice(-50_000);
        const m = LISTENING.exec(log);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
    });
  } catch (err) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const end = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    log: () => log,
    kill: () => end('SIGKILL'),
    async stop() {
      await end('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * One nats-server for a test file (registered as node:test before/after hooks), and connections
 * to it, each its own (as another node's would be), drained when the file ends.
 */
export function natsForTestFile(): { connect(name?: string): Promise<NatsConnection> } {
  // Started at once, so a connect from any hook or test waits for it rather than racing the hooks.
  const starting = natsServer();
  const conns: NatsConnection[] = [];
  before(async () => {
    await starting;
  });
  after(async () => {
    for (const c of conns) if (!c.isClosed()) await c.drain().catch(() => undefined);
    await (await starting.catch(() => undefined))?.stop();
  });
  return {
    async connect(name) {
      const nc = await connect({ servers: (await starting).url, ...(name ? { name } : {}) });
      conns.push(nc);
      return nc;
    },
  };
}
