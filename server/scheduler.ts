import type { Logger } from "pino";

/**
 * The periodic jobs of one server (pruning, presence renewal and sweep, the
 * status purge), built once per server: each job runs every `everyMs` on an
 * unref'd timer (a job never keeps the process alive), never overlaps itself
 * (a tick while the previous run is still going is skipped), and a failure is
 * logged with the job's name and the error, the next tick trying again.
 */
export class Scheduler {
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly running = new Map<string, Promise<void>>();
  private readonly names = new Set<string>();
  private stopped = false;

  constructor(private readonly logger: Logger) {}

  /** Runs `job` every `everyMs` from now until stop(). Names are unique: they say in the log which job failed. */
  every(name: string, everyMs: number, job: () => Promise<unknown>): void {
    if (this.stopped) throw new Error(`scheduler stopped; cannot add job "${name}"`);
    if (this.names.has(name)) throw new Error(`a job named "${name}" is already scheduled`);
    if (!(everyMs > 0)) throw new Error(`job "${name}": interval must be positive (got ${everyMs} ms)`);
    this.names.add(name);
    const timer = setInterval(() => void this.run(name, job), everyMs);
    timer.unref();
    this.timers.push(timer);
  }

  /** Runs the job unless its previous run is still going; resolves when this run (or the one going) ends. Never rejects. */
  private run(name: string, job: () => Promise<unknown>): Promise<void> {
    const going = this.running.get(name);
    if (going) return going;
    const run = (async () => {
      try {
        await job();
      } catch (err) {
        this.logger.warn({ err, job: name }, `scheduled job "${name}" failed`);
      } finally {
        this.running.delete(name);
      }
    })();
    this.running.set(name, run);
    return run;
  }

  /** Jobs running now, by name. */
  get active(): string[] {
    return [...this.running.keys()];
  }

  /**
   * Clears every timer, then waits for the runs in progress to end, at most `waitMs`: a job stuck on a
   * hung database must not hold up shutdown (the process has 10 s in all); the ones still going are logged.
   */
  async stop(waitMs = 3000): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.splice(0)) clearInterval(t);
    if (this.running.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), waitMs);
      timer.unref();
    });
    const late = await Promise.race([Promise.all([...this.running.values()]).then(() => false), timedOut]);
    clearTimeout(timer);
    if (late) this.logger.warn({ jobs: this.active, waitMs }, "scheduled jobs still running at stop; not waiting longer");
  }
}
