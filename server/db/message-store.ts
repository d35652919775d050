import { randomUUID } from "node:crypto";
import { sql, type Kysely, type Transaction } from "kysely";
import type { InboxNotice, InboxRecipient, NewInboxEvent, OutgoingMessage, RejectReason, StoredMessage } from "../messaging/types.js";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

/**
 * What storeMessageRows did with one message, in input order. Rows only: the
 * live events are built from them above the store (server/messaging/store.ts).
 */
export type StoreRowResult =
  | {
      ok: true;
      message: StoredMessage;
      /** The inbox rows written, one per current participant (by user id); empty for a duplicate. */
      recipients: InboxRecipient[];
      /** The mention_added inbox rows written, one per mentioned recipient. */
      mentions: InboxRecipient[];
    }
  | { ok: false; reason: RejectReason; error: string };

// PostgreSQL takes at most 65535 bind parameters per statement.
const INBOX_ROWS_PER_INSERT = 5000; // 7 columns
const POSITION_ROWS_PER_UPSERT = 10000; // 2 columns

/** A row of chatwire_store_messages (server/db/sql/chatwire_store_messages.sql). */
interface StoreRow {
  r_ord: number;
  r_status: "stored" | "duplicate" | RejectReason;
  r_id: string | null;
  r_conversation_id: string | null;
  r_seq: string | null;
  r_created_at: Date | null;
  /** The recipients' user ids (current participants, by user id) and their inbox positions, for a stored message. */
  r_recipients: string[];
  r_positions: string[];
  r_expires_at: Date | null;
  /** Mentioned recipients' mention_added positions, by user id. */
  r_mentions: Record<string, string>;
  /** Stored, and some recipient but the sender, not muting the conversation, has a push token. */
  r_push: boolean;
}

/**
 * Stores a batch of user messages, in order: each new message gets its
 * conversation's next seq and one inbox event per current participant.
 * Idempotent on (sender_id, client_message_id): a message already stored (or
 * earlier in the same batch) comes back with `duplicate: true` and writes
 * nothing. A message whose conversation is gone or whose sender is no longer
 * a participant is rejected, the rest still stored.
 *
 * One round trip: the database function chatwire_store_messages does it all
 * (server/db/sql/chatwire_store_messages.sql). Given the Kysely instance it is its own
 * transaction; given a transaction it joins it.
 *
 * Locks, always in this order so concurrent batches cannot deadlock: the
 * batch's conversation rows (by id), then the participants' inbox_positions
 * rows (by user id). Seqs and positions are assigned under those locks, so
 * they commit gapless and in order.
 */
export async function storeMessageRows(db: Db, msgs: readonly OutgoingMessage[], now: Date): Promise<StoreRowResult[]> {
  if (msgs.length === 0) return [];
  const createdAt = msgs.map((m) => {
    const sentAt = new Date(m.sentAt);
    return Number.isNaN(sentAt.getTime()) ? now : sentAt;
  });
  const batch = msgs.map((m, i) => ({
    o: i,
    id: m.id,
    c: m.conversationId,
    s: m.senderId,
    k: wellFormed(m.clientMessageId),
    t: wellFormed(m.content),
    u: wellFormed(m.mediaUrl),
    y: wellFormed(m.mediaType),
    r: m.replyToMessageId,
    m: m.mentionUserIds,
    a: createdAt[i]!.toISOString(),
    ...(m.forwardCount ? { f: m.forwardCount } : {}),
    ...(m.disappearingSeconds !== undefined ? { d: m.disappearingSeconds } : {}),
  }));
  const { rows } = await sql<StoreRow>`select * from chatwire_store_messages(${JSON.stringify(batch)}::jsonb, ${now.toISOString()}::timestamptz)`.execute(db);
  if (rows.length !== msgs.length) throw new Error(`chatwire_store_messages returned ${rows.length} rows for ${msgs.length} messages`);
  return rows.map((r, i): StoreRowResult => {
    const m = msgs[i]!;
    if (r.r_status === "conversation_not_found") {
      return { ok: false, reason: r.r_status, error: `conversation ${m.conversationId} does not exist` };
    }
    if (r.r_status === "sender_not_participant") {
      return { ok: false, reason: r.r_status, error: `sender ${m.senderId} is not a participant of conversation ${m.conversationId}` };
    }
    const message: StoredMessage = {
      id: r.r_id!,
      conversationId: r.r_conversation_id!,
      seq: String(r.r_seq),
      createdAt: r.r_created_at instanceof Date ? r.r_created_at : new Date(r.r_created_at!),
      duplicate: r.r_status === "duplicate",
      expiresAt: r.r_expires_at === null ? null : new Date(r.r_expires_at),
      push: r.r_push === true,
    };
    if (message.duplicate) return { ok: true, message, recipients: [], mentions: [] };
    return {
      ok: true,
      message,
      recipients: r.r_recipients.map((userId, j) => ({ userId, position: r.r_positions[j]! })),
      mentions: Object.entries(r.r_mentions ?? {}).map(([userId, position]) => ({ userId, position })),
    };
  });
}

/**
 * Appends events to users' inboxes in the caller's transaction, each getting
 * its user's next position (in the given order per user), and returns the
 * notices to publish after commit, in the same order as `events`.
 * Locks the users' inbox_positions rows in user id order: callers that also
 * lock conversation rows must lock those first (as storeMessageRows and
 * markReceipts do; the rule all three follow: server/db/sql/README.md).
 */
export async function appendInboxEvents(trx: Transaction<Database>, events: readonly NewInboxEvent[], now: Date): Promise<InboxNotice[]> {
  if (events.length === 0) return [];
  const counts = new Map<string, number>();
  for (const e of events) counts.set(e.userId, (counts.get(e.userId) ?? 0) + 1);
  const users = [...counts.keys()].sort();
  const next = new Map<string, bigint>();
  await inChunks(users, POSITION_ROWS_PER_UPSERT, async (chunk) => {
    const rows = await trx
      .insertInto("inbox_positions")
      .values(chunk.map((userId) => ({ user_id: userId, last_position: counts.get(userId)! })))
      .onConflict((oc) => oc.column("user_id").doUpdateSet({ last_position: sql<string>`inbox_positions.last_position + excluded.last_position` }))
      .returning(["user_id", "last_position"])
      .execute();
    for (const r of rows) next.set(r.user_id, BigInt(r.last_position) - BigInt(counts.get(r.user_id)!) + 1n);
  });
  const notices: InboxNotice[] = events.map((e) => {
    const position = next.get(e.userId)!;
    next.set(e.userId, position + 1n);
    return {
      userId: e.userId,
      position: position.toString(),
      eventType: e.eventType,
      conversationId: e.conversationId,
      messageId: e.messageId,
      ...(e.seq !== undefined ? { seq: e.seq } : {}),
      body: e.body,
    };
  });
  const rows = events.map((e, i) => ({
    user_id: e.userId,
    position: notices[i]!.position,
    event_type: e.eventType,
    conversation_id: e.conversationId,
    message_id: e.messageId,
    payload: JSON.stringify(e.payload),
    created_at: now,
  }));
  await inChunks(rows, INBOX_ROWS_PER_INSERT, (chunk) => trx.insertInto("inbox").values(chunk).execute());
  return notices;
}

export interface NewDeadLetter {
  subject: string;
  payload: string;
  error: string;
}

/** Records queue messages that can never be stored. */
export async function insertDeadLetters(db: Db, letters: readonly NewDeadLetter[], now: Date): Promise<void> {
  if (letters.length === 0) return;
  await db
    .insertInto("dead_letters")
    .values(letters.map((l) => ({ subject: l.subject, payload: l.payload, error: l.error, created_at: now })))
    .execute();
}

/**
 * Lone UTF-16 surrogates as U+FFFD, as pg's UTF-8 encoding of a text
 * parameter would store them: in JSON they would be \uD8xx escapes, which
 * jsonb refuses.
 */
function wellFormed(s: string): string {
  return (s as string & { toWellFormed(): string }).toWellFormed();
}

async function inChunks<T>(items: readonly T[], size: number, fn: (chunk: T[]) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await fn(items.slice(i, i + size));
}

/** A membership or group change, as written into the timeline. */
export interface NewSystemMessageRow {
  conversationId: string;
  /** Who did it (the sender of the system message). */
  actorId: string;
  /** e.g. "participants_added", "participant_removed", "role_changed", "group_updated", "participant_left". */
  event: string;
  userIds: string[];
  /** What the change set, when the event needs it (disappearing_timer_changed: the timer in seconds). */
  content?: string;
  /** The message the change is about (message_pinned / message_unpinned). */
  replyToMessageId?: string;
}

/**
 * Writes a membership or group change into the timeline as a system message
 * with the conversation's next seq, locking the conversation row: callers
 * append its inbox events afterwards in the same transaction (lock order:
 * conversation row, then inbox positions, as storeMessageRows).
 */
export async function insertSystemMessageRow(trx: Transaction<Database>, m: NewSystemMessageRow, now: Date): Promise<{ id: string; seq: string }> {
  const { last_seq: seq } = await trx
    .updateTable("conversations")
    .set({ last_seq: sql<string>`last_seq + 1`, last_activity_at: sql<Date>`greatest(last_activity_at, ${now}::timestamptz)` })
    .where("id", "=", m.conversationId)
    .returning("last_seq")
    .executeTakeFirstOrThrow();
  const id = randomUUID();
  await trx
    .insertInto("messages")
    .values({
      id,
      conversation_id: m.conversationId,
      seq,
      kind: "system",
      sender_id: m.actorId,
      system_event: m.event,
      system_user_ids: JSON.stringify(m.userIds),
      content: m.content ?? "",
      reply_to_message_id: m.replyToMessageId ?? null,
      created_at: now,
    })
    .execute();
  return { id, seq: String(seq) };
}
