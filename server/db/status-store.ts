import { sql, type Kysely, type Transaction } from "kysely";
import type { AudienceKind } from "../domain/privacy.js";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

// Status updates, their audience lists, views and replies. Expiry is a read
// filter (expires_at > now, with the injected clock) until the purge job
// deletes the rows.

export interface StatusRow {
  id: string;
  user_id: string;
  content_type: string;
  content: string;
  media_url: string;
  caption: string;
  background_color: string;
  font: number;
  audience: string;
  created_at: Date;
  expires_at: Date;
}

const COLUMNS = [
  "id",
  "user_id",
  "content_type",
  "content",
  "media_url",
  "caption",
  "background_color",
  "font",
  "audience",
  "created_at",
  "expires_at",
] as const;

export interface NewStatus {
  userId: string;
  contentType: "text" | "image" | "video";
  content: string;
  mediaUrl: string;
  caption: string;
  backgroundColor: string;
  font: number;
  audience: AudienceKind;
  audienceUserIds: readonly string[];
  createdAt: Date;
  expiresAt: Date;
}

export async function insertStatus(db: Db, s: NewStatus): Promise<StatusRow> {
  const row = await db
    .insertInto("status_updates")
    .values({
      user_id: s.userId,
      content_type: s.contentType,
      content: s.content,
      media_url: s.mediaUrl,
      caption: s.caption,
      background_color: s.backgroundColor,
      font: s.font,
      audience: s.audience,
      created_at: s.createdAt,
      expires_at: s.expiresAt,
    })
    .returning(COLUMNS)
    .executeTakeFirstOrThrow();
  if (s.audienceUserIds.length > 0) {
    await db
      .insertInto("status_audience")
      .values(s.audienceUserIds.map((user_id) => ({ status_id: row.id, user_id })))
      .execute();
  }
  return row;
}

/** An unexpired status, or undefined. */
export function getLiveStatus(db: Db, id: string, now: Date): Promise<StatusRow | undefined> {
  return db.selectFrom("status_updates").select(COLUMNS).where("id", "=", id).where("expires_at", ">", now).executeTakeFirst();
}

/** The except/only user lists of these statuses (statuses without one are absent). */
export async function audienceLists(db: Db, statusIds: readonly string[]): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>();
  if (statusIds.length === 0) return out;
  const rows = await db
    .selectFrom("status_audience")
    .select(["status_id", "user_id"])
    .where("status_id", "in", [...statusIds])
    .execute();
  for (const r of rows) {
    const set = out.get(r.status_id) ?? new Set<string>();
    set.add(r.user_id);
    out.set(r.status_id, set);
  }
  return out;
}

/** Unexpired statuses of these authors, newest first. */
export function liveStatusesOf(db: Db, authorIds: readonly string[], now: Date): Promise<StatusRow[]> {
  if (authorIds.length === 0) return Promise.resolve([]);
  return db
    .selectFrom("status_updates")
    .select(COLUMNS)
    .where("user_id", "in", [...authorIds])
    .where("expires_at", ">", now)
    .orderBy("created_at", "desc")
    .orderBy("id", "desc")
    .execute();
}

/**
 * Unexpired statuses that might be for `viewerId`, newest first: the
 * viewer's own, those of users who have the viewer as a contact, and those
 * whose only-share-with list names the viewer. Privacy and audience rules
 * decide among them.
 */
export function candidateStatusesFor(db: Db, viewerId: string, now: Date, authorId?: string): Promise<StatusRow[]> {
  let q = db
    .selectFrom("status_updates")
    .select(COLUMNS)
    .where("expires_at", ">", now)
    .where((eb) =>
      eb.or([
        eb("user_id", "=", viewerId),
        eb("user_id", "in", eb.selectFrom("contacts").select("contacts.user_id").where("contacts.contact_user_id", "=", viewerId)),
        eb("id", "in", eb.selectFrom("status_audience").select("status_audience.status_id").where("status_audience.user_id", "=", viewerId)),
      ]),
    );
  if (authorId !== undefined) q = q.where("user_id", "=", authorId);
  return q.orderBy("created_at", "desc").orderBy("id", "desc").execute();
}

/** When `viewerId` first viewed each of these statuses. */
export async function viewsBy(db: Db, viewerId: string, statusIds: readonly string[]): Promise<Map<string, Date>> {
  if (statusIds.length === 0) return new Map();
  const rows = await db
    .selectFrom("status_views")
    .select(["status_id", "viewed_at"])
    .where("viewer_id", "=", viewerId)
    .where("status_id", "in", [...statusIds])
    .execute();
  return new Map(rows.map((r) => [r.status_id, r.viewed_at]));
}

/** Records a view once; returns the first view's time and whether this call recorded it. */
export async function recordView(db: Db, statusId: string, viewerId: string, now: Date): Promise<{ viewedAt: Date; first: boolean }> {
  const inserted = await db
    .insertInto("status_views")
    .values({ status_id: statusId, viewer_id: viewerId, viewed_at: now })
    .onConflict((oc) => oc.columns(["status_id", "viewer_id"]).doNothing())
    .returning("viewed_at")
    .executeTakeFirst();
  if (inserted) return { viewedAt: inserted.viewed_at, first: true };
  const row = await db
    .selectFrom("status_views")
    .select("viewed_at")
    .where("status_id", "=", statusId)
    .where("viewer_id", "=", viewerId)
    .executeTakeFirstOrThrow();
  return { viewedAt: row.viewed_at, first: false };
}

/** Viewers of a status who have read receipts on (no privacy row = on), newest view first. */
export function viewersWithReceipts(db: Db, statusId: string): Promise<Array<{ viewer_id: string; viewed_at: Date }>> {
  return db
    .selectFrom("status_views as v")
    .leftJoin("privacy_settings as p", "p.user_id", "v.viewer_id")
    .select(["v.viewer_id", "v.viewed_at"])
    .where("v.status_id", "=", statusId)
    .where(sql<boolean>`coalesce(p.read_receipts, true)`)
    .orderBy("v.viewed_at", "desc")
    .orderBy("v.viewer_id")
    .execute();
}

/** View counts (viewers with read receipts on) per status. */
export async function viewCounts(db: Db, statusIds: readonly string[]): Promise<Map<string, number>> {
  if (statusIds.length === 0) return new Map();
  const rows = await db
    .selectFrom("status_views as v")
    .leftJoin("privacy_settings as p", "p.user_id", "v.viewer_id")
    .select(["v.status_id", (eb) => eb.fn.countAll<string>().as("n")])
    .where("v.status_id", "in", [...statusIds])
    .where(sql<boolean>`coalesce(p.read_receipts, true)`)
    .groupBy("v.status_id")
    .execute();
  return new Map(rows.map((r) => [r.status_id, Number(r.n)]));
}

/** Deletes a status (its audience list and views go with it). */
export async function deleteStatus(db: Db, id: string): Promise<boolean> {
  const res = await db.deleteFrom("status_updates").where("id", "=", id).executeTakeFirst();
  return Number(res.numDeletedRows) > 0;
}

/** Deletes every status expired at `now`, with its audience list and views; returns how many. */
export async function purgeExpiredStatuses(db: Db, now: Date): Promise<number> {
  const res = await db.deleteFrom("status_updates").where("expires_at", "<=", now).executeTakeFirst();
  return Number(res.numDeletedRows);
}

export async function insertReply(db: Db, r: { messageId: string; status: StatusRow; replierId: string; conversationId: string; now: Date }): Promise<void> {
  await db
    .insertInto("status_replies")
    .values({
      message_id: r.messageId,
      status_id: r.status.id,
      status_author_id: r.status.user_id,
      replier_id: r.replierId,
      conversation_id: r.conversationId,
      status_content_type: r.status.content_type,
      status_content: r.status.content_type === "text" ? r.status.content : r.status.media_url,
      created_at: r.now,
    })
    .onConflict((oc) => oc.column("message_id").doNothing())
    .execute();
}
