import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSipMessage, type SipRequest } from './message.js';
import { MemoryLocationStore } from '../cluster/memory/location-store.js';
import { Registrar } from './registrar.js';

function register(contact: string, opts: { expires?: string; callId?: string; cseq?: number } = {}): SipRequest {
  const text = [
    'REGISTER sip:example.test SIP/2.0',
    'Via: SIP/2.0/WS abc.invalid;branch=z9hG4bK1',
    'To: <sip:alice@example.test>',
    'From: <sip:alice@example.test>;tag=1',
    `Call-ID: ${opts.callId ?? 'c1'}`,
    `CSeq: ${opts.cseq ?? 1} REGISTER`,
    `Contact: ${contact}`,
    ...(opts.expires !== undefined ? [`Expires: ${opts.expires}`] : []),
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
  return parseSipMessage(text) as SipRequest;
}

const flow = { id: 'f1', remote: '127.0.0.1:1' };

test('bindings expire when their time is up; Expires: 0 and Contact: * remove them', async () => {
  let now = 0;
  const r = new Registrar(new MemoryLocationStore(), { minExpires: 60, maxExpires: 3600, defaultExpires: 600 }, () => now);
  assert.equal((await r.register('alice', register('<sip:a@x.invalid;transport=ws>;expires=120'), flow)).status, 200);
  assert.equal((await r.register('alice', register('<sip:b@y.invalid;transport=ws>', { cseq: 2 }), flow)).status, 200);
  assert.equal((await r.lookup('alice')).length, 2);
  now = 121_000;
  assert.deepEqual(
    (await r.lookup('alice')).map((b) => b.contact),
    ['sip:b@y.invalid;transport=ws'],
  );
  assert.equal((await r.register('alice', register('<sip:b@y.invalid;transport=ws>', { expires: '0', cseq: 3 }), flow)).status, 200);
  assert.equal((await r.lookup('alice')).length, 0);
  await r.register('alice', register('<sip:c@z.invalid>', { cseq: 4 }), flow);
  assert.deepEqual(await r.register('alice', register('*', { cseq: 5 }), flow), { status: 400, reason: 'Contact: * needs Expires: 0' });
  assert.equal((await r.register('alice', register('*', { expires: '0', cseq: 6 }), flow)).status, 200);
  assert.equal((await r.lookup('alice')).length, 0);
});

test('too brief an expiry is 423 with Min-Expires; too long is capped; an old CSeq is out of order', async () => {
  const r = new Registrar(new MemoryLocationStore(), { minExpires: 60, maxExpires: 3600, defaultExpires: 600 }, () => 0);
  assert.deepEqual(await r.register('alice', register('<sip:a@x.invalid>', { expires: '30' }), flow), { status: 423, minExpires: 60 });
  const ok = await r.register('alice', register('<sip:a@x.invalid>', { expires: '99999', cseq: 2 }), flow);
  assert.equal(ok.status === 200 && ok.bindings[0]!.expiresAt, 3_600_000);
  assert.equal((await r.register('alice', register('<sip:a@x.invalid>', { cseq: 2 }), flow)).status, 500);
});

test('+sip.instance with reg-id replaces the binding from another flow; dropFlow removes a flow\'s bindings', async () => {
  const r = new Registrar(new MemoryLocationStore(), { minExpires: 60, maxExpires: 3600, defaultExpires: 600 }, () => 0);
  const inst = ';+sip.instance="<urn:uuid:1>";reg-id=1';
  await r.register('alice', register(`<sip:a@x.invalid>${inst}`, { callId: 'one' }), flow);
  await r.register('alice', register(`<sip:b@y.invalid>${inst}`, { callId: 'two' }), { id: 'f2', remote: '127.0.0.1:2' });
  assert.deepEqual(
    (await r.lookup('alice')).map((b) => [b.contact, b.flowId]),
    [['sip:b@y.invalid', 'f2']],
  );
  assert.equal((await r.dropFlow('f2')).length, 1);
  assert.equal((await r.all()).length, 0);
});
