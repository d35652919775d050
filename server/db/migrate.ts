import { Migrator, type Kysely } from "kysely";
import type { Logger } from "pino";
import { migrations } from "../../migrations/index.js";

export class MigrationError extends Error {
  override readonly name = "MigrationError";
  /** Undefined when the failure happened outside a migration (e.g. taking the lock). */
  readonly migrationName: string | undefined;

  constructor(migrationName: string | undefined, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(migrationName ? `migration ${migrationName} failed: ${reason}` : `migration failed: ${reason}`, { cause });
    this.migrationName = migrationName;
  }
}

function createMigrator(db: Kysely<any>): Migrator {
  return new Migrator({ db, provider: { getMigrations: async () => migrations } });
}

/**
 * Applies every pending migration. On PostgreSQL (and PGlite) Kysely runs the
 * whole batch in one transaction, so a failure leaves the schema untouched.
 */
export async function migrateToLatest(db: Kysely<any>, logger: Logger): Promise<{ applied: string[] }> {
  const { error, results = [] } = await createMigrator(db).migrateToLatest();
  if (error !== undefined) {
    const failed = results.find((r) => r.status === "Error");
    throw new MigrationError(failed?.migrationName, error);
  }
  const applied = results.filter((r) => r.status === "Success").map((r) => r.migrationName);
  for (const migration of applied) {
    logger.info({ migration }, "migration applied");
  }
  return { applied };
}

/** Names of migrations not yet applied; read-only, so safe for readiness probes. */
export async function pendingMigrations(db: Kysely<any>): Promise<string[]> {
  const all = await createMigrator(db).getMigrations();
  return all.filter((m) => m.executedAt === undefined).map((m) => m.name);
}
