import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { trackPeer } from './peers.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface VoxgateProcess {
  child: ChildProcess;
  /** The ready line's first capture group (the URL it listens on, the worker's id). */
  ready: string;
  /** The end of its stderr, for a failure message. */
  stderr(): string;
}

/**
 * The `voxgate` command as an operator runs it (`src/cli/main.ts` through tsx), killed when the
 * test process exits; resolves once its stderr shows `ready`, rejects if it exits first.
 */
export async function runVoxgate(args: string[], opts: { dir: string; ready: RegExp; what: string; timeoutMs?: number; env?: NodeJS.ProcessEnv }): Promise<VoxgateProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], env: opts.env ?? process.env });
  trackPeer(child, opts.dir);
  let err = '';
  const ms = opts.timeoutMs ?? 60_000;
  const ready = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${opts.what} did not start within ${ms / 1000} s:\n${err.slice(-2000)}`)), ms);
    child.stderr!.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-20_000);
      const m = opts.ready.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] ?? m[0]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${opts.what} exited (${code}) before it was ready:\n${err.slice(-2000)}`));
    });
  });
  return { child, ready, stderr: () => err.slice(-4000) };
}

/** `voxgate serve --config <dir>/<name>.json`; `ready` is the URL it listens on. */
export function serveNode(dir: string, config: object, name = 'node-a'): Promise<VoxgateProcess> {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(config));
  return runVoxgate(['serve', '--config', file], { dir, ready: /voxgate listening on (\S+)\s/, what: name });
}
