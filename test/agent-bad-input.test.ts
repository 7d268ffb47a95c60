import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import type { Agent } from '../src/agent/agent.js';
import { publishConnected, publishWithNdc } from './helpers/ndc-publisher.js';
import { SOURCE_TOKEN, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';

const THROWS_TOKEN = 'throwing-agent-token-0123456789';
const FAILS_TOKEN = 'failing-agent-token-0123456789';

describe('agents that misbehave', () => {
  let tg: TestGateway;
  const lines: Record<string, unknown>[] = [];

  before(async () => {
    const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
    const thrower: Agent = {
      name: 'thrower',
      sampleRate: 16000,
      attach(session) {
        session.on('frame', () => {
          throw new Error('bug in the agent frame handler');
        });
      },
    };
    const failer: Agent = {
      name: 'failer',
      sampleRate: 16000,
      attach() {
        throw new Error('agent could not start');
      },
    };
    tg = await startGateway(
      {
        sources: [
          { name: 'throws', kind: 'browser', token: THROWS_TOKEN, agent: 'thrower' },
          { name: 'fails', kind: 'browser', token: FAILS_TOKEN, agent: 'failer' },
          { name: 'ok', kind: 'browser', token: SOURCE_TOKEN, agent: 'echo' },
        ],
      },
      { log, agents: { thrower: () => thrower, failer: () => failer } },
    );
  });
  after(async () => {
    await tg?.stop();
  });

  test('an agent whose frame handler throws is logged; the call and its media continue', async () => {
    const pub = await publishConnected(`${tg.url}/whip`, THROWS_TOKEN, { direction: 'SendRecv' });
    pub.startRtp();
    await waitFor('the listener errors in the log', () => lines.filter((l) => l.msg === 'event listener threw').length >= 5);
    const id = pub.location!.split('/').pop()!;
    assert.equal(tg.gw.calls.get(id)?.state, 'connected');
    const n = pub.received.length;
    await waitFor('voxgate to keep sending', () => pub.received.length > n + 20);
    pub.close();
  });

  test('an agent that fails to start ends the call with agent-failed, in the log and the audit', async () => {
    const pub = await publishWithNdc(`${tg.url}/whip`, FAILS_TOKEN, { direction: 'SendRecv' });
    assert.equal(pub.status, 201);
    const id = pub.location!.split('/').pop()!;
    await waitFor('the call to end', () => !tg.gw.calls.get(id));
    assert.ok(lines.some((l) => l.msg === 'agent failed to start; ending the call' && l.session === id));
    const ended = readFileSync(tg.auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; session: string; reason: string }).find((r) => r.action === 'session.ended' && r.session === id);
    assert.equal(ended?.reason, 'agent-failed');
    pub.close();
  });

  test('garbage RTP payloads are concealed; the call goes on', async () => {
    const pub = await publishConnected(`${tg.url}/whip`, SOURCE_TOKEN, { direction: 'SendRecv', payloads: [Buffer.from([0xff, 0xff, 0xff]), Buffer.alloc(0)] });
    pub.startRtp();
    const id = pub.location!.split('/').pop()!;
    await waitFor('decode errors to be counted', () => (tg.gw.calls.get(id)?.repairs().decodeErrors ?? 0) > 10);
    const n = pub.received.length;
    await waitFor('voxgate to keep sending', () => pub.received.length > n + 20);
    assert.equal(tg.gw.calls.get(id)?.state, 'connected');
    pub.close();
  });
});
