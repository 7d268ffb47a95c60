import { EventEmitter } from 'node:events';

type EventMap = Record<string, unknown[]>;

/**
 * A typed EventEmitter. A listener that throws is reported through `onListenerError`
 * and never breaks the emitter's caller (the media path must keep running).
 */
export class TypedEmitter<E extends EventMap> {
  readonly #ee = new EventEmitter();
  static onListenerError: (event: string, err: unknown) => void = (event, err) => {
    process.emitWarning(`listener for '${event}' threw: ${String(err)}`);
  };

  constructor() {
    this.#ee.setMaxListeners(0);
  }

  on<K extends keyof E & string>(event: K, fn: (...args: E[K]) => void): this {
    this.#ee.on(event, fn as (...args: unknown[]) => void);
    return this;
  }

  once<K extends keyof E & string>(event: K, fn: (...args: E[K]) => void): this {
    this.#ee.once(event, fn as (...args: unknown[]) => void);
    return this;
  }

  off<K extends keyof E & string>(event: K, fn: (...args: E[K]) => void): this {
    this.#ee.off(event, fn as (...args: unknown[]) => void);
    return this;
  }

  protected emit<K extends keyof E & string>(event: K, ...args: E[K]): void {
    for (const fn of this.#ee.listeners(event)) {
      try {
        (fn as (...a: E[K]) => void)(...args);
      } catch (err) {
        TypedEmitter.onListenerError(event, err);
      }
    }
  }

  protected removeAllListeners(): void {
    this.#ee.removeAllListeners();
  }
}
