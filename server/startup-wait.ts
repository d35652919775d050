import type { Logger } from "pino";

/** A dependency stayed unreachable for the whole start-up wait; the message says which and why. */
export class StartupError extends Error {
  override readonly name = "StartupError";
}

export interface WaitOptions {
  /** What is being reached, for the log and the final message: "database", "NATS". */
  dependency: string;
  /** Where, without credentials: "127.0.0.1:5432". */
  target: string;
  /** How long to keep trying (STARTUP_WAIT_SECONDS), from the first attempt. */
  waitSeconds: number;
  logger: Logger;
  /** Whether a failure may pass with time (unreachable); other failures end the wait at once. Default: all. */
  retryable?: (err: unknown) => boolean;
}

const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 5_000;

/**
 * Runs `attempt` until it succeeds, retrying a dependency that is not up yet
 * (containers start in any order) with backoff and one log line per failed
 * attempt, for up to `waitSeconds`; then throws a StartupError naming it.
 * Each dependency gets the whole wait from its own first attempt, so a slow
 * first one does not leave the next no time.
 */
export async function untilReachable<T>(attempt: () => Promise<T>, opts: WaitOptions): Promise<T> {
  const started = Date.now();
  const deadline = started + opts.waitSeconds * 1000;
  for (let n = 1; ; n++) {
    try {
      const result = await attempt();
      if (n > 1) opts.logger.info({ dependency: opts.dependency, target: opts.target, attempts: n, ms: Date.now() - started }, `${opts.dependency} reachable`);
      return result;
    } catch (err) {
      const reason = messageOf(err);
      if (opts.retryable && !opts.retryable(err)) throw err;
      const left = deadline - Date.now();
      if (left <= 0) {
        opts.logger.error({ dependency: opts.dependency, target: opts.target, attempts: n, error: reason }, `${opts.dependency} unreachable; giving up`);
        throw new StartupError(
          `${opts.dependency} at ${opts.target} unreachable: gave up after ${n} attempt(s) (STARTUP_WAIT_SECONDS=${opts.waitSeconds}); last error: ${reason}`,
          { cause: err },
        );
      }
      const delay = Math.min(FIRST_DELAY_MS * 2 ** (n - 1), MAX_DELAY_MS, left);
      // One line per attempt and no stack: this is an expected state, not a bug.
      opts.logger.warn(
        { dependency: opts.dependency, target: opts.target, attempt: n, retryInMs: delay, error: reason },
        `${opts.dependency} unreachable; retrying`,
      );
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/** host:port list of a postgres:// or nats:// URL list, without user or password. */
export function targetOf(urls: string): string {
  return urls
    .split(",")
    .map((u) => {
      try {
        const url = new URL(u.trim().includes("://") ? u.trim() : `nats://${u.trim()}`);
        return url.host || url.pathname;
      } catch {
        return "(unparsable URL)";
      }
    })
    .join(",");
}

function messageOf(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return err.errors.map(messageOf).join("; ");
  const cause = (err as { cause?: unknown })?.cause;
  const own = err instanceof Error ? err.message || err.name : String(err);
  // MigrationError and friends wrap the socket error; say both when they differ.
  return cause instanceof Error && cause.message && !own.includes(cause.message) ? `${own} (${messageOf(cause)})` : own;
}
