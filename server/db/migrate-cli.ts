import { ConfigError, loadConfig } from "../config.js";
import { createLogger } from "../logger.js";
import { openDatabase } from "./database.js";
import { MigrationError, migrateToLatest } from "./migrate.js";

// `npm run migrate`: the same migrations the server applies at start, on demand.
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`chatwire migrate: configuration error: ${err.message}\n`);
    process.exitCode = 2;
    return;
  }
  const logger = createLogger(config.logLevel, { name: "chatwire-migrate" });
  let handle: Awaited<ReturnType<typeof openDatabase>> | undefined;
  try {
    handle = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, logger });
    const { applied } = await migrateToLatest(handle.db, logger);
    logger.info({ kind: handle.kind, applied }, applied.length > 0 ? `applied ${applied.length} migration(s)` : "database already up to date");
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    logger.error({ err }, err instanceof MigrationError ? reason : `migration failed: ${reason}`);
    process.exitCode = 1;
  } finally {
    await handle?.close().catch((err: unknown) => {
      logger.error({ err }, "failed to close database");
      process.exitCode = 1;
    });
  }
}

await main();
