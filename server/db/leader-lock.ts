import { createHash } from "node:crypto";
import pg from "pg";
import type { Logger } from "pino";

/** Who may do a job that must run in one place at a time (the message worker). */
export interface LeaderLock {
  /** True when this process holds the lock (taking it if it is free). */
  acquire(): Promise<boolean>;
  release(): Promise<void>;
}

/**
 * A PostgreSQL session-level advisory lock on its own connection: held while
 * that connection lives, so a crashed holder frees it and a standby takes over.
 */
export class PgLeaderLock implements LeaderLock {
  private client: pg.Client | undefined;
  private held = false;
  private readonly key: string;

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
    try {
      if (!this.client) {
        const client = new pg.Client({ connectionString: this.databaseUrl });
        client.on("error", (err) => {
          this.logger.warn({ err }, "leader lock connection lost");
          this.dropClient(client);
        });
        client.on("end", () => this.dropClient(client));
        await client.connect();
        this.client = client;
      }
      const { rows } = await this.client.query<{ ok: boolean }>("select pg_try_advisory_lock($1::bigint) as ok", [this.key]);
      this.held = rows[0]?.ok === true;
      if (this.held) this.logger.info({ key: this.key }, "leader lock taken: this instance's worker is the active one");
      return this.held;
    } catch (err) {
      this.logger.warn({ err }, "taking the leader lock failed");
      if (this.client) this.dropClient(this.client);
      return false;
    }
  }

  async release(): Promise<void> {
    const client = this.client;
    this.dropClient(client);
    // Closing the session releases the lock.
    await client?.end().catch(() => undefined);
  }

  private dropClient(client: pg.Client | undefined): void {
    if (client && this.client === client) {
      this.client = undefined;
      this.held = false;
    }
  }
}
