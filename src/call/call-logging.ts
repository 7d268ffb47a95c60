import type { AuditLog } from '../audit/audit-log.js';
import type { Logger } from '../core/logger.js';
import type { CallTable } from './call-table.js';

/** Ends that are someone hanging up or an operator's act, not a failure (the audit's outcome). */
const ORDERLY_ENDS: ReadonlySet<string> = new Set(['deleted', 'shutdown', 'bye', 'cancelled', 'agent-hangup', 'transferred', 'admin']);

export interface CallLoggingDeps {
  calls: CallTable;
  audit: Pick<AuditLog, 'write'>;
  log: Logger;
  /** The MOS histogram every quality report is observed in. */
  mos: { observe(v: number): void };
  now: () => number;
}

/** Call quality, connects and ends in the log; ends in the audit log and the MOS histogram. */
export function logCalls({ calls, audit, log, mos, now }: CallLoggingDeps): void {
  const poorCalls = new Set<string>();
  calls.on('created', (call) => {
    call.on('quality', (q) => {
      mos.observe(q.mos);
      // agent-protocols.md alert thresholds; logged when a call crosses them, not every 5 s.
      const poor = q.mos < 3.5 || q.lossPercent > 3 || q.jitterMs > 30 || (q.rttMs ?? 0) > 400;
      if (poor === poorCalls.has(call.id)) return;
      if (poor) poorCalls.add(call.id);
      else poorCalls.delete(call.id);
      const fields = { session: call.id, source: call.source.name, ...q };
      if (poor) log.warn(fields, 'call quality is poor');
      else log.info(fields, 'call quality recovered');
    });
  });
  calls.on('ended', (call, reason) => {
    poorCalls.delete(call.id);
    const media = call.totals().packetsReceived;
    log.info({ session: call.id, source: call.source.name, reason, packets: media }, 'session ended');
    try {
      audit.write({
        action: 'session.ended',
        outcome: ORDERLY_ENDS.has(reason) ? 'ok' : 'error',
        reason,
        source: call.source.name,
        sourceKind: call.source.kind,
        session: call.id,
        durationMs: now() - call.createdAt,
        packets: media,
      });
    } catch (err) {
      log.error({ err, session: call.id }, 'audit write failed for a session end');
    }
  });
  calls.on('connected', (call) => log.info({ session: call.id, source: call.source.name }, 'session connected'));
}
