import { sql, type Kysely, type Transaction } from "kysely";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

// Pins: conversations pinned in one participant's chat list
// (conversation_participants.pinned_at) and messages pinned in their
// conversation (messages.pinned_at, pinned_by).

/** The messages pinned in each conversation (not deleted for everyone), the latest pinned first. */
export async function pinnedMessageIds(db: Db, conversationIds: readonly string[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  if (conversationIds.length === 0) return out;
  const rows = await db
    .selectFrom("messages")
    .select(["id", "conversation_id"])
    .where("conversation_id", "in", [...conversationIds])
    .where("pinned_at", "is not", null)
    .where("deleted_at", "is", null)
    .orderBy("pinned_at", "desc")
    .orderBy("id", "desc")
    .execute();
  for (const r of rows) out.set(r.conversation_id, [...(out.get(r.conversation_id) ?? []), r.id]);
  return out;
}

export type PinOutcome = "changed" | "unchanged" | "limit";

/**
 * Pins (at `now`) or unpins the conversation in the user's list. Pinning
 * stops at `max` pinned conversations (current participations): "limit".
 * The user's participation row is locked first, so two pins at once of the
 * same user's do not both pass the count.
 */
export async function setConversationPinned(
  trx: Transaction<Database>,
  conversationId: string,
  userId: string,
  pinned: boolean,
  max: number,
  now: Date,
): Promise<PinOutcome> {
  if (!pinned) {
    const res = await trx
      .updateTable("conversation_participants")
      .set({ pinned_at: null })
      .where("conversation_id", "=", conversationId)
      .where("user_id", "=", userId)
      .where("pinned_at", "is not", null)
      .executeTakeFirst();
    return res.numUpdatedRows > 0n ? "changed" : "unchanged";
  }
  // Serialises one user's pins (the limit is per user).
  await sql`select pg_advisory_xact_lock(hashtextextended(${`chatwire_pin:${userId}`}, 0))`.execute(trx);
  const mine = await trx
    .selectFrom("conversation_participants")
    .select(["conversation_id", "pinned_at"])
    .where("user_id", "=", userId)
    .where("pinned_at", "is not", null)
    .where("left_at", "is", null)
    .execute();
  if (mine.some((r) => r.conversation_id === conversationId)) return "unchanged";
  if (mine.length >= max) return "limit";
  await trx
    .updateTable("conversation_participants")
    .set({ pinned_at: now })
    .where("conversation_id", "=", conversationId)
    .where("user_id", "=", userId)
    .execute();
  return "changed";
}

/**
 * Pins or unpins a message (the caller holds the conversation's lock). Pinning
 * stops at `max` pinned messages in the conversation: "limit".
 */
export async function setMessagePinned(
  trx: Transaction<Database>,
  message: { id: string; conversation_id: string },
  actorId: string,
  pinned: boolean,
  max: number,
  now: Date,
): Promise<PinOutcome> {
  if (!pinned) {
    const res = await trx
      .updateTable("messages")
      .set({ pinned_at: null, pinned_by: null })
      .where("id", "=", message.id)
      .where("pinned_at", "is not", null)
      .executeTakeFirst();
    return res.numUpdatedRows > 0n ? "changed" : "unchanged";
  }
  const current = (await pinnedMessageIds(trx, [message.conversation_id])).get(message.conversation_id) ?? [];
  if (current.includes(message.id)) return "unchanged";
  if (current.length >= max) return "limit";
  await trx.updateTable("messages").set({ pinned_at: now, pinned_by: actorId }).where("id", "=", message.id).execute();
  return "changed";
}
