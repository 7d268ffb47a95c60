import type { Binding, LocationStore } from '../../sip/location-store.js';

/** Every field of a binding is a primitive, so a spread is a full copy. */
const copyAll = (bindings: readonly Binding[]): Binding[] => bindings.map((b) => ({ ...b }));

/**
 * One process's registrar bindings. `update` runs `change` and stores its result with no await
 * in between, so concurrent updates of one aor cannot interleave and `change` runs once.
 */
export class MemoryLocationStore implements LocationStore {
  readonly #byAor = new Map<string, Binding[]>();
  #closed = false;

  async get(aor: string): Promise<Binding[]> {
    this.#open();
    return copyAll(this.#byAor.get(aor) ?? []);
  }

  async update(aor: string, change: (current: Binding[]) => Binding[]): Promise<Binding[]> {
    this.#open();
    // Copies both ways: `change` may return (or keep) the array it was given.
    const next = copyAll(change(copyAll(this.#byAor.get(aor) ?? [])));
    if (next.length > 0) this.#byAor.set(aor, next);
    else this.#byAor.delete(aor);
    return copyAll(next);
  }

  async all(): Promise<Binding[]> {
    this.#open();
    return copyAll([...this.#byAor.values()].flat());
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#byAor.clear();
  }

  #open(): void {
    if (this.#closed) throw new Error('the location store is closed');
  }
}
