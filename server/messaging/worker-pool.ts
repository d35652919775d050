import { randomInt } from "node:crypto";
import { Sleeper } from "../sleeper.js";
import type { Logger } from "pino";
import { Gauge } from "prom-client";
import type { LeaderLock } from "../db/leader-lock.js";
import type { PartitionLocks } from "../db/partition-locks.js";
import type { LegacyState } from "./jetstream-queue.js";
import { MessageWorker } from "./message-worker.js";
import { StoreCoalescer } from "./store-coalescer.js";
import type { MessageWorkerOptions } from "./message-worker-options.js";

export interface WorkerPoolOptions extends Omit<MessageWorkerOptions, "consumerName" | "leader" | "untilDrained" | "standbyPollMs"> {
  /** Which partitions this worker holds, and how many workers are alive (PgPartitionLocks). */
  locks: PartitionLocks;
  /**
   * The lock of releases before partitions, whose one active worker held it
   * while working the single consumer: whoever drains that consumer holds it
   * too, so an old instance still running stands by meanwhile.
   */
  legacyLock?: LeaderLock;
  /** How often this worker balances and takes free partitions. Default 500 ms (a dead worker's are taken within about that). */
  pollMs?: number;
}

/** Polls between two looks for messages on the old single subject once that consumer is gone (about 15 s). */
const LEGACY_RECHECK_POLLS = 30;

/**
 * One process's message worker (ARCHITECTURE.md, "Partitions"): a
 * MessageWorker per partition it holds. Every poll it balances against the
 * deployment's other workers through the database: it holds at most
 * ceil(P / live workers) partitions, gives one up while another worker holds
 * fewer than floor(P / live workers), and takes free ones up to its share, so
 * partitions spread evenly and a stopped or dead worker's (its session ended,
 * and its locks with it) are taken within a poll. A partition given up is
 * handed over as a stop: the batch in hand finishes, the rest goes back to
 * JetStream in order, then the lock is released.
 *
 * Before any partition: the consumer of releases before partitions, if one
 * is left, is drained by one worker of the deployment (under the old lock)
 * and removed; partition consumers are created after it (they would overlap it).
 */
export class WorkerPool {
  private readonly workers = new Map<number, MessageWorker>();
  private drainer: MessageWorker | undefined;
  private readonly logger: Logger;
  private readonly pollMs: number;
  /** Where this worker starts looking for free partitions, so workers starting together do not race for the same ones. */
  private readonly offset: number;
  /** The partitions' batches that arrive while a store runs go to the database together. */
  private readonly coalescer: StoreCoalescer;
  private readonly gauge: Gauge | undefined;
  private polls = 0;
  /** The old unfiltered consumer kept the partition consumers from being created. */
  private consumersMissing = false;
  private loop: Promise<void> | undefined;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  private readonly sleeper = new Sleeper(() => this.stopping);
  private settled: (() => void) | undefined;
  /** Resolves after the first poll: the worker knows which partitions it holds. */
  readonly decided = new Promise<void>((resolve) => (this.settled = resolve));

  constructor(private readonly opts: WorkerPoolOptions) {
    this.logger = opts.logger.child({ component: "worker-pool", stream: opts.queue.names.stream });
    this.pollMs = opts.pollMs ?? 500;
    this.offset = randomInt(opts.queue.partitions);
    this.coalescer = new StoreCoalescer(opts.db, { logger: this.logger });
    this.gauge = opts.registry
      ? new Gauge({ name: "chatwire_worker_partitions_owned", help: "Message partitions this process's worker holds now", registers: [opts.registry] })
      : undefined;
  }

  /** The partitions this worker holds and works, in order. */
  get owned(): number[] {
    return [...this.workers.keys()].filter((p) => this.opts.locks.held.has(p)).sort((a, b) => a - b);
  }

  get running(): boolean {
    return this.loop !== undefined && !this.stopping;
  }

  /** Draining the consumer of releases before partitions. */
  get draining(): boolean {
    return this.drainer?.running === true && !this.drainer.standby;
  }

  /** Holds no partition (all taken by other workers, or the database is unreachable) and drains nothing. */
  get standby(): boolean {
    return this.owned.length === 0 && !this.draining;
  }

  start(): void {
    if (this.loop) return;
    this.loop = this.run();
    this.logger.info({ partitions: this.opts.queue.partitions }, "message worker pool started");
  }

  /** Stops every partition's worker (each hands back what it holds) and ends the lock session. */
  stop(): Promise<void> {
    this.stopped ??= this.doStop();
    return this.stopped;
  }

  private async doStop(): Promise<void> {
    this.stopping = true;
    this.sleeper.wake();
    await this.loop;
    await Promise.all([this.giveUp([...this.workers.keys()]), this.drainer?.stop()]);
    await this.opts.locks.close();
    this.gauge?.set(0);
    if (this.loop) this.logger.info("message worker pool stopped");
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      try {
        await this.poll();
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, "balancing the partitions failed; retrying");
      }
      this.gauge?.set(this.owned.length);
      this.settled?.();
      await this.sleeper.sleep(this.pollMs);
    }
  }

  private async poll(): Promise<void> {
    const { locks, queue } = this.opts;
    // Lost with the session: their workers have handed their messages back; end them before taking anything again.
    const lost = [...this.workers.keys()].filter((p) => !locks.held.has(p));
    if (lost.length > 0) await this.giveUp(lost);
    if (!(await locks.join())) return;
    await this.tendLegacy();
    if (queue.legacy === "blocking") return;
    const loads = await locks.liveWorkers();
    const P = queue.partitions;
    const most = Math.ceil(P / loads.length);
    const fewest = Math.floor(P / loads.length);
    const mine = this.owned;
    if (mine.length > most) return this.giveUp(mine.slice(most), `more than ceil(${P}/${loads.length})`);
    if (mine.length > fewest && Math.min(...loads) < fewest) return this.giveUp(mine.slice(-1), "a worker holds fewer than its share");
    const before = mine.length;
    for (let i = 0; i < P && this.workers.size < most && !this.stopping; i++) {
      const p = (this.offset + i) % P;
      if (!this.workers.has(p) && (await locks.tryLock(p))) this.work(p);
    }
    if (this.workers.size > before) this.logger.info({ owned: this.owned, workers: loads.length }, "partitions taken");
  }

  private work(p: number): void {
    const { locks, queue } = this.opts;
    const lease: LeaderLock = {
      acquire: async () => locks.held.has(p),
      release: () => locks.unlock(p),
      onLost: (listener) => locks.onLost(listener),
    };
    const worker = new MessageWorker({
      ...this.opts,
      consumerName: queue.names.consumers[p]!,
      leader: lease,
      standbyPollMs: this.pollMs,
      coalescer: this.coalescer,
    });
    this.workers.set(p, worker);
    worker.start();
  }

  /** Stops these partitions' workers (each finishes its batch, hands the rest back, then releases its lock). */
  private async giveUp(partitions: number[], why?: string): Promise<void> {
    if (why) this.logger.info({ partitions, why }, "giving partitions up");
    await Promise.all(
      partitions.map(async (p) => {
        const worker = this.workers.get(p);
        this.workers.delete(p);
        await worker?.stop();
        await this.opts.locks.unlock(p);
      }),
    );
  }

  /** Drains what is left of the single consumer of releases before partitions (see QueueNames.legacyConsumer). */
  private async tendLegacy(): Promise<void> {
    const { queue } = this.opts;
    const before = queue.legacy;
    if (before === "none") {
      if (this.polls++ % LEGACY_RECHECK_POLLS !== 0) return;
      await queue.adoptLegacySubjects();
    } else if (!this.drainer?.drained) {
      await queue.legacyState();
    }
    if (this.drainer && (this.drainer.drained || queue.legacy === "none")) {
      await this.drainer.stop();
      this.drainer = undefined;
    }
    // Removed (by us or another instance): now the partition consumers can be created.
    if (queue.legacy === "blocking") this.consumersMissing = true;
    else if (this.consumersMissing) {
      await queue.provision();
      this.consumersMissing = (queue.legacy as LegacyState) === "blocking";
    }
    if (queue.legacy !== "none" && !this.drainer) {
      this.logger.info({ consumer: queue.names.legacyConsumer, state: queue.legacy }, "the consumer of the release before partitions is left: draining it");
      this.drainer = new MessageWorker({
        ...this.opts,
        consumerName: queue.names.legacyConsumer,
        leader: this.opts.legacyLock,
        standbyPollMs: this.pollMs,
        untilDrained: () => queue.removeLegacyIfDrained(),
      });
      this.drainer.start();
    }
  }
}
