import { create } from "@bufbuild/protobuf";
import type { Kysely, Transaction } from "kysely";
import { StatusReferenceSchema, type StatusReference } from "../../gen/chat/chat_pb.js";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

export interface MessageRow {
  id: string;
  conversation_id: string;
  seq: string;
  kind: string;
  sender_id: string | null;
  client_message_id: string | null;
  content: string;
  media_url: string;
  media_type: string;
  reply_to_message_id: string | null;
  mention_user_ids: unknown;
  system_event: string;
  system_user_ids: unknown;
  created_at: Date;
  edited_at: Date | null;
  deleted_at: Date | null;
  /** Disappearing messages: not to be read from then on (purged later). */
  expires_at?: Date | null;
  /** 0020 (absent from rows built by hand). */
  forward_count?: number;
  pinned_at?: Date | null;
  pinned_by?: string | null;
}

/** The part of a conversation's timeline a participant may see: (fromSeq, toSeq], without what expired by `now`. */
export interface Window {
  afterSeq: string;
  upToSeq: string | null;
  now: Date;
}

export function getMessage(db: Db, id: string): Promise<MessageRow | undefined> {
  return db.selectFrom("messages").selectAll().where("id", "=", id).executeTakeFirst() as Promise<MessageRow | undefined>;
}

/** The messages with these ids (those that still exist), in no particular order. */
export function getMessages(db: Db, ids: readonly string[]): Promise<MessageRow[]> {
  if (ids.length === 0) return Promise.resolve([]);
  return db
    .selectFrom("messages")
    .selectAll()
    .where("id", "in", [...ids])
    .execute() as Promise<MessageRow[]>;
}

export function getMessageBySenderClientId(db: Db, senderId: string, clientMessageId: string): Promise<MessageRow | undefined> {
  return db.selectFrom("messages").selectAll().where("sender_id", "=", senderId).where("client_message_id", "=", clientMessageId).executeTakeFirst() as Promise<
    MessageRow | undefined
  >;
}

/**
 * A page of messages visible to `userId` in `window`, hidden-for-me ones left
 * out. Newest first below `beforeSeq`, or oldest first above `afterSeq`.
 */
export async function listMessages(
  db: Db,
  conversationId: string,
  userId: string,
  window: Window,
  page: { beforeSeq?: string; afterSeq?: string; limit: number },
): Promise<MessageRow[]> {
  let q = db
    .selectFrom("messages as m")
    .selectAll("m")
    .where("m.conversation_id", "=", conversationId)
    .where("m.seq", ">", window.afterSeq)
    .where(({ not, exists, selectFrom }) =>
      not(exists(selectFrom("hidden_messages as h").select("h.message_id").whereRef("h.message_id", "=", "m.id").where("h.user_id", "=", userId))),
    );
  if (window.upToSeq !== null) q = q.where("m.seq", "<=", window.upToSeq);
  q = q.where((eb) => eb.or([eb("m.expires_at", "is", null), eb("m.expires_at", ">", window.now)]));
  if (page.afterSeq !== undefined) {
    return (await q.where("m.seq", ">", page.afterSeq).orderBy("m.seq", "asc").limit(page.limit).execute()) as MessageRow[];
  }
  if (page.beforeSeq !== undefined) q = q.where("m.seq", "<", page.beforeSeq);
  return (await q.orderBy("m.seq", "desc").limit(page.limit).execute()) as MessageRow[];
}

/** The newest visible message of each conversation (for list previews). */
export async function lastVisibleMessages(db: Db, userId: string, items: Array<{ conversationId: string; window: Window }>): Promise<Map<string, MessageRow>> {
  const out = new Map<string, MessageRow>();
  // One small indexed query each: (conversation_id, seq) makes them cheap, and pages are ≤ 100.
  await Promise.all(
    items.map(async (i) => {
      const [row] = await listMessages(db, i.conversationId, userId, i.window, { limit: 1 });
      if (row) out.set(i.conversationId, row);
    }),
  );
  return out;
}

export interface ReactionAgg {
  message_id: string;
  emoji: string;
  user_id: string;
}

export async function reactionsOf(db: Db, messageIds: string[]): Promise<ReactionAgg[]> {
  if (messageIds.length === 0) return [];
  return db
    .selectFrom("message_reactions")
    .select(["message_id", "emoji", "user_id"])
    .where("message_id", "in", messageIds)
    .orderBy("created_at")
    .orderBy("user_id")
    .execute();
}

/**
 * Edits a message's text; returns the row, or undefined if it is deleted or
 * already has this text (a repeated edit changes nothing, edited_at included).
 */
export function editMessage(db: Db, id: string, content: string, now: Date): Promise<MessageRow | undefined> {
  return db
    .updateTable("messages")
    .set({ content, edited_at: now })
    .where("id", "=", id)
    .where("deleted_at", "is", null)
    .where("content", "<>", content)
    .returningAll()
    .executeTakeFirst() as Promise<MessageRow | undefined>;
}

/** Deletes for everyone: content and media purged, the row stays as a tombstone. False if it already was one. */
export async function tombstoneMessage(db: Db, id: string, now: Date): Promise<boolean> {
  const res = await db
    .updateTable("messages")
    .set({ content: "", media_url: "", media_type: "", mention_user_ids: "[]", deleted_at: now })
    .where("id", "=", id)
    .where("deleted_at", "is", null)
    .executeTakeFirst();
  if (res.numUpdatedRows === 0n) return false;
  await db.deleteFrom("message_reactions").where("message_id", "=", id).execute();
  return true;
}

/** Hides a message for one user; false if it already was hidden. */
export async function hideMessage(db: Db, userId: string, messageId: string, now: Date): Promise<boolean> {
  const row = await db
    .insertInto("hidden_messages")
    .values({ user_id: userId, message_id: messageId, hidden_at: now })
    .onConflict((oc) => oc.doNothing())
    .returning("message_id")
    .executeTakeFirst();
  return row !== undefined;
}

export async function isHidden(db: Db, userId: string, messageId: string): Promise<boolean> {
  const row = await db.selectFrom("hidden_messages").select("message_id").where("user_id", "=", userId).where("message_id", "=", messageId).executeTakeFirst();
  return row !== undefined;
}

/** One reaction per user per message: set, replace, or (empty emoji) remove. False when nothing changed. */
export async function setReaction(db: Db, messageId: string, userId: string, emoji: string, now: Date): Promise<boolean> {
  if (emoji === "") {
    const res = await db.deleteFrom("message_reactions").where("message_id", "=", messageId).where("user_id", "=", userId).executeTakeFirst();
    return res.numDeletedRows > 0n;
  }
  const row = await db
    .insertInto("message_reactions")
    .values({ message_id: messageId, user_id: userId, emoji, created_at: now })
    .onConflict((oc) => oc.columns(["message_id", "user_id"]).doUpdateSet({ emoji, created_at: now }).where("message_reactions.emoji", "<>", emoji))
    .returning("message_id")
    .executeTakeFirst();
  return row !== undefined;
}

/** When each user's watermark of `kind` first reached `seq` (no later than `until`, when given). */
export async function firstMarks(db: Db, conversationId: string, seq: string, kind: "delivered" | "read", until?: Date): Promise<Map<string, Date>> {
  let q = db
    .selectFrom("receipt_marks")
    .select(["user_id", (eb) => eb.fn.min("at").as("at")])
    .where("conversation_id", "=", conversationId)
    .where("kind", "=", kind)
    .where("up_to_seq", ">=", seq);
  if (until) q = q.where("at", "<=", until);
  const rows = await q.groupBy("user_id").execute();
  return new Map(rows.map((r) => [r.user_id, r.at as Date]));
}

/** The statuses the messages reply to (ReplyToStatus), by message id, as quoted. */
export async function statusQuotesOf(db: Db, messageIds: string[]): Promise<Map<string, StatusReference>> {
  if (messageIds.length === 0) return new Map();
  const rows = await db
    .selectFrom("status_replies")
    .select(["message_id", "status_id", "status_author_id", "status_content_type", "status_content"])
    .where("message_id", "in", messageIds)
    .execute();
  return new Map(
    rows.map((r) => [
      r.message_id,
      create(StatusReferenceSchema, { statusId: r.status_id, authorId: r.status_author_id, contentType: r.status_content_type, content: r.status_content }),
    ]),
  );
}
