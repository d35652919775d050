import type { Kysely } from "kysely";
import { hitRateLimit, unhitRateLimit } from "../db/auth-store.js";
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
async function enforceLimit(db: Kysely<Database>, key: string, limit: number, windowSeconds: number, now: Date, what: string): Promise<void> {
  const { count, windowEndsAt } = await hitRateLimit(db, key, windowSeconds, now);
  if (count > limit) {
    const wait = Math.max(1, Math.ceil((windowEndsAt.getTime() - now.getTime()) / 1000));
    throw new RateLimitedError(`${what}; try again in ${wait} s`, wait);
  }
}

export interface Limit {
  key: string;
  limit: number;
  windowSeconds: number;
  /** Said to the client when this limit refuses, e.g. "a code was just sent to this number". */
  what: string;
}

/**
 * Passes a request through several limits in order. A refusal gives back the
 * hits already taken by the earlier ones, so only work that happens is counted;
 * the returned function gives back all of them (the work failed downstream).
 */
export async function enforceLimits(db: Kysely<Database>, limits: Limit[], now: Date): Promise<() => Promise<void>> {
  const taken: string[] = [];
  const giveBack = async (): Promise<void> => {
    for (const key of taken) await unhitRateLimit(db, key);
  };
  for (const l of limits) {
    try {
      await enforceLimit(db, l.key, l.limit, l.windowSeconds, now, l.what);
    } catch (err) {
      await giveBack();
      throw err;
    }
    taken.push(l.key);
  }
  return giveBack;
}
