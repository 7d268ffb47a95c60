import { hash } from 'node:crypto';
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
  /** The log's own fields: never part of an entry. */
  seq?: never;
  time?: never;
  prev?: never;
  hash?: never;
  [extra: string]: unknown;
}

const GENESIS = '0'.repeat(64);

function sha256Hex(s: string): string {
  return hash('sha256', s, 'hex');
}

/**
 * Append-only JSONL audit log. Every line carries `prev` (the hash of the line before) and
 * `hash` (of its own content with `prev`), so editing, removing or reordering lines is detected.
 * write() is synchronous: the record is in the file before the request is answered, and a
 * failed write throws so the caller can refuse the action (nothing unaudited happens).
 * append() keeps that promise for hot paths (SIP REGISTER): the caller answers from `done`,
 * after the record is in the file, and all records appended in one turn of the event loop go
 * out in one write (group commit) instead of a write each.
 */
export class AuditLog {
  #fd: number | undefined;
  #prev = GENESIS;
  #seq = 0;
  /** The chain as it is in the file (the batch extends #prev and #seq ahead of it). */
  #written = { prev: GENESIS, seq: 0 };
  #batch: string[] = [];
  #waiting: ((err: Error | undefined) => void)[] = [];
  #scheduled = false;
  /** The last record's time, formatted (a burst of records shares the millisecond). */
  #lastMs = NaN;
  #lastIso = '';
  readonly #taps: ((text: string) => void)[] = [];

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
    this.#written = { prev: this.#prev, seq: this.#seq };
  }

  write(entry: AuditEntry): void {
    if (this.#fd === undefined) throw new Error('audit log is closed');
    // Records appended before this one go first: the file keeps the chain's order.
    this.flush();
    const line = this.#line(entry);
    try {
      writeSync(this.#fd, line);
    } catch (err) {
      this.#rollBack();
      throw err;
    }
    this.#written = { prev: this.#prev, seq: this.#seq };
    this.#tapped(line);
  }

  /** Hands every record, once it is in the file, to `fn` as written (lines, newline-terminated): the fleet's stream. */
  tap(fn: (text: string) => void): void {
    this.#taps.push(fn);
  }

  #tapped(text: string): void {
    for (const t of this.#taps) {
      try {
        t(text);
      } catch {
        // A copy's trouble is the copy's: the file has the record.
      }
    }
  }

  /** Appends a record; `done` runs once it is in the file, or with the error that kept it out. */
  append(entry: AuditEntry, done: (err: Error | undefined) => void): void {
    if (this.#fd === undefined) return done(new Error('audit log is closed'));
    this.#batch.push(this.#line(entry));
    this.#waiting.push(done);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Writes the appended records now, in one write, and tells their callers. */
  flush(): void {
    this.#scheduled = false;
    if (this.#batch.length === 0) return;
    const text = this.#batch.join('');
    const waiting = this.#waiting;
    this.#batch = [];
    this.#waiting = [];
    let error: Error | undefined;
    try {
      if (this.#fd === undefined) throw new Error('audit log is closed');
      writeSync(this.#fd, text);
      this.#written = { prev: this.#prev, seq: this.#seq };
    } catch (err) {
      error = err instanceof Error ? err : new Error(String(err));
      this.#rollBack();
    }
    if (!error) this.#tapped(text);
    for (const done of waiting) done(error);
  }

  close(): void {
    this.flush();
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  /** The next line of the chain (the chain moves on; #rollBack undoes it when the write fails). */
  #line(entry: AuditEntry): string {
    // JSON.stringify({ seq, time, ...entry, prev }) without building that object: the entry is
    // serialised as it is and framed (an entry never has these four names; the type says so).
    const fields = JSON.stringify(entry);
    const now = this.clock.now();
    if (now !== this.#lastMs) {
      this.#lastMs = now;
      this.#lastIso = new Date(now).toISOString();
    }
    const text = `{"seq":${this.#seq + 1},"time":"${this.#lastIso}"${fields.length > 2 ? `,${fields.slice(1, -1)}` : ''},"prev":"${this.#prev}"}`;
    const hash = sha256Hex(text);
    this.#seq += 1;
    this.#prev = hash;
    // Same as JSON.stringify({ ...body, hash }), without serialising twice.
    return `${text.slice(0, -1)},"hash":"${hash}"}\n`;
  }

  #rollBack(): void {
    this.#prev = this.#written.prev;
    this.#seq = this.#written.seq;
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
  const { chains: _chains, ...result } = verifyAuditLines(lines);
  return result;
}

/**
 * Checks a chain given as its lines, in order (a file's, or one node's records from the
 * fleet's stream). `restarts`: a record with seq 1 and the genesis prev may start a new chain
 * (a node whose file was replaced); the result counts them.
 */
export function verifyAuditLines(lines: readonly string[], opts: { restarts?: boolean } = {}): VerifyResult & { chains: number } {
  let prev = GENESIS;
  let chains = lines.length ? 1 : 0;
  for (let i = 0; i < lines.length; i++) {
    const n = i + 1;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(lines[i] as string) as Record<string, unknown>;
    } catch {
      return { ok: false, lines: lines.length, brokenAt: n, problem: 'not valid JSON', chains };
    }
    const { hash, ...body } = rec;
    if (opts.restarts && i > 0 && body.seq === 1 && body.prev === GENESIS) {
      prev = GENESIS;
      chains++;
    }
    if (body.prev !== prev) {
      return { ok: false, lines: lines.length, brokenAt: n, problem: 'prev does not match the hash of the line before (a line was removed, inserted or reordered)', chains };
    }
    if (hash !== sha256Hex(JSON.stringify(body))) {
      return { ok: false, lines: lines.length, brokenAt: n, problem: 'hash does not match the record (the line was edited)', chains };
    }
    prev = hash as string;
  }
  return { ok: true, lines: lines.length, chains };
}
