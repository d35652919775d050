import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Clock } from "../clock.js";
import { getSessionStates } from "../db/auth-store.js";
import type { Database } from "../db/schema.js";
import type { EventBus } from "../messaging/bus.js";

const REVOKED_SUBJECT = "chatwire.auth.revoked";
const MAX_ENTRIES = 100_000;
/** Session rows read in one query at most. */
const MAX_BATCH = 500;

type SessionRow = Awaited<ReturnType<typeof getSessionStates>>[number];
interface Waiter {
  resolve(row: SessionRow | undefined): void;
  reject(err: unknown): void;
}

/**
 * Answers "is this session live?" for every authenticated call without a
 * database round trip each time: live answers are cached briefly, and a
 * revocation on any instance is broadcast on the bus and applied at once
 * everywhere (the cache TTL only bounds a missed broadcast).
 */
export class SessionGuard {
  private readonly cache = new Map<string, { live: boolean; until: number }>();
  private readonly listeners = new Set<(sessionId: string) => void>();
  private unsubscribe: (() => void) | undefined;
  /** Lookups waiting for the query in flight to finish; then they go together in one. */
  private readonly queued = new Map<string, Waiter[]>();
  private reading = false;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly bus: EventBus,
    private readonly cacheMs: number,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.unsubscribe = this.bus.subscribe(REVOKED_SUBJECT, (payload) => {
      try {
        const { sessionIds } = JSON.parse(new TextDecoder().decode(payload)) as { sessionIds: string[] };
        for (const id of sessionIds) this.markRevoked(id);
      } catch (err) {
        this.logger.warn({ err }, "bad revocation notice");
      }
    });
  }

  stop(): void {
    this.unsubscribe?.();
  }

  async isLive(sessionId: string, userId: string): Promise<boolean> {
    const now = Date.now();
    const hit = this.cache.get(sessionId);
    if (hit && (!hit.live || hit.until > now)) return hit.live;
    const row = await this.read(sessionId);
    const live =
      row !== undefined && row.user_id === userId && row.revoked_at === null && row.refresh_expires_at !== null && row.refresh_expires_at > this.clock.now();
    if (this.cache.size >= MAX_ENTRIES) this.cache.clear();
    // A revoked session never comes back, so that answer is kept for good.
    this.cache.set(sessionId, { live, until: now + this.cacheMs });
    return live;
  }

  /**
   * A session's row. Lookups that arrive while a read is in flight (many devices
   * connecting at once) are read together in the next query, so a burst of N
   * calls costs a few round trips instead of N; a lone lookup waits for nothing.
   */
  private read(sessionId: string): Promise<SessionRow | undefined> {
    return new Promise((resolve, reject) => {
      const waiting = this.queued.get(sessionId);
      if (waiting) waiting.push({ resolve, reject });
      else this.queued.set(sessionId, [{ resolve, reject }]);
      if (!this.reading) this.readQueued();
    });
  }

  private readQueued(): void {
    if (this.queued.size === 0) {
      this.reading = false;
      return;
    }
    this.reading = true;
    const batch = new Map<string, Waiter[]>();
    for (const [id, waiters] of this.queued) {
      batch.set(id, waiters);
      this.queued.delete(id);
      if (batch.size >= MAX_BATCH) break;
    }
    getSessionStates(this.db, [...batch.keys()])
      .then(
        (found) => {
          const byId = new Map(found.map((r) => [r.id, r]));
          for (const [id, waiters] of batch) for (const w of waiters) w.resolve(byId.get(id));
        },
        (err: unknown) => {
          for (const waiters of batch.values()) for (const w of waiters) w.reject(err);
        },
      )
      .finally(() => this.readQueued());
  }

  /** Call after committing a revocation: this instance and every other forget the sessions. */
  revoked(sessionIds: string[]): void {
    if (sessionIds.length === 0) return;
    for (const id of sessionIds) this.markRevoked(id);
    this.bus.publish(REVOKED_SUBJECT, new TextEncoder().encode(JSON.stringify({ sessionIds })));
  }

  /** Hears every revocation (e.g. to end that session's open streams). */
  onRevoked(listener: (sessionId: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private markRevoked(sessionId: string): void {
    this.cache.set(sessionId, { live: false, until: Number.POSITIVE_INFINITY });
    for (const l of this.listeners) l(sessionId);
  }
}
