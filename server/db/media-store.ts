import { sql, type Kysely, type Selectable, type Transaction } from "kysely";
import type { MediaTables } from "./media-schema.js";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

// Media items (declared uploads), their references from conversations and
// statuses, and what the collector deletes.

export type MediaRow = Selectable<MediaTables["media"]>;

export interface NewMedia {
  id: string;
  uploaderId: string;
  kind: string;
  mimeType: string;
  sizeBytes: number;
  sha256: string;
  fileName: string;
  width: number;
  height: number;
  durationMs: number;
  thumbnail: Uint8Array | null;
  encrypted: boolean;
  createdAt: Date;
}

export async function insertMedia(db: Db, m: NewMedia): Promise<void> {
  await db
    .insertInto("media")
    .values({
      id: m.id,
      uploader_id: m.uploaderId,
      kind: m.kind,
      mime_type: m.mimeType,
      size_bytes: m.sizeBytes,
      sha256: m.sha256,
      file_name: m.fileName,
      width: m.width,
      height: m.height,
      duration_ms: m.durationMs,
      thumbnail: m.thumbnail,
      encrypted: m.encrypted,
      created_at: m.createdAt,
    })
    .execute();
}

export async function getMedia(db: Db, id: string): Promise<MediaRow | undefined> {
  return db.selectFrom("media").selectAll().where("id", "=", id).executeTakeFirst();
}

/** Of `ids`, the rows that exist. */
export async function getMediaMany(db: Db, ids: readonly string[]): Promise<MediaRow[]> {
  if (ids.length === 0) return [];
  return db.selectFrom("media").selectAll().where("id", "in", ids).execute();
}

/**
 * A user's bytes: kept in all (pending and ready), and declared since `since`.
 * Locks the user's row so two concurrent CreateUploads cannot both pass the quota.
 */
export async function usageOf(db: Transaction<Database>, uploaderId: string, since: Date): Promise<{ kept: number; recent: number }> {
  await db.selectFrom("users").select("id").where("id", "=", uploaderId).forUpdate().execute();
  const row = await db
    .selectFrom("media")
    .select([sql<string>`coalesce(sum(size_bytes), 0)`.as("kept"), sql<string>`coalesce(sum(size_bytes) filter (where created_at > ${since}), 0)`.as("recent")])
    .where("uploader_id", "=", uploaderId)
    .executeTakeFirstOrThrow();
  return { kept: Number(row.kept), recent: Number(row.recent) };
}

/** pending → ready; false when the item is gone or was not pending. */
export async function markReady(db: Db, id: string): Promise<boolean> {
  const r = await db.updateTable("media").set({ state: "ready" }).where("id", "=", id).where("state", "=", "pending").executeTakeFirst();
  return r.numUpdatedRows > 0n;
}

/** Deletes an item (its references go with it); false when there was none. */
export async function deleteMediaRow(db: Db, id: string, uploaderId?: string): Promise<boolean> {
  let q = db.deleteFrom("media").where("id", "=", id);
  if (uploaderId !== undefined) q = q.where("uploader_id", "=", uploaderId);
  const r = await q.executeTakeFirst();
  return r.numDeletedRows > 0n;
}

/**
 * Whether `userId` may download the item besides its uploader: a participant
 * of a conversation it was sent in whose history shows that message.
 */
export async function sentToParticipant(db: Db, mediaId: string, userId: string): Promise<boolean> {
  const row = await db
    .selectFrom("media_refs as r")
    .innerJoin("conversation_participants as p", "p.conversation_id", "r.conversation_id")
    .innerJoin("messages as m", "m.id", "r.message_id")
    .select("r.media_id")
    .where("r.media_id", "=", mediaId)
    .where("p.user_id", "=", userId)
    // The message is within the participant's window (sent after they joined, before they left).
    .whereRef("m.seq", ">", "p.joined_seq")
    .where((eb) => eb.or([eb("p.left_seq", "is", null), eb("m.seq", "<=", eb.ref("p.left_seq"))]))
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

/** Whether the item is its uploader's current profile photo (profile_picture_url "/media/<id>"). */
export async function isProfilePhotoOf(db: Db, mediaId: string, userId: string): Promise<boolean> {
  const row = await db.selectFrom("users").select("id").where("id", "=", userId).where("profile_picture_url", "=", `/media/${mediaId}`).executeTakeFirst();
  return row !== undefined;
}

/** The unexpired statuses that carry the item (their audiences may download it). */
export async function statusesCarrying(db: Db, mediaId: string, now: Date): Promise<{ id: string; user_id: string; audience: string }[]> {
  return db
    .selectFrom("media_refs as r")
    .innerJoin("status_updates as s", "s.id", "r.status_id")
    .select(["s.id", "s.user_id", "s.audience"])
    .where("r.media_id", "=", mediaId)
    .where("s.expires_at", ">", now)
    .execute();
}

export type MediaTarget = { conversationId: string; messageId: string } | { statusId: string };

/** Records that a message or status carries the item. */
export async function addReference(db: Db, mediaId: string, target: MediaTarget, now: Date): Promise<void> {
  await db
    .insertInto("media_refs")
    .values(
      "statusId" in target
        ? { media_id: mediaId, conversation_id: null, status_id: target.statusId, message_id: null }
        : { media_id: mediaId, conversation_id: target.conversationId, status_id: null, message_id: target.messageId },
    )
    // A retried SendMessage references again: once is enough.
    .onConflict((oc) => oc.doNothing())
    .execute();
  await db.updateTable("media").set({ referenced_at: now }).where("id", "=", mediaId).where("referenced_at", "is", null).execute();
}

/** Drops the references of deleted messages (delete for everyone). */
export async function dropMessageReferences(db: Db, messageIds: readonly string[]): Promise<void> {
  if (messageIds.length === 0) return;
  await db.deleteFrom("media_refs").where("message_id", "in", messageIds).execute();
}

/**
 * Items to delete now, at most `limit`: never referenced and declared before
 * `unreferencedBefore`, or referenced once and no reference left.
 */
export async function collectable(db: Db, unreferencedBefore: Date, limit: number): Promise<string[]> {
  const rows = await db
    .selectFrom("media as m")
    .select("m.id")
    .where((eb) =>
      eb.and([
        eb.not(eb.exists(eb.selectFrom("media_refs as r").select("r.media_id").whereRef("r.media_id", "=", "m.id"))),
        // Someone's profile photo (UpdateProfile with "/media/<id>") stays while it is one.
        eb.not(eb.exists(eb.selectFrom("users as u").select("u.id").where("u.profile_picture_url", "=", sql<string>`'/media/' || m.id::text`))),
        eb.or([eb("m.referenced_at", "is not", null), eb("m.created_at", "<", unreferencedBefore)]),
      ]),
    )
    .limit(limit)
    .execute();
  return rows.map((r) => r.id);
}
