import { createHash } from "node:crypto";
import type pg from "pg";
import type { Logger } from "pino";
import { lockSession } from "./lock-session.js";

/**
 * How the message workers of a deployment share its partitions
 * (messaging/worker-pool.ts): one lock per partition, and a count of the
 * workers alive, all on one session per worker, so a worker that dies (even
 * kill -9: its connection closes) frees everything it held at once.
 */
export interface PartitionLocks {
  /** Connects if needed and counts this worker among the live ones; false while the database cannot be reached. */
  join(): Promise<boolean>;
  /** The deployment's live workers, this one included: how many partitions each holds. */
  liveWorkers(): Promise<number[]>;
  /** Takes partition p if no worker holds it. */
  tryLock(partition: number): Promise<boolean>;
  /** Gives partition p up (no-op unless held). */
  unlock(partition: number): Promise<void>;
  /** The partitions this worker holds now. */
  readonly held: ReadonlySet<number>;
  /** Calls `listener` when the session dies holding locks (another worker may hold them now). Returns the unsubscribe. */
  onLost(listener: () => void): () => void;
  /** Ends the session: every lock goes with it. */
  close(): Promise<void>;
}

/** The second key of the shared lock every live worker holds; partitions are 0 … P-1. */
const MEMBER_KEY = 2_147_483_647;

/**
 * PostgreSQL session advisory locks with two int4 keys: (namespace, p) for
 * partition p, taken exclusively, and (namespace, MEMBER_KEY), taken shared
 * by every live worker, so pg_locks counts them. The namespace comes from the
 * deployment's name (its stream), so deployments sharing a database never meet.
 */
export class PgPartitionLocks implements PartitionLocks {
  private client: pg.Client | undefined;
  private joined = false;
  private readonly locked = new Set<number>();
  private readonly namespace: number;
  private readonly lostListeners = new Set<() => void>();

  constructor(
    private readonly databaseUrl: string,
    name: string,
    private readonly logger: Logger,
  ) {
    // Non-negative, so it reads back unchanged from pg_locks.classid (an oid).
    this.namespace = createHash("sha256").update(name).digest().readUInt32BE(0) & 0x7fffffff;
  }

  get held(): ReadonlySet<number> {
    return this.locked;
  }

  async join(): Promise<boolean> {
    if (this.joined && this.client) return true;
    let client = this.client;
    try {
      if (!client) {
        const fresh = lockSession(this.databaseUrl, (c, err) => this.lose(c, err));
        client = this.client = fresh;
        await fresh.connect();
      }
      const session = client;
      await this.serial(() => session.query("select pg_advisory_lock_shared($1::int4, $2::int4)", [this.namespace, MEMBER_KEY]));
      if (this.client !== client) return false;
      this.joined = true;
      return true;
    } catch (err) {
      // One line, no stack: while PostgreSQL is down this repeats every poll.
      this.logger.warn({ err: (err as Error).message }, "joining the message workers failed; retrying");
      this.drop(client);
      await client?.end().catch(() => undefined);
      return false;
    }
  }

  async liveWorkers(): Promise<number[]> {
    // Each live worker (its shared member lock) with the partitions its session holds.
    const session = this.session();
    const { rows } = await this.serial(() =>
      session.query<{ held: number }>(
        `select (select count(*) from pg_locks p
                where p.pid = m.pid and p.locktype = 'advisory' and p.granted and p.objsubid = 2
                  and p.database = m.database and p.classid = m.classid and p.objid <> m.objid)::int as held
         from pg_locks m
        where m.locktype = 'advisory' and m.granted and m.objsubid = 2
          and m.database = (select oid from pg_database where datname = current_database())
          and m.classid = $1::int8::oid and m.objid = $2::int8::oid`,
        [this.namespace, MEMBER_KEY],
      ),
    );
    return rows.length > 0 ? rows.map((r) => r.held) : [this.locked.size];
  }

  async tryLock(partition: number): Promise<boolean> {
    if (this.locked.has(partition)) return true;
    const client = this.session();
    const { rows } = await this.serial(() =>
      client.query<{ ok: boolean }>("select pg_try_advisory_lock($1::int4, $2::int4) as ok", [this.namespace, partition]),
    );
    // The session may have died while the answer was on its way.
    if (this.client !== client || rows[0]?.ok !== true) return false;
    this.locked.add(partition);
    return true;
  }

  async unlock(partition: number): Promise<void> {
    if (!this.locked.delete(partition)) return;
    const client = this.client;
    if (!client) return;
    await this.serial(() => client.query("select pg_advisory_unlock($1::int4, $2::int4)", [this.namespace, partition])).catch((err: unknown) => {
      // The session is gone, and the lock with it.
      this.logger.warn({ err: (err as Error).message, partition }, "giving a partition up failed");
    });
  }

  onLost(listener: () => void): () => void {
    this.lostListeners.add(listener);
    return () => this.lostListeners.delete(listener);
  }

  async close(): Promise<void> {
    const client = this.client;
    this.drop(client);
    await client?.end().catch(() => undefined);
  }

  /** One query at a time on the session (workers give partitions up in parallel). */
  private serial<T>(query: () => Promise<T>): Promise<T> {
    const next = this.tail.then(query, query);
    this.tail = next.catch(() => undefined);
    return next;
  }
  private tail: Promise<unknown> = Promise.resolve();

  private session(): pg.Client {
    if (!this.client || !this.joined) throw new Error("partition locks: not joined (the database session is gone)");
    return this.client;
  }

  private lose(client: pg.Client, err: Error | undefined): void {
    if (this.client !== client) return;
    const held = [...this.locked];
    this.drop(client);
    if (err) client.end().catch(() => undefined);
    if (held.length === 0) return;
    this.logger.warn({ err: err?.message ?? "connection ended", partitions: held }, "partition locks lost: their database session died");
    for (const listener of this.lostListeners) listener();
  }

  private drop(client: pg.Client | undefined): void {
    if (client && this.client === client) {
      this.client = undefined;
      this.joined = false;
      this.locked.clear();
    }
  }
}

/** One process and no PostgreSQL (PGlite): the only worker, so every partition is its own. */
export class LocalPartitionLocks implements PartitionLocks {
  private readonly locked = new Set<number>();
  get held(): ReadonlySet<number> {
    return this.locked;
  }
  async join(): Promise<boolean> {
    return true;
  }
  async liveWorkers(): Promise<number[]> {
    return [this.locked.size];
  }
  async tryLock(partition: number): Promise<boolean> {
    this.locked.add(partition);
    return true;
  }
  async unlock(partition: number): Promise<void> {
    this.locked.delete(partition);
  }
  onLost(): () => void {
    return () => undefined;
  }
  async close(): Promise<void> {
    this.locked.clear();
  }
}
