import cluster, { type Worker } from "node:cluster";
import type { Logger } from "pino";

/** Exits before listening, in a row, after which one process slot counts as unable to start. */
const MAX_START_FAILURES = 3;
/** First restart delay; doubled for each quick death in a row, up to MAX_BACKOFF_MS. */
const FIRST_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;
/** A process that served this long before dying counts as healthy: its replacement starts at the first delay again. */
const HEALTHY_AFTER_MS = 60_000;
/**
 * Each server process gives itself 10 s to stop (main.ts); the supervisor
 * waits a little longer before it kills what is left.
 */
const STOP_GRACE_MS = 11_000;

/** One of the N places a server process runs in; it keeps its index across restarts. */
interface Slot {
  index: number;
  worker: Worker | undefined;
  /** Set once the current process listens. */
  listeningAt: number | undefined;
  /** Exits before listening, in a row. */
  startFailures: number;
  /** Restarts in a row of a process that died within HEALTHY_AFTER_MS. */
  quickDeaths: number;
  restart: NodeJS.Timeout | undefined;
}

export interface SupervisorOptions {
  processes: number;
  logger: Logger;
  /** The environment variable that tells a forked process its slot (read back by config.ts). */
  indexVariable: string;
}

/**
 * CHATWIRE_PROCESSES > 1: this process (the node:cluster primary) only
 * supervises. It forks N server processes; each builds the whole server and
 * listens on the same port (the primary hands each new connection to one of
 * them), sharing all state through PostgreSQL and NATS. A process that dies
 * unexpectedly is replaced after a backoff; SIGTERM/SIGINT are forwarded so
 * each stops gracefully within its own budget; if a slot's process keeps
 * dying before it listens (MAX_START_FAILURES in a row), everything is stopped
 * and the supervisor exits 1.
 */
export function superviseProcesses(opts: SupervisorOptions): void {
  const { processes, logger } = opts;
  const slots: Slot[] = Array.from({ length: processes }, (_, index) => ({
    index,
    worker: undefined,
    listeningAt: undefined,
    startFailures: 0,
    quickDeaths: 0,
    restart: undefined,
  }));
  let stopping: { signal: string; exitCode: number } | undefined;

  const fork = (slot: Slot): void => {
    slot.restart = undefined;
    slot.listeningAt = undefined;
    const worker = cluster.fork({ [opts.indexVariable]: String(slot.index) });
    slot.worker = worker;
    worker.on("listening", () => {
      slot.listeningAt = Date.now();
      slot.startFailures = 0;
    });
    worker.on("exit", (code, signal) => onExit(slot, worker, code, signal));
  };

  const onExit = (slot: Slot, worker: Worker, code: number | null, signal: string | null): void => {
    if (slot.worker !== worker) return;
    slot.worker = undefined;
    const pid = worker.process.pid;
    if (stopping) {
      if (code !== 0) stopping.exitCode = 1;
      if (slots.every((s) => s.worker === undefined)) {
        logger.info({ signal: stopping.signal, exitCode: stopping.exitCode }, "all server processes stopped");
        process.exit(stopping.exitCode);
      }
      return;
    }
    const served = slot.listeningAt === undefined ? undefined : Date.now() - slot.listeningAt;
    if (served === undefined) {
      slot.startFailures++;
      if (slot.startFailures >= MAX_START_FAILURES) {
        logger.error(
          { proc: slot.index, childPid: pid, code, signal, attempts: slot.startFailures },
          "a server process keeps exiting before it listens; stopping all (see its log lines above for why)",
        );
        stopAll("start failures", 1);
        return;
      }
    }
    slot.quickDeaths = served !== undefined && served >= HEALTHY_AFTER_MS ? 0 : slot.quickDeaths + 1;
    const delay = Math.min(FIRST_BACKOFF_MS * 2 ** Math.max(0, slot.quickDeaths - 1), MAX_BACKOFF_MS);
    logger.error(
      { proc: slot.index, childPid: pid, code, signal, servedMs: served, restartInMs: delay },
      served === undefined ? "a server process exited before it listened; starting another" : "a server process died; starting another",
    );
    slot.restart = setTimeout(() => fork(slot), delay);
  };

  const stopAll = (signal: string, exitCode: number): void => {
    if (stopping) return;
    stopping = { signal, exitCode };
    const running = slots.filter((s) => s.worker !== undefined);
    logger.info({ signal, processes: running.length }, "stopping server processes");
    for (const s of slots) clearTimeout(s.restart);
    if (running.length === 0) process.exit(exitCode);
    for (const s of running) s.worker!.process.kill("SIGTERM");
    setTimeout(() => {
      const left = slots.flatMap((s) => (s.worker?.process.pid === undefined ? [] : [s.worker.process.pid]));
      logger.error({ pids: left }, "server processes took too long to stop; killing them");
      for (const s of slots) s.worker?.process.kill("SIGKILL");
      process.exit(1);
    }, STOP_GRACE_MS).unref();
  };

  process.on("SIGTERM", () => stopAll("SIGTERM", 0));
  process.on("SIGINT", () => stopAll("SIGINT", 0));
  logger.info({ processes }, "starting server processes sharing the port");
  for (const slot of slots) fork(slot);
}
