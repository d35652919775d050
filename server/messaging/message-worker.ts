import type { Consumer, JsMsg } from "@nats-io/jetstream";
import { Sleeper } from "../sleeper.js";
import type { Logger } from "pino";
import { Counter } from "prom-client";
import { systemClock, type Clock } from "../clock.js";
import { databaseAnswers } from "../db/database.js";
import { insertDeadLetters, type NewDeadLetter } from "../db/message-store.js";
import { isConnectionError } from "../db/connection-errors.js";
import { decodeOutgoing } from "./jetstream-queue.js";
import { publishNotices } from "./message-queue.js";
import { storeMessages, type StoreResult } from "./store.js";
import { storeHeldByPreviousOwner } from "./takeover.js";
import type { InboxNotice, OutgoingMessage } from "./types.js";
import type { MessageWorkerOptions } from "./message-worker-options.js";

export type { MessageWorkerOptions, WorkerHooks } from "./message-worker-options.js";

type Result = "stored" | "duplicate" | "dead_letter";

const WORKER_MESSAGES = "chatwire_worker_messages_total";

/**
 * The message worker (ARCHITECTURE.md, "The message path", step 2): pulls
 * batches from the durable consumer, stores each batch in one transaction,
 * then publishes the live notices, then acks. A crash before the ack replays
 * the batch; storing is idempotent, so nothing is lost or doubled.
 *
 * Failures: a message that can never be stored (undecodable, conversation
 * gone, sender no longer a participant, or failing alone with a data error
 * or again and again while the database answers) goes to dead_letters and is
 * terminated. Anything else (database down, deadlock) is retried in process
 * with backoff while the worker holds the batch and keeps it alive with
 * working(), rather than naked: a nak would let newer messages of the same
 * conversation overtake it. The exception: when the leader lock is lost (its
 * connection died, so another instance may hold it now), the worker stops
 * storing at once, gives every message in hand back (nak, in stream order)
 * as soon as its open pull has ended (at most fetchExpiresMs; a nak before
 * that would hand them to that same pull, out of order), and stands by until
 * it takes the lock again.
 */
export class MessageWorker {
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly batchSize: number;
  private readonly fetchExpiresMs: number;
  private readonly ackWaitMs: number;
  private readonly poisonAttempts: number;
  private readonly counter: Counter<"result"> | undefined;
  private readonly consumerName: string;
  /** Delivered to us and not yet acked, termed or naked. */
  private readonly inFlight = new Set<JsMsg>();
  private loop: Promise<void> | undefined;
  private stopping = false;
  private readonly sleeper = new Sleeper(() => this.stopping);
  private keepAlive: NodeJS.Timeout | undefined;
  private stopped: Promise<void> | undefined;
  /** Bumped each time the leader lock is lost: work started under an older one is abandoned. */
  private leadership = 0;
  /** A pull request is open on the server (messages may still arrive for it). */
  private pulling = false;
  private unwatchLeader: (() => void) | undefined;
  /** The leadership under which the previous owner's unacked messages were stored (takeOver); -1: not yet. */
  private tookOver = -1;

  constructor(private readonly opts: MessageWorkerOptions) {
    this.logger = opts.logger.child({ component: "message-worker", stream: opts.queue.names.stream });
    this.clock = opts.clock ?? systemClock;
    this.batchSize = opts.batchSize ?? 100;
    this.fetchExpiresMs = Math.max(1000, opts.fetchExpiresMs ?? 2000);
    this.ackWaitMs = opts.ackWaitMs ?? 30_000;
    this.poisonAttempts = opts.poisonAttempts ?? 5;
    this.consumerName = opts.consumerName ?? opts.queue.names.consumers[0]!;
    this.counter = opts.registry
      ? ((opts.registry.getSingleMetric(WORKER_MESSAGES) as Counter<"result"> | undefined) ??
        new Counter({
          name: WORKER_MESSAGES,
          help: "Queue messages the worker finished, by result: stored, duplicate (stored before), dead_letter",
          labelNames: ["result"],
          registers: [opts.registry],
        }))
      : undefined;
  }

  get running(): boolean {
    return this.loop !== undefined && !this.stopping && !this.drained;
  }

  /** untilDrained() said so: the loop has ended. */
  drained = false;

  /** Not (yet) the active worker: waiting for another instance's to stop (see `leader`). */
  get standby(): boolean {
    return this.opts.leader !== undefined && !this.leading;
  }
  private leading = false;
  private settled: (() => void) | undefined;
  /** Resolves once the worker knows whether it is the active one (at once without a leader lock). */
  readonly decided = new Promise<void>((resolve) => (this.settled = resolve));

  start(): void {
    if (this.loop) return;
    this.keepAlive = setInterval(
      () => {
        for (const m of this.inFlight) m.working();
      },
      Math.max(200, Math.floor(this.ackWaitMs / 3)),
    );
    this.keepAlive.unref();
    this.unwatchLeader = this.opts.leader?.onLost(() => this.leadershipLost());
    this.loop = this.run();
    this.logger.info({ consumer: this.consumerName, batchSize: this.batchSize }, "message worker started");
  }

  /**
   * Finishes the batch in hand and the open pull (at most fetchExpiresMs),
   * then returns. Messages it could not store (database down) are naked so
   * another worker takes them at once.
   */
  stop(): Promise<void> {
    this.stopped ??= this.doStop();
    return this.stopped;
  }

  private async doStop(): Promise<void> {
    this.stopping = true;
    this.sleeper.wake();
    await this.loop;
    clearInterval(this.keepAlive);
    this.unwatchLeader?.();
    this.handBack();
    await this.opts.leader?.release();
    if (this.loop) this.logger.info("message worker stopped");
  }

  private async run(): Promise<void> {
    let failures = 0;
    let consumer: Consumer | undefined;
    while (!this.stopping) {
      if (this.opts.leader && !(this.leading = await this.opts.leader.acquire())) {
        this.settled?.();
        await this.sleeper.sleep(this.opts.standbyPollMs ?? 1000);
        continue;
      }
      this.settled?.();
      try {
        consumer ??= await this.opts.queue.consumer(this.consumerName);
        // Newly the consumer's worker (at start, or the lock taken again): what a previous owner held unacked goes first.
        if (this.tookOver !== this.leadership) {
          const leadership = this.leadership;
          await storeHeldByPreviousOwner({
            ...this.opts,
            consumer: this.consumerName,
            batchSize: this.batchSize,
            clock: this.clock,
            logger: this.logger,
            waitMs: this.fetchExpiresMs + 1000,
            sleep: (ms) => this.sleeper.sleep(ms),
            stillOwner: () => leadership === this.leadership && !this.stopping,
            stored: (results, messages) => this.stored(results, messages),
          });
          this.tookOver = leadership;
        }
        const delivered = await this.pullOnce(consumer);
        failures = 0;
        if (delivered === 0 && this.opts.untilDrained && (await this.opts.untilDrained())) {
          this.drained = true;
          this.logger.info({ consumer: this.consumerName }, "consumer drained: message worker done");
          return;
        }
      } catch (err) {
        if (this.stopping) break;
        failures++;
        consumer = undefined;
        this.logger.warn({ err, failures }, "pulling from JetStream failed; retrying");
        // The stream or consumer may have been deleted under us: put them back.
        await this.opts.queue.provision().catch((e: unknown) => this.logger.warn({ err: e }, "re-provisioning the queue failed"));
        await this.sleeper.sleep(Math.min(250 * 2 ** failures, 5000));
      }
    }
  }

  /** One pull request: stores what it delivers, batch by batch, while it is still delivering. Returns how many it delivered. */
  private async pullOnce(consumer: Consumer): Promise<number> {
    // Short pulls that run to their end, even on stop: a pull cut short would
    // leave the server delivering into a dead inbox until ack_wait.
    const leadership = this.leadership;
    this.pulling = true;
    try {
      return await this.pullAndStore(consumer, leadership);
    } finally {
      this.pulling = false;
      // The lock was lost meanwhile: the pull has ended, so what we hold can go back in order now.
      if (leadership !== this.leadership) this.handBack();
    }
  }

  private async pullAndStore(consumer: Consumer, leadership: number): Promise<number> {
    const messages = await consumer.fetch({ max_messages: this.batchSize, expires: this.fetchExpiresMs });
    const buffer: JsMsg[] = [];
    let delivered = 0;
    let ended = false;
    let failed: unknown;
    let wake: (() => void) | undefined;
    const pump = (async () => {
      try {
        for await (const m of messages) {
          this.inFlight.add(m);
          buffer.push(m);
          delivered++;
          wake?.();
        }
      } catch (err) {
        failed = err;
      } finally {
        ended = true;
        wake?.();
      }
    })();
    try {
      for (;;) {
        if (buffer.length === 0) {
          if (ended) break;
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
          continue;
        }
        if (leadership !== this.leadership) {
          // Lock lost: keep what this pull still delivers (in flight) for the hand-back when it ends.
          buffer.splice(0);
          continue;
        }
        // Let a burst that arrived in one read land, so it becomes one batch.
        await new Promise((resolve) => setImmediate(resolve));
        await this.handle(buffer.splice(0, this.batchSize), leadership);
      }
    } finally {
      await pump;
    }
    if (failed) throw failed;
    return delivered;
  }

  private async handle(batch: JsMsg[], leadership: number): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      // Lock lost: stop at once; the batch stays in flight until it is handed back.
      if (leadership !== this.leadership) return;
      if (this.stopping && attempt > 1) {
        this.release(batch, "nak");
        return;
      }
      try {
        await this.storeAndAck(batch);
        return;
      } catch (err) {
        const dataError = isDataError(err);
        const poison = dataError || (attempt >= this.poisonAttempts && (await databaseAnswers(this.opts.db)));
        const ctx = {
          err,
          attempt,
          messages: batch.length,
          streamSeqs: [batch[0]!.info.streamSequence, batch[batch.length - 1]!.info.streamSequence],
          deliveries: batch[0]!.info.deliveryCount,
        };
        if (poison && batch.length > 1) {
          this.logger.warn(ctx, "storing a batch failed; storing its messages one by one to isolate the bad one");
          for (const m of batch) await this.handle([m], leadership);
          return;
        }
        if (poison) {
          this.logger.error({ ...ctx, subject: batch[0]!.subject }, "message cannot be stored; dead-lettering it");
          if (await this.deadLetterAlone(batch[0]!, err)) return;
        } else if (isConnectionError(err)) {
          // One line, no stack: while PostgreSQL is down this repeats until it is back.
          this.logger.warn({ ...ctx, err: (err as Error).message }, "database unreachable; holding the batch and retrying");
        } else {
          this.logger.warn(ctx, "storing a batch failed; holding it and retrying");
        }
        // Short waits while the database is unreachable, so the batch is stored soon after it is back.
        await this.sleeper.sleep(isConnectionError(err) ? Math.min(250 * 2 ** (attempt - 1), 1000) : Math.min(1000 * 2 ** (attempt - 1), 10_000));
      }
    }
  }

  private async storeAndAck(batch: JsMsg[]): Promise<void> {
    const started = performance.now();
    const now = this.clock.now();
    const valid: Array<{ m: JsMsg; out: OutgoingMessage }> = [];
    const undecodable: Array<{ m: JsMsg; error: string }> = [];
    for (const m of batch) {
      const out = decodeOutgoing(m.data);
      if (out instanceof Error) undecodable.push({ m, error: `undecodable: ${out.message}` });
      else valid.push({ m, out });
    }
    // One round trip, its own transaction (storeMessages): the batch commits here.
    const msgs = valid.map((v) => v.out);
    const results = await (this.opts.coalescer ? this.opts.coalescer.store(msgs, now) : storeMessages(this.opts.db, msgs, now));
    const rejected = [...undecodable];
    results.forEach((r, i) => {
      if (!r.ok) rejected.push({ m: valid[i]!.m, error: `${r.reason}: ${r.error}` });
    });
    const storedAt = performance.now();
    const stored = results.flatMap((r) => (r.ok ? [r.message] : []));
    try {
      await this.opts.hooks?.afterCommit?.(stored);
    } catch (err) {
      this.logger.warn({ err, messages: batch.length }, "afterCommit hook threw: leaving the batch unacked (simulated crash)");
      for (const m of batch) this.inFlight.delete(m);
      return;
    }
    // Committed: announce before anything else can fail, so a retry of the
    // batch (which finds these stored, and announces nothing) loses no notice.
    const notices = this.stored(
      results,
      valid.map(({ out }) => out),
    );
    this.logger.debug(
      { messages: batch.length, notices, storeMs: +(storedAt - started).toFixed(2), publishMs: +(performance.now() - storedAt).toFixed(2) },
      "batch stored",
    );
    // Rare: only for messages that can never be stored. If this fails the
    // batch is retried; the stored messages come back as duplicates.
    // Not awaited when there is none: the acks below then go out in the same
    // socket write as the notices above (the NATS client flushes once per turn).
    if (rejected.length > 0) {
      await insertDeadLetters(
        this.opts.db,
        rejected.map(({ m, error }) => letterOf(m, error)),
        now,
      );
    }
    const rejectedSet = new Set(rejected.map((r) => r.m));
    valid.forEach(({ m }, i) => {
      if (!rejectedSet.has(m)) this.count((results[i] as Extract<StoreResult, { ok: true }>).message.duplicate ? "duplicate" : "stored");
    });
    for (const { m, error } of rejected) {
      this.logger.warn({ subject: m.subject, streamSeq: m.info.streamSequence, error }, "message dead-lettered");
      this.count("dead_letter");
    }
    this.release(
      batch.filter((m) => !rejectedSet.has(m)),
      "ack",
    );
    // Plain term(): 2.9 servers do not understand a +TERM with a reason.
    this.release([...rejectedSet], "term");
  }

  /**
   * THE point where a batch is known stored (committed), for pulled batches
   * and a previous owner's held messages alike: the new messages' live
   * notices go out, and the newly stored ones someone could be pushed for
   * (r_push) to onStored (push). `messages[i]` is what `results[i]` stored.
   * Returns how many notices.
   */
  private stored(results: readonly StoreResult[], messages: readonly OutgoingMessage[]): number {
    const notices = results.flatMap((r): InboxNotice[] => (r.ok ? r.notices : []));
    publishNotices(this.opts.bus, this.opts.queue.subjectPrefix, notices);
    this.opts.onStored?.(messages.filter((_, i) => results[i]?.ok && !results[i].message.duplicate && results[i].message.push !== false));
    return notices.length;
  }

  /** Dead-letters one message in its own transaction; false if even that failed. */
  private async deadLetterAlone(m: JsMsg, cause: unknown): Promise<boolean> {
    const error = `${(cause as Error)?.message ?? String(cause)} (after ${m.info.deliveryCount} deliveries)`;
    try {
      await insertDeadLetters(this.opts.db, [letterOf(m, error)], this.clock.now());
    } catch (err) {
      this.logger.warn({ err }, "writing the dead letter failed; retrying the message");
      return false;
    }
    this.count("dead_letter");
    this.release([m], "term");
    return true;
  }

  /** The leader lock's connection died: another instance may be the active worker now. */
  private leadershipLost(): void {
    this.leadership++;
    this.leading = false;
    this.logger.warn(
      { held: this.inFlight.size },
      "leader lock lost: stopped storing; handing the messages in hand back and standing by until the lock is taken again",
    );
    if (!this.pulling) this.handBack();
    this.sleeper.wake();
  }

  /** Naks every message in hand, oldest first, so whoever pulls next gets them in the order they were sent. */
  private handBack(): void {
    if (this.inFlight.size === 0) return;
    const held = [...this.inFlight].sort((x, y) => x.info.streamSequence - y.info.streamSequence);
    this.release(held, "nak");
    this.logger.info({ messages: held.length }, "messages handed back to JetStream");
  }

  private release(msgs: JsMsg[], how: "ack" | "nak" | "term"): void {
    for (const m of msgs) {
      if (how === "ack") m.ack();
      else if (how === "nak") m.nak();
      else m.term();
      this.inFlight.delete(m);
    }
  }

  private count(result: Result): void {
    this.counter?.inc({ result });
  }
}

function letterOf(m: JsMsg, error: string): NewDeadLetter {
  return { subject: m.subject, payload: m.string(), error };
}

/**
 * SQLSTATE class 22 (data exception) or 23 (integrity violation): the same
 * statement will fail again. Not 23505: a unique violation means a concurrent
 * worker stored the same message, and the retry finds it.
 */
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "string" && /^2[23]/.test(code) && code !== "23505";
}
