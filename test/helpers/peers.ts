import type { ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { rmSync } from 'node:fs';

/**
 * What every test harness shares, without importing the gateway (src/): the peer harnesses
 * (baresip, SIPp) load on their own.
 */

/** A UDP port on 127.0.0.1 that was free a moment ago (the OS picked it). */
export async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Resolves when `check` returns a value, polling an observable state; rejects after `ms`. */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Peer processes still running and their temp dirs: killed and removed if the test process exits
 * without stopping them (a failed assertion before the cleanup, a crash), so no peer outlives its test.
 */
const live = new Map<ChildProcess, string>();
let exitHook = false;

export function trackPeer(proc: ChildProcess, dir: string): void {
  live.set(proc, dir);
  proc.once('exit', () => live.delete(proc));
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const [p, d] of live) {
      p.kill('SIGKILL');
      rmSync(d, { recursive: true, force: true });
    }
  });
}
