import { type Kysely, type Selectable, type Transaction, sql } from "kysely";
import type { Database } from "./schema.js";
import type { ScheduledTables } from "./scheduled-schema.js";

type Db = Kysely<Database> | Transaction<Database>;

export type ScheduledRow = Selectable<ScheduledTables["scheduled_messages"]>;

export interface NewScheduled {
  senderId: string;
  conversationId: string;
  content: string;
  mediaUrl: string;
  mediaType: string;
  replyToMessageId: string | null;
  mentionUserIds: string[];
  sendAt: Date;
  clientRequestId: string | null;
  now: Date;
}

/** Inserts a scheduled message; with a client_request_id already used by the sender, returns that row instead (created false). */
export async function insertScheduled(db: Db, s: NewScheduled): Promise<{ row: ScheduledRow; created: boolean }> {
  const row = await db
    .insertInto("scheduled_messages")
    .values({
      sender_id: s.senderId,
      conversation_id: s.conversationId,
      content: s.content,
      media_url: s.mediaUrl,
      media_type: s.mediaType,
      reply_to_message_id: s.replyToMessageId,
      mention_user_ids: JSON.stringify(s.mentionUserIds),
      send_at: s.sendAt,
      client_request_id: s.clientRequestId,
      created_at: s.now,
    })
    .onConflict((oc) => oc.columns(["sender_id", "client_request_id"]).where("client_request_id", "is not", null).doNothing())
    .returningAll()
    .executeTakeFirst();
  if (row) return { row, created: true };
  const kept = await scheduledByRequest(db, s.senderId, s.clientRequestId!);
  return { row: kept!, created: false };
}

export function scheduledByRequest(db: Db, senderId: string, clientRequestId: string): Promise<ScheduledRow | undefined> {
  return db.selectFrom("scheduled_messages").selectAll().where("sender_id", "=", senderId).where("client_request_id", "=", clientRequestId).executeTakeFirst();
}

function getScheduled(db: Db, id: string): Promise<ScheduledRow | undefined> {
  return db.selectFrom("scheduled_messages").selectAll().where("id", "=", id).executeTakeFirst();
}

export async function pendingCount(db: Db, senderId: string): Promise<number> {
  const r = await db
    .selectFrom("scheduled_messages")
    .select((eb) => eb.fn.countAll<string>().as("n"))
    .where("sender_id", "=", senderId)
    .where("state", "=", "pending")
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

export interface ListFilter {
  conversationId?: string;
  includeFinished: boolean;
  after?: { sendAt: Date; id: string };
  limit: number;
}

/** A sender's scheduled messages by (send_at, id). */
export function listScheduled(db: Db, senderId: string, f: ListFilter): Promise<ScheduledRow[]> {
  let q = db.selectFrom("scheduled_messages").selectAll().where("sender_id", "=", senderId);
  if (f.conversationId) q = q.where("conversation_id", "=", f.conversationId);
  if (!f.includeFinished) q = q.where("state", "=", "pending");
  if (f.after) {
    const { sendAt, id } = f.after;
    q = q.where((eb) => eb.or([eb("send_at", ">", sendAt), eb.and([eb("send_at", "=", sendAt), eb("id", ">", id)])]));
  }
  return q.orderBy("send_at").orderBy("id").limit(f.limit).execute();
}

/**
 * Cancels a pending row of the sender's that no sending run holds. Returns the
 * row as it is after the attempt (undefined: no such row of the sender's).
 */
export async function cancelScheduled(db: Db, id: string, senderId: string, now: Date): Promise<{ row: ScheduledRow; changed: boolean } | undefined> {
  const row = await db
    .updateTable("scheduled_messages")
    .set({ state: "cancelled", finished_at: now })
    .where("id", "=", id)
    .where("sender_id", "=", senderId)
    .where("state", "=", "pending")
    .where((eb) => eb.or([eb("claimed_until", "is", null), eb("claimed_until", "<", now)]))
    .returningAll()
    .executeTakeFirst();
  if (row) return { row, changed: true };
  const kept = await getScheduled(db, id);
  return kept && kept.sender_id === senderId ? { row: kept, changed: false } : undefined;
}

/**
 * Claims up to `limit` due pending rows for `leaseMs`: one statement whose
 * FOR UPDATE SKIP LOCKED makes concurrent runs (any instance) take disjoint
 * rows; a row whose lease passed (its run died) is due again.
 */
export async function claimDue(db: Db, now: Date, leaseMs: number, limit: number): Promise<ScheduledRow[]> {
  const until = new Date(now.getTime() + leaseMs);
  const rows = await sql<ScheduledRow>`
    update scheduled_messages set claimed_until = ${until}
    where id in (
      select id from scheduled_messages
      where state = 'pending' and send_at <= ${now} and (claimed_until is null or claimed_until < ${now})
      order by send_at
      limit ${limit}
      for update skip locked
    )
    returning *`.execute(db);
  return rows.rows;
}

/** Records a claimed row's outcome (sent with its message, or failed with the reason). */
export async function finishScheduled(
  db: Db,
  id: string,
  outcome: { state: "sent"; messageId: string } | { state: "failed"; reason: string },
  now: Date,
): Promise<ScheduledRow | undefined> {
  return db
    .updateTable("scheduled_messages")
    .set({
      state: outcome.state,
      message_id: outcome.state === "sent" ? outcome.messageId : null,
      failure_reason: outcome.state === "failed" ? outcome.reason : "",
      finished_at: now,
      claimed_until: null,
    })
    .where("id", "=", id)
    .where("state", "=", "pending")
    .returningAll()
    .executeTakeFirst();
}

/** Gives a claimed row back (a transient failure): the next run tries it again. */
export async function releaseClaim(db: Db, id: string): Promise<void> {
  await db.updateTable("scheduled_messages").set({ claimed_until: null }).where("id", "=", id).where("state", "=", "pending").execute();
}
