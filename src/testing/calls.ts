/**
 * Test support (imported by *.test.ts only): what every endpoint that makes calls needs, on a
 * fake clock: a temp audit log (and its lines, read back), a session directory, a call table, a
 * media runtime with inline codecs, and an agent that records its sessions. `close()` leaves no
 * call, codec or file behind.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog } from '../audit/audit-log.js';
import { CodecPool } from '../audio/codec-pool.js';
import { FrameClock } from '../audio/frame-clock.js';
import { CallTable } from '../call/call-table.js';
import type { StartCallDeps } from '../call/start-call.js';
import { MemorySessionDirectory } from '../cluster/memory/session-directory.js';
import { FakeClock } from '../core/clock.js';
import { createLogger, type Logger } from '../core/logger.js';
import type { MediaRuntime } from '../media/endpoint.js';
import { TestAgent } from './sip-calls.js';

/** One audit record as written (the fields every record has, and whatever else it carries). */
export interface AuditLine {
  action: string;
  outcome: string;
  status: number;
  reason?: string;
  source: string | null;
  sourceKind: string | null;
  session: string | null;
  [k: string]: unknown;
}

export interface CallWorld {
  clock: FakeClock;
  log: Logger;
  audit: AuditLog;
  auditPath: string;
  directory: MemorySessionDirectory;
  calls: CallTable;
  runtime: MediaRuntime;
  agent: TestAgent;
  /** What startCall needs, from the above. */
  callDeps: StartCallDeps;
  auditLines(): AuditLine[];
  lastAudit(): AuditLine;
  close(): void;
}

export function callWorld(opts: { maxSessions?: number; retryAfterSeconds?: number; idleTimeoutMs?: number; name?: string } = {}): CallWorld {
  const clock = new FakeClock(1_800_000_000_000);
  const dir = mkdtempSync(join(tmpdir(), `voxgate-${opts.name ?? 'calls'}-`));
  const auditPath = join(dir, 'audit.jsonl');
  const audit = new AuditLog(auditPath, clock);
  const directory = new MemorySessionDirectory({ now: () => clock.now() });
  const calls = new CallTable({ maxSessions: opts.maxSessions ?? 10, retryAfterSeconds: opts.retryAfterSeconds ?? 7, directory, now: () => clock.now() });
  const codecs = new CodecPool(0);
  const runtime: MediaRuntime = { clock, frameClock: new FrameClock(clock, (err) => { throw err; }), codecs, maxJitterMs: 200 };
  const log = createLogger('silent');
  const agent = new TestAgent();
  const auditLines = (): AuditLine[] =>
    readFileSync(auditPath, 'utf8')
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as AuditLine);
  return {
    clock,
    log,
    audit,
    auditPath,
    directory,
    calls,
    runtime,
    agent,
    callDeps: { calls, runtime, clock, log, idleTimeoutMs: opts.idleTimeoutMs ?? 60_000, resolveAgent: () => agent },
    auditLines,
    lastAudit: () => auditLines().at(-1)!,
    close() {
      calls.closeAll('shutdown');
      audit.close();
      void codecs.stop();
      void directory.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
