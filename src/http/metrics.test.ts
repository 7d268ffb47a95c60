import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SourceIdentity } from '../auth/source-auth.js';
import { Call, type EndReason, type Leg, type LegCounters } from '../call/call.js';
import { CallTable } from '../call/call-table.js';
import { FakeClock } from '../core/clock.js';
import { GatewayMetrics } from './metrics.js';

const source: SourceIdentity = { name: 'web', kind: 'browser', agent: undefined, codecs: ['opus'], maxSessions: undefined, via: 'token' };

class CountingLeg implements Leg {
  readonly kind = 'test';
  packets = 0;
  lastMediaAt(): number {
    return 0;
  }
  counters(): LegCounters {
    return { packetsReceived: this.packets, bytesReceived: this.packets * 100, packetsSent: 0, bytesSent: 0 };
  }
  close(_reason: EndReason): void {}
}

async function received(m: GatewayMetrics): Promise<number> {
  const text = await m.registry.metrics();
  return Number(/^voxgate_rtp_packets_received_total (\d+)$/m.exec(text)?.[1]);
}

test('voxgate_rtp_packets_received_total never goes down: not across a transfer (the caller leg replaced), nor when the call ends', async () => {
  const clock = new FakeClock();
  const calls = new CallTable({ maxSessions: 10, retryAfterSeconds: 5 });
  const metrics = new GatewayMetrics(calls);
  const call = new Call('c1', source, clock, 60_000);
  calls.add(call);
  const first = new CountingLeg();
  call.addLeg('caller', first);
  first.packets = 120;
  assert.equal(await received(metrics), 120);
  const second = new CountingLeg();
  call.replaceLeg('caller', second, 'transferred');
  assert.equal(await received(metrics), 120, 'the transferor\'s packets stay counted');
  second.packets = 30;
  assert.equal(await received(metrics), 150);
  call.close('bye');
  assert.equal(await received(metrics), 150);
});

test('the process and Node.js metrics are voxgate_process_* and voxgate_nodejs_*, with no doubled prefix', async () => {
  const metrics = new GatewayMetrics(new CallTable({ maxSessions: 10, retryAfterSeconds: 5 }));
  const text = await metrics.registry.metrics();
  assert.match(text, /^voxgate_process_cpu_user_seconds_total \d/m);
  assert.match(text, /^voxgate_nodejs_heap_size_used_bytes \d/m);
  assert.doesNotMatch(text, /process_process_|voxgate_process_nodejs_/);
});
