import type { JsMsg } from "@nats-io/jetstream";
import { Sleeper } from "../sleeper.js";
import type { Logger } from "pino";
import type { PartitionLocks } from "../db/partition-locks.js";
import type { PushDispatcher } from "./dispatcher.js";
import { decodePushEvent, type PushStream } from "./push-stream.js";

export interface PushPoolOptions {
  stream: PushStream;
  dispatcher: PushDispatcher;
  /** Its own lock namespace: push partitions are shared among the push role's processes, apart from the message worker's. */
  locks: PartitionLocks;
  logger: Logger;
  ackWaitMs: number;
  /** How often it balances partitions with the other push processes. Default 500 ms. */
  pollMs?: number;
}

/**
 * The push role (CHATWIRE_ROLES=push): a consumer per push partition this
 * process holds, balanced across the deployment's push processes the way
 * the message worker's partitions are (messaging/worker-pool.ts: at most
 * ceil(P / live), one given up while another holds fewer than floor(P / live)),
 * through its own partition locks. Each event goes to the dispatcher and is
 * acked once its burst's pushes are done (naked to come back later when the
 * database could not be asked), kept alive with working() meanwhile.
 */
export class PushPool {
  private readonly running = new Map<number, { stop: () => void; done: Promise<void> }>();
  private readonly inFlight = new Set<JsMsg>();
  private readonly logger: Logger;
  private loop: Promise<void> | undefined;
  private stopping = false;
  private keepAlive: NodeJS.Timeout | undefined;
  private readonly sleeper = new Sleeper(() => this.stopping);

  constructor(private readonly opts: PushPoolOptions) {
    this.logger = opts.logger.child({ component: "push-pool", stream: opts.stream.stream });
  }

  /** The partitions this process works, in order. */
  get owned(): number[] {
    return [...this.running.keys()].filter((p) => this.opts.locks.held.has(p)).sort((a, b) => a - b);
  }

  start(): void {
    if (this.loop) return;
    this.keepAlive = setInterval(
      () => {
        for (const m of this.inFlight) m.working();
      },
      Math.max(200, Math.floor(this.opts.ackWaitMs / 3)),
    );
    this.keepAlive.unref();
    this.loop = this.run();
    this.logger.info({ partitions: this.opts.stream.partitions }, "push delivery started");
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.sleeper.wake();
    await this.loop;
    await this.giveUp([...this.running.keys()]);
    clearInterval(this.keepAlive);
    await this.opts.locks.close();
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      try {
        await this.balance();
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, "balancing the push partitions failed; retrying");
      }
      await this.sleeper.sleep(this.opts.pollMs ?? 500);
    }
  }

  private async balance(): Promise<void> {
    const { locks, stream } = this.opts;
    const lost = [...this.running.keys()].filter((p) => !locks.held.has(p));
    if (lost.length > 0) await this.giveUp(lost);
    if (!(await locks.join())) return;
    const loads = await locks.liveWorkers();
    const P = stream.partitions;
    const most = Math.ceil(P / loads.length);
    const fewest = Math.floor(P / loads.length);
    const mine = this.owned;
    if (mine.length > most) return this.giveUp(mine.slice(most));
    if (mine.length > fewest && Math.min(...loads) < fewest) return this.giveUp(mine.slice(-1));
    for (let i = 0; i < P && this.running.size < most && !this.stopping; i++) {
      if (!this.running.has(i) && (await locks.tryLock(i))) this.work(i);
    }
  }

  private work(p: number): void {
    let stopped = false;
    let wake: (() => void) | undefined;
    const done = (async () => {
      let failures = 0;
      while (!stopped) {
        try {
          const consumer = await this.opts.stream.consumer(p);
          const messages = await consumer.fetch({ max_messages: 200, expires: 2000 });
          for await (const m of messages) this.take(m);
          failures = 0;
        } catch (err) {
          if (stopped) break;
          failures++;
          this.logger.warn({ err: (err as Error).message, partition: p, failures }, "pulling push events failed; retrying");
          await this.opts.stream.provision().catch(() => undefined);
          await new Promise<void>((r) => {
            wake = r;
            setTimeout(r, Math.min(250 * 2 ** failures, 5000));
          });
        }
      }
    })();
    this.running.set(p, {
      stop: () => {
        stopped = true;
        wake?.();
      },
      done,
    });
  }

  private take(m: JsMsg): void {
    const event = decodePushEvent(m.data);
    if (!event) {
      this.logger.warn({ subject: m.subject }, "not a push event: dropped");
      m.term();
      return;
    }
    this.inFlight.add(m);
    this.opts.dispatcher.enqueue(event, (ok) => {
      this.inFlight.delete(m);
      if (ok) m.ack();
      else m.nak(5000);
    });
  }

  private async giveUp(partitions: number[]): Promise<void> {
    await Promise.all(
      partitions.map(async (p) => {
        const r = this.running.get(p);
        this.running.delete(p);
        r?.stop();
        await r?.done;
        await this.opts.locks.unlock(p);
      }),
    );
  }
}
