import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { HotCounter } from './sip-metrics.js';

test('a HotCounter counts per label set and prom-client reads the totals at each scrape', async () => {
  const registry = new Registry();
  const c = new HotCounter(registry, { name: 'x_total', help: 'x', labelNames: ['method', 'side'] });
  c.inc({ method: 'REGISTER', side: 'server' });
  c.inc({ method: 'REGISTER', side: 'server' });
  c.inc({ method: 'INVITE', side: 'client' });
  const first = await registry.metrics();
  assert.match(first, /^x_total\{method="REGISTER",side="server"\} 2$/m);
  assert.match(first, /^x_total\{method="INVITE",side="client"\} 1$/m);
  // A later scrape sees later increments, and the earlier ones once (totals, not sums of scrapes).
  c.inc({ method: 'INVITE', side: 'client' });
  const second = await registry.metrics();
  assert.match(second, /^x_total\{method="REGISTER",side="server"\} 2$/m);
  assert.match(second, /^x_total\{method="INVITE",side="client"\} 2$/m);
  // Label values that would run together if joined plainly stay apart.
  c.inc({ method: 'A', side: 'BC' });
  c.inc({ method: 'AB', side: 'C' });
  const third = await registry.metrics();
  assert.match(third, /^x_total\{method="A",side="BC"\} 1$/m);
  assert.match(third, /^x_total\{method="AB",side="C"\} 1$/m);
});
