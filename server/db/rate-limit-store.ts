import { CompiledQuery, type Kysely } from "kysely";
import type { Database } from "./schema.js";

/** The table of migration 0010 that RateLimiterPostgres keeps its counters in. */
export const RATE_LIMIT_TABLE = "rate_limit_points";

/** What RateLimiterPostgres asks of a client (`storeType: "client"`): pg's `query` and result shape. */
export interface RateLimitStoreClient {
  query(q: { text: string; values?: unknown[] }): Promise<{ rows: any[]; rowCount: number }>;
}

/**
 * RateLimiterPostgres's queries through Kysely, so they take the server's own
 * pool (pg) or PGlite handle: one connection setup, one place that handles a
 * database going away, and the same shared store on both profiles.
 */
export function rateLimitStoreClient(db: Kysely<Database>): RateLimitStoreClient {
  return {
    async query(q) {
      const res = await db.executeQuery(CompiledQuery.raw(q.text, q.values ?? []));
      return { rows: res.rows as any[], rowCount: res.numAffectedRows !== undefined ? Number(res.numAffectedRows) : res.rows.length };
    },
  };
}

/** Deletes counters whose window ended before `beforeMs`. */
export async function pruneRateLimitPoints(db: Kysely<Database>, beforeMs: number): Promise<void> {
  await db.deleteFrom(RATE_LIMIT_TABLE).where("expire", "<", String(beforeMs)).execute();
}
