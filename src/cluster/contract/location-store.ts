import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Binding, LocationStore } from '../../sip/location-store.js';

/**
 * What every LocationStore must do, memory or JetStream KV (DESIGN.md: "LocationStore (async)";
 * "Memory and NATS implementations pass one shared contract test suite"). The aors are real
 * SIP URIs (`sip:alice@example.com`): a KV implementation must encode them into key characters.
 */

export interface LocationStoreFixture {
  /** A store over empty state (for NATS: a fresh bucket). The suite closes it. */
  store: LocationStore;
  /**
   * A second store over the same state, as another node would hold it (NATS: its own connection
   * to the same bucket). When given, the concurrency tests race across both, so a store that only
   * serialises within one process (a local lock instead of a revision check) fails. The suite closes it.
   */
  peer?: LocationStore;
  /** Runs after the stores are closed: delete the bucket, drain the connections. */
  cleanup?: () => Promise<void>;
}

export type LocationStoreFactory = () => Promise<LocationStoreFixture>;

const T0 = 1_700_000_000_000;
const ALICE = 'sip:alice@example.com';
const BOB = 'sip:bob@example.com';

interface Ctx {
  store: LocationStore;
  /** `peer` when there is one, else `store`. */
  other: LocationStore;
}

/** Bindings as JSON would carry them: an implementation may drop the undefined-valued keys. */
const plain = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

const byFlow = (a: Binding, b: Binding) => (a.flowId < b.flowId ? -1 : a.flowId > b.flowId ? 1 : 0);

/** Binding n of an aor; odd ones carry RFC 5626 instance and reg-id and a node, even ones leave them out. */
function binding(aor: string, n: number): Binding {
  const outbound = n % 2 === 1;
  return {
    aor,
    contact: `sip:${n}@198.51.100.7:${40_000 + n};transport=ws`,
    flowId: `flow-${String(n).padStart(3, '0')}`,
    remote: `198.51.100.7:${40_000 + n}`,
    instance: outbound ? `<urn:uuid:00000000-0000-4000-8000-${String(n).padStart(12, '0')}>` : undefined,
    regId: outbound ? '1' : undefined,
    callId: `reg-${n}@client.invalid`,
    cseq: n + 1,
    expiresAt: T0 + 3_600_000,
    userAgent: outbound ? 'JsSIP 3.13.8' : undefined,
    // In a fleet, the node holding the flow: kept as written.
    ...(outbound ? { node: `node-${n % 3}` } : {}),
  };
}

export function locationStoreContract(name: string, make: LocationStoreFactory): void {
  const it = (title: string, body: (c: Ctx) => Promise<void>) =>
    test(title, async () => {
      const f = await make();
      try {
        await body({ store: f.store, other: f.peer ?? f.store });
      } finally {
        await f.store.close();
        await f.peer?.close();
        await f.cleanup?.();
      }
    });

  describe(name, () => {
    it('get of an unknown aor is [] and all() of an empty store is []', async ({ store }) => {
      assert.deepEqual(await store.get(ALICE), []);
      assert.deepEqual(await store.all(), []);
    });

    it('update stores the bindings and returns them; get and all() return equal copies', async ({ store, other }) => {
      const bindings = [binding(ALICE, 1), binding(ALICE, 2)];
      const stored = await store.update(ALICE, () => bindings);
      assert.deepEqual(plain(stored), plain(bindings));
      assert.notEqual(stored, bindings);
      assert.deepEqual(plain(await store.get(ALICE)), plain(bindings));
      assert.deepEqual(plain(await other.get(ALICE)), plain(bindings));
      assert.deepEqual(plain((await store.all()).sort(byFlow)), plain(bindings));
    });

    it('change receives the bindings currently stored', async ({ store, other }) => {
      await store.update(ALICE, () => [binding(ALICE, 1)]);
      const seen: Binding[][] = [];
      await other.update(ALICE, (current) => {
        seen.push(plain(current));
        return [...current, binding(ALICE, 2)];
      });
      assert.deepEqual(seen.at(-1), plain([binding(ALICE, 1)]));
      const stored = await store.update(ALICE, (current) => {
        seen.push(plain(current));
        return current.filter((b) => b.flowId !== binding(ALICE, 1).flowId);
      });
      assert.deepEqual(seen.at(-1), plain([binding(ALICE, 1), binding(ALICE, 2)]));
      assert.deepEqual(plain(stored), plain([binding(ALICE, 2)]));
      assert.deepEqual(await store.update(BOB, (current) => current), [], 'an unknown aor starts from []');
    });

    it('50 concurrent updates of one aor, each appending a binding, lose none', async ({ store, other }) => {
      const on = (i: number) => (i % 2 === 0 ? store : other);
      await Promise.all(Array.from({ length: 50 }, (_, i) => on(i).update(ALICE, (current) => [...current, binding(ALICE, i)])));
      const expected = plain(Array.from({ length: 50 }, (_, i) => binding(ALICE, i)));
      assert.deepEqual(plain((await store.get(ALICE)).sort(byFlow)), expected);
      assert.deepEqual(plain((await other.all()).sort(byFlow)), expected);
    });

    it('under concurrency each update builds on what the previous one stored, never on a stale list', async ({ store, other }) => {
      const on = (i: number) => (i % 2 === 0 ? store : other);
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => on(i).update(ALICE, (current) => [...current, binding(ALICE, i)])));
      // Serialised updates store lists of 1, 2, ... 50, each the one before plus a binding;
      // two changes run on the same list would store two lists of one length.
      const chain = results.map((r) => plain(r)).sort((a, b) => a.length - b.length);
      assert.deepEqual(
        chain.map((r) => r.length),
        Array.from({ length: 50 }, (_, i) => i + 1),
      );
      for (let k = 1; k < chain.length; k++) assert.deepEqual(chain[k]!.slice(0, k), chain[k - 1], `stored list ${k + 1} extends list ${k}`);
    });

    it('update to [] removes the aor: get is [] and all() no longer has it; other aors stay', async ({ store, other }) => {
      await store.update(ALICE, () => [binding(ALICE, 1), binding(ALICE, 2)]);
      await other.update(BOB, () => [binding(BOB, 3)]);
      assert.deepEqual(await other.update(ALICE, () => []), []);
      assert.deepEqual(await store.get(ALICE), []);
      assert.deepEqual(plain(await store.all()), plain([binding(BOB, 3)]));
      assert.deepEqual(plain(await store.update(ALICE, (current) => [...current, binding(ALICE, 4)])), plain([binding(ALICE, 4)]), 'a removed aor starts again from []');
    });

    it('returned arrays and bindings are copies: changing them, or what change was given or returned, changes nothing stored', async ({ store }) => {
      let given: Binding[] = [];
      let returned: Binding[] = [];
      await store.update(ALICE, () => [binding(ALICE, 1)]);
      const stored = await store.update(ALICE, (current) => {
        given = current;
        returned = [...current, binding(ALICE, 2)];
        return returned;
      });
      const expected = plain([binding(ALICE, 1), binding(ALICE, 2)]);
      stored.push(binding(ALICE, 9));
      stored[0]!.contact = 'sip:changed@203.0.113.1';
      given.length = 0;
      returned[1]!.flowId = 'flow-changed';
      returned.push(binding(ALICE, 8));
      const got = await store.get(ALICE);
      got[0]!.cseq = 999;
      got.pop();
      const all = await store.all();
      all[0]!.expiresAt = 0;
      all.length = 0;
      assert.deepEqual(plain(await store.get(ALICE)), expected);
      assert.deepEqual(plain(await store.all()), expected);
    });

    it('a change that throws rejects the update and stores nothing', async ({ store }) => {
      await store.update(ALICE, () => [binding(ALICE, 1)]);
      const refusal = new Error('out-of-order REGISTER');
      await assert.rejects(
        store.update(ALICE, () => {
          throw refusal;
        }),
        refusal,
      );
      await assert.rejects(
        store.update(BOB, () => {
          throw refusal;
        }),
        refusal,
      );
      assert.deepEqual(plain(await store.get(ALICE)), plain([binding(ALICE, 1)]));
      assert.deepEqual(await store.get(BOB), []);
    });
  });
}
