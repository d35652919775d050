import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError, RetentionPolicy, StorageType, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { Consumer, ConsumerConfig, JetStreamClient, JetStreamManager, StreamConfig } from "@nats-io/jetstream";
import { nanos, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { QueueUnavailableError, type MessageQueue } from "./message-queue.js";
import type { OutgoingMessage, StatusQuote } from "./types.js";
import { isNatsUnavailableError, natsConnected } from "./nats.js";
import { JetStreamPublisher } from "./jetstream-publisher.js";
import { isUuid } from "../domain/ids.js";

/** NATS names owned by one deployment (config.natsSubjectPrefix). */
export interface QueueNames {
  /** `<PREFIX>_MESSAGES`: stream names are upper case by convention and take no '-'. */
  stream: string;
  /** `<prefix>.msg.>`: `<prefix>.msg.<partition>.<conversation>` below it (and the old `<prefix>.msg.<conversation>`). */
  subjects: string;
  /** `<prefix>-message-worker-<p>`: partition p's durable pull consumer, index p. */
  consumers: string[];
  /** `<prefix>.msg.<p>.*`: partition p's filter subject, index p. */
  filters: string[];
  /**
   * `<prefix>-message-worker`: the single consumer of releases before partitions
   * (unfiltered, on `<prefix>.msg.<conversation>`), drained and removed on upgrade.
   */
  legacyConsumer: string;
  /** `<prefix>.msg.*`: the subjects releases before partitions published to. */
  legacySubjects: string;
}

/** The deployment's message stream (`<PREFIX>_MESSAGES`). */
export function streamName(prefix: string): string {
  return `${prefix.toUpperCase().replaceAll("-", "_")}_MESSAGES`;
}

export function queueNames(prefix: string, partitions: number): QueueNames {
  const all = Array.from({ length: partitions }, (_, p) => p);
  return {
    stream: streamName(prefix),
    subjects: `${prefix}.msg.>`,
    consumers: all.map((p) => `${prefix}-message-worker-${p}`),
    filters: all.map((p) => `${prefix}.msg.${p}.*`),
    legacyConsumer: `${prefix}-message-worker`,
    legacySubjects: `${prefix}.msg.*`,
  };
}

/**
 * A conversation's partition: FNV-1a of its id, modulo the partition count.
 * Stable across processes and releases (a message's partition is in its subject).
 */
export function partitionOf(conversationId: string, partitions: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < conversationId.length; i++) {
    h ^= conversationId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % partitions;
}

export function messageSubject(prefix: string, partitions: number, conversationId: string): string {
  return `${prefix}.msg.${partitionOf(conversationId, partitions)}.${conversationId}`;
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
  /** MESSAGE_PARTITIONS: fixed for a deployment while messages are queued. Default 16. */
  partitions?: number;
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
const DEFAULT_PARTITIONS = 16;

/** Where the consumer of releases before partitions stands (see QueueNames.legacyConsumer). */
export type LegacyState =
  /** Gone: nothing of the old single subject is left, or nobody has looked yet. */
  | "none"
  /** The old unfiltered consumer: while it exists no partition consumer can be created (work-queue streams take no overlapping filters). */
  | "blocking"
  /** Filtered on the old subjects only (messages an old instance published after the drain): drained beside the partitions. */
  | "filtered";

/**
 * The production queue: a JetStream stream (work-queue retention, file
 * storage) that the message worker consumes through one durable pull consumer.
 * Uses only what NATS 2.9 offers (one filter subject, no subject transforms,
 * no consumer metadata).
 */
export class JetStreamQueue implements MessageQueue {
  readonly kind = "jetstream";
  readonly names: QueueNames;
  readonly partitions: number;
  readonly js: JetStreamClient;
  private readonly publisher: JetStreamPublisher;
  private readonly logger: Logger;
  private provisioned = false;

  constructor(private readonly opts: JetStreamQueueOptions) {
    this.partitions = opts.partitions ?? DEFAULT_PARTITIONS;
    this.names = queueNames(opts.subjectPrefix, this.partitions);
    this.js = jetstream(opts.nc);
    this.publisher = new JetStreamPublisher(opts.nc, opts.publishTimeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS);
    this.logger = opts.logger.child({ component: "jetstream-queue", stream: this.names.stream });
  }

  get subjectPrefix(): string {
    return this.opts.subjectPrefix;
  }

  get nc(): NatsConnection {
    return this.opts.nc;
  }

  /**
   * Creates the stream and a durable consumer per partition, or brings
   * existing ones' settings up to date, and finds what is left of the old
   * single consumer (legacy). Safe to run from every instance at every start.
   */
  async provision(): Promise<void> {
    const jsm = await jetstreamManager(this.opts.nc);
    const { stream, subjects } = this.names;
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

    this.legacy = await this.retrying("the consumer of releases before partitions", () => this.legacyState(jsm));
    if (this.legacy === "none") this.legacy = await this.adoptLegacySubjects(jsm);
    // The old unfiltered consumer overlaps them all: they are created once it is drained (provision() again).
    if (this.legacy !== "blocking") {
      for (let p = 0; p < this.partitions; p++) {
        await this.retrying(`consumer ${this.names.consumers[p]}`, () => this.ensureConsumer(jsm, this.names.consumers[p]!, this.names.filters[p]!));
      }
    }
    this.provisioned = true;
  }

  /**
   * Runs a consumer API call of provision(), again on a timeout or a JetStream 503 (at most 5 attempts, 0.5 s
   * apart, growing): right after a stream's replica count changes, or during a leader election in a cluster,
   * the consumer API answers late for a few seconds, and that must not fail the start.
   */
  private async retrying<T>(what: string, call: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await call();
      } catch (err) {
        if (attempt >= 5 || !isNatsUnavailableError(err)) throw err;
        this.logger.warn({ err, attempt }, `JetStream did not answer for ${what}; trying again`);
        await new Promise((r) => setTimeout(r, 500 * attempt));
      }
    }
  }

  /**
   * Creates one durable consumer, or brings an existing one's settings up to
   * date (a filter subject cannot change on NATS 2.9: that needs a new name).
   */
  private async ensureConsumer(jsm: JetStreamManager, consumer: string, filter: string): Promise<void> {
    const { stream } = this.names;
    const ackWait = nanos(this.opts.ackWaitMs ?? DEFAULT_ACK_WAIT_MS);
    const consumerConfig: Partial<ConsumerConfig> = {
      durable_name: consumer,
      filter_subject: filter,
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
        this.logger.info({ consumer, filter }, "JetStream consumer created");
      } catch (err) {
        const now = await jsm.consumers.info(stream, consumer).catch(() => undefined);
        if (!now) throw err;
      }
    } else if (current.config.ack_wait !== ackWait || current.config.max_deliver !== -1 || current.config.max_ack_pending !== consumerConfig.max_ack_pending) {
      await jsm.consumers.update(stream, consumer, { ack_wait: ackWait, max_deliver: -1, max_ack_pending: consumerConfig.max_ack_pending });
      this.logger.info({ consumer }, "JetStream consumer updated");
    }
  }

  /** What provision() (or the last legacyState()) found of the old single consumer. */
  legacy: LegacyState = "none";

  /** Looks the old single consumer up again (it is removed by whichever instance drained it). */
  async legacyState(jsm?: JetStreamManager): Promise<LegacyState> {
    const m = jsm ?? (await jetstreamManager(this.opts.nc));
    const info = await m.consumers.info(this.names.stream, this.names.legacyConsumer).catch((err: unknown) => {
      if (isApiError(err, JetStreamApiCodes.ConsumerNotFound)) return undefined;
      throw err;
    });
    this.legacy = !info ? "none" : info.config.filter_subject ? "filtered" : "blocking";
    return this.legacy;
  }

  /**
   * Messages on the old subjects with no consumer left to take them (an
   * instance of an older release published them after the drain): a consumer
   * filtered on just those subjects takes them, beside the partitions.
   */
  async adoptLegacySubjects(jsm?: JetStreamManager): Promise<LegacyState> {
    const m = jsm ?? (await jetstreamManager(this.opts.nc));
    const info = await m.streams.info(this.names.stream, { subjects_filter: this.names.legacySubjects });
    if (Object.keys(info.state.subjects ?? {}).length === 0) return "none";
    this.logger.warn({ consumer: this.names.legacyConsumer }, "messages on the old single subject: a consumer filtered on them takes them");
    await this.ensureConsumer(m, this.names.legacyConsumer, this.names.legacySubjects);
    this.legacy = "filtered";
    return this.legacy;
  }

  /**
   * Removes the old consumer once it holds nothing: nothing waits and nothing
   * is delivered unacked. True when it is gone (then provision() again).
   */
  async removeLegacyIfDrained(): Promise<boolean> {
    const jsm = await jetstreamManager(this.opts.nc);
    const info = await jsm.consumers.info(this.names.stream, this.names.legacyConsumer).catch((err: unknown) => {
      if (isApiError(err, JetStreamApiCodes.ConsumerNotFound)) return undefined;
      throw err;
    });
    if (info && (info.num_pending > 0 || info.num_ack_pending > 0)) return false;
    if (info) await jsm.consumers.delete(this.names.stream, this.names.legacyConsumer);
    this.logger.info({ consumer: this.names.legacyConsumer }, "the old single consumer is drained and removed");
    this.legacy = "none";
    return true;
  }

  /** A durable consumer by name: names.consumers[p], or names.legacyConsumer (provision() first). */
  consumer(name: string = this.names.consumers[0]!): Promise<Consumer> {
    return this.js.consumers.get(this.names.stream, name);
  }

  /** The subject a conversation's messages are published on. */
  subjectOf(conversationId: string): string {
    return messageSubject(this.opts.subjectPrefix, this.partitions, conversationId);
  }

  async publish(msg: OutgoingMessage): Promise<Record<string, never>> {
    const nc = this.opts.nc;
    // Not connected: answer now. The client drops its outgoing buffer on each
    // reconnect attempt, so waiting out the timeout would only delay the same answer.
    if (nc.isClosed() || nc.isDraining()) throw new QueueUnavailableError("NATS connection is closed");
    if (!this.isConnected()) throw new QueueUnavailableError("NATS is not connected");
    await this.sameTurn();
    try {
      // A duplicate (the same Nats-Msg-Id within the window) is a success: the message is in the stream.
      await this.publisher.publish(this.subjectOf(msg.conversationId), encodeOutgoing(msg), natsMsgId(msg.senderId, msg.clientMessageId), this.names.stream);
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

  /** What is accepted and not yet stored: the stream's messages (work-queue retention drops them once acked) and the oldest one's age. */
  async backlog(): Promise<{ messages: number; oldestAgeSeconds: number }> {
    const { state } = await (await jetstreamManager(this.opts.nc)).streams.info(this.names.stream);
    const oldest = state.messages > 0 ? Date.parse(state.first_ts) : Number.NaN;
    return { messages: state.messages, oldestAgeSeconds: Number.isFinite(oldest) ? Math.max(0, (Date.now() - oldest) / 1000) : 0 };
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

const encoder = new TextEncoder();

function encodeOutgoing(msg: OutgoingMessage): Uint8Array {
  return encoder.encode(JSON.stringify(msg));
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
  if (o.forwardCount !== undefined && (typeof o.forwardCount !== "number" || !Number.isInteger(o.forwardCount) || o.forwardCount < 0)) {
    return new Error("forwardCount: not a non-negative integer");
  }
  const d = o.disappearingSeconds;
  if (d !== undefined && (typeof d !== "number" || !Number.isInteger(d) || d < 0 || d > 2 ** 31 - 1)) {
    return new Error("disappearingSeconds: not a non-negative 32-bit integer");
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
    ...(typeof o.forwardCount === "number" && o.forwardCount > 0 ? { forwardCount: o.forwardCount } : {}),
    ...(typeof d === "number" ? { disappearingSeconds: d } : {}),
  };
}

function isStatusQuote(v: unknown): v is StatusQuote {
  if (typeof v !== "object" || v === null) return false;
  const q = v as Record<string, unknown>;
  return ["statusId", "authorId", "contentType", "content"].every((f) => typeof q[f] === "string");
}
