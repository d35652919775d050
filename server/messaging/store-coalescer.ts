import type { Kysely } from "kysely";
import type { Logger } from "pino";
import { CallCoalescer } from "../db/call-coalescer.js";
import type { Database } from "../db/schema.js";
import type { OutgoingMessage } from "./types.js";
import { storeMessages, type StoreResult } from "./store.js";

interface Part {
  msgs: readonly OutgoingMessage[];
  now: Date;
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
 * (a data error stays with the batch that holds the bad message). The
 * gathering is server/db/call-coalescer.ts's.
 */
export class StoreCoalescer {
  private readonly calls: CallCoalescer<Part, StoreResult[]>;

  constructor(db: Kysely<Database>, opts: StoreCoalescerOptions = {}) {
    this.calls = new CallCoalescer<Part, StoreResult[]>({
      what: "store",
      one: (p) => storeMessages(db, p.msgs, p.now),
      many: async (parts) => {
        // The latest of the parts' clocks: created_at never goes back for any of them.
        const now = new Date(Math.max(...parts.map((p) => p.now.getTime())));
        const results = await storeMessages(
          db,
          parts.flatMap((p) => p.msgs),
          now,
        );
        let at = 0;
        return parts.map((p) => results.slice(at, (at += p.msgs.length)));
      },
      size: (p) => p.msgs.length,
      maxSize: opts.maxMessages ?? 500,
      concurrency: opts.concurrency ?? 2,
      gatherTurn: opts.gatherTurn,
      logger: opts.logger,
    });
  }

  store(msgs: readonly OutgoingMessage[], now: Date): Promise<StoreResult[]> {
    return this.calls.call({ msgs, now });
  }
}
