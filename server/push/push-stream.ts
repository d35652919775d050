import { AckPolicy, DeliverPolicy, JetStreamApiError, RetentionPolicy, StorageType, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { Consumer, JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { headers, nanos, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { partitionOf } from "../messaging/jetstream-queue.js";
import type { OutgoingMessage } from "../messaging/types.js";
import type { PushEvent } from "./dispatcher.js";

export interface PushStreamOptions {
  nc: NatsConnection;
  subjectPrefix: string;
  /** MESSAGE_PARTITIONS: a conversation's pushes are in the same partition as its messages. */
  partitions: number;
  replicas: number;
  ackWaitMs: number;
  logger: Logger;
}

/** A push older than this is of no use (the device has reconnected or the user moved on): JetStream drops it. */
const MAX_AGE_MS = 60 * 60_000;

/**
 * The stream of stored messages push delivery reads (`<PREFIX>_PUSH`,
 * subjects `<prefix>.push.<partition>.<conversation>`, work-queue retention,
 * one durable consumer `<prefix>-push-<p>` per partition). The message worker
 * publishes to it after each stored batch (MessageWorkerOptions.onStored).
 */
export class PushStream {
  readonly stream: string;
  readonly consumers: string[];
  private readonly filters: string[];
  private readonly js: JetStreamClient;
  private readonly logger: Logger;

  constructor(private readonly opts: PushStreamOptions) {
    const { subjectPrefix: prefix, partitions } = opts;
    this.stream = `${prefix.toUpperCase().replaceAll("-", "_")}_PUSH`;
    this.consumers = Array.from({ length: partitions }, (_, p) => `${prefix}-push-${p}`);
    this.filters = Array.from({ length: partitions }, (_, p) => `${prefix}.push.${p}.*`);
    this.js = jetstream(opts.nc);
    this.logger = opts.logger.child({ component: "push-stream", stream: this.stream });
  }

  get partitions(): number {
    return this.opts.partitions;
  }

  /** Creates the stream and the partitions' consumers if missing. Safe from every instance at every start. */
  async provision(): Promise<void> {
    const jsm = await jetstreamManager(this.opts.nc);
    const config = {
      name: this.stream,
      subjects: [`${this.opts.subjectPrefix}.push.>`],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      max_age: nanos(MAX_AGE_MS),
      duplicate_window: nanos(2 * 60_000),
      num_replicas: this.opts.replicas,
    };
    await jsm.streams.info(this.stream).catch(async (err: unknown) => {
      if (!(err instanceof JetStreamApiError) || err.status !== 404) throw err;
      await jsm.streams.add(config).catch(() => jsm.streams.info(this.stream));
      this.logger.info("JetStream push stream created");
    });
    // In parallel: one round trip's wait for all of them at every start.
    await Promise.all(this.consumers.map((durable_name, p) => this.ensureConsumer(jsm, durable_name, p)));
  }

  private async ensureConsumer(jsm: JetStreamManager, durable_name: string, p: number): Promise<void> {
    await jsm.consumers.info(this.stream, durable_name).catch(async (err: unknown) => {
      if (!(err instanceof JetStreamApiError) || err.status !== 404) throw err;
      await jsm.consumers
        .add(this.stream, {
          durable_name,
          filter_subject: this.filters[p]!,
          ack_policy: AckPolicy.Explicit,
          ack_wait: nanos(this.opts.ackWaitMs),
          deliver_policy: DeliverPolicy.All,
          max_deliver: 5,
          max_ack_pending: 10_000,
        })
        .catch(() => jsm.consumers.info(this.stream, durable_name));
    });
  }

  /**
   * Publishes the stored messages' push events as plain NATS messages on the
   * stream's subjects (JetStream stores them; Nats-Msg-Id drops a repeat):
   * no ack awaited, so the message worker neither waits nor pays a request
   * per message. A message whose event is lost (NATS gone at that instant)
   * gets no push; its recipients still receive it when they reconnect.
   */
  publish(stored: readonly OutgoingMessage[]): void {
    for (const m of stored) {
      const event: PushEvent = { messageId: m.id, conversationId: m.conversationId, senderId: m.senderId };
      const subject = `${this.opts.subjectPrefix}.push.${partitionOf(m.conversationId, this.opts.partitions)}.${m.conversationId}`;
      const h = headers();
      h.set("Nats-Msg-Id", `push:${m.id}`);
      try {
        this.opts.nc.publish(subject, JSON.stringify(event), { headers: h });
      } catch (err) {
        this.logger.warn({ err: (err as Error).message, messageId: m.id }, "publishing a push event failed: that message gets no push");
      }
    }
  }

  consumer(partition: number): Promise<Consumer> {
    return this.js.consumers.get(this.stream, this.consumers[partition]!);
  }
}

/** A push event off the stream; undefined for anything else. */
export function decodePushEvent(data: Uint8Array): PushEvent | undefined {
  try {
    const e = JSON.parse(new TextDecoder().decode(data)) as Partial<PushEvent>;
    if (typeof e.messageId === "string" && typeof e.conversationId === "string" && typeof e.senderId === "string") {
      return { messageId: e.messageId, conversationId: e.conversationId, senderId: e.senderId };
    }
  } catch {}
  return undefined;
}
