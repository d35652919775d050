import { sql, type Kysely, type Transaction } from "kysely";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

// Disappearing messages (issue 17 item 7): the conversation's timer, and the
// purge of messages past their expires_at (set by chatwire_store_messages).

/** Sets the timer; false when it already had this value (nothing written). */
export async function setDisappearingSeconds(trx: Transaction<Database>, conversationId: string, seconds: number): Promise<boolean> {
  const res = await trx
    .updateTable("conversations")
    .set({ disappearing_seconds: seconds })
    .where("id", "=", conversationId)
    .where("disappearing_seconds", "<>", seconds)
    .executeTakeFirst();
  return res.numUpdatedRows > 0n;
}

export interface ExpiredMessage {
  id: string;
  conversation_id: string;
  seq: string;
}

/** Up to `limit` messages due at `now` and not yet purged, oldest expiry first (partial index messages_expiry_due_idx). */
export async function dueMessages(db: Db, now: Date, limit: number): Promise<ExpiredMessage[]> {
  const rows = await db
    .selectFrom("messages")
    .select(["id", "conversation_id", "seq"])
    .where("expires_at", "<=", now)
    .where("deleted_at", "is", null)
    .where("expires_at", "is not", null)
    .orderBy("expires_at")
    .limit(limit)
    .execute();
  return rows.map((r) => ({ id: r.id, conversation_id: r.conversation_id, seq: String(r.seq) }));
}

/** Locks the conversations' rows (key share, by id): the lock order of server/db/sql/README.md before inbox events. */
export async function lockConversationsShared(trx: Transaction<Database>, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await trx
    .selectFrom("conversations")
    .select("id")
    .where("id", "in", [...ids])
    .orderBy("id")
    .forKeyShare()
    .execute();
}

/**
 * Purges the messages that are still unpurged: content, media and mentions
 * emptied (which also takes them out of the search index), deleted_at set to
 * their expiry (so the due index drops them), reactions, media references,
 * status quotes and delete-for-me marks deleted. Returns the ones purged by
 * this call (a concurrent purge's are left out).
 */
export async function purgeMessages(trx: Transaction<Database>, ids: readonly string[]): Promise<ExpiredMessage[]> {
  if (ids.length === 0) return [];
  const purged = await trx
    .updateTable("messages")
    .set({ content: "", media_url: "", media_type: "", mention_user_ids: "[]", deleted_at: sql<Date>`expires_at` })
    .where("id", "in", [...ids])
    .where("deleted_at", "is", null)
    .returning(["id", "conversation_id", "seq"])
    .execute();
  const gone = purged.map((r) => r.id);
  if (gone.length > 0) {
    await trx.deleteFrom("message_reactions").where("message_id", "in", gone).execute();
    await trx.deleteFrom("media_refs").where("message_id", "in", gone).execute();
    await trx.deleteFrom("status_replies").where("message_id", "in", gone).execute();
    await trx.deleteFrom("hidden_messages").where("message_id", "in", gone).execute();
  }
  return purged.map((r) => ({ id: r.id, conversation_id: r.conversation_id, seq: String(r.seq) }));
}

/** Current participants of the conversations with the seq they see history after. */
export function seersOf(db: Db, conversationIds: readonly string[]): Promise<Array<{ conversation_id: string; user_id: string; joined_seq: string }>> {
  if (conversationIds.length === 0) return Promise.resolve([]);
  return db
    .selectFrom("conversation_participants")
    .select(["conversation_id", "user_id", "joined_seq"])
    .where("conversation_id", "in", [...conversationIds])
    .where("left_at", "is", null)
    .orderBy("user_id")
    .execute() as Promise<Array<{ conversation_id: string; user_id: string; joined_seq: string }>>;
}
