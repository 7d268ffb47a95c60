import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { describe, it, type TestContext } from 'node:test';
import { VoxgateError } from '../../core/errors.js';
import { RtpPortPool, type RtpPortPair } from './port-pool.js';

/** A random even base in 40000-59000, so parallel runs rarely meet. */
function base(): number {
  return 40000 + 2 * Math.floor(Math.random() * 9500);
}

/** A pool of `pairs` pairs from an even base, on a clock the test moves; every pair it hands out is released after the test. */
function pool(t: TestContext, opts: { pairs: number; quarantineMs?: number; min?: number }) {
  const clock = { t: 1_000_000 };
  const min = opts.min ?? base();
  const max = min + opts.pairs * 2 - 1;
  const p = new RtpPortPool({ host: '127.0.0.1', min, max, quarantineMs: opts.quarantineMs ?? 0, now: () => clock.t });
  const handed = new Set<RtpPortPair>();
  const allocate = async () => {
    const pair = await p.allocate();
    handed.add(pair);
    return pair;
  };
  const release = (pair: RtpPortPair) => {
    handed.delete(pair);
    p.release(pair);
  };
  t.after(() => {
    for (const pair of handed) {
      p.release(pair);
      // Should the pool have failed to, the test still leaves no socket behind.
      for (const s of [pair.rtp, pair.rtcp]) closeQuietly(s);
    }
  });
  return { pool: p, clock, min, max, allocate, release };
}

function closeQuietly(s: Socket): void {
  try {
    s.close();
  } catch {
    // Already closed.
  }
}

async function blocker(t: TestContext, port: number): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(port, '127.0.0.1', () => resolve());
  });
  t.after(() => s.close());
  return s;
}

async function refusal(p: Promise<unknown>): Promise<VoxgateError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof VoxgateError) return e;
    throw e;
  }
  assert.fail('a pair was handed out');
}

describe('RtpPortPool', () => {
  it('RFC 3550 §11: each pair is an even RTP port and the odd RTCP port above it, both bound', async (t) => {
    const { allocate, min } = pool(t, { pairs: 2 });
    const pair = await allocate();
    assert.equal(pair.port, min);
    assert.equal(pair.port % 2, 0);
    assert.deepEqual(pair.rtp.address(), { address: '127.0.0.1', family: 'IPv4', port: min });
    assert.deepEqual(pair.rtcp.address(), { address: '127.0.0.1', family: 'IPv4', port: min + 1 });
  });

  it('an odd portMin starts at the next even port, and size counts whole pairs', async (t) => {
    const b = base();
    const { pool: p, allocate } = pool(t, { pairs: 2, min: b + 1 });
    assert.equal(p.size, 1);
    assert.equal((await allocate()).port, b + 2);
  });

  it('pairs are taken round-robin: the pair just released is the last to come back', async (t) => {
    const { allocate, release, min } = pool(t, { pairs: 3 });
    release(await allocate());
    const ports = [];
    for (let i = 0; i < 3; i++) {
      const pair = await allocate();
      ports.push(pair.port);
      release(pair);
    }
    assert.deepEqual(ports, [min + 2, min + 4, min]);
  });

  it('a released pair is not handed out again until its quarantine has passed', async (t) => {
    const { pool: p, allocate, release, clock, min } = pool(t, { pairs: 2, quarantineMs: 10_000 });
    const a = await allocate();
    const b = await allocate();
    assert.deepEqual([a.port, b.port], [min, min + 2]);
    release(a);
    assert.equal((await refusal(p.allocate())).code, 'VG_RTP_PORTS_EXHAUSTED');
    clock.t += 9_999;
    assert.equal((await refusal(p.allocate())).code, 'VG_RTP_PORTS_EXHAUSTED');
    clock.t += 1;
    assert.equal((await allocate()).port, min);
  });

  it('release closes both sockets, so the ports can be bound again', async (t) => {
    const { allocate, release, min } = pool(t, { pairs: 1 });
    release(await allocate());
    await blocker(t, min);
    await blocker(t, min + 1);
  });

  it('exhaustion is VG_RTP_PORTS_EXHAUSTED, a 503 with Retry-After, naming the range', async (t) => {
    const { pool: p, allocate, min, max } = pool(t, { pairs: 2 });
    await allocate();
    await allocate();
    const e = await refusal(p.allocate());
    assert.equal(e.code, 'VG_RTP_PORTS_EXHAUSTED');
    assert.equal(e.sipStatus, 503);
    assert.equal(e.status, 503);
    assert.match(e.headers['Retry-After'] ?? '', /^\d+$/);
    assert.match(e.message, new RegExp(`${min}-${max}`));
  });

  it('a pair whose RTP or RTCP port another socket holds is skipped, not a failed call', async (t) => {
    const { allocate, min, pool: p } = pool(t, { pairs: 3 });
    await blocker(t, min + 1);
    await blocker(t, min + 2);
    const pair = await allocate();
    assert.equal(pair.port, min + 4);
    assert.equal(p.portsInUse, 2);
    assert.equal((await refusal(p.allocate())).code, 'VG_RTP_PORTS_EXHAUSTED');
  });

  it('the RTP socket of a pair whose RTCP port was taken is closed again', async (t) => {
    const { pool: p, min } = pool(t, { pairs: 1 });
    await blocker(t, min + 1);
    await refusal(p.allocate());
    await blocker(t, min);
  });

  it('portsInUse counts two ports per pair held, and a second release changes nothing', async (t) => {
    const { pool: p, allocate, release } = pool(t, { pairs: 3, quarantineMs: 5000 });
    assert.equal(p.portsInUse, 0);
    const a = await allocate();
    assert.equal(p.portsInUse, 2);
    const b = await allocate();
    assert.equal(p.portsInUse, 4);
    release(a);
    assert.equal(p.portsInUse, 2);
    p.release(a);
    assert.equal(p.portsInUse, 2);
    release(b);
    assert.equal(p.portsInUse, 0);
  });

  it("a late second release of a pair whose port was handed out again leaves the new holder's sockets and count alone", async (t) => {
    const { pool: p, allocate, release, min } = pool(t, { pairs: 1 });
    const old = await allocate();
    release(old);
    const current = await allocate();
    assert.equal(current.port, min);
    p.release(old);
    assert.equal(p.portsInUse, 2, 'the stale release freed the port of the pair that holds it now');
    release(current);
    assert.equal(p.portsInUse, 0);
    // Both sockets of the current pair were closed by its own release.
    await blocker(t, min);
    await blocker(t, min + 1);
  });

  it('allocations made at once get different pairs', async (t) => {
    const { allocate, pool: p } = pool(t, { pairs: 3 });
    const pairs = await Promise.all([allocate(), allocate(), allocate()]);
    assert.equal(new Set(pairs.map((x) => x.port)).size, 3);
    assert.equal(p.portsInUse, 6);
  });
});
