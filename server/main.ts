import cluster from "node:cluster";
import { writeSync } from "node:fs";
import { superviseProcesses } from "./cluster.js";
import { ConfigError, ConfigErrors, PROCESS_INDEX_VARIABLE, loadConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { ChatwireServer } from "./server.js";
import { StartupError } from "./startup-wait.js";

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      // Every problem found, one line each. Synchronous: stderr to a pipe is asynchronous, and exit() would cut it off.
      const all = err instanceof ConfigErrors ? err.errors : [err];
      const head = all.length > 1 ? `chatwire: ${all.length} configuration errors:\n` : "";
      writeSync(2, head + all.map((e) => `chatwire: configuration error: ${e.message}\n`).join(""));
      process.exit(2);
    }
    throw err;
  }
  if (config.processes > 1 && cluster.isPrimary) {
    superviseProcesses({
      processes: config.processes,
      logger: createLogger(config.logLevel, { pid: process.pid, supervisor: true }),
      indexVariable: PROCESS_INDEX_VARIABLE,
    });
    return;
  }
  // Several processes write to one log: each line says which (slot and pid).
  const logger = createLogger(config.logLevel, config.processIndex === undefined ? {} : { proc: config.processIndex, pid: process.pid });
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

main().catch((err: unknown) => {
  if (err instanceof StartupError) {
    // Expected (a dependency never came up), so no stack: what, where and why.
    writeSync(2, `chatwire: could not start: ${err.message}\n`);
    process.exit(1);
  }
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  if (e?.code === "EADDRINUSE" || e?.code === "EACCES") {
    // Expected too: say which setting to change, no stack.
    const where = `${e.address ?? "the host"}:${e.port ?? "the port"}`;
    const why = e.code === "EADDRINUSE" ? "is already in use (another Chatwire or another program holds it)" : "needs privileges this process lacks";
    writeSync(2, `chatwire: could not start: ${where} ${why}; set PORT to a free port (PORT=0 picks one) or HOST to another interface\n`);
    process.exit(1);
  }
  writeSync(2, `chatwire: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
