import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Database } from "../db/schema.js";
import type { OutgoingMessage } from "./types.js";
import { storeMessages, type StoreResult } from "./store.js";

interface Part {
  msgs: readonly OutgoingMessage[];
  now: Date;
  resolve: (results: StoreResult[]) => void;
  reject: (err: unknown) => void;
}

export interface StoreCoalescerOptions {
  /** Calls at once (default 2). */
  concurrency?: number;
  /** At most this many messages in one call (default 500; one part is never split). */
  maxMessages?: number;
  /** An idle coalescer waits for the end of this turn of the event loop before its first call, so what arrives in the same turn goes together. */
  gatherTurn?: boolean;
  logger?: Logger;
}

/**
 * One process's partition workers store through this (and the embedded
 * profile's inline queue, one message per part): the batches handed in
 * while a store runs go to the database together, as one
 * `chatwire_store_messages` call (storeMessages), instead of one call per
 * partition. With P partitions each worker sees 1/P of the messages, so its
 * own batches stay single messages long after the process's rate would fill
 * bigger ones; one call of 10 messages costs PostgreSQL about a quarter of
 * ten calls of one (bench/pg-functions.ts).
 *
 * Order and idempotency are unchanged: a partition's worker has one batch in
 * hand at a time and waits for its results, and no conversation is in two
 * partitions. At most `concurrency` calls run at once; an idle coalescer
 * stores a batch at once (no waiting for company). A combined call that
 * fails is retried part by part, so each worker gets its own batch's outcome
 * (a data error stays with the batch that holds the bad message).
 */
export class StoreCoalescer {
  private readonly waiting: Part[] = [];
  private running = 0;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly opts: StoreCoalescerOptions = {},
  ) {}

  store(msgs: readonly OutgoingMessage[], now: Date): Promise<StoreResult[]> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ msgs, now, resolve, reject });
      if (this.running < (this.opts.concurrency ?? 2)) void this.run();
    });
  }

  private async run(): Promise<void> {
    this.running++;
    try {
      if (this.opts.gatherTurn) await new Promise((resolve) => setImmediate(resolve));
      while (this.waiting.length > 0) {
        const parts = this.take();
        await this.storeParts(parts);
      }
    } finally {
      this.running--;
    }
  }

  /** The waiting parts, oldest first, up to maxMessages (always at least one part). */
  private take(): Part[] {
    const max = this.opts.maxMessages ?? 500;
    let n = 0;
    let i = 0;
    while (i < this.waiting.length && (i === 0 || n + this.waiting[i]!.msgs.length <= max)) {
      n += this.waiting[i]!.msgs.length;
      i++;
    }
    return this.waiting.splice(0, i);
  }

  private async storeParts(parts: Part[]): Promise<void> {
    if (parts.length === 1) {
      const [p] = parts as [Part];
      await storeMessages(this.db, p.msgs, p.now).then(p.resolve, p.reject);
      return;
    }
    // The latest of the parts' clocks: created_at never goes back for any of them.
    const now = new Date(Math.max(...parts.map((p) => p.now.getTime())));
    let results: StoreResult[];
    try {
      results = await storeMessages(
        this.db,
        parts.flatMap((p) => p.msgs),
        now,
      );
    } catch (err) {
      this.opts.logger?.warn({ err: (err as Error).message, parts: parts.length }, "combined store failed; storing each part alone");
      for (const p of parts) await storeMessages(this.db, p.msgs, p.now).then(p.resolve, p.reject);
      return;
    }
    let at = 0;
    for (const p of parts) {
      p.resolve(results.slice(at, at + p.msgs.length));
      at += p.msgs.length;
    }
  }
}
