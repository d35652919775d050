import { protocol } from "@electric-sql/pglite";
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
import type { PGliteThread, ThreadAnswer } from "./pglite-thread.js";

export interface PGliteDialectConfig {
  /** Ownership passes to the dialect: destroying the Kysely instance closes it. */
  pglite: PGliteThread;
}

/**
 * Kysely dialect for the embedded PGlite (on its own thread: pglite-thread.ts).
 * PGlite is a single Postgres backend: statements outside a transaction are
 * pipelined to it, and a Kysely transaction holds the session from BEGIN to
 * COMMIT/ROLLBACK while other statements wait (Session).
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

/**
 * PGlite is one PostgreSQL session. Statements outside a transaction go to
 * its thread as they come, several in flight at once (it runs them in order),
 * so the thread's hand-offs overlap instead of adding up. A transaction has
 * the session to itself: its BEGIN waits for the statements in flight, and
 * other connections' statements wait for its COMMIT or ROLLBACK.
 */
class Session {
  /** The connection whose transaction holds the session. */
  owner: PGliteConnection | undefined;
  inFlight = 0;
  #waiters: Array<() => void> = [];

  /** Another connection's transaction holds the session: `conn` must wait (next()) and check again before it sends. */
  blocks(conn: PGliteConnection): boolean {
    return this.owner !== undefined && this.owner !== conn;
  }

  /** Until `conn` holds the session alone (nothing else in flight). */
  async take(conn: PGliteConnection): Promise<void> {
    while (this.blocks(conn)) await this.next();
    this.owner = conn;
    while (this.inFlight > 0) await this.next();
  }

  release(conn: PGliteConnection): void {
    if (this.owner !== conn) return;
    this.owner = undefined;
    this.#wake();
  }

  done(): void {
    this.inFlight--;
    if (this.inFlight === 0) this.#wake();
  }

  /** Until nothing is in flight and no transaction is open (for close). */
  async idle(): Promise<void> {
    while (this.owner !== undefined || this.inFlight > 0) await this.next();
  }

  /** Resolves at the next change (a transaction ended, nothing in flight). */
  next(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #wake(): void {
    const waiting = this.#waiters;
    this.#waiters = [];
    for (const w of waiting) w();
  }
}

class PGliteDriver implements Driver {
  readonly #pglite: PGliteThread;
  readonly #session = new Session();
  readonly #statements = new Statements();
  #destroyed = false;

  constructor(pglite: PGliteThread) {
    this.#pglite = pglite;
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    if (this.#destroyed || this.#pglite.closed) throw new Error("PGlite database is closed");
    return new PGliteConnection(this.#pglite, this.#session, this.#statements);
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    let statement = "begin";
    if (settings.isolationLevel || settings.accessMode) {
      statement = "start transaction";
      if (settings.isolationLevel) statement += ` isolation level ${settings.isolationLevel}`;
      if (settings.accessMode) statement += ` ${settings.accessMode}`;
    }
    await this.#session.take(connection as PGliteConnection);
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

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    this.#session.release(connection as PGliteConnection);
  }

  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    // Statements sent before destroy() still run; later ones fail fast.
    this.#destroyed = true;
    await this.#session.idle();
    if (!this.#pglite.closed) await this.#pglite.close();
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
/**
 * The session's named prepared statements (query text → name), shared by its
 * connections. A name is taken when its Parse is sent, so a second statement
 * with the same text, sent while the first is in flight, only binds it (the
 * thread runs them in order).
 */
class Statements {
  readonly prepared = new Map<string, string>();
  nextName = 0;
  /** Statements dropped earlier (see below), closed on the way with the next statement sent. */
  readonly closing: string[] = [];
}

class PGliteConnection implements DatabaseConnection {
  readonly #pglite: PGliteThread;
  readonly #session: Session;
  readonly #statements: Statements;

  constructor(pglite: PGliteThread, session: Session, statements: Statements) {
    this.#pglite = pglite;
    this.#session = session;
    this.#statements = statements;
  }

  async executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    // Checked again after every wait; from the last check to the send nothing awaits.
    while (this.#session.blocks(this)) await this.#session.next();
    const text = compiledQuery.sql;
    const st = this.#statements;
    let name = st.prepared.get(text);
    const parse = name === undefined;
    if (name === undefined && st.prepared.size < PREPARED_MAX && PREPARABLE.test(text)) {
      name = `k${++st.nextName}`;
      st.prepared.set(text, name);
    }
    const values = compiledQuery.parameters.map(prepareValue);
    const parts = [
      ...st.closing.splice(0).map((stale) => serialize.close({ type: "S", name: stale })),
      ...(parse ? [serialize.parse({ name: name ?? "", text })] : []),
      serialize.bind({ statement: name ?? "", values }),
      DESCRIBE_PORTAL,
      EXECUTE,
      SYNC,
    ];
    this.#session.inFlight++;
    let answer: ThreadAnswer;
    try {
      answer = await this.#pglite.exec(concat(parts));
    } catch (err) {
      if (parse && name !== undefined && st.prepared.get(text) === name) st.prepared.delete(text);
      throw err;
    } finally {
      this.#session.done();
    }
    if (parse && name !== undefined && !answer.parseComplete && st.prepared.get(text) === name) st.prepared.delete(text);
    const error = answer.error;
    if (error) {
      // "cached plan must not change result type": a table changed under a
      // prepared `select *` (a migration). Parsed afresh under a new name;
      // outside a transaction that is retried here, inside it is aborted anyway.
      if (!parse && name !== undefined && error.code === "0A000") {
        if (st.prepared.get(text) === name) {
          st.prepared.delete(text);
          st.closing.push(name);
        }
        if (!answer.inTransaction) return this.executeQuery(compiledQuery);
      }
      throw error;
    }
    const result = answer.result;
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
