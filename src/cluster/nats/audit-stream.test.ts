import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { AuditLog } from '../../audit/audit-log.js';
import { SystemClock } from '../../core/clock.js';
import { createLogger } from '../../core/logger.js';
import { natsForTestFile } from '../../testing/nats.js';
import { AuditStream, auditSubject, verifyAuditStream } from './audit-stream.js';

const nats = natsForTestFile();
const log = createLogger('silent');
const dir = mkdtempSync(join(tmpdir(), 'voxgate-audit-stream-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let prefixes = 0;

const record = (i: number) => ({ action: 'whip.post', outcome: 'ok' as const, status: 201, session: `s${i}` });

async function until(ready: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('each node\'s records reach the stream in chain order, written and appended alike; verify checks every node\'s chain', async () => {
  const nc = await nats.connect();
  const prefix = `as${++prefixes}`;
  const streams: AuditStream[] = [];
  for (const node of ['node-a', 'node-b']) {
    const audit = new AuditLog(join(dir, `${prefix}-${node}.jsonl`), new SystemClock());
    const s = new AuditStream({ nc, prefix, nodeId: node, audit, log });
    await s.start();
    streams.push(s);
    for (let i = 0; i < 5; i++) audit.write(record(i));
    for (let i = 5; i < 8; i++) audit.append(record(i), () => undefined);
    audit.flush();
    audit.close();
  }
  await until(async () => streams.every((s) => s.backlog === 0), 'the queues drained');
  const result = await verifyAuditStream(nc, prefix);
  assert.deepEqual(result.map((r) => [r.node, r.ok, r.lines, r.chains]), [['node-a', true, 8, 1], ['node-b', true, 8, 1]]);
  for (const s of streams) await s.close();
});

test('records the file has and the stream lacks (a crash before they were published) are published at the next start; a forged record breaks the chain', async () => {
  const nc = await nats.connect();
  const prefix = `as${++prefixes}`;
  const path = join(dir, `${prefix}.jsonl`);
  const first = new AuditLog(path, new SystemClock());
  const s1 = new AuditStream({ nc, prefix, nodeId: 'node-a', audit: first, log });
  await s1.start();
  first.write(record(1));
  first.write(record(2));
  await until(async () => s1.backlog === 0, 'two published');
  await s1.close();
  // The process dies with these in the file only.
  first.write(record(3));
  first.write(record(4));
  first.close();
  const again = new AuditLog(path, new SystemClock());
  const s2 = new AuditStream({ nc, prefix, nodeId: 'node-a', audit: again, log });
  await s2.start();
  again.write(record(5));
  await until(async () => s2.backlog === 0 && (await verifyAuditStream(nc, prefix))[0]?.lines === 5, 'all five in the stream');
  assert.deepEqual((await verifyAuditStream(nc, prefix)).map((r) => [r.ok, r.lines]), [[true, 5]], 'in order, none twice');
  await s2.close();
  again.close();

  nc.publish(auditSubject(prefix, 'node-a'), JSON.stringify({ seq: 6, time: new Date().toISOString(), action: 'whip.delete', prev: 'f'.repeat(64), hash: '0'.repeat(64) }));
  await nc.flush();
  await until(async () => (await verifyAuditStream(nc, prefix))[0]?.lines === 6, 'the forgery stored');
  const [r] = await verifyAuditStream(nc, prefix);
  assert.deepEqual([r!.ok, r!.brokenAt], [false, 6]);
  assert.match(r!.problem!, /prev does not match/);
});

test('a node whose file was started again (removed) publishes its new chain: verify counts two chains, both intact', async () => {
  const nc = await nats.connect();
  const prefix = `as${++prefixes}`;
  const path = join(dir, `${prefix}.jsonl`);
  for (let run = 0; run < 2; run++) {
    rmSync(path, { force: true });
    const audit = new AuditLog(path, new SystemClock());
    const s = new AuditStream({ nc, prefix, nodeId: 'node-a', audit, log });
    await s.start();
    for (let i = 0; i < 3 - run; i++) audit.write(record(i));
    await until(async () => s.backlog === 0, 'published');
    await s.close();
    audit.close();
  }
  assert.deepEqual((await verifyAuditStream(nc, prefix)).map((r) => [r.ok, r.lines, r.chains]), [[true, 5, 2]]);
});
