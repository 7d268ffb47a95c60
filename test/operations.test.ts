import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { verifyAuditFile } from '../src/audit/audit-log.js';
import { ADMIN_TOKEN, adminSessions, SOURCE_TOKEN, startGateway } from './helpers/gateway.js';
import { offerSdp } from './helpers/offers.js';

test('with http.tls the gateway serves HTTPS, and Locations are https URLs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-tls-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  // A throwaway self-signed certificate made at test time (no key is committed).
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const tg = await startGateway({ http: { host: '127.0.0.1', port: 0, tls: { cert, key } } });
  try {
    assert.match(tg.url, /^https:\/\//);
    const ca = readFileSync(cert);
    const { status, location } = await new Promise<{ status: number; location: string | undefined }>((resolve, reject) => {
      const req = request(`${tg.url}/whip`, { method: 'POST', ca, headers: { Authorization: `Bearer ${SOURCE_TOKEN}`, 'Content-Type': 'application/sdp' } }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, location: res.headers.location }));
      });
      req.on('error', reject);
      req.end(offerSdp());
    });
    assert.equal(status, 201);
    assert.match(location!, new RegExp(`^${tg.url}/whip/`));
  } finally {
    await tg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('when the audit log cannot be written, the POST fails with 500 and no session is left', async () => {
  const tg = await startGateway();
  try {
    tg.gw.audit.close();
    const res = await fetch(`${tg.url}/whip`, { method: 'POST', headers: { Authorization: `Bearer ${SOURCE_TOKEN}`, 'Content-Type': 'application/sdp' }, body: offerSdp() });
    assert.equal(res.status, 500);
    assert.equal(((await res.json()) as { code: string }).code, 'VG_AUDIT_WRITE_FAILED');
    assert.deepEqual(await adminSessions(tg.url), []);
  } finally {
    await tg.stop();
  }
});

test('after a run the audit chain verifies and holds every request with who made it', async () => {
  const tg = await startGateway();
  try {
    // A hand-written offer: the audit needs the requests, not a connected peer (whose client
    // retries would add lines of their own).
    const post = await fetch(`${tg.url}/whip`, { method: 'POST', headers: { Authorization: `Bearer ${SOURCE_TOKEN}`, 'Content-Type': 'application/sdp' }, body: offerSdp() });
    assert.equal(post.status, 201);
    await fetch(`${tg.url}/whip`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: offerSdp() });
    assert.equal((await fetch(new URL(post.headers.get('Location')!, tg.url), { method: 'DELETE', headers: { Authorization: `Bearer ${SOURCE_TOKEN}` } })).status, 200);
    assert.equal((await fetch(`${tg.url}/api/sessions`)).status, 401);
    assert.equal((await fetch(`${tg.url}/api/sessions`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}x` } })).status, 401);
    assertAudit(tg.auditPath);
  } finally {
    await tg.stop();
  }
});

function assertAudit(auditPath: string): void {
  assert.deepEqual(verifyAuditFile(auditPath), { ok: true, lines: 4 });
  const records = readFileSync(auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(
    records.map((r) => [r.action, r.outcome, r.source, r.status ?? r.reason]),
    [
      ['whip.post', 'ok', 'browser-widget', 201],
      ['whip.post', 'rejected', null, 401],
      ['whip.delete', 'ok', 'browser-widget', 200],
      ['session.ended', 'ok', 'browser-widget', 'deleted'],
    ],
  );
  assert.match(String(records[0]!.remote), /^127\.0\.0\.1:\d+$/);
}
