/**
 * The bounded buffer between the bus (which pushes) and one stream's
 * generator (which pulls): push() refuses beyond `capacity` instead of
 * growing, and fail() ends the stream with an error at the next pull.
 */
export class StreamQueue<T> {
  private items: T[] = [];
  private head = 0;
  private wake: (() => void) | undefined;
  private failureState: { error: unknown } | undefined;

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.items.length - this.head;
  }

  /** False when the buffer is full (the item is dropped) or the queue has failed. */
  push(item: T): boolean {
    if (this.failureState || this.size >= this.capacity) return false;
    this.items.push(item);
    this.signal();
    return true;
  }

  /** Ends the queue: pending items are dropped and the next pull throws `error`. */
  fail(error: unknown): void {
    if (this.failureState) return;
    this.failureState = { error };
    this.items = [];
    this.head = 0;
    this.signal();
  }

  /** The error given to fail(), if any. */
  get failure(): unknown {
    return this.failureState?.error;
  }

  get failed(): boolean {
    return this.failureState !== undefined;
  }

  /**
   * The next item; "timeout" after `timeoutMs` without one; throws the
   * failure, or the signal's reason when it aborts.
   */
  async next(timeoutMs: number, signal: AbortSignal): Promise<T | "timeout"> {
    for (;;) {
      if (this.failureState) throw this.failureState.error;
      if (signal.aborted) throw signal.reason;
      if (this.size > 0) {
        const item = this.items[this.head]!;
        this.items[this.head++] = undefined as T;
        if (this.head > 1024 && this.head * 2 > this.items.length) {
          this.items = this.items.slice(this.head);
          this.head = 0;
        }
        return item;
      }
      const woke = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => done(false), timeoutMs);
        const onAbort = () => done(true);
        signal.addEventListener("abort", onAbort, { once: true });
        const done = (v: boolean) => {
          clearTimeout(timer);
          signal.removeEventListener("abort", onAbort);
          this.wake = undefined;
          resolve(v);
        };
        this.wake = () => done(true);
      });
      if (!woke && this.size === 0 && !this.failureState) return "timeout";
    }
  }

  private signal(): void {
    this.wake?.();
  }
}
