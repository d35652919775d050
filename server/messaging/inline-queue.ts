import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Counter } from "prom-client";
import type { Clock } from "../clock.js";
import type { Database } from "../db/schema.js";
import type { EventBus } from "./bus.js";
import { MessageRejectedError, publishNotices, type MessageQueue } from "./message-queue.js";
import type { StoreResult } from "./store.js";
import { StoreCoalescer } from "./store-coalescer.js";
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
  private readonly coalescer: StoreCoalescer;

  constructor(private readonly opts: InlineQueueOptions) {
    this.logger = opts.logger.child({ component: "inline-queue" });
    // One call at a time (PGlite runs queries one by one anyway), after this turn's other publishes
    // (requests whose preflight ran in the same turn); one message per part, so a message the
    // database refuses with an error fails only its own send.
    this.coalescer = new StoreCoalescer(opts.db, { concurrency: 1, maxMessages: opts.maxBatch ?? DEFAULT_MAX_BATCH, gatherTurn: true, logger: this.logger });
  }

  async publish(msg: OutgoingMessage): Promise<{ stored: StoredMessage }> {
    const [result] = await this.coalescer.store([msg], this.opts.clock.now());
    return this.settle(msg, result);
  }

  ready(): boolean {
    return true;
  }

  private settle(msg: OutgoingMessage, result: StoreResult | undefined): { stored: StoredMessage } {
    if (!result) throw new Error("storeMessages returned no result");
    this.opts.counter?.inc({ result: !result.ok ? "rejected" : result.message.duplicate ? "duplicate" : "stored" });
    if (!result.ok) {
      this.logger.info({ messageId: msg.id, conversationId: msg.conversationId, reason: result.reason }, "message rejected");
      throw new MessageRejectedError(result.reason, result.error);
    }
    publishNotices(this.opts.bus, this.opts.subjectPrefix, result.notices);
    return { stored: result.message };
  }
}
