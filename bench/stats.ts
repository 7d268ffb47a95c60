import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

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

/**
 * Node's flags from package.json's start script (the young generation's size), so a bench's
 * gateway runs as `npm start` runs it. Throws if the script no longer has the shape read here:
 * a bench that silently dropped them measured another V8 configuration.
 */
export function startFlags(): string[] {
  const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8')) as { scripts: { start: string } };
  const m = /^(?:exec )?node((?: --\S+)*) dist\/cli\/main\.js/.exec(pkg.scripts.start);
  if (!m) throw new Error(`package.json's start script is not 'node [flags] dist/cli/main.js ...': ${pkg.scripts.start}`);
  return m[1]!.trim().split(' ').filter(Boolean);
}
