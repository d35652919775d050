import type { Logger } from "pino";

export interface CallCoalescerOptions<I, O> {
  /** What the calls are, for the log line when a combined call fails. */
  what: string;
  /** One item alone: the call as it would be without the coalescer. */
  one: (item: I) => Promise<O>;
  /** Several items in one round trip, one result per item, in order. */
  many: (items: I[]) => Promise<O[]>;
  /** Calls at once (default 2). */
  concurrency?: number;
  /** How much of maxSize an item takes (default 1). */
  size?: (item: I) => number;
  /** At most this much in one call (default 500; an item is never split). */
  maxSize?: number;
  /** An idle coalescer waits for the end of this turn of the event loop before its first call, so what arrives in the same turn goes together. */
  gatherTurn?: boolean;
  /** Told when the last call has ended and nothing waits (the owner may drop the coalescer). */
  onIdle?: () => void;
  logger?: Logger;
}

interface Waiting<I, O> {
  item: I;
  resolve: (out: O) => void;
  reject: (err: unknown) => void;
}

/**
 * Database calls that arrive while others run go to the database together:
 * at most `concurrency` calls run at once; an idle coalescer makes its call
 * at once (no waiting for company, so a lone call gets no extra latency),
 * and what queued meanwhile goes as one combined call when a call ends.
 * Under load the round trips (and PostgreSQL's fixed cost per statement and
 * per transaction) are shared, with no timer. A combined call that fails is
 * retried item by item (all at once), so each caller gets its own item's
 * outcome.
 */
export class CallCoalescer<I, O> {
  private readonly waiting: Waiting<I, O>[] = [];
  private running = 0;

  constructor(private readonly opts: CallCoalescerOptions<I, O>) {}

  call(item: I): Promise<O> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      if (this.running < (this.opts.concurrency ?? 2)) void this.run();
    });
  }

  private async run(): Promise<void> {
    this.running++;
    try {
      if (this.opts.gatherTurn) await new Promise((resolve) => setImmediate(resolve));
      while (this.waiting.length > 0) await this.send(this.take());
    } finally {
      this.running--;
      if (this.running === 0 && this.waiting.length === 0) this.opts.onIdle?.();
    }
  }

  /** The waiting items, oldest first, up to maxSize (always at least one). */
  private take(): Waiting<I, O>[] {
    const max = this.opts.maxSize ?? 500;
    const size = this.opts.size ?? (() => 1);
    let n = 0;
    let i = 0;
    while (i < this.waiting.length && (i === 0 || n + size(this.waiting[i]!.item) <= max)) {
      n += size(this.waiting[i]!.item);
      i++;
    }
    return this.waiting.splice(0, i);
  }

  private async send(batch: Waiting<I, O>[]): Promise<void> {
    if (batch.length === 1) {
      const [w] = batch as [Waiting<I, O>];
      await this.opts.one(w.item).then(w.resolve, w.reject);
      return;
    }
    let results: O[];
    try {
      results = await this.opts.many(batch.map((w) => w.item));
      if (results.length !== batch.length) throw new Error(`${this.opts.what}: ${results.length} results for ${batch.length} items`);
    } catch (err) {
      this.opts.logger?.warn({ err: (err as Error).message, items: batch.length }, `combined ${this.opts.what} failed; calling each alone`);
      // At once, not one after another: with the database gone each would wait out its own connect timeout.
      await Promise.all(batch.map((w) => this.opts.one(w.item).then(w.resolve, w.reject)));
      return;
    }
    batch.forEach((w, i) => w.resolve(results[i]!));
  }
}
