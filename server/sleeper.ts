/**
 * The pause of a polling loop that can be cut short: by stop(), or by an event
 * the loop must act on at once (a lost lock). One sleep at a time; none once
 * `isStopping()` says the loop is ending. Used by the message worker, the
 * worker pool and the push pool.
 */
export class Sleeper {
  private wakeUp: (() => void) | undefined;

  constructor(private readonly isStopping: () => boolean) {}

  sleep(ms: number): Promise<void> {
    if (this.isStopping()) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.wakeUp === done) this.wakeUp = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeUp = done;
    });
  }

  /** Ends the current sleep now (no-op when none). */
  wake(): void {
    this.wakeUp?.();
  }
}
