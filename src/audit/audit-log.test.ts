import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FakeClock } from '../core/clock.js';
import { AuditLog, verifyAuditFile } from './audit-log.js';

function withFile(fn: (path: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-audit-'));
  try {
    fn(join(dir, 'audit.jsonl'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function write(path: string, n: number): void {
  const log = new AuditLog(path, new FakeClock());
  for (let i = 0; i < n; i++) log.write({ action: 'whip.post', outcome: 'ok', source: 'obs', remote: '127.0.0.1:5000', session: `s${i}`, status: 201 });
  log.close();
}

test('a fresh chain verifies, and reopening the file continues it', () => {
  withFile((path) => {
    write(path, 3);
    write(path, 2);
    assert.deepEqual(verifyAuditFile(path), { ok: true, lines: 5 });
    const seqs = readFileSync(path, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq);
    assert.deepEqual(seqs, [1, 2, 3, 4, 5]);
  });
});

test('an edited line is reported with its own line number', () => {
  withFile((path) => {
    write(path, 5);
    const lines = readFileSync(path, 'utf8').split('\n');
    lines[2] = lines[2]!.replace('"status":201', '"status":200');
    writeFileSync(path, lines.join('\n'));
    const r = verifyAuditFile(path);
    assert.equal(r.ok, false);
    assert.equal(r.brokenAt, 3);
    assert.match(r.problem!, /edited/);
  });
});

test('a removed line breaks the chain at the line after it', () => {
  withFile((path) => {
    write(path, 5);
    const lines = readFileSync(path, 'utf8').split('\n');
    lines.splice(1, 1);
    writeFileSync(path, lines.join('\n'));
    const r = verifyAuditFile(path);
    assert.deepEqual([r.ok, r.brokenAt], [false, 2]);
    assert.match(r.problem!, /removed, inserted or reordered/);
  });
});

test('`voxgate audit verify` exits 0 on an intact chain and 1 with the line number of a tampered one', () => {
  withFile((path) => {
    write(path, 4);
    const cli = ['--import', 'tsx', 'src/cli/main.ts', 'audit', 'verify', path];
    assert.match(execFileSync(process.execPath, cli, { encoding: 'utf8' }), /4 records, chain intact/);
    const lines = readFileSync(path, 'utf8').split('\n');
    lines[3] = lines[3]!.replace('"source":"obs"', '"source":"eve"');
    writeFileSync(path, lines.join('\n'));
    try {
      execFileSync(process.execPath, cli, { encoding: 'utf8' });
      assert.fail('verify accepted a tampered file');
    } catch (e) {
      const err = e as { status: number; stdout: string };
      assert.equal(err.status, 1);
      assert.match(err.stdout, /chain broken at line 4/);
    }
  });
});

test('a failing write throws, so the caller can refuse the action', () => {
  withFile((path) => {
    const log = new AuditLog(path, new FakeClock());
    log.close();
    assert.throws(() => log.write({ action: 'whip.post', outcome: 'ok' }), /closed/);
  });
});

test('append: records of one event-loop turn go out together, in order with synchronous writes, and each caller hears once it is in the file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-audit-'));
  const path = join(dir, 'audit.jsonl');
  try {
    const log = new AuditLog(path, new FakeClock());
    const lines = () => readFileSync(path, 'utf8').split('\n').filter(Boolean).length;
    const seen: number[] = [];
    const all = Promise.all(
      [1, 2, 3].map(
        (i) =>
          new Promise<void>((resolve, reject) =>
            log.append({ action: 'sip.register', outcome: 'ok', user: `u${i}` }, (err) => {
              if (err) return reject(err);
              seen.push(lines());
              resolve();
            }),
          ),
      ),
    );
    assert.equal(lines(), 0, 'nothing written during the turn');
    await all;
    assert.deepEqual(seen, [3, 3, 3], 'all three were in the file before any caller was told');
    log.append({ action: 'sip.register', outcome: 'ok', user: 'u4' }, () => undefined);
    log.write({ action: 'whip.post', outcome: 'ok' });
    log.close();
    const actions = readFileSync(path, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { user?: string; action: string }).user ?? 'sync');
    assert.deepEqual(actions, ['u1', 'u2', 'u3', 'u4', 'sync']);
    assert.deepEqual(verifyAuditFile(path), { ok: true, lines: 5 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('append: a failing write reaches every caller of the batch as an error', async () => {
  const log = new AuditLog('/dev/full', new FakeClock());
  const errors = await Promise.all([1, 2].map(() => new Promise<Error | undefined>((resolve) => log.append({ action: 'sip.register', outcome: 'ok' }, resolve))));
  for (const err of errors) assert.match(String(err), /ENOSPC/);
  assert.throws(() => log.write({ action: 'whip.post', outcome: 'ok' }), /ENOSPC/);
});
