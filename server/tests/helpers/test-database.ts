import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { pino, type Logger } from 'pino';
import { inject } from 'vitest';

export interface TestDatabase {
  /** Set for PostgreSQL; absent means PGlite in `dataDir`. */
  databaseUrl?: string;
  dataDir: string;
  drop(): Promise<void>;
}

export interface TestDatabaseOptions {
  /** Default: 'postgres' when DATABASE_URL is set, else 'pglite'. */
  kind?: 'postgres' | 'pglite';
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
export async function createTestDatabase(
  logger: Logger = pino({ level: 'silent' }),
  opts: TestDatabaseOptions = {},
): Promise<TestDatabase> {
  const adminUrl = opts.adminUrl ?? process.env['DATABASE_URL'];
  const kind = opts.kind ?? (adminUrl ? 'postgres' : 'pglite');
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'chatwire-test-'));
  const removeDir = () => rm(dataDir, { recursive: true, force: true });

  if (kind === 'pglite') {
    const template = opts.fromTemplate === false ? undefined : inject('pgliteTemplate');
    if (template) await cp(template, path.join(dataDir, 'pgdata'), { recursive: true });
    return { dataDir, drop: removeDir };
  }
  if (!adminUrl) {
    await removeDir();
    throw new Error('createTestDatabase: postgres requested but neither adminUrl nor DATABASE_URL is set');
  }

  // Hex-only name: safe to interpolate, since CREATE DATABASE takes no parameters.
  const name = `chatwire_test_${randomBytes(6).toString('hex')}`;
  await withAdminClient(adminUrl, (client) => client.query(`CREATE DATABASE ${name}`));
  logger.debug({ database: name }, 'test database created');

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
      logger.debug({ database: name }, 'test database dropped');
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
