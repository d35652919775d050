import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { Clock } from "../clock.js";
import type { LeaderLock } from "../db/leader-lock.js";
import type { Database } from "../db/schema.js";
import type { EventBus } from "./bus.js";
import type { JetStreamQueue } from "./jetstream-queue.js";
import type { StoreCoalescer } from "./store-coalescer.js";
import type { OutgoingMessage, StoredMessage } from "./types.js";

export interface WorkerHooks {
  /**
   * Tests only: runs after a batch committed, before its notices and acks.
   * Throwing simulates a crash at that point: the batch is neither acked nor
   * naked, so JetStream redelivers it after ack_wait.
   */
  afterCommit?: (stored: StoredMessage[]) => void | Promise<void>;
}

export interface MessageWorkerOptions {
  queue: JetStreamQueue;
  /** The durable consumer this worker works: one partition's (default: partition 0's), or the old single one. */
  consumerName?: string;
  db: Kysely<Database>;
  bus: EventBus;
  logger: Logger;
  clock?: Clock;
  /** Messages per pull and at most per transaction. Default 100. */
  batchSize?: number;
  /** Lifetime of one pull request; a stop waits for the open one to end. Default 2 s. */
  fetchExpiresMs?: number;
  /** The consumer's ack_wait: held messages are kept alive (working()) well within it. Default 30 s. */
  ackWaitMs?: number;
  /** Failed attempts (with the database reachable) after which a message is taken for poison. Default 5. */
  poisonAttempts?: number;
  /**
   * Only the holder pulls (the others stand by): one active worker per
   * deployment keeps each conversation's messages in the order they were sent.
   * Without one (a single process), this worker is always active.
   */
  leader?: LeaderLock;
  /** How often a standby worker tries to become the active one. Default 1 s. */
  standbyPollMs?: number;
  /** Registers chatwire_worker_messages_total here when given (or counts on the one there). */
  registry?: Registry;
  hooks?: WorkerHooks;
  /** Stores through this, with the process's other partition workers (WorkerPool); without, each batch is its own call. */
  coalescer?: StoreCoalescer;
  /** Told of each batch's newly stored messages after commit (push delivery, server/push/); must not throw or block. */
  onStored?: (stored: OutgoingMessage[]) => void;
  /**
   * Asked after a pull that delivered nothing; true ends the worker (`drained`).
   * For the old single consumer, which is removed once empty.
   */
  untilDrained?: () => Promise<boolean>;
}
