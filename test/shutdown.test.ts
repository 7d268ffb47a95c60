import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { SipWsClient } from './helpers/sip-ws-client.js';
import { captureLog, startGateway } from './helpers/gateway.js';

const DOMAIN = 'voxgate.test';

test('shutdown: SIP WebSocket flows get a close frame (1001), their last audit records are written, nothing is logged at error', async () => {
  const { log, lines } = captureLog();
  const tg = await startGateway(
    { sip: { domain: DOMAIN, users: [{ user: 'alice', password: 'alice-pw' }, { user: 'bob', password: 'bob-pw' }] } },
    { log },
  );
  const clients = [await SipWsClient.connect(tg.url), await SipWsClient.connect(tg.url)];
  assert.equal((await clients[0]!.register('alice', 'alice-pw', DOMAIN)).status, 200);
  assert.equal((await clients[1]!.register('bob', 'bob-pw', DOMAIN)).status, 200);
  const codes = clients.map((c) => new Promise<{ code: number; reason: string }>((resolve) => c.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }))));
  await tg.gw.stop();
  for (const closed of await Promise.all(codes)) assert.deepEqual(closed, { code: 1001, reason: 'voxgate is shutting down' }, 'a close frame, not 1006');
  const audit = readFileSync(tg.auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; user?: string; reason?: string });
  for (const user of ['alice', 'bob']) {
    assert.ok(audit.some((r) => r.action === 'sip.unregister' && r.user?.includes(user) && r.reason === 'flow-closed'), `${user}'s binding removal is audited`);
  }
  const errors = lines.filter((l) => l.level >= 50);
  assert.deepEqual(errors.map((l) => l.msg), [], 'no error logged on an orderly shutdown');
  await tg.stop();
});
