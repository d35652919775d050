import { sql, type Kysely, type Transaction } from "kysely";
import type { Database, PushTokenRow } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

export type PushPlatformName = "fcm" | "apns" | "web_push";

export interface NewRegistration {
  sessionId: string;
  userId: string;
  platform: PushPlatformName;
  /** FCM/APNs token, or the Web Push endpoint. */
  token: string;
  apnsSandbox: boolean;
  p256dh: string;
  auth: string;
  now: Date;
}

/**
 * Sets the session's one registration. The same token held by another
 * session moves here (a device reinstalled, or logged in as someone else).
 * Registering the same thing again keeps updated_at, so a retry answers alike.
 * Run it in a transaction (the move and the insert together, and the lock
 * that serializes registrations of one token).
 */
export async function upsertRegistration(db: Db, r: NewRegistration): Promise<PushTokenRow> {
  // Sessions registering one token at the same time take turns: otherwise each
  // finds no other holder to move it from, and all but one insert would break
  // the (platform, token) unique index. The last to commit holds it.
  await sql`select pg_advisory_xact_lock(hashtextextended(${`chatwire_push_token:${r.platform}:${r.token}`}, 0))`.execute(db);
  await db.deleteFrom("push_tokens").where("platform", "=", r.platform).where("token", "=", r.token).where("session_id", "!=", r.sessionId).execute();
  const values = { platform: r.platform, token: r.token, apns_sandbox: r.apnsSandbox, p256dh: r.p256dh, auth: r.auth };
  const same = await db.selectFrom("push_tokens").selectAll().where("session_id", "=", r.sessionId).executeTakeFirst();
  if (same && Object.entries(values).every(([k, v]) => same[k as keyof typeof values] === v)) return same;
  return db
    .insertInto("push_tokens")
    .values({ session_id: r.sessionId, user_id: r.userId, ...values, updated_at: r.now })
    .onConflict((oc) => oc.column("session_id").doUpdateSet({ ...values, updated_at: r.now }))
    .returningAll()
    .executeTakeFirstOrThrow();
}

export function getRegistration(db: Db, sessionId: string): Promise<PushTokenRow | undefined> {
  return db.selectFrom("push_tokens").selectAll().where("session_id", "=", sessionId).executeTakeFirst();
}

/** Removes these sessions' registrations (logout, revocation); returns how many there were. */
export async function deleteRegistrations(db: Db, sessionIds: readonly string[]): Promise<number> {
  if (sessionIds.length === 0) return 0;
  const res = await db
    .deleteFrom("push_tokens")
    .where("session_id", "in", [...sessionIds])
    .executeTakeFirst();
  return Number(res.numDeletedRows);
}

/** Removes a token the push service called invalid (whichever session holds it now). */
export async function deleteToken(db: Db, platform: PushPlatformName, token: string): Promise<void> {
  await db.deleteFrom("push_tokens").where("platform", "=", platform).where("token", "=", token).execute();
}

export async function getShowPreviews(db: Db, userId: string): Promise<boolean> {
  const row = await db.selectFrom("push_settings").select("show_previews").where("user_id", "=", userId).executeTakeFirst();
  return row?.show_previews ?? false;
}

export async function setShowPreviews(db: Db, userId: string, showPreviews: boolean, now: Date): Promise<boolean> {
  const row = await db
    .insertInto("push_settings")
    .values({ user_id: userId, show_previews: showPreviews, updated_at: now })
    .onConflict((oc) => oc.column("user_id").doUpdateSet({ show_previews: showPreviews, updated_at: now }))
    .returning("show_previews")
    .executeTakeFirstOrThrow();
  return row.show_previews;
}

/** One device to wake for a conversation, with what its push says. */
export interface PushTarget {
  userId: string;
  sessionId: string;
  platform: PushPlatformName;
  token: string;
  apnsSandbox: boolean;
  p256dh: string;
  auth: string;
  showPreviews: boolean;
  /** Unread user messages in this conversation. */
  unread: number;
  /** Unread user messages across the user's conversations (the app icon's badge). */
  badge: number;
}

/**
 * The devices to wake for new messages in a conversation, in one query: the
 * registered, live sessions of its current participants but the sender, whose
 * conversation is not muted and who have no open Subscribe stream on any
 * instance (presence_streams, the rows server/realtime/presence.ts keeps).
 */
export async function pushTargets(db: Db, conversationId: string, senderId: string, now: Date): Promise<PushTarget[]> {
  const { rows } = await sql<{
    user_id: string;
    session_id: string;
    platform: PushPlatformName;
    token: string;
    apns_sandbox: boolean;
    p256dh: string;
    auth: string;
    show_previews: boolean | null;
    unread: string;
    badge: string;
  }>`select * from chatwire_push_targets(${conversationId}::uuid, ${senderId}::uuid, ${now}::timestamptz)`.execute(db);
  return rows.map((r) => ({
    userId: r.user_id,
    sessionId: r.session_id,
    platform: r.platform,
    token: r.token,
    apnsSandbox: r.apns_sandbox,
    p256dh: r.p256dh,
    auth: r.auth,
    showPreviews: r.show_previews === true,
    unread: Number(r.unread),
    badge: Number(r.badge),
  }));
}

/** What a preview shows of a message: its sender's name and text. */
export async function previewOf(
  db: Db,
  messageId: string,
): Promise<{ senderName: string; content: string; mediaType: string; isGroup: boolean; groupName: string } | undefined> {
  const row = await db
    .selectFrom("messages as m")
    .innerJoin("conversations as c", "c.id", "m.conversation_id")
    .leftJoin("users as u", "u.id", "m.sender_id")
    .select(["u.display_name", "u.phone_number", "m.content", "m.media_type", "m.deleted_at", "c.is_group", "c.group_name"])
    .where("m.id", "=", messageId)
    .executeTakeFirst();
  if (!row || row.deleted_at) return undefined;
  return {
    senderName: row.display_name || row.phone_number || "",
    content: row.content,
    mediaType: row.media_type,
    isGroup: row.is_group,
    groupName: row.group_name,
  };
}
