import { type Kysely, type Transaction } from "kysely";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

export interface OpenResult {
  /** This is the user's only live stream: they just came online. */
  cameOnline: boolean;
  /** Streams beyond the per-user limit, oldest first: to be closed. */
  evicted: string[];
}

/**
 * Registers an open stream. Under the user's row lock, so two devices
 * connecting at once on two instances cannot both miss (or both announce)
 * the online transition. Rows past their expiry (a dead instance's) are
 * dropped first. The oldest streams beyond `maxStreams` are removed and returned.
 */
export async function openStream(
  db: Kysely<Database>,
  s: { streamId: string; userId: string; sessionId: string; instanceId: string; now: Date; expiresAt: Date; maxStreams: number },
): Promise<OpenResult> {
  return db.transaction().execute(async (trx) => {
    await lockUser(trx, s.userId);
    await trx.deleteFrom("presence_streams").where("user_id", "=", s.userId).where("expires_at", "<=", s.now).execute();
    await trx
      .insertInto("presence_streams")
      .values({ stream_id: s.streamId, user_id: s.userId, session_id: s.sessionId, instance_id: s.instanceId, opened_at: s.now, expires_at: s.expiresAt })
      .execute();
    const live = await trx
      .selectFrom("presence_streams")
      .select("stream_id")
      .where("user_id", "=", s.userId)
      .orderBy("serial")
      .execute();
    // The new stream stays; the oldest of the others make room.
    const others = live.map((r) => r.stream_id).filter((id) => id !== s.streamId);
    const evicted = others.slice(0, Math.max(0, live.length - s.maxStreams));
    if (evicted.length > 0) await trx.deleteFrom("presence_streams").where("stream_id", "in", evicted).execute();
    return { cameOnline: live.length === 1, evicted };
  });
}

/**
 * Unregisters a stream; when it was the user's last live one, stores
 * last_seen_at and reports that they went offline.
 */
export async function closeStream(db: Kysely<Database>, s: { streamId: string; userId: string; now: Date }): Promise<{ wentOffline: boolean }> {
  return db.transaction().execute(async (trx) => {
    await lockUser(trx, s.userId);
    const gone = await trx.deleteFrom("presence_streams").where("stream_id", "=", s.streamId).returning("stream_id").execute();
    if (gone.length === 0) return { wentOffline: false }; // evicted earlier: that eviction's caller accounted for it
    const left = await trx
      .selectFrom("presence_streams")
      .select((eb) => eb.fn.countAll<string>().as("n"))
      .where("user_id", "=", s.userId)
      .where("expires_at", ">", s.now)
      .executeTakeFirstOrThrow();
    if (Number(left.n) > 0) return { wentOffline: false };
    await trx.updateTable("users").set({ last_seen_at: s.now }).where("id", "=", s.userId).execute();
    return { wentOffline: true };
  });
}

/** Pushes this instance's streams' expiry forward (they are alive). */
export async function renewStreams(db: Db, streamIds: readonly string[], expiresAt: Date): Promise<void> {
  if (streamIds.length === 0) return;
  for (let i = 0; i < streamIds.length; i += 5000) {
    await db.updateTable("presence_streams").set({ expires_at: expiresAt }).where("stream_id", "in", streamIds.slice(i, i + 5000)).execute();
  }
}

/**
 * Removes streams of instances that stopped renewing them, and returns the
 * users left with none (offline now; last_seen_at set to the expiry).
 */
export async function sweepExpired(db: Kysely<Database>, now: Date): Promise<string[]> {
  return db.transaction().execute(async (trx) => {
    const expired = await trx.deleteFrom("presence_streams").where("expires_at", "<=", now).returning(["user_id", "expires_at"]).execute();
    if (expired.length === 0) return [];
    const users = [...new Set(expired.map((r) => r.user_id))];
    const still = await online(trx, users, now);
    const offline = users.filter((u) => !still.has(u));
    if (offline.length > 0) {
      await trx
        .updateTable("users")
        .set({ last_seen_at: now })
        .where("id", "in", offline)
        .execute();
    }
    return offline;
  });
}

/** Which of the users have a live stream. */
export async function online(db: Db, userIds: readonly string[], now: Date): Promise<Set<string>> {
  if (userIds.length === 0) return new Set();
  const rows = await db
    .selectFrom("presence_streams")
    .select("user_id")
    .distinct()
    .where("user_id", "in", [...userIds])
    .where("expires_at", ">", now)
    .execute();
  return new Set(rows.map((r) => r.user_id));
}

export async function lastSeen(db: Db, userIds: readonly string[]): Promise<Map<string, Date | null>> {
  if (userIds.length === 0) return new Map();
  const rows = await db.selectFrom("users").select(["id", "last_seen_at"]).where("id", "in", [...userIds]).execute();
  return new Map(rows.map((r) => [r.id, r.last_seen_at]));
}

/**
 * Users who have a direct conversation with `userId`. Group members are not
 * peers for presence (as in WhatsApp): a 1,024-member group would otherwise
 * fan every member's online/offline out to a thousand others.
 */
export async function directPeers(db: Db, userId: string): Promise<string[]> {
  const rows = await db
    .selectFrom("conversation_participants as mine")
    .innerJoin("conversation_participants as other", "other.conversation_id", "mine.conversation_id")
    .innerJoin("conversations as c", "c.id", "mine.conversation_id")
    .select("other.user_id")
    .distinct()
    .where("c.is_group", "=", false)
    .where("mine.user_id", "=", userId)
    .where("mine.left_at", "is", null)
    .where("other.left_at", "is", null)
    .where("other.user_id", "!=", userId)
    .execute();
  return rows.map((r) => r.user_id);
}

async function lockUser(trx: Transaction<Database>, userId: string): Promise<void> {
  await trx.selectFrom("users").select("id").where("id", "=", userId).forUpdate().execute();
}
