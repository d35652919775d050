import cluster from "node:cluster";
import { writeSync } from "node:fs";
import type { Logger } from "pino";
import { ConfigError, loadConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { ChatwireServer } from "./server.js";

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      // Synchronous: stderr to a pipe is asynchronous, and exit() would cut it off.
      writeSync(2, `chatwire: configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  // Several processes write to one log: each line says which.
  const logger = createLogger(config.logLevel, cluster.isWorker ? { pid: process.pid } : {});
  if (config.clusterWorkers > 1 && cluster.isPrimary) {
    runPrimary(config.clusterWorkers, logger);
    return;
  }
  const server = await ChatwireServer.create(config, { logger });
  await server.start();

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "stopping");
    // Hard cap: whatever happens, the process is gone within 10 s of the signal.
    setTimeout(() => {
      logger.error("graceful stop took too long; exiting");
      process.exit(1);
    }, 10_000).unref();
    server.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "error while stopping");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

/**
 * CHATWIRE_CLUSTER_WORKERS > 1: this process only supervises. It forks that
 * many server processes, which share the port (node:cluster hands each new
 * connection to one of them) and all state through PostgreSQL and NATS; one
 * that dies is replaced; SIGTERM/SIGINT stop them all gracefully.
 */
function runPrimary(workers: number, logger: Logger): void {
  let stopping = false;
  const fork = () => cluster.fork();
  cluster.on("exit", (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
      return;
    }
    logger.error({ pid: worker.process.pid, code, signal }, "a server process exited; starting another");
    setTimeout(fork, 1000).unref();
  });
  logger.info({ workers }, "starting server processes sharing the port");
  for (let i = 0; i < workers; i++) fork();
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "stopping server processes");
    setTimeout(() => {
      logger.error("server processes took too long to stop; exiting");
      process.exit(1);
    }, 10_000).unref();
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill("SIGTERM");
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main().catch((err: unknown) => {
  writeSync(2, `chatwire: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
