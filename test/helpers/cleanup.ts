import type { TestContext } from 'node:test';

const cleanups = new WeakMap<TestContext, (() => unknown)[]>();

/**
 * Per-test cleanups, run last-registered first (a peer before the gateway it calls, the gateway
 * before the certificate it serves, or SIPp after the gateway whose BYE must reach it: register
 * in the order that gives), whatever order node:test runs after hooks in.
 */
export function onCleanup(t: TestContext, fn: () => unknown): void {
  let list = cleanups.get(t);
  if (!list) {
    const fns: (() => unknown)[] = [];
    cleanups.set(t, (list = fns));
    t.after(async () => {
      for (const f of fns.splice(0).reverse()) await f();
    });
  }
  list.push(fn);
}
