import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Counter } from "prom-client";
import type { Clock } from "../clock.js";
import type { Database } from "../db/schema.js";
import type { EventBus } from "./bus.js";
import { MessageRejectedError, publishNotices, type MessageQueue } from "./message-queue.js";
import { storeMessages, type StoreResult } from "./store.js";
import type { OutgoingMessage, StoredMessage } from "./types.js";

export interface InlineQueueOptions {
  db: Kysely<Database>;
  bus: EventBus;
  /** config.natsSubjectPrefix: live notices go to `<prefix>.user.<id>`. */
  subjectPrefix: string;
  clock: Clock;
  logger: Logger;
  /** chatwire_worker_messages_total: counted here as the worker counts (stored, duplicate, rejected). */
  counter?: Counter<"result">;
  /** At most this many messages in one store call (default 256). */
  maxBatch?: number;
}

interface Waiting {
  msg: OutgoingMessage;
  resolve: (r: { stored: StoredMessage }) => void;
  reject: (err: unknown) => void;
}

const DEFAULT_MAX_BATCH = 256;

/**
 * The embedded profile's queue: publish() does the worker's job before it
 * returns (store in one transaction, then the live notices), so SendMessage
 * answers with the stored message.
 *
 * The messages published in one turn of the event loop, and those published
 * while a store runs, are stored together with ONE chatwire_store_messages
 * call, in publish order, as the worker stores a JetStream batch: PGlite runs
 * every query serially on the main thread, and the set-based store costs a
 * batch of 50 little more than one message. Per-conversation order (seq
 * follows publish order), idempotency (a repeat in the same batch comes back
 * as a duplicate of the first) and "answered once stored" are unchanged.
 */
export class InlineQueue implements MessageQueue {
  readonly kind = "inline";
  private readonly logger: Logger;
  private readonly maxBatch: number;
  private waiting: Waiting[] = [];
  /** A flush is scheduled or running: later publishes join the next batch. */
  private busy = false;

  constructor(private readonly opts: InlineQueueOptions) {
    this.logger = opts.logger.child({ component: "inline-queue" });
    this.maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH;
  }

  publish(msg: OutgoingMessage): Promise<{ stored: StoredMessage }> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ msg, resolve, reject });
      if (!this.busy) {
        this.busy = true;
        // After this turn's other publishes (requests whose preflight ran in the same turn).
        setImmediate(() => void this.flush());
      }
    });
  }

  ready(): boolean {
    return true;
  }

  private async flush(): Promise<void> {
    while (this.waiting.length > 0) {
      const batch = this.waiting.splice(0, this.maxBatch);
      await this.storeBatch(batch);
    }
    this.busy = false;
  }

  private async storeBatch(batch: Waiting[]): Promise<void> {
    let results: StoreResult[];
    try {
      results = await storeMessages(
        this.opts.db,
        batch.map((w) => w.msg),
        this.opts.clock.now(),
      );
    } catch (err) {
      if (batch.length === 1) {
        batch[0]!.reject(err);
        return;
      }
      // One message the database refuses (an error, not a rejection) must not fail the others: each alone.
      this.logger.warn({ err: (err as Error).message, messages: batch.length }, "batched store failed; storing one by one");
      for (const w of batch) await this.storeBatch([w]);
      return;
    }
    batch.forEach((w, i) => this.settle(w, results[i]));
  }

  private settle(w: Waiting, result: StoreResult | undefined): void {
    const { msg } = w;
    if (!result) {
      w.reject(new Error("storeMessages returned no result"));
      return;
    }
    this.opts.counter?.inc({ result: !result.ok ? "rejected" : result.message.duplicate ? "duplicate" : "stored" });
    if (!result.ok) {
      this.logger.info({ messageId: msg.id, conversationId: msg.conversationId, reason: result.reason }, "message rejected");
      w.reject(new MessageRejectedError(result.reason, result.error));
      return;
    }
    publishNotices(this.opts.bus, this.opts.subjectPrefix, result.notices);
    w.resolve({ stored: result.message });
  }
}
