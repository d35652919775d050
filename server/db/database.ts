import { mkdir } from "node:fs/promises";
import path from "node:path";
import { PGlite, types as pgliteTypes } from "@electric-sql/pglite";
import { Kysely, PostgresDialect, sql } from "kysely";
import pg from "pg";
import type { Logger } from "pino";
import { PGliteDialect } from "./pglite-dialect.js";
import type { Database } from "./schema.js";

type DatabaseKind = "postgres" | "pglite";

export interface OpenDatabaseOptions {
  /** PostgreSQL connection string; when absent an embedded PGlite is used. */
  databaseUrl?: string;
  /** PGlite data lives in `${dataDir}/pgdata`; `memory://` keeps it in memory. */
  dataDir: string;
  logger: Logger;
  poolMax?: number;
}

export interface DatabaseHandle {
  db: Kysely<Database>;
  kind: DatabaseKind;
  ping(): Promise<void>;
  /** Idempotent. */
  close(): Promise<void>;
}

export const IN_MEMORY_DATA_DIR = "memory://";

const DEFAULT_POOL_MAX = 10;
const CONNECT_TIMEOUT_MS = 5_000;

// Value mapping, identical on both backends:
// - timestamptz -> JS Date (pg default; PGlite default).
// - int8/bigint (including count(*)) -> string. pg returns strings by default
//   and this is lossless; PGlite defaults to number, which silently loses
//   precision above 2^53, so it is overridden below.
// - numeric -> string (both defaults).

export async function openDatabase(opts: OpenDatabaseOptions): Promise<DatabaseHandle> {
  return opts.databaseUrl ? openPostgres(opts.databaseUrl, opts) : openPGlite(opts);
}

// The calls of the database functions (server/db/sql/) are few texts, each
// sent on every message: as named prepared statements a connection parses and
// plans each text once, and then only binds and executes it (PostgreSQL's CPU
// per call about halved; bench/pg-functions.ts measures it). Named by text,
// so one name is always one text; other queries (kysely's, whose text varies
// with list lengths) stay unnamed. A function whose result type changes needs
// the instances restarted ("cached plan must not change result type").
const PREPARED_MAX = 32;
const preparedNames = new Map<string, string>();

function preparedName(text: string): string | undefined {
  let name = preparedNames.get(text);
  if (name === undefined && preparedNames.size < PREPARED_MAX && text.includes(" chatwire_") && /^\s*select [^;]* from chatwire_[a-z_]+\(/.test(text)) {
    name = `chatwire_${preparedNames.size + 1}`;
    preparedNames.set(text, name);
  }
  return name;
}

/** A pg client that sends the database functions' calls as named prepared statements. */
export class PreparingClient extends pg.Client {
  // biome-ignore lint/suspicious/noExplicitAny: pg's query overloads, passed through.
  override query(config: any, values?: any, callback?: any): any {
    const name = typeof config === "string" && Array.isArray(values) ? preparedName(config) : undefined;
    return name ? super.query({ name, text: config, values }, callback) : super.query(config, values, callback);
  }
}

function openPostgres(databaseUrl: string, opts: OpenDatabaseOptions): DatabaseHandle {
  const logger = opts.logger.child({ component: "db", kind: "postgres" });
  const pool = new pg.Pool({
    Client: PreparingClient,
    connectionString: databaseUrl,
    max: opts.poolMax ?? DEFAULT_POOL_MAX,
    // A server that does not answer (network cut, host down) fails the call in
    // bounded time, as Unavailable, rather than after the OS's TCP timeout.
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    keepAlive: true,
    // Per-pool parsers so nobody's global pg.types.setTypeParser changes our mapping.
    types: {
      getTypeParser: ((oid: number, format?: "text" | "binary") =>
        oid === pg.types.builtins.INT8 && format !== "binary"
          ? (value: string) => value
          : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
    },
  });
  // An idle client can error (server restart, network drop); without a
  // listener the pool re-emits it as an uncaught 'error' and kills the process.
  pool.on("error", (err) => {
    logger.warn({ err: err.message, code: (err as { code?: string }).code }, "idle postgres connection lost");
  });
  // A checked-out client has no pool listener at all (pg-pool removes it on
  // acquire), and pg emits 'error' on it when the server goes away, even when
  // its query also fails. Unheard, that error kills the process (PostgreSQL
  // killed mid-query). The query's own rejection reaches the caller; the pool
  // drops the broken client when it is released.
  pool.on("connect", (client) => {
    client.on("error", (err) => {
      logger.debug({ err: err.message }, "postgres connection lost while in use");
    });
  });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return makeHandle(db, "postgres", async () => {});
}

// PGlite's settings (README "Embedded profile: where the time and the memory
// go"). shared_buffers lives in the WASM heap, which never shrinks: PGlite's
// default 128MB costs about 100 MiB more RSS than 16MB, while the operating
// system's page cache holds the data files anyway (PGlite reads them through
// Node's fs). fsync is already off in PGlite (-F): a crash of the process loses
// nothing committed, a crash of the machine may lose the last commits.
const PGLITE_SETTINGS = ["shared_buffers=32MB"];

async function openPGlite(opts: OpenDatabaseOptions): Promise<DatabaseHandle> {
  const logger = opts.logger.child({ component: "db", kind: "pglite" });
  let dataDir: string;
  if (opts.dataDir === IN_MEMORY_DATA_DIR) {
    dataDir = IN_MEMORY_DATA_DIR;
  } else {
    dataDir = path.resolve(opts.dataDir, "pgdata");
    await mkdir(dataDir, { recursive: true });
  }
  const pglite = await PGlite.create(dataDir, {
    parsers: { [pgliteTypes.INT8]: (value: string) => value },
    postgresqlconf: PGLITE_SETTINGS,
  });
  logger.info({ dataDir }, "pglite database opened");
  const db = new Kysely<Database>({ dialect: new PGliteDialect({ pglite }) });
  // Kysely skips driver.destroy() if no query ever ran, so close PGlite here too.
  return makeHandle(db, "pglite", async () => {
    if (!pglite.closed) await pglite.close();
  });
}

function makeHandle(db: Kysely<Database>, kind: DatabaseKind, afterDestroy: () => Promise<void>): DatabaseHandle {
  let closing: Promise<void> | undefined;
  return {
    db,
    kind,
    async ping() {
      await sql`select 1`.execute(db);
    },
    close() {
      closing ??= db.destroy().then(afterDestroy);
      return closing;
    },
  };
}

/** Whether the database answers a trivial query within `timeoutMs` (the message worker's poison check). */
export async function databaseAnswers(db: Kysely<Database>, timeoutMs = 2000): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      sql`select 1`.execute(db).then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
    ]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
