import { randomUUID } from "node:crypto";
import { sql, type Kysely, type Transaction } from "kysely";
import type { InboxNotice, OutgoingMessage, RejectReason, StoredMessage } from "../messaging/message-queue.js";
import { eventBody, messageFromOutgoing, systemMessageView } from "../realtime/events.js";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

export const MESSAGE_CREATED = "message_created";

/** What storeMessages did with one message, in input order. */
export type StoreResult =
  | {
      ok: true;
      message: StoredMessage;
      /** One per current participant; empty for a duplicate. Publish them after commit. */
      notices: InboxNotice[];
    }
  | { ok: false; reason: RejectReason; error: string };

// PostgreSQL takes at most 65535 bind parameters per statement.
const MESSAGE_ROWS_PER_INSERT = 1000; // 12 columns
const INBOX_ROWS_PER_INSERT = 5000; // 7 columns
const POSITION_ROWS_PER_UPSERT = 10000; // 2 columns

/**
 * Stores a batch of user messages in the caller's transaction, in order:
 * each new message gets its conversation's next seq and one inbox event per
 * current participant. Idempotent on (sender_id, client_message_id): a message
 * already stored (or earlier in the same batch) comes back with
 * `duplicate: true` and writes nothing. A message whose conversation is gone or
 * whose sender is no longer a participant is rejected, the rest still stored.
 *
 * Locks, always in this order so concurrent batches cannot deadlock: the
 * batch's conversation rows (by id), then the participants' inbox_positions
 * rows (by user id). Seqs and positions are assigned under those locks, so
 * they commit gapless and in order.
 */
export async function storeMessages(trx: Transaction<Database>, msgs: readonly OutgoingMessage[], now: Date): Promise<StoreResult[]> {
  if (msgs.length === 0) return [];
  const conversationIds = [...new Set(msgs.map((m) => m.conversationId))].sort();

  // The lock comes first: every message of these conversations is inserted
  // under it, so the duplicate check below cannot miss a concurrent insert.
  const conversations = await trx
    .selectFrom("conversations")
    .select(["id", "last_seq"])
    .where("id", "in", conversationIds)
    .orderBy("id")
    .forNoKeyUpdate()
    .execute();
  const lastSeq = new Map(conversations.map((c) => [c.id, BigInt(c.last_seq)]));
  const initialSeq = new Map(lastSeq);

  const existing = await trx
    .selectFrom("messages")
    .select(["id", "conversation_id", "seq", "created_at", "sender_id", "client_message_id"])
    .where("sender_id", "in", [...new Set(msgs.map((m) => m.senderId))])
    .where("client_message_id", "in", [...new Set(msgs.map((m) => m.clientMessageId))])
    .execute();
  const byKey = new Map<string, StoreResult>();
  for (const r of existing) {
    byKey.set(idempotencyKey(r.sender_id!, r.client_message_id!), {
      ok: true,
      message: { id: r.id, conversationId: r.conversation_id, seq: r.seq, createdAt: r.created_at, duplicate: true },
      notices: [],
    });
  }

  const participantRows = lastSeq.size === 0 ? [] : await trx
    .selectFrom("conversation_participants")
    .select(["conversation_id", "user_id"])
    .where("conversation_id", "in", [...lastSeq.keys()])
    .where("left_at", "is", null)
    .orderBy("user_id")
    .execute();
  const participants = new Map<string, string[]>();
  for (const p of participantRows) {
    let list = participants.get(p.conversation_id);
    if (!list) participants.set(p.conversation_id, (list = []));
    list.push(p.user_id);
  }

  const results: StoreResult[] = [];
  const rows: Parameters<typeof insertMessageRows>[1] = [];
  const events: NewInboxEvent[] = [];
  // Index into `events` of each stored message's first event, to hand notices back.
  const eventSpans: Array<{ result: Extract<StoreResult, { ok: true }>; from: number; to: number }> = [];
  for (const m of msgs) {
    const key = idempotencyKey(m.senderId, m.clientMessageId);
    const seen = byKey.get(key);
    if (seen) {
      results.push(seen.ok ? { ok: true, message: { ...seen.message, duplicate: true }, notices: [] } : seen);
      continue;
    }
    const last = lastSeq.get(m.conversationId);
    if (last === undefined) {
      results.push({ ok: false, reason: "conversation_not_found", error: `conversation ${m.conversationId} does not exist` });
      continue;
    }
    const members = participants.get(m.conversationId) ?? [];
    if (!members.includes(m.senderId)) {
      results.push({
        ok: false,
        reason: "sender_not_participant",
        error: `sender ${m.senderId} is not a participant of conversation ${m.conversationId}`,
      });
      continue;
    }
    const seq = (last + 1n).toString();
    lastSeq.set(m.conversationId, last + 1n);
    const sentAt = new Date(m.sentAt);
    const createdAt = Number.isNaN(sentAt.getTime()) ? now : sentAt;
    rows.push({
      id: m.id,
      conversation_id: m.conversationId,
      seq,
      kind: "user",
      sender_id: m.senderId,
      client_message_id: m.clientMessageId,
      content: m.content,
      media_url: m.mediaUrl,
      media_type: m.mediaType,
      reply_to_message_id: m.replyToMessageId,
      mention_user_ids: JSON.stringify(m.mentionUserIds),
      created_at: createdAt,
    });
    const result: Extract<StoreResult, { ok: true }> = {
      ok: true,
      message: { id: m.id, conversationId: m.conversationId, seq, createdAt, duplicate: false },
      notices: [],
    };
    const from = events.length;
    // Encoded once; every participant's frame shares it (only the position differs).
    const body = eventBody({ case: "messageCreated", value: { $typeName: "realtime.MessageCreated", message: messageFromOutgoing(m, seq, createdAt) } }, now);
    const payload = { seq, sender_id: m.senderId };
    for (const userId of members) {
      events.push({ userId, eventType: MESSAGE_CREATED, conversationId: m.conversationId, messageId: m.id, seq, payload, body });
    }
    eventSpans.push({ result, from, to: events.length });
    byKey.set(key, result);
    results.push(result);
  }
  if (rows.length === 0) return results;

  await insertMessageRows(trx, rows);
  const advanced = [...lastSeq].filter(([id, seq]) => initialSeq.get(id) !== seq);
  await trx
    .updateTable("conversations")
    .set({
      last_seq: sql<string>`case id ${sql.join(advanced.map(([id, seq]) => sql`when ${id}::uuid then ${seq.toString()}::bigint`), sql` `)} end`,
      last_activity_at: sql<Date>`greatest(last_activity_at, ${now})`,
    })
    .where("id", "in", advanced.map(([id]) => id))
    .execute();
  const notices = await appendInboxEvents(trx, events, now);
  for (const span of eventSpans) span.result.notices = notices.slice(span.from, span.to);
  return results;
}

function insertMessageRows(
  trx: Transaction<Database>,
  rows: Array<{
    id: string;
    conversation_id: string;
    seq: string;
    kind: string;
    sender_id: string;
    client_message_id: string;
    content: string;
    media_url: string;
    media_type: string;
    reply_to_message_id: string | null;
    mention_user_ids: string;
    created_at: Date;
  }>,
): Promise<unknown> {
  return inChunks(rows, MESSAGE_ROWS_PER_INSERT, (chunk) => trx.insertInto("messages").values(chunk).execute());
}

/** An event for a user's inbox (ARCHITECTURE.md, "The message path", step 3). */
export interface NewInboxEvent {
  userId: string;
  eventType: string;
  conversationId: string | null;
  messageId: string | null;
  /** Carried into the live notice when set (message events). */
  seq?: string;
  /** Stored as the event's jsonb payload. */
  payload: Record<string, unknown>;
  /** The realtime.Event without position, sent live (server/realtime/events.ts). */
  body: Uint8Array;
}

/**
 * Appends events to users' inboxes in the caller's transaction, each getting
 * its user's next position (in the given order per user), and returns the
 * notices to publish after commit, in the same order as `events`.
 * Locks the users' inbox_positions rows in user id order: callers that also
 * lock conversation rows must lock those first (as storeMessages does).
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
      .onConflict((oc) =>
        oc.column("user_id").doUpdateSet({ last_position: sql<string>`inbox_positions.last_position + excluded.last_position` }),
      )
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

function idempotencyKey(senderId: string, clientMessageId: string): string {
  return `${senderId}:${clientMessageId}`;
}

async function inChunks<T>(items: readonly T[], size: number, fn: (chunk: T[]) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await fn(items.slice(i, i + size));
}

export interface NewSystemMessage {
  conversationId: string;
  /** Who did it (the sender of the system message). */
  actorId: string;
  /** e.g. "participants_added", "participant_removed", "role_changed", "group_updated", "participant_left". */
  event: string;
  userIds: string[];
  /** Who gets the inbox event: the participants who can see it. */
  recipients: string[];
  /**
   * Further events of the same change (participant added, conversation
   * updated ...), appended after the message's, in the same single
   * appendInboxEvents call: one lock pass over inbox positions per transaction.
   */
  extraEvents?: (seq: string) => NewInboxEvent[];
}

/**
 * Writes a membership or group change into the timeline as a system message
 * with the conversation's next seq (same lock order as storeMessages:
 * conversation row, then inbox positions) and appends its inbox events.
 */
export async function insertSystemMessage(
  trx: Transaction<Database>,
  m: NewSystemMessage,
  now: Date,
): Promise<{ id: string; seq: string; notices: InboxNotice[] }> {
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
      created_at: now,
    })
    .execute();
  const body = eventBody(
    {
      case: "messageCreated",
      value: {
        $typeName: "realtime.MessageCreated",
        message: systemMessageView({ id, conversationId: m.conversationId, actorId: m.actorId, event: m.event, userIds: m.userIds, seq: String(seq), createdAt: now }),
      },
    },
    now,
  );
  const payload = { seq: String(seq), sender_id: m.actorId, system_event: m.event };
  const notices = await appendInboxEvents(
    trx,
    [
      ...[...new Set(m.recipients)].map((userId) => ({
        userId,
        eventType: MESSAGE_CREATED,
        conversationId: m.conversationId,
        messageId: id,
        seq: String(seq),
        payload,
        body,
      })),
      ...(m.extraEvents?.(String(seq)) ?? []),
    ],
    now,
  );
  return { id, seq: String(seq), notices };
}
