// biome-ignore lint/suspicious/noExplicitAny: listeners of any signature share one set; Emitter<M> types them at the edges
type Listener = (...args: any[]) => void;

/** A tiny typed event emitter (no Node `events` in browser bundles). */
export class Emitter<M extends { [K in keyof M]: unknown[] }> {
  #listeners = new Map<keyof M, Set<Listener>>();

  /** Calls `fn` on every `name` event; returns a function that removes it. */
  on<K extends keyof M>(name: K, fn: (...args: M[K]) => void): () => void {
    let set = this.#listeners.get(name);
    if (!set) this.#listeners.set(name, (set = new Set()));
    set.add(fn);
    return () => this.off(name, fn);
  }

  /** Calls `fn` on the next `name` event only. */
  once<K extends keyof M>(name: K, fn: (...args: M[K]) => void): () => void {
    const off = this.on(name, (...args) => {
      off();
      fn(...args);
    });
    return off;
  }

  /** Removes a listener added with `on`. */
  off<K extends keyof M>(name: K, fn: (...args: M[K]) => void): void {
    this.#listeners.get(name)?.delete(fn);
  }

  /** Whether anything listens to `name`. */
  protected listens(name: keyof M): boolean {
    return (this.#listeners.get(name)?.size ?? 0) > 0;
  }

  protected emit<K extends keyof M>(name: K, ...args: M[K]): void {
    const set = this.#listeners.get(name);
    if (!set) return;
    for (const fn of [...set]) {
      // One failing listener must not break the stream or the other listeners.
      try {
        fn(...args);
      } catch (err) {
        console.error(`chatwire: a "${String(name)}" listener threw`, err);
      }
    }
  }
}
