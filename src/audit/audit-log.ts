import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, existsSync, writeSync, fstatSync, readSync } from 'node:fs';
import type { Clock } from '../core/clock.js';

export interface AuditEntry {
  /** What happened: whip.post, whip.patch, whip.delete, session.timeout, session.failed, ... */
  action: string;
  outcome: 'ok' | 'rejected' | 'error';
  source?: string | null;
  sourceKind?: string | null;
  remote?: string | null;
  session?: string | null;
  status?: number;
  reason?: string;
  [extra: string]: unknown;
}

const GENESIS = '0'.repeat(64);

function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/**
 * Append-only JSONL audit log. Every line carries `prev` (the hash of the line before) and
 * `hash` (of its own content with `prev`), so editing, removing or reordering lines is detected.
 * Writes are synchronous: the record is in the file before the request is answered, and a
 * failed write throws so the caller can refuse the action (nothing unaudited happens).
 */
export class AuditLog {
  #fd: number | undefined;
  #prev = GENESIS;
  #seq = 0;

  constructor(
    readonly path: string,
    private readonly clock: Clock,
  ) {
    // a+: appends always go to the end, and the last record can be read to continue the chain.
    this.#fd = openSync(path, 'a+');
    const last = readLastLine(this.#fd);
    if (last) {
      try {
        const rec = JSON.parse(last) as { hash?: string; seq?: number };
        if (typeof rec.hash === 'string') this.#prev = rec.hash;
        if (typeof rec.seq === 'number') this.#seq = rec.seq;
      } catch {
        // A damaged last line: keep chaining from its raw hash so verify still points at it.
        this.#prev = sha256Hex(last);
      }
    }
  }

  write(entry: AuditEntry): void {
    if (this.#fd === undefined) throw new Error('audit log is closed');
    const body = { seq: this.#seq + 1, time: new Date(this.clock.now()).toISOString(), ...entry, prev: this.#prev };
    const text = JSON.stringify(body);
    const hash = sha256Hex(text);
    // Same as JSON.stringify({ ...body, hash }), without serialising twice.
    const line = `${text.slice(0, -1)},"hash":"${hash}"}\n`;
    writeSync(this.#fd, line);
    this.#seq += 1;
    this.#prev = hash;
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}

function readLastLine(fd: number): string | undefined {
  const size = fstatSync(fd).size;
  if (size === 0) return undefined;
  const len = Math.min(size, 64 * 1024);
  const buf = Buffer.alloc(len);
  readSync(fd, buf, 0, len, size - len);
  const lines = buf.toString('utf8').split('\n').filter((l) => l.length > 0);
  return lines[lines.length - 1];
}

export interface VerifyResult {
  ok: boolean;
  lines: number;
  /** 1-based line number of the first broken record. */
  brokenAt?: number;
  problem?: string;
}

/** Checks the hash chain of an audit file and says where it first breaks. */
export function verifyAuditFile(path: string): VerifyResult {
  if (!existsSync(path)) return { ok: false, lines: 0, brokenAt: 0, problem: `${path} does not exist` };
  const lines = readFileSync(path, 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  let prev = GENESIS;
  for (let i = 0; i < lines.length; i++) {
    const n = i + 1;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(lines[i] as string) as Record<string, unknown>;
    } catch {
      return { ok: false, lines: lines.length, brokenAt: n, problem: 'not valid JSON' };
    }
    const { hash, ...body } = rec;
    if (body.prev !== prev) {
      return { ok: false, lines: lines.length, brokenAt: n, problem: 'prev does not match the hash of the line before (a line was removed, inserted or reordered)' };
    }
    if (hash !== sha256Hex(JSON.stringify(body))) {
      return { ok: false, lines: lines.length, brokenAt: n, problem: 'hash does not match the record (the line was edited)' };
    }
    prev = hash as string;
  }
  return { ok: true, lines: lines.length };
}
