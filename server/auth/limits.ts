import type { Kysely } from "kysely";
import { hitRateLimit } from "../db/auth-store.js";
import type { Database } from "../db/schema.js";

export class RateLimitedError extends Error {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message);
    this.name = "RateLimitedError";
  }
}

/** Counts one hit on `key`; throws RateLimitedError once more than `limit` fall in one window. */
export async function enforceLimit(
  db: Kysely<Database>,
  key: string,
  limit: number,
  windowSeconds: number,
  now: Date,
  what: string,
): Promise<void> {
  const { count, windowEndsAt } = await hitRateLimit(db, key, windowSeconds, now);
  if (count > limit) {
    const wait = Math.max(1, Math.ceil((windowEndsAt.getTime() - now.getTime()) / 1000));
    throw new RateLimitedError(`${what}; try again in ${wait} s`, wait);
  }
}
