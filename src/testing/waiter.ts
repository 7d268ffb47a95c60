/**
 * Test support: resolves when `ready()` holds, checked after every `poke()` (the event the test
 * waits on), and rejects after the timeout. No polling and no sleeping.
 */
export class Waiter {
  #wake: (() => void) | undefined;

  poke(): void {
    this.#wake?.();
  }

  async until(ready: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!ready()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
}
