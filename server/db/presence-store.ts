import { sql, type Kysely, type Transaction } from "kysely";
import type { AudienceRow } from "./privacy-store.js";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

export interface OpenResult {
  /** This is the user's only live stream: they just came online. */
  cameOnline: boolean;
  /** When they came online: who may hear it, before privacy (privacy-store allowedAudience decides). */
  audience: AudienceRow[];
  /** Streams beyond the per-user limit, oldest first: to be closed. */
  evicted: string[];
  /** The user's inbox bounds, read after the stream was registered ("0" for a user with no events). */
  inbox: { last: string; prunedThrough: string };
}

/**
 * Registers an open stream, in one round trip (chatwire_presence_open_stream,
 * server/db/sql/). Under the user's row lock, so two devices connecting at once on two
 * instances cannot both miss (or both announce) the online transition. Rows
 * past their expiry (a dead instance's) are dropped first. The oldest streams
 * beyond `maxStreams` are removed and returned.
 */
export async function openStream(
  db: Kysely<Database>,
  s: { streamId: string; userId: string; sessionId: string; instanceId: string; now: Date; expiresAt: Date; maxStreams: number },
): Promise<OpenResult> {
  const { rows } = await sql<{ came_online: boolean; audience: unknown; evicted: string[] | string; last_position: string; pruned_through: string }>`
    select came_online, audience, evicted, last_position::text, pruned_through::text
    from chatwire_presence_open_stream(${s.streamId}, ${s.userId}, ${s.sessionId}, ${s.instanceId}, ${s.now}, ${s.expiresAt}, ${s.maxStreams})
  `.execute(db);
  const row = rows[0]!;
  return {
    cameOnline: row.came_online,
    audience: audienceRows(row.audience),
    evicted: uuidArray(row.evicted),
    inbox: { last: row.last_position, prunedThrough: row.pruned_through },
  };
}

/**
 * Unregisters a stream, in one round trip (chatwire_presence_close_stream); when it
 * was the user's last live one, stores last_seen_at and reports that they
 * went offline, with who may hear it (before privacy).
 */
export async function closeStream(
  db: Kysely<Database>,
  s: { streamId: string; userId: string; now: Date },
): Promise<{ wentOffline: boolean; audience: AudienceRow[] }> {
  const { rows } = await sql<{ went_offline: boolean; audience: unknown }>`
    select went_offline, audience from chatwire_presence_close_stream(${s.streamId}, ${s.userId}, ${s.now})
  `.execute(db);
  return { wentOffline: rows[0]?.went_offline === true, audience: audienceRows(rows[0]?.audience) };
}

/** chatwire_presence_audience rows aggregated as JSON (parsed by the driver, or still text). */
function audienceRows(v: unknown): AudienceRow[] {
  if (v === null || v === undefined) return [];
  return (typeof v === "string" ? JSON.parse(v) : v) as AudienceRow[];
}

/** A uuid[] as the driver returns it: an array (pg) or its text form "{a,b}" (drivers without the array parser). */
function uuidArray(v: string[] | string | null): string[] {
  if (v === null) return [];
  if (Array.isArray(v)) return v;
  const inner = v.slice(1, -1);
  return inner === "" ? [] : inner.split(",");
}

/** Pushes this instance's streams' expiry forward (they are alive). */
export async function renewStreams(db: Db, streamIds: readonly string[], expiresAt: Date): Promise<void> {
  if (streamIds.length === 0) return;
  for (let i = 0; i < streamIds.length; i += 5000) {
    await db
      .updateTable("presence_streams")
      .set({ expires_at: expiresAt })
      .where("stream_id", "in", streamIds.slice(i, i + 5000))
      .execute();
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
      await trx.updateTable("users").set({ last_seen_at: now }).where("id", "in", offline).execute();
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
  const rows = await db
    .selectFrom("users")
    .select(["id", "last_seen_at"])
    .where("id", "in", [...userIds])
    .execute();
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
