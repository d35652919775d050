import type { Kysely, Transaction } from "kysely";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

// Account deletion (AuthService.DeleteAccount) and export (ExportAccountData).

/** The phone number a deleted account's tombstone row keeps: unique, and never a valid E.164 number. */
const deletedPhone = (userId: string) => `deleted:${userId}`;

/** Users who share a conversation with `userId` (current participants of the user's conversations). */
export async function conversationPeers(db: Db, userId: string): Promise<string[]> {
  const rows = await db
    .selectFrom("conversation_participants as mine")
    .innerJoin("conversation_participants as other", "other.conversation_id", "mine.conversation_id")
    .select("other.user_id")
    .distinct()
    .where("mine.user_id", "=", userId)
    .where("other.user_id", "!=", userId)
    .where("other.left_at", "is", null)
    .execute();
  return rows.map((r) => r.user_id);
}

/**
 * Removes what belongs to the user, but their sessions, inbox and media (the
 * caller revokes and removes those after the commit), and blanks the users
 * row into a tombstone. Their messages, reactions and participations stay.
 * False: already deleted (nothing done).
 */
export async function eraseAccount(trx: Transaction<Database>, userId: string, now: Date): Promise<boolean> {
  const marked = await trx
    .updateTable("users")
    .set({
      phone_number: deletedPhone(userId),
      display_name: "",
      profile_picture_url: "",
      about_text: "",
      last_seen_at: null,
      deleted_at: now,
      updated_at: now,
    })
    .where("id", "=", userId)
    .where("deleted_at", "is", null)
    .executeTakeFirst();
  if (marked.numUpdatedRows === 0n) return false;
  await trx
    .deleteFrom("contacts")
    .where((eb) => eb.or([eb("user_id", "=", userId), eb("contact_user_id", "=", userId)]))
    .execute();
  await trx
    .deleteFrom("blocked_users")
    .where((eb) => eb.or([eb("blocker_id", "=", userId), eb("blocked_id", "=", userId)]))
    .execute();
  // Their statuses (audience, views and reply links cascade), and their views of others'.
  await trx.deleteFrom("status_updates").where("user_id", "=", userId).execute();
  await trx.deleteFrom("status_views").where("viewer_id", "=", userId).execute();
  await trx.deleteFrom("status_audience").where("user_id", "=", userId).execute();
  await trx.deleteFrom("privacy_settings").where("user_id", "=", userId).execute();
  await trx.deleteFrom("push_tokens").where("user_id", "=", userId).execute();
  await trx.deleteFrom("push_settings").where("user_id", "=", userId).execute();
  await trx.deleteFrom("scheduled_messages").where("sender_id", "=", userId).execute();
  return true;
}

/** The ids of media the user uploaded. */
export async function mediaOf(db: Db, userId: string): Promise<string[]> {
  const rows = await db.selectFrom("media").select("id").where("uploader_id", "=", userId).execute();
  return rows.map((r) => r.id);
}

/** After the revocation: the sessions' rows and the inbox go (idempotent: a retry runs it again). */
export async function removeSessionsAndInbox(db: Db, userId: string): Promise<void> {
  await db.deleteFrom("push_tokens").where("user_id", "=", userId).execute();
  await db.deleteFrom("user_devices").where("user_id", "=", userId).execute();
  await db.deleteFrom("inbox").where("user_id", "=", userId).execute();
}

/** The user's conversations as the export lists them. */
export function conversationsOf(db: Db, userId: string) {
  return db
    .selectFrom("conversation_participants as p")
    .innerJoin("conversations as c", "c.id", "p.conversation_id")
    .select(["c.id", "c.is_group", "c.group_name", "c.created_at", "p.role", "p.joined_at", "p.left_at"])
    .where("p.user_id", "=", userId)
    .orderBy("p.joined_at")
    .orderBy("c.id")
    .execute();
}

/** Messages the user sent, by conversation and in conversation order, after (conversation_id, seq). */
export function messagesSentBy(db: Db, userId: string, limit: number, after?: { conversationId: string; seq: string }) {
  let q = db
    .selectFrom("messages")
    .select(["id", "conversation_id", "seq", "content", "media_url", "media_type", "reply_to_message_id", "created_at", "edited_at", "deleted_at"])
    .where("sender_id", "=", userId);
  if (after) {
    const { conversationId, seq } = after;
    q = q.where((eb) => eb.or([eb("conversation_id", ">", conversationId), eb.and([eb("conversation_id", "=", conversationId), eb("seq", ">", seq)])]));
  }
  return q.orderBy("conversation_id").orderBy("seq").limit(limit).execute();
}
