import { randomBytes } from "node:crypto";
import { cp, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { pino, type Logger } from "pino";
import type { Kysely } from "kysely";
import { afterAll, beforeAll, inject } from "vitest";
import { openDatabase, type DatabaseHandle } from "../../db/database.js";
import { migrateToLatest } from "../../db/migrate.js";
import type { Database } from "../../db/schema.js";

/** PostgreSQL for the tests that always run on it (PRODUCTION_ONLY in vitest.config.ts): DATABASE_URL's, else the machine's. */
export const POSTGRES_ADMIN_URL = process.env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";

export interface TestDatabase {
  /** Set for PostgreSQL; absent means PGlite in `dataDir`. */
  databaseUrl?: string;
  dataDir: string;
  drop(): Promise<void>;
}

export interface TestDatabaseOptions {
  /** Default: 'postgres' when DATABASE_URL is set, else 'pglite'. */
  kind?: "postgres" | "pglite";
  /** Admin connection used to create/drop the database; default DATABASE_URL. */
  adminUrl?: string;
  /**
   * PGlite only: start from a copy of the run's empty template cluster
   * (global-setup.ts) instead of running initdb. Default true.
   */
  fromTemplate?: boolean;
}

/**
 * A fresh, empty database: a new PostgreSQL database next to DATABASE_URL's,
 * or a new temporary PGlite directory. `drop()` removes it.
 */
export async function createTestDatabase(logger: Logger = pino({ level: "silent" }), opts: TestDatabaseOptions = {}): Promise<TestDatabase> {
  const adminUrl = opts.adminUrl ?? process.env.DATABASE_URL;
  const kind = opts.kind ?? (adminUrl ? "postgres" : "pglite");
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "chatwire-test-"));
  const removeDir = () => rm(dataDir, { recursive: true, force: true });

  if (kind === "pglite") {
    const template = opts.fromTemplate === false ? undefined : inject("pgliteTemplate");
    if (template) await cp(template, path.join(dataDir, "pgdata"), { recursive: true });
    return { dataDir, drop: removeDir };
  }
  if (!adminUrl) {
    await removeDir();
    throw new Error("createTestDatabase: postgres requested but neither adminUrl nor DATABASE_URL is set");
  }

  // Hex-only name: safe to interpolate, since CREATE DATABASE takes no parameters.
  const name = `chatwire_test_${randomBytes(6).toString("hex")}`;
  await withAdminClient(adminUrl, (client) => client.query(`CREATE DATABASE ${name}`));
  logger.debug({ database: name }, "test database created");

  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  let dropped = false;
  return {
    databaseUrl: url.toString(),
    dataDir,
    async drop() {
      if (dropped) return;
      dropped = true;
      await withAdminClient(adminUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
      await removeDir();
      logger.debug({ database: name }, "test database dropped");
    },
  };
}

async function withAdminClient<T>(adminUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export interface MigratedDatabase {
  /** The open, migrated database (read it inside tests or hooks: it is set by a beforeAll). */
  readonly db: Kysely<Database>;
  readonly kind: DatabaseHandle["kind"];
}

/**
 * A fresh database migrated to the latest version for the calling test file:
 * created and opened in a beforeAll, closed and dropped in an afterAll.
 */
export function migratedDatabase(logger: Logger = pino({ level: "silent" })): MigratedDatabase {
  let testDb: TestDatabase | undefined;
  let handle: DatabaseHandle | undefined;
  beforeAll(async () => {
    testDb = await createTestDatabase();
    handle = await openDatabase({ databaseUrl: testDb.databaseUrl, dataDir: testDb.dataDir, logger });
    await migrateToLatest(handle.db, logger);
  });
  afterAll(async () => {
    await handle?.close();
    await testDb?.drop();
  });
  const opened = (): DatabaseHandle => {
    if (!handle) throw new Error("migratedDatabase: read db inside a test or hook, after its beforeAll");
    return handle;
  };
  return {
    get db() {
      return opened().db;
    },
    get kind() {
      return opened().kind;
    },
  };
}
