import { parse as pgliteParse, protocol, type messages, type PGlite } from "@electric-sql/pglite";
import {
  CompiledQuery,
  IdentifierNode,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  RawNode,
  createQueryId,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type QueryResult,
  type TransactionSettings,
} from "kysely";

export interface PGliteDialectConfig {
  /** Ownership passes to the dialect: destroying the Kysely instance closes it. */
  pglite: PGlite;
}

/**
 * Kysely dialect for an in-process PGlite. PGlite is a single Postgres backend,
 * so the driver hands out one connection guarded by a FIFO mutex: a Kysely
 * transaction holds it from BEGIN to COMMIT/ROLLBACK and other queries wait.
 *
 * Caveat: inside `db.transaction().execute(trx => ...)`, querying through `db`
 * instead of `trx` waits for the transaction's own connection and deadlocks.
 * With pg it would silently run outside the transaction, which is also a bug.
 */
export class PGliteDialect implements Dialect {
  readonly #config: PGliteDialectConfig;

  constructor(config: PGliteDialectConfig) {
    this.#config = { ...config };
  }

  createAdapter(): DialectAdapter {
    return new PostgresAdapter();
  }

  createDriver(): Driver {
    return new PGliteDriver(this.#config.pglite);
  }

  createQueryCompiler(): QueryCompiler {
    return new PostgresQueryCompiler();
  }

  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new PostgresIntrospector(db);
  }
}

class Mutex {
  #tail: Promise<void> = Promise.resolve();

  /** Resolves, in call order, once every earlier holder has released. */
  async lock(): Promise<() => void> {
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const previous = this.#tail;
    this.#tail = previous.then(() => released);
    await previous;
    return release;
  }
}

class PGliteDriver implements Driver {
  readonly #pglite: PGlite;
  readonly #connection: PGliteConnection;
  readonly #mutex = new Mutex();
  #release: (() => void) | undefined;
  #destroyed = false;

  constructor(pglite: PGlite) {
    this.#pglite = pglite;
    this.#connection = new PGliteConnection(pglite);
  }

  async init(): Promise<void> {
    await this.#pglite.waitReady;
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const release = await this.#mutex.lock();
    if (this.#destroyed || this.#pglite.closed) {
      release();
      throw new Error("PGlite database is closed");
    }
    this.#release = release;
    return this.#connection;
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    let statement = "begin";
    if (settings.isolationLevel || settings.accessMode) {
      statement = "start transaction";
      if (settings.isolationLevel) statement += ` isolation level ${settings.isolationLevel}`;
      if (settings.accessMode) statement += ` ${settings.accessMode}`;
    }
    await connection.executeQuery(CompiledQuery.raw(statement));
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("commit"));
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("rollback"));
  }

  async savepoint(connection: DatabaseConnection, savepointName: string, compileQuery: QueryCompiler["compileQuery"]): Promise<void> {
    await connection.executeQuery(compileQuery(savepointCommand("savepoint", savepointName), createQueryId()));
  }

  async rollbackToSavepoint(connection: DatabaseConnection, savepointName: string, compileQuery: QueryCompiler["compileQuery"]): Promise<void> {
    await connection.executeQuery(compileQuery(savepointCommand("rollback to", savepointName), createQueryId()));
  }

  async releaseSavepoint(connection: DatabaseConnection, savepointName: string, compileQuery: QueryCompiler["compileQuery"]): Promise<void> {
    await connection.executeQuery(compileQuery(savepointCommand("release", savepointName), createQueryId()));
  }

  async releaseConnection(): Promise<void> {
    const release = this.#release;
    this.#release = undefined;
    release?.();
  }

  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    // Queries queued before destroy() still run; later ones fail fast.
    const release = await this.#mutex.lock();
    try {
      this.#destroyed = true;
      if (!this.#pglite.closed) await this.#pglite.close();
    } finally {
      release();
    }
  }
}

function savepointCommand(command: string, savepointName: string): RawNode {
  // IdentifierNode makes the compiler quote the name, as Kysely's own drivers do.
  return RawNode.createWithChildren([RawNode.createWithSql(`${command} `), IdentifierNode.create(savepointName)]);
}

const WRITE_COMMANDS = new Set(["INSERT", "UPDATE", "DELETE", "MERGE"]);

// Queries whose text repeats (everything Kysely builds, the database functions'
// calls) become named prepared statements: PGlite parses and plans each text
// once per database, then only binds and executes it. Bounded: texts that vary
// with list lengths would otherwise grow the backend's memory without end.
const PREPARED_MAX = 256;
const PREPARABLE = /^\s*(select|insert|update|delete|with)\b/i;
const { serialize } = protocol;
const SYNC = serialize.sync();
const DESCRIBE_PORTAL = serialize.describe({ type: "P" });
const EXECUTE = serialize.execute({});

/**
 * One query is one call into PGlite: Parse (first time only), Bind, Describe,
 * Execute and Sync in one buffer. PGlite's own query() makes six calls into
 * the WASM backend per query (it first describes the statement to pick each
 * parameter's serializer); here parameters are serialized by their JavaScript
 * type, as node-postgres does on the production profile, so both profiles
 * send the same text for the same value.
 */
class PGliteConnection implements DatabaseConnection {
  readonly #pglite: PGlite;
  /** Query text → name of its prepared statement in the backend. */
  readonly #prepared = new Map<string, string>();
  #nextName = 0;
  readonly #closing: string[] = [];

  constructor(pglite: PGlite) {
    this.#pglite = pglite;
  }

  async executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    const text = compiledQuery.sql;
    let name = this.#prepared.get(text);
    const parse = name === undefined;
    if (name === undefined && this.#prepared.size < PREPARED_MAX && PREPARABLE.test(text)) name = `k${++this.#nextName}`;
    const values = compiledQuery.parameters.map(prepareValue);
    const parts = [
      // Statements dropped earlier (see below) are closed on the way.
      ...this.#closing.splice(0).map((stale) => serialize.close({ type: "S", name: stale })),
      ...(parse ? [serialize.parse({ name: name ?? "", text })] : []),
      serialize.bind({ statement: name ?? "", values }),
      DESCRIBE_PORTAL,
      EXECUTE,
      SYNC,
    ];
    const messages = await this.#pglite.execProtocolStream(concat(parts), { syncToFs: false, throwOnError: false });
    if (parse && name !== undefined && messages.some((m) => m.name === "parseComplete")) this.#prepared.set(text, name);
    const error = messages.find((m): m is messages.DatabaseError => m.name === "error");
    if (error) {
      // "cached plan must not change result type": a table changed under a
      // prepared `select *` (a migration). Parsed afresh under a new name;
      // outside a transaction that is retried here, inside it is aborted anyway.
      if (!parse && name !== undefined && error.code === "0A000") {
        this.#prepared.delete(text);
        this.#closing.push(name);
        if (!this.#pglite.isInTransaction()) return this.executeQuery(compiledQuery);
      }
      throw error;
    }
    if (!this.#pglite.isInTransaction()) await this.#pglite.syncToFs();
    const [result] = pgliteParse.parseResults(messages, this.#pglite.parsers);
    const command = result?.command?.toUpperCase();
    return {
      rows: (result?.rows ?? []) as R[],
      // rowCount is per statement; affectedRows is cumulative and only a fallback.
      numAffectedRows: command !== undefined && WRITE_COMMANDS.has(command) ? BigInt(result?.rowCount ?? result?.affectedRows ?? 0) : undefined,
    };
  }

  async *streamQuery<R>(compiledQuery: CompiledQuery, chunkSize = 100): AsyncIterableIterator<QueryResult<R>> {
    if (!Number.isInteger(chunkSize) || chunkSize <= 0) {
      throw new Error("chunkSize must be a positive integer");
    }
    // PGlite has no cursor API: the whole result is buffered, then yielded in
    // chunks. Acceptable because PGlite only backs dev and test databases.
    const { rows } = await this.executeQuery<R>(compiledQuery);
    for (let i = 0; i < rows.length; i += chunkSize) {
      yield { rows: rows.slice(i, i + chunkSize) };
    }
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

type Param = string | Uint8Array | null;

/** A parameter as node-postgres sends it (pg/lib/utils prepareValue), Dates as ISO 8601 in UTC. */
function prepareValue(value: unknown): Param {
  if (value === null || value === undefined) return null;
  if (typeof value !== "object") return String(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return arrayLiteral(value);
  return JSON.stringify(value);
}

function arrayLiteral(values: readonly unknown[]): string {
  const items = values.map((v) => {
    if (v === null || v === undefined) return "NULL";
    if (Array.isArray(v)) return arrayLiteral(v);
    if (ArrayBuffer.isView(v)) return `"\\\\x${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex")}"`;
    const text = prepareValue(v) as string;
    return `"${text.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
  });
  return `{${items.join(",")}}`;
}
