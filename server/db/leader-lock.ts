import { createHash } from "node:crypto";
import type pg from "pg";
import type { Logger } from "pino";
import { lockSession } from "./lock-session.js";

/** Who may do a job that must run in one place at a time (the message worker). */
export interface LeaderLock {
  /** True when this process holds the lock (taking it if it is free). */
  acquire(): Promise<boolean>;
  release(): Promise<void>;
  /**
   * Calls `listener` when a lock this process held is lost without release()
   * (its connection died: another instance may hold it now). Returns the unsubscribe.
   */
  onLost(listener: () => void): () => void;
}

/**
 * A PostgreSQL session-level advisory lock on its own connection: held while
 * that connection lives, so a crashed holder frees it and a standby takes over.
 */
export class PgLeaderLock implements LeaderLock {
  private client: pg.Client | undefined;
  private held = false;
  private readonly key: string;
  private readonly lostListeners = new Set<() => void>();

  constructor(
    private readonly databaseUrl: string,
    name: string,
    private readonly logger: Logger,
  ) {
    // A stable signed 64-bit key from the name.
    this.key = createHash("sha256").update(name).digest().readBigInt64BE(0).toString();
  }

  async acquire(): Promise<boolean> {
    if (this.held && this.client) return true;
    let client = this.client;
    try {
      if (!client) {
        const fresh = lockSession(this.databaseUrl, (c, err) => this.lose(c, err));
        client = this.client = fresh;
        await fresh.connect();
      }
      const { rows } = await client.query<{ ok: boolean }>("select pg_try_advisory_lock($1::bigint) as ok", [this.key]);
      // The connection may have died while the answer was on its way.
      if (this.client !== client) return false;
      this.held = rows[0]?.ok === true;
      if (this.held) this.logger.info({ key: this.key }, "leader lock taken: this instance's worker is the active one");
      return this.held;
    } catch (err) {
      // One line, no stack: while PostgreSQL is down this repeats every poll.
      this.logger.warn({ err: (err as Error).message }, "taking the leader lock failed; standing by");
      this.dropClient(client);
      await client?.end().catch(() => undefined);
      return false;
    }
  }

  async release(): Promise<void> {
    const client = this.client;
    this.dropClient(client);
    // Closing the session releases the lock.
    await client?.end().catch(() => undefined);
  }

  onLost(listener: () => void): () => void {
    this.lostListeners.add(listener);
    return () => this.lostListeners.delete(listener);
  }

  /** The lock's connection failed or ended under us: the session, and so the lock, is gone. */
  private lose(client: pg.Client, err: Error | undefined): void {
    if (this.client !== client) return;
    const wasHeld = this.held;
    this.dropClient(client);
    if (err) client.end().catch(() => undefined);
    if (!wasHeld) return;
    this.logger.warn(
      { err: err?.message ?? "connection ended" },
      "leader lock lost: its database connection died; this worker stops until it takes the lock again",
    );
    for (const listener of this.lostListeners) listener();
  }

  private dropClient(client: pg.Client | undefined): void {
    if (client && this.client === client) {
      this.client = undefined;
      this.held = false;
    }
  }
}
