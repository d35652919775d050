import { sql, type Kysely, type Transaction } from "kysely";
import type { MessageRow } from "./history-store.js";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

// Messages a user starred for themselves (starred_messages).

/** Stars the messages for the user; returns the ids that were not starred yet. */
export async function starMessages(db: Db, userId: string, messages: ReadonlyArray<{ id: string; conversation_id: string }>, now: Date): Promise<string[]> {
  if (messages.length === 0) return [];
  const rows = await db
    .insertInto("starred_messages")
    .values(messages.map((m) => ({ user_id: userId, message_id: m.id, conversation_id: m.conversation_id, starred_at: now })))
    .onConflict((oc) => oc.columns(["user_id", "message_id"]).doNothing())
    .returning("message_id")
    .execute();
  return rows.map((r) => r.message_id);
}

/** Unstars the messages for the user; returns the ids that were starred. */
export async function unstarMessages(db: Db, userId: string, messageIds: readonly string[]): Promise<string[]> {
  if (messageIds.length === 0) return [];
  const rows = await db
    .deleteFrom("starred_messages")
    .where("user_id", "=", userId)
    .where("message_id", "in", [...messageIds])
    .returning("message_id")
    .execute();
  return rows.map((r) => r.message_id);
}

/** Of these messages, those the user starred. */
export async function starredAmong(db: Db, userId: string, messageIds: readonly string[]): Promise<Set<string>> {
  if (messageIds.length === 0) return new Set();
  const rows = await db
    .selectFrom("starred_messages")
    .select("message_id")
    .where("user_id", "=", userId)
    .where("message_id", "in", [...messageIds])
    .execute();
  return new Set(rows.map((r) => r.message_id));
}

export interface StarredRow extends MessageRow {
  starred_at: Date;
}

/**
 * A page of the user's starred messages, the latest starred first, after the
 * keyset (starred_at, message_id): only those still in the user's window of
 * their conversation, not deleted for everyone and not hidden for them.
 */
export async function listStarred(
  db: Db,
  userId: string,
  opts: { conversationId?: string; after?: { at: Date; id: string }; limit: number },
): Promise<StarredRow[]> {
  let q = db
    .selectFrom("starred_messages as s")
    .innerJoin("messages as m", "m.id", "s.message_id")
    .innerJoin("conversation_participants as p", (j) => j.onRef("p.conversation_id", "=", "s.conversation_id").on("p.user_id", "=", userId))
    .selectAll("m")
    .select("s.starred_at")
    .where("s.user_id", "=", userId)
    .where("m.deleted_at", "is", null)
    .whereRef("m.seq", ">", "p.joined_seq")
    .where(sql<boolean>`(p.left_seq is null or m.seq <= p.left_seq)`)
    .where(({ not, exists, selectFrom }) =>
      not(exists(selectFrom("hidden_messages as h").select("h.message_id").whereRef("h.message_id", "=", "m.id").where("h.user_id", "=", userId))),
    );
  if (opts.conversationId) q = q.where("s.conversation_id", "=", opts.conversationId);
  if (opts.after) {
    const { at, id } = opts.after;
    q = q.where((eb) => eb.or([eb("s.starred_at", "<", at), eb.and([eb("s.starred_at", "=", at), eb("s.message_id", "<", id)])]));
  }
  return (await q.orderBy("s.starred_at", "desc").orderBy("s.message_id", "desc").limit(opts.limit).execute()) as StarredRow[];
}
