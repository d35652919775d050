import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError, RetentionPolicy, StorageType, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { Consumer, ConsumerConfig, JetStreamClient, StreamConfig } from "@nats-io/jetstream";
import { nanos, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { QueueUnavailableError, type MessageQueue } from "./message-queue.js";
import type { OutgoingMessage, StatusQuote } from "./types.js";
import { natsConnected } from "./nats.js";
import { isUuid } from "../domain/ids.js";

/** NATS names owned by one deployment (config.natsSubjectPrefix). */
export interface QueueNames {
  /** `<PREFIX>_MESSAGES`: stream names are upper case by convention and take no '-'. */
  stream: string;
  /** `<prefix>.msg.>`; one subject per conversation below it. */
  subjects: string;
  /** `<prefix>-message-worker`: the durable pull consumer every worker shares. */
  consumer: string;
}

export function queueNames(prefix: string): QueueNames {
  return {
    stream: `${prefix.toUpperCase().replaceAll("-", "_")}_MESSAGES`,
    subjects: `${prefix}.msg.>`,
    consumer: `${prefix}-message-worker`,
  };
}

export function messageSubject(prefix: string, conversationId: string): string {
  return `${prefix}.msg.${conversationId}`;
}

/** The Nats-Msg-Id of a message: JetStream drops a second publish of it within the duplicate window. */
export function natsMsgId(senderId: string, clientMessageId: string): string {
  return `${senderId}:${clientMessageId}`;
}

export interface JetStreamQueueOptions {
  nc: NatsConnection;
  /** Whether NATS is connected right now (NatsLink.connected); default: what the connection itself tells. */
  connected?: () => boolean;
  subjectPrefix: string;
  logger: Logger;
  /** How long publish() waits for JetStream's ack before QueueUnavailableError. Default 5 s. */
  publishTimeoutMs?: number;
  /** Consumer ack_wait: an unacked delivery is redelivered after this. Default 30 s. */
  ackWaitMs?: number;
  /** Stream duplicate_window for Nats-Msg-Id. Default 2 min. */
  duplicateWindowMs?: number;
  /** Stream num_replicas (config.natsStreamReplicas); the consumer inherits it. Default 1. */
  replicas?: number;
}

const DEFAULT_PUBLISH_TIMEOUT_MS = 5_000;
const DEFAULT_ACK_WAIT_MS = 30_000;
const DEFAULT_DUPLICATE_WINDOW_MS = 2 * 60_000;

/**
 * The production queue: a JetStream stream (work-queue retention, file
 * storage) that the message worker consumes through one durable pull consumer.
 * Uses only what NATS 2.9 offers (one filter subject, no subject transforms,
 * no consumer metadata).
 */
export class JetStreamQueue implements MessageQueue {
  readonly kind = "jetstream";
  readonly names: QueueNames;
  readonly js: JetStreamClient;
  private readonly logger: Logger;
  private provisioned = false;

  constructor(private readonly opts: JetStreamQueueOptions) {
    this.names = queueNames(opts.subjectPrefix);
    this.js = jetstream(opts.nc);
    this.logger = opts.logger.child({ component: "jetstream-queue", stream: this.names.stream });
  }

  get subjectPrefix(): string {
    return this.opts.subjectPrefix;
  }

  get nc(): NatsConnection {
    return this.opts.nc;
  }

  /**
   * Creates the stream and the durable consumer, or brings an existing pair's
   * settings up to date. Safe to run from every instance at every start.
   */
  async provision(): Promise<void> {
    const jsm = await jetstreamManager(this.opts.nc);
    const { stream, subjects, consumer } = this.names;
    const duplicateWindow = nanos(this.opts.duplicateWindowMs ?? DEFAULT_DUPLICATE_WINDOW_MS);
    const streamConfig: Partial<StreamConfig> & { name: string } = {
      name: stream,
      subjects: [subjects],
      // Acked messages are deleted; the database is the record. A message that
      // can never be stored goes to dead_letters, not to a stuck stream.
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      duplicate_window: duplicateWindow,
      num_replicas: this.opts.replicas ?? 1,
    };
    const existing = await jsm.streams.info(stream).catch((err: unknown) => {
      if (isApiError(err, JetStreamApiCodes.StreamNotFound)) return undefined;
      throw err;
    });
    if (!existing) {
      try {
        await jsm.streams.add(streamConfig);
        this.logger.info({ subjects }, "JetStream stream created");
      } catch (err) {
        // Another instance created it first: fine if it is ours.
        const now = await jsm.streams.info(stream).catch(() => undefined);
        if (!now) throw err;
      }
    } else if (
      existing.config.duplicate_window !== duplicateWindow ||
      existing.config.subjects?.join() !== subjects ||
      existing.config.num_replicas !== streamConfig.num_replicas
    ) {
      await jsm.streams.update(stream, { subjects: [subjects], duplicate_window: duplicateWindow, num_replicas: streamConfig.num_replicas });
      this.logger.info({ subjects }, "JetStream stream updated");
    }

    const ackWait = nanos(this.opts.ackWaitMs ?? DEFAULT_ACK_WAIT_MS);
    const consumerConfig: Partial<ConsumerConfig> = {
      durable_name: consumer,
      ack_policy: AckPolicy.Explicit,
      ack_wait: ackWait,
      deliver_policy: DeliverPolicy.All,
      // Unlimited: JetStream never silently gives up on a message. The worker
      // decides what can never be stored and dead-letters it itself.
      max_deliver: -1,
      max_ack_pending: 10_000,
    };
    const current = await jsm.consumers.info(stream, consumer).catch((err: unknown) => {
      if (isApiError(err, JetStreamApiCodes.ConsumerNotFound)) return undefined;
      throw err;
    });
    if (!current) {
      try {
        await jsm.consumers.add(stream, consumerConfig);
        this.logger.info({ consumer }, "JetStream consumer created");
      } catch (err) {
        const now = await jsm.consumers.info(stream, consumer).catch(() => undefined);
        if (!now) throw err;
      }
    } else if (
      current.config.ack_wait !== ackWait ||
      current.config.max_deliver !== -1 ||
      current.config.max_ack_pending !== consumerConfig.max_ack_pending
    ) {
      await jsm.consumers.update(stream, consumer, { ack_wait: ackWait, max_deliver: -1, max_ack_pending: consumerConfig.max_ack_pending });
      this.logger.info({ consumer }, "JetStream consumer updated");
    }
    this.provisioned = true;
  }

  /** The shared durable consumer (provision() first). */
  consumer(): Promise<Consumer> {
    return this.js.consumers.get(this.names.stream, this.names.consumer);
  }

  async publish(msg: OutgoingMessage): Promise<Record<string, never>> {
    const nc = this.opts.nc;
    // Not connected: answer now. The client drops its outgoing buffer on each
    // reconnect attempt, so waiting out the timeout would only delay the same answer.
    if (nc.isClosed() || nc.isDraining()) throw new QueueUnavailableError("NATS connection is closed");
    if (!this.isConnected()) throw new QueueUnavailableError("NATS is not connected");
    await this.sameTurn();
    try {
      await this.js.publish(messageSubject(this.opts.subjectPrefix, msg.conversationId), encodeOutgoing(msg), {
        msgID: natsMsgId(msg.senderId, msg.clientMessageId),
        timeout: this.opts.publishTimeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS,
        expect: { streamName: this.names.stream },
      });
      return {};
    } catch (err) {
      // Whatever went wrong, the message may or may not be in the stream; a
      // retry with the same client_message_id is safe either way.
      this.logger.warn({ err, messageId: msg.id, conversationId: msg.conversationId }, "JetStream publish failed");
      throw new QueueUnavailableError(`the message queue did not accept the message: ${(err as Error).message}`, { cause: err });
    }
  }

  ready(): boolean {
    return this.provisioned && this.isConnected();
  }

  /**
   * Resolves in the check phase of the current event-loop turn, together with
   * every other publish started in this turn: their JetStream publishes then
   * run in one go and the NATS client writes them to its socket in one write
   * (it flushes once per microtask checkpoint), instead of one socket write per
   * SendMessage (each arrives in its own turn, after its own database read).
   */
  private sameTurn(): Promise<void> {
    return new Promise((resolve) => {
      this.turn.push(resolve);
      if (this.turn.length === 1) {
        setImmediate(() => {
          const waiting = this.turn;
          this.turn = [];
          for (const go of waiting) go();
        });
      }
    });
  }
  private turn: Array<() => void> = [];

  private isConnected(): boolean {
    return this.opts.connected ? this.opts.connected() : natsConnected(this.opts.nc);
  }
}

function isApiError(err: unknown, code: number): boolean {
  return err instanceof JetStreamApiError && err.code === code;
}

export function encodeOutgoing(msg: OutgoingMessage): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(msg));
}


/** Parses a queue message body; an Error names what is wrong (such a message is dead-lettered). */
export function decodeOutgoing(data: Uint8Array): OutgoingMessage | Error {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(data));
  } catch (err) {
    return new Error(`not JSON: ${(err as Error).message}`);
  }
  if (typeof v !== "object" || v === null) return new Error("not a JSON object");
  const o = v as Record<string, unknown>;
  for (const f of ["id", "conversationId", "senderId"] as const) {
    if (typeof o[f] !== "string" || !isUuid(o[f])) return new Error(`${f}: not a UUID`);
  }
  for (const f of ["clientMessageId", "content", "mediaUrl", "mediaType", "sentAt"] as const) {
    if (typeof o[f] !== "string") return new Error(`${f}: not a string`);
  }
  if (o.clientMessageId === "") return new Error("clientMessageId: empty");
  if (o.replyToMessageId !== null && (typeof o.replyToMessageId !== "string" || !isUuid(o.replyToMessageId))) {
    return new Error("replyToMessageId: not a UUID or null");
  }
  if (!Array.isArray(o.mentionUserIds) || o.mentionUserIds.some((u) => typeof u !== "string" || !isUuid(u))) {
    return new Error("mentionUserIds: not a list of UUIDs");
  }
  return {
    id: o.id as string,
    conversationId: o.conversationId as string,
    senderId: o.senderId as string,
    clientMessageId: o.clientMessageId as string,
    content: o.content as string,
    mediaUrl: o.mediaUrl as string,
    mediaType: o.mediaType as string,
    replyToMessageId: o.replyToMessageId as string | null,
    mentionUserIds: o.mentionUserIds as string[],
    sentAt: o.sentAt as string,
    ...(isStatusQuote(o.replyToStatus) ? { replyToStatus: o.replyToStatus } : {}),
  };
}

function isStatusQuote(v: unknown): v is StatusQuote {
  if (typeof v !== "object" || v === null) return false;
  const q = v as Record<string, unknown>;
  return ["statusId", "authorId", "contentType", "content"].every((f) => typeof q[f] === "string");
}
