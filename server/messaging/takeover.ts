import { jetstreamManager, type MsgRequest } from "@nats-io/jetstream";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Clock } from "../clock.js";
import { isConnectionError } from "../db/connection-errors.js";
import type { Database } from "../db/schema.js";
import { decodeOutgoing, type JetStreamQueue } from "./jetstream-queue.js";
import { storeMessages, type StoreResult } from "./store.js";
import type { OutgoingMessage } from "./types.js";

/** A message read from the stream by sequence (not a delivery: it has no ack subject). */
interface HeldMessage {
  streamSeq: number;
  subject: string;
  data: Uint8Array;
}

interface HeldRange {
  /** ack_floor + 1 … delivered, in stream sequence: what a previous owner may hold unacked. */
  from: number;
  to: number;
  /** The messages of the consumer's filter still in the stream in that range, oldest first. */
  messages: HeldMessage[];
  /** Pull requests of a previous owner were still open when waitMs ran out (they may deliver more). */
  pullsStillOpen: number;
}

/**
 * What a consumer's previous worker was delivered and never acked (it died,
 * or lost its lock): the stream range ack_floor+1 … delivered of the
 * consumer's filter, read by sequence in stream order. JetStream would
 * redeliver them only after ack_wait, after newer messages of the same
 * conversations; a new owner stores these first (their redeliveries then
 * come back as duplicates). Acked ones are gone from the work-queue stream.
 *
 * First waits (at most waitMs) for the previous worker's open pull requests
 * to end: until they expire the server may still deliver into them.
 */
async function heldByPreviousOwner(
  queue: JetStreamQueue,
  consumer: string,
  waitMs: number,
  sleep: (ms: number) => Promise<void>,
  stillOwner: () => boolean,
): Promise<HeldRange> {
  const jsm = await jetstreamManager(queue.nc, { checkAPI: false });
  const { stream, subjects } = queue.names;
  const deadline = performance.now() + waitMs;
  let info = await jsm.consumers.info(stream, consumer);
  while (info.num_waiting > 0 && performance.now() < deadline && stillOwner()) {
    await sleep(100);
    info = await jsm.consumers.info(stream, consumer);
  }
  const from = info.ack_floor.stream_seq + 1;
  const to = info.delivered.stream_seq;
  const filter = info.config.filter_subject || subjects;
  const messages: HeldMessage[] = [];
  for (let seq = from; seq <= to && stillOwner(); ) {
    // The first message at or after seq on the filter (NATS 2.9: next_by_subj takes wildcards).
    // (The client's type names next_by_subj for direct gets only; STREAM.MSG.GET takes it too.)
    const m = await jsm.streams.getMessage(stream, { seq, next_by_subj: filter } as MsgRequest);
    if (!m || m.seq > to) break;
    messages.push({ streamSeq: m.seq, subject: m.subject, data: m.data });
    seq = m.seq + 1;
  }
  return { from, to, messages, pullsStillOpen: info.num_waiting };
}

export interface TakeOverOptions {
  queue: JetStreamQueue;
  consumer: string;
  db: Kysely<Database>;
  clock: Clock;
  logger: Logger;
  batchSize: number;
  /** How long to wait for a previous owner's open pulls to end. */
  waitMs: number;
  sleep: (ms: number) => Promise<void>;
  /** False once the lock is lost or the worker stops: the rest is left alone. */
  stillOwner: () => boolean;
  /** The worker's one "batch stored" point (it announces the notices and hands new messages to push); messages[i] is what results[i] stored. */
  stored: (results: readonly StoreResult[], messages: readonly OutgoingMessage[]) => void;
}

/**
 * Stores, in stream order and before the worker pulls anything new, what
 * the consumer's previous worker was delivered and never acked
 * (heldByPreviousOwner): JetStream would redeliver those only after ack_wait,
 * after newer messages of the same conversations, and seq order would then
 * differ from send order. Their redeliveries come back later as duplicates
 * and are acked then. A message that cannot be stored is left to its
 * redelivery (which dead-letters it); an unreachable database throws (the
 * worker retries the whole takeover).
 */
export async function storeHeldByPreviousOwner(o: TakeOverOptions): Promise<void> {
  const held = await heldByPreviousOwner(o.queue, o.consumer, o.waitMs, o.sleep, o.stillOwner);
  if (held.messages.length === 0 || !o.stillOwner()) return;
  const ctx = { consumer: o.consumer, messages: held.messages.length, streamSeqs: [held.from, held.to], pullsStillOpen: held.pullsStillOpen };
  o.logger.info(ctx, "storing what the previous worker held unacked, before anything new");
  let newlyStored = 0;
  for (let i = 0; i < held.messages.length; i += o.batchSize) {
    if (!o.stillOwner()) return;
    const msgs = held.messages.slice(i, i + o.batchSize).flatMap((h) => {
      const out = decodeOutgoing(h.data);
      return out instanceof Error ? [] : [out];
    });
    try {
      const results = await storeMessages(o.db, msgs, o.clock.now());
      o.stored(results, msgs);
      newlyStored += results.filter((r) => r.ok && !r.message.duplicate).length;
    } catch (err) {
      if (isConnectionError(err)) throw err;
      o.logger.warn({ ...ctx, err }, "storing the previous worker's held messages failed; leaving them to their redelivery");
      return;
    }
  }
  o.logger.info({ ...ctx, newlyStored }, "the previous worker's held messages are stored");
}
