import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Counter } from "prom-client";
import type { Clock } from "../clock.js";
import type { Database } from "../db/schema.js";
import type { EventBus } from "./bus.js";
import { MessageRejectedError, publishNotices, type MessageQueue } from "./message-queue.js";
import { storeMessages } from "./store.js";
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
}

/**
 * The embedded profile's queue: publish() does the worker's job before it
 * returns (store in one transaction, then the live notices), so SendMessage
 * answers with the stored message.
 */
export class InlineQueue implements MessageQueue {
  readonly kind = "inline";
  private readonly logger: Logger;

  constructor(private readonly opts: InlineQueueOptions) {
    this.logger = opts.logger.child({ component: "inline-queue" });
  }

  async publish(msg: OutgoingMessage): Promise<{ stored: StoredMessage }> {
    const [result] = await storeMessages(this.opts.db, [msg], this.opts.clock.now());
    if (!result) throw new Error("storeMessages returned no result");
    this.opts.counter?.inc({ result: !result.ok ? "rejected" : result.message.duplicate ? "duplicate" : "stored" });
    if (!result.ok) {
      this.logger.info({ messageId: msg.id, conversationId: msg.conversationId, reason: result.reason }, "message rejected");
      throw new MessageRejectedError(result.reason, result.error);
    }
    publishNotices(this.opts.bus, this.opts.subjectPrefix, result.notices);
    return { stored: result.message };
  }

  ready(): boolean {
    return true;
  }
}
