import { Worker } from "node:worker_threads";

/** A query's answer from the database thread (pglite-thread-worker.js). */
export interface ThreadAnswer {
  /** The request's Parse was accepted (its prepared statement now exists). */
  parseComplete: boolean;
  /** PostgreSQL refused the query: an Error with its SQLSTATE `code` and the other fields. */
  error?: Error & { code?: string };
  result?: { rows: unknown[]; command?: string; rowCount?: number; affectedRows?: number };
  /** Whether a transaction block is open after the query. */
  inTransaction: boolean;
}

interface Reply {
  id?: number;
  ready?: boolean;
  closed?: boolean;
  parseComplete?: boolean;
  error?: Record<string, unknown> & { message: string };
  result?: ThreadAnswer["result"];
  inTransaction?: boolean;
}

/** What isConnectionError (connection-errors.ts) reads as "the database went away": the RPC answers unavailable. */
const GONE = "Connection terminated: the embedded database's thread stopped";

/**
 * The embedded PGlite on a worker thread of its own (issue 15, item 7): the
 * WebAssembly backend runs there, so while a query executes the main thread
 * keeps serving HTTP/2 and the RPC layer, and the two use two cores. The
 * dialect (pglite-dialect.ts) sends one query at a time, as one buffer of
 * protocol messages, and gets the parsed result back.
 *
 * The thread keeps the process alive only while a request is in flight. If it
 * dies, every call fails with a connection error (answered `unavailable`).
 */
export class PGliteThread {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  #nextId = 0;
  #gone: Error | undefined;
  #closed = false;
  #inTransaction = false;

  private constructor(worker: Worker) {
    this.#worker = worker;
    worker.on("message", (reply: Reply) => {
      if (reply.id === undefined) return;
      const waiting = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      if (this.#pending.size === 0) worker.unref();
      waiting?.resolve(reply);
    });
    const stop = (why: string) => {
      this.#gone ??= new Error(`${GONE} (${why})`);
      for (const w of this.#pending.values()) w.reject(this.#gone);
      this.#pending.clear();
    };
    worker.on("error", (err) => stop(err.message));
    worker.on("exit", (code) => stop(`exit code ${code}`));
  }

  /** Starts the thread and opens the database in it (PGlite.create's data directory and settings). */
  static async start(dataDir: string, postgresqlconf: readonly string[]): Promise<PGliteThread> {
    const worker = new Worker(new URL("./pglite-thread-worker.js", import.meta.url), { workerData: { dataDir, postgresqlconf } });
    const first = await new Promise<Reply>((resolve, reject) => {
      worker.once("message", resolve);
      worker.once("error", reject);
      worker.once("exit", (code) => reject(new Error(`${GONE} (exit code ${code} while opening ${dataDir})`)));
    });
    if (!first.ready) {
      await worker.terminate();
      throw rebuild(first.error ?? { message: `opening ${dataDir} failed` });
    }
    worker.unref();
    return new PGliteThread(worker);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** After the last answer: a transaction block is open. */
  isInTransaction(): boolean {
    return this.#inTransaction;
  }

  /** One buffer of frontend protocol messages (ending with Sync). */
  async exec(bytes: Uint8Array): Promise<ThreadAnswer> {
    const reply = await this.#request({ bytes }, [bytes.buffer as ArrayBuffer]);
    this.#inTransaction = reply.inTransaction === true;
    return {
      parseComplete: reply.parseComplete === true,
      error: reply.error ? rebuild(reply.error) : undefined,
      result: reply.result,
      inTransaction: this.#inTransaction,
    };
  }

  /** Closes the database (a clean shutdown of its backend), then ends the thread. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      if (!this.#gone) await this.#request({ close: true }, []);
    } finally {
      await this.#worker.terminate();
    }
  }

  #request(body: Record<string, unknown>, transfer: ArrayBuffer[]): Promise<Reply> {
    if (this.#gone) return Promise.reject(this.#gone);
    const id = ++this.#nextId;
    return new Promise<Reply>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.ref();
      this.#worker.postMessage({ id, ...body }, transfer);
    });
  }
}

/** The thread's plain-data error as an Error again, with PostgreSQL's fields (code, detail, constraint, ...). */
function rebuild(fields: Record<string, unknown> & { message: string }): Error & { code?: string } {
  const { message, name: _name, length: _length, ...rest } = fields;
  return Object.assign(new Error(message), rest);
}
