import type { ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { rmSync } from 'node:fs';

/**
 * What every test harness shares, without importing the gateway (src/): the peer harnesses
 * (baresip, SIPp) load on their own.
 */

/**
 * A UDP port free on 127.0.0.1 now, in 30000-31999: below the kernel's ephemeral range
 * (32768+), above the default sip.rtp range, clear of the e2e tests' own RTP ranges (32000+).
 * A port-0 socket opened meanwhile (a WebRTC client gathering, a peer) cannot take it before
 * the gateway binds it: libdatachannel binds the media port only at the first call, and a port
 * taken by then failed every call of that gateway with a 500 (agent-twilio, once in CI).
 */
export async function freeUdpPort(): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const port = 30_000 + Math.floor(Math.random() * 2_000);
    const s = createSocket('udp4');
    const ok = await new Promise<boolean>((r) => {
      s.once('error', () => r(false));
      s.bind(port, '127.0.0.1', () => r(true));
    });
    await new Promise<void>((r) => s.close(() => r()));
    if (ok) return port;
  }
  throw new Error('no free UDP port in 30000-31999');
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

/** A free TCP port on loopback, chosen by the OS. */
export async function freeTcpPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const addr = srv.address();
  await new Promise<void>((r) => srv.close(() => r()));
  if (addr === null || typeof addr === 'string') throw new Error('no TCP port');
  return addr.port;
}
