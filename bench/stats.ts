import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** The p-th percentile of xs (nearest rank). */
export function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

/** utime+stime of a process, CPU-seconds (Linux /proc, clock ticks of 1/100 s). */
export function procCpu(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** A positive whole number from the environment (a bench's size), or the default. */
export function envInt(name: string, fallback: number): number {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer, got ${process.env[name]}`);
  return v;
}

/** The next IPC message of `type` from a load process (after sending it `cmd`, if any); rejects after `ms`. */
export function nextMessage<T>(c: ChildProcess, type: string, ms: number, cmd?: object): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${type}`)), ms);
    const on = (m: { type: string }) => {
      if (m.type !== type) return;
      clearTimeout(t);
      c.off('message', on);
      resolve(m as T);
    };
    c.on('message', on);
    if (cmd) c.send(cmd);
  });
}
