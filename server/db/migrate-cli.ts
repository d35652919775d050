import { pino } from 'pino';
import { openDatabase } from './database.js';
import { MigrationError, migrateToLatest } from './migrate.js';

// The only place this entry reads configuration; to be replaced by server/config.ts.
function readMigrateConfig(env: NodeJS.ProcessEnv = process.env): { databaseUrl?: string; dataDir: string } {
  const databaseUrl = env['DATABASE_URL']?.trim();
  return {
    ...(databaseUrl ? { databaseUrl } : {}),
    dataDir: env['CHATWIRE_DATA_DIR']?.trim() || './.chatwire',
  };
}

async function main(): Promise<void> {
  const logger = pino({ name: 'chatwire-migrate' });
  const config = readMigrateConfig();
  let handle: Awaited<ReturnType<typeof openDatabase>> | undefined;
  try {
    handle = await openDatabase({ ...config, logger });
    const { applied } = await migrateToLatest(handle.db, logger);
    logger.info(
      { kind: handle.kind, applied },
      applied.length > 0 ? `applied ${applied.length} migration(s)` : 'database already up to date',
    );
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    logger.error({ err }, err instanceof MigrationError ? reason : `migration failed: ${reason}`);
    process.exitCode = 1;
  } finally {
    await handle?.close().catch((err: unknown) => {
      logger.error({ err }, 'failed to close database');
      process.exitCode = 1;
    });
  }
}

await main();
