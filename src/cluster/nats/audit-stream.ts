import { readFileSync } from 'node:fs';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { verifyAuditLines, type AuditLog, type VerifyResult } from '../../audit/audit-log.js';
import type { Logger } from '../../core/logger.js';

/**
 * The fleet's audit trail (issue 17, build 6): each node keeps its hash-chained file and also
 * publishes every record, once it is in the file, to the JetStream stream `<prefix>_audit` on
 * `<prefix>.audit.<nodeId>`, in chain order, one acknowledged publish at a time (the record's
 * seq as the message id, so a retry is stored once). The file is the truth: a node that
 * starts, or whose queue overflowed while NATS was away, publishes from the file whatever the
 * stream does not have yet, so a crash loses nothing the file kept. `voxgate audit verify
 * --nats` reads the stream and checks every node's chain.
 */

const MAX_QUEUED = 100_000;
const RETRY_MS = 500;

const seqOf = (line: string) => Number(/^\{"seq":(\d+),/.exec(line)?.[1] ?? NaN);

export const auditSubject = (prefix: string, nodeId: string) => `${prefix}.audit.${nodeId}`;
export const auditStreamName = (prefix: string) => `${prefix}_audit`;

async function ensureStream(jsm: JetStreamManager, prefix: string): Promise<void> {
  const name = auditStreamName(prefix);
  try {
    await jsm.streams.info(name);
  } catch {
    await jsm.streams.add({ name, subjects: [`${prefix}.audit.>`] });
  }
}

export class AuditStream {
  readonly #queue: string[] = [];
  #next = 1;
  #wake: (() => void) | undefined;
  #running = false;
  #loop: Promise<void> | undefined;
  #overflowed = false;
  #js: JetStreamClient | undefined;

  constructor(
    private readonly deps: { nc: NatsConnection; prefix: string; nodeId: string; audit: AuditLog; log: Logger },
  ) {
    // From construction on, so nothing written before the fleet joins is missed.
    deps.audit.tap((text) => {
      for (const line of text.split('\n')) if (line) this.#push(line);
    });
  }

  /** Records queued and not yet in the stream. */
  get backlog(): number {
    return this.#queue.length;
  }

  async start(): Promise<void> {
    const jsm = await jetstreamManager(this.deps.nc);
    await ensureStream(jsm, this.deps.prefix);
    this.#js = jetstream(this.deps.nc);
    this.#running = true;
    this.#loop = this.#run(jsm);
  }

  /** Where the stream stands for this node; a read that fails is retried (never taken for "empty": that would publish the file twice). */
  async #init(jsm: JetStreamManager): Promise<void> {
    const { prefix, nodeId, audit } = this.deps;
    for (;;) {
      try {
        const last = await jsm.streams.getMessage(auditStreamName(prefix), { last_by_subj: auditSubject(prefix, nodeId) });
        let inStream = last ? seqOf(new TextDecoder().decode(last.data)) : 0;
        const inFile = seqOf(this.#fileLines(audit.path).at(-1) ?? '') || 0;
        if (!Number.isFinite(inStream)) {
          this.deps.log.error('audit stream: its last record for this node is not ours; publishing from the file\'s end');
          inStream = inFile;
        }
        // A file that starts again (replaced) behind the stream: its new chain is published from 1.
        this.#next = inFile < inStream ? 1 : inStream + 1;
        if (inFile < inStream) this.deps.log.warn({ inStream, inFile }, 'audit stream: the file is behind the stream (replaced?); its chain is published from the start');
        return;
      } catch (err) {
        if (!this.#running) return;
        this.deps.log.warn({ err: (err as Error).message }, 'audit stream: where it stands could not be read; retrying');
        await new Promise((r) => setTimeout(r, RETRY_MS));
      }
    }
  }

  /** Publishes what is queued (at most `ms`), then stops. */
  async close(ms = 3000): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.#queue.length && this.#running && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    this.#running = false;
    this.#wake?.();
    await this.#loop;
    if (this.#queue.length) this.deps.log.warn({ records: this.#queue.length }, 'audit stream: records not yet published at shutdown; the next start publishes them from the file');
  }

  #push(line: string): void {
    if (this.#queue.length >= MAX_QUEUED) {
      // The file has them: the loop reads the gap back from it once NATS is there again.
      this.#queue.shift();
      if (!this.#overflowed) this.deps.log.error({ max: MAX_QUEUED }, 'audit stream: queue full (NATS away?); older records will be read back from the file');
      this.#overflowed = true;
    }
    this.#queue.push(line);
    this.#wake?.();
  }

  async #run(jsm: JetStreamManager): Promise<void> {
    await this.#init(jsm);
    // What the file has beyond the stream (a crash before they were published) goes first.
    if (this.#running) await this.#catchUp(Infinity);
    while (this.#running) {
      const head = this.#queue[0];
      if (head === undefined) {
        await new Promise<void>((r) => (this.#wake = r));
        this.#wake = undefined;
        continue;
      }
      const seq = seqOf(head);
      // The file started a new chain under us (its last line was damaged, or it was replaced): from 1 again.
      if (seq === 1 && this.#next > 1 && head.includes(`"prev":"${'0'.repeat(64)}"`)) this.#next = 1;
      if (!Number.isFinite(seq) || !(seq >= this.#next)) {
        this.#queue.shift(); // published already (from the file)
        continue;
      }
      if (seq > this.#next && !(await this.#catchUp(seq))) continue;
      if (await this.#publish(head, seq)) this.#queue.shift();
    }
  }

  /** Publishes the file's records from #next up to (not including) `until`; false when NATS failed. */
  async #catchUp(until: number): Promise<boolean> {
    const lines = this.#fileLines(this.deps.audit.path).filter((l) => {
      const s = seqOf(l);
      return s >= this.#next && s < until;
    });
    if (lines.length) this.deps.log.info({ records: lines.length, from: this.#next }, 'audit stream: publishing records from the file');
    for (const l of lines) if (!this.#running || !(await this.#publish(l, seqOf(l)))) return false;
    this.#overflowed = false;
    return true;
  }

  async #publish(line: string, seq: number): Promise<boolean> {
    const { prefix, nodeId } = this.deps;
    try {
      await this.#js!.publish(auditSubject(prefix, nodeId), line, { msgID: `${nodeId}:${seq}:${seqHash(line)}` });
      this.#next = seq + 1;
      return true;
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message, seq }, 'audit stream: publish failed; retrying');
      await new Promise((r) => setTimeout(r, RETRY_MS));
      return false;
    }
  }

  #fileLines(path: string): string[] {
    try {
      return readFileSync(path, 'utf8').split('\n').filter((l) => l.length > 0);
    } catch {
      return [];
    }
  }
}

/** The record's own hash (its last field): a new chain's seq 1 is another message than the old one's. */
function seqHash(line: string): string {
  return /"hash":"([0-9a-f]{16})/.exec(line)?.[1] ?? '';
}

export interface NodeChain extends VerifyResult {
  node: string;
  chains: number;
}

/** Reads the whole stream and checks each node's chain (as `voxgate audit verify` checks a file). */
export async function verifyAuditStream(nc: NatsConnection, prefix: string): Promise<NodeChain[]> {
  const jsm = await jetstreamManager(nc);
  const name = auditStreamName(prefix);
  const info = await jsm.streams.info(name);
  const byNode = new Map<string, string[]>();
  const total = info.state.messages;
  if (total > 0) {
    const consumer = await jetstream(nc).consumers.get(name);
    const messages = await consumer.consume();
    let seen = 0;
    for await (const m of messages) {
      const node = m.subject.slice(`${prefix}.audit.`.length);
      let lines = byNode.get(node);
      if (!lines) byNode.set(node, (lines = []));
      lines.push(m.string());
      if (++seen >= total || m.info.pending === 0 || m.seq >= info.state.last_seq) break;
    }
    await messages.close();
  }
  return [...byNode.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([node, lines]) => ({ node, ...verifyAuditLines(lines, { restarts: true }) }));
}
