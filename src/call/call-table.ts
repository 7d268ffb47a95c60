import type { SourceIdentity } from '../auth/source-auth.js';
import { TypedEmitter } from '../core/events.js';
import { VoxgateError } from '../core/errors.js';
import type { Call, EndReason } from './call.js';

export interface CallTableEvents extends Record<string, unknown[]> {
  created: [call: Call];
  connected: [call: Call];
  ended: [call: Call, reason: EndReason];
}

/**
 * Every live call of this node, with the limits that protect it: total sessions
 * (503 + Retry-After) and sessions per source (429). It is also the session event bus.
 */
export class CallTable extends TypedEmitter<CallTableEvents> {
  readonly #calls = new Map<string, Call>();
  readonly #perSource = new Map<string, number>();

  constructor(private readonly limits: { maxSessions: number; retryAfterSeconds: number }) {
    super();
  }

  get size(): number {
    return this.#calls.size;
  }

  get(id: string): Call | undefined {
    return this.#calls.get(id);
  }

  values(): IterableIterator<Call> {
    return this.#calls.values();
  }

  countFor(source: string): number {
    return this.#perSource.get(source) ?? 0;
  }

  /** Throws unless one more call for this source fits. */
  checkAdmission(source: SourceIdentity): void {
    if (this.#calls.size >= this.limits.maxSessions) {
      throw new VoxgateError('VG_CAPACITY', `This node holds its maximum of ${this.limits.maxSessions} sessions; retry later or elsewhere.`, {
        headers: { 'Retry-After': String(this.limits.retryAfterSeconds) },
      });
    }
    if (source.maxSessions !== undefined && this.countFor(source.name) >= source.maxSessions) {
      throw new VoxgateError(
        'VG_SOURCE_SESSION_LIMIT',
        `Source '${source.name}' already has its maximum of ${source.maxSessions} sessions; end one first.`,
        { headers: { 'Retry-After': String(this.limits.retryAfterSeconds) } },
      );
    }
  }

  add(call: Call): void {
    this.checkAdmission(call.source);
    this.#calls.set(call.id, call);
    this.#perSource.set(call.source.name, this.countFor(call.source.name) + 1);
    call.on('state', (s) => {
      if (s === 'connected') this.emit('connected', call);
    });
    call.on('ended', (reason) => {
      this.#calls.delete(call.id);
      const n = this.countFor(call.source.name) - 1;
      if (n > 0) this.#perSource.set(call.source.name, n);
      else this.#perSource.delete(call.source.name);
      this.emit('ended', call, reason);
    });
    this.emit('created', call);
  }

  closeAll(reason: EndReason): void {
    for (const call of [...this.#calls.values()]) call.close(reason);
  }
}
