type EventMap = Record<string, unknown[]>;
type Listener = ((...args: unknown[]) => void) & { once?: Listener };
/** The typed signatures are checked at on/once/off/emit; inside, a listener is a listener. */
const asListener = (fn: unknown) => fn as Listener;

/**
 * A typed event emitter. A listener that throws is reported through `onListenerError`
 * and never breaks the emitter's caller (the media path must keep running).
 *
 * Not node:events: every SIP transaction and media leg is one, so construction and emit are on
 * the hot path. Listener lists are replaced, never changed in place, so an emit calls exactly
 * the listeners there were when it began (as EventEmitter does) without copying them.
 */
export class TypedEmitter<E extends EventMap> {
  #listeners: Map<string, Listener[]> | undefined;
  static onListenerError: (event: string, err: unknown) => void = (event, err) => {
    process.emitWarning(`listener for '${event}' threw: ${String(err)}`);
  };

  on<K extends keyof E & string>(event: K, fn: (...args: E[K]) => void): this {
    const listeners = (this.#listeners ??= new Map());
    const list = listeners.get(event);
    listeners.set(event, list ? [...list, asListener(fn)] : [asListener(fn)]);
    return this;
  }

  /** Calls `fn` at the next emit of `event` only (it is removed before it runs). */
  once<K extends keyof E & string>(event: K, fn: (...args: E[K]) => void): this {
    const wrapper: Listener = (...args: unknown[]) => {
      this.off(event, wrapper as never);
      asListener(fn)(...args);
    };
    wrapper.once = asListener(fn);
    return this.on(event, wrapper);
  }

  /** Removes one registration of `fn` (whether added with on or once). */
  off<K extends keyof E & string>(event: K, fn: (...args: E[K]) => void): this {
    const list = this.#listeners?.get(event);
    const target = asListener(fn);
    const at = list?.findIndex((l) => l === target || l.once === target) ?? -1;
    if (!list || at < 0) return this;
    if (list.length === 1) this.#listeners!.delete(event);
    else this.#listeners!.set(event, [...list.slice(0, at), ...list.slice(at + 1)]);
    return this;
  }

  /** Whether anyone listens for `event` (an emitter may fall back when no one does). */
  hasListeners<K extends keyof E & string>(event: K): boolean {
    return (this.#listeners?.get(event)?.length ?? 0) > 0;
  }

  protected emit<K extends keyof E & string>(event: K, ...args: E[K]): void {
    const list = this.#listeners?.get(event);
    if (list === undefined) return;
    for (const fn of list) {
      try {
        fn(...args);
      } catch (err) {
        TypedEmitter.onListenerError(event, err);
      }
    }
  }

  protected removeAllListeners(): void {
    this.#listeners = undefined;
  }
}
