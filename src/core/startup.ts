import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { StartupError } from './config.js';

/**
 * Start-up failures as one line each: the config field, its value, what went wrong in words
 * and what to do. A raw `ENOENT`/`EADDRINUSE` stack trace names none of those.
 */

function code(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

/** A file the config names could not be read or opened. */
export function fileProblem(field: string, path: string, err: unknown, what: string): StartupError {
  const c = code(err);
  const why =
    c === 'ENOENT' ? `${path} does not exist` :
    c === 'EACCES' || c === 'EPERM' ? `this process (uid ${process.getuid?.() ?? '?'}) may not open ${path}` :
    c === 'EISDIR' ? `${path} is a directory, not a file` :
    c === 'ENOTDIR' ? `a part of ${path} is not a directory` :
    (err as Error).message;
  return new StartupError(`${field}: cannot read ${what} '${path}': ${why}; point ${field} at a readable file`);
}

/** Reads a PEM (or any) file the config names; a problem is a ConfigError naming the field. */
export function readConfigFile(path: string, field: string, what = 'the file'): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw fileProblem(field, path, err, what);
  }
}

/** The audit log could not be opened for appending. */
export function auditPathProblem(path: string, err: unknown): StartupError {
  const c = code(err);
  const dir = dirname(path);
  const why =
    c === 'ENOENT' ? `the directory ${dir} does not exist; create it (mkdir -p ${dir}) or set audit.path to a file in a directory that exists` :
    c === 'EACCES' || c === 'EPERM' ? `this process (uid ${process.getuid?.() ?? '?'}) may not write there; give it the directory or set audit.path to a writable file` :
    c === 'EISDIR' ? 'that is a directory; set audit.path to a file in it (e.g. audit.jsonl)' :
    (err as Error).message;
  return new StartupError(`audit.path: cannot open '${path}' for appending: ${why}`);
}

/** A port the config names could not be bound. */
export function portProblem(field: string, proto: 'TCP' | 'UDP', host: string, port: number, err: unknown, flag?: string): StartupError {
  const c = code(err);
  const alt = flag ? ` (${flag} or ${field})` : ` (${field})`;
  const why =
    c === 'EADDRINUSE' ? `${proto} port ${port} on ${host} is already in use (another voxgate?); stop what holds it or choose another port${alt}` :
    c === 'EACCES' ? `${proto} port ${port} needs privileges this process lacks; use a port above 1023${alt}` :
    c === 'EADDRNOTAVAIL' ? `${host} is not an address of this machine; use one of its addresses or 0.0.0.0` :
    `cannot bind ${proto} ${host}:${port}: ${(err as Error).message}`;
  return new StartupError(`${field}: ${why}`);
}
