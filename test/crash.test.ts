/**
 * SIGKILL under load: the `voxgate` process is killed while WHIP POSTs and DELETEs, admin hang-ups
 * and SIP REGISTERs are in flight. Afterwards the audit chain verifies, every request that was
 * answered 2xx before the kill has its record, and a restarted gateway carries the same chain on.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { verifyAuditFile } from '../src/audit/audit-log.js';
import { ADMIN_TOKEN, SOURCE_TOKEN, waitFor } from './helpers/gateway.js';
import { offerSdp } from './helpers/offers.js';
import { freeUdpPort } from './helpers/peers.js';
import { SipWsClient } from './helpers/sip-ws-client.js';
import { serveNode } from './helpers/voxgate-process.js';

const DOMAIN = 'voxgate.test';
const USERS = Array.from({ length: 4 }, (_, i) => ({ user: `user${i}`, password: `secret-${i}` }));

interface Record {
  seq: number;
  action: string;
  outcome: string;
  session?: string;
  status?: number;
  remote?: string;
  user?: string;
}

/** What the clients were told before the kill: each 2xx must be in the audit. */
interface Acknowledged {
  posts: string[];
  deletes: string[];
  adminDeletes: string[];
  /** 200s to REGISTER, by user (each user registers over a flow of its own). */
  registers: Map<string, number>;
}

async function config(dir: string): Promise<object> {
  return {
    http: { host: '127.0.0.1', port: 0 },
    media: { udpPort: await freeUdpPort() },
    sources: [{ name: 'browser-widget', kind: 'browser', token: SOURCE_TOKEN, maxSessions: 5000 }],
    admin: { token: ADMIN_TOKEN },
    audit: { path: join(dir, 'audit.jsonl') },
    limits: { requestsPerSecond: 100_000, requestBurst: 100_000, maxSessions: 5000 },
    sip: { domain: DOMAIN, users: USERS },
    log: { level: 'warn' },
  };
}

/** Runs until the gateway goes away: POST, and for every other session DELETE it (by the source or the admin). */
async function whipLoad(url: string, acked: Acknowledged, n: number): Promise<void> {
  for (let i = 0; ; i++) {
    const post = await fetch(`${url}/whip`, { method: 'POST', headers: { Authorization: `Bearer ${SOURCE_TOKEN}`, 'Content-Type': 'application/sdp' }, body: offerSdp() });
    if (post.status !== 201) throw new Error(`POST answered ${post.status}`);
    const location = new URL(post.headers.get('Location')!, url);
    const id = location.pathname.split('/').pop()!;
    acked.posts.push(id);
    await post.text();
    if (i % 2) continue;
    if ((i / 2 + n) % 2) {
      const del = await fetch(location, { method: 'DELETE', headers: { Authorization: `Bearer ${SOURCE_TOKEN}` } });
      if (del.status === 200) acked.deletes.push(id);
    } else {
      const del = await fetch(`${url}/api/sessions/${id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
      if (del.status === 200) acked.adminDeletes.push(id);
    }
  }
}

async function sipLoad(url: string, acked: Acknowledged, user: { user: string; password: string }): Promise<void> {
  const client = await SipWsClient.connect(url);
  for (;;) {
    const res = await client.register(user.user, user.password, DOMAIN, { expires: 300 });
    if (res.status === 200) acked.registers.set(user.user, (acked.registers.get(user.user) ?? 0) + 1);
  }
}

test('SIGKILL under load: the audit chain verifies, every 2xx answered before the kill has its record, and a restart continues the chain', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-crash-'));
  try {
    const cfg = await config(dir);
    const gw = await serveNode(dir, cfg);
    const url = gw.ready;
    const acked: Acknowledged = { posts: [], deletes: [], adminDeletes: [], registers: new Map() };
    const loads = [
      ...Array.from({ length: 4 }, (_, n) => whipLoad(url, acked, n)),
      ...USERS.map((u) => sipLoad(url, acked, u)),
    ].map((p) => p.catch((err: unknown) => err));
    // Killed mid-stream, once the load is well under way.
    await waitFor('load under way', () => acked.posts.length >= 150 && [...acked.registers.values()].reduce((a, b) => a + b, 0) >= 40, 30_000);
    const exited = new Promise((resolve) => gw.child.once('exit', resolve));
    gw.child.kill('SIGKILL');
    await exited;
    const ended = await Promise.all(loads);
    assert.ok(ended.every((e) => e !== undefined), 'every load loop stopped with the gateway');

    const path = join(dir, 'audit.jsonl');
    const verified = verifyAuditFile(path);
    assert.equal(verified.ok, true, `the chain verifies after SIGKILL: ${JSON.stringify(verified)}`);
    const records = readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record);
    const sessionsOf = (action: string) => new Set(records.filter((r) => r.action === action && r.outcome === 'ok').map((r) => r.session));
    const missing = (ids: string[], action: string) => ids.filter((id) => !sessionsOf(action).has(id));
    assert.deepEqual(missing(acked.posts, 'whip.post'), [], `all ${acked.posts.length} 201s to POST are audited`);
    assert.deepEqual(missing(acked.deletes, 'whip.delete'), [], `all ${acked.deletes.length} 200s to DELETE are audited`);
    assert.deepEqual(missing(acked.adminDeletes, 'admin.session.delete'), [], `all ${acked.adminDeletes.length} admin hang-ups are audited`);
    for (const [user, n] of acked.registers) {
      const audited = records.filter((r) => r.action === 'sip.register' && r.outcome === 'ok' && r.user === user).length;
      assert.ok(audited >= n, `${user} got ${n} 200s to REGISTER and has ${audited} records`);
    }
    assert.ok(acked.deletes.length > 10 && acked.adminDeletes.length > 10, 'both kinds of hang-up were in flight');

    // A restart on the same file: the chain goes on from the last record the killed process wrote.
    const again = await serveNode(dir, cfg, 'node-a');
    try {
      const post = await fetch(`${again.ready}/whip`, { method: 'POST', headers: { Authorization: `Bearer ${SOURCE_TOKEN}`, 'Content-Type': 'application/sdp' }, body: offerSdp() });
      assert.equal(post.status, 201);
      const after = readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record);
      assert.equal(after[records.length]!.seq, records.at(-1)!.seq + 1, 'the first record after the restart follows the last one before it');
      assert.deepEqual(verifyAuditFile(path), { ok: true, lines: after.length });
    } finally {
      again.child.kill('SIGTERM');
      await new Promise((resolve) => again.child.once('exit', resolve));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
