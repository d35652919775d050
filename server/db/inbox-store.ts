import { sql, type Kysely, type Transaction } from "kysely";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

/** A row of chatwire_replay_inbox (its header says what each column holds). */
export interface ReplayRow {
  r_position: string;
  r_event_type: string;
  r_payload: unknown;
  r_created_at: Date;
  m_id: string | null;
  m_conversation_id: string | null;
  m_seq: string | null;
  m_kind: string | null;
  m_sender_id: string | null;
  m_client_message_id: string | null;
  m_content: string | null;
  m_media_url: string | null;
  m_media_type: string | null;
  m_reply_to_message_id: string | null;
  m_mention_user_ids: unknown;
  m_system_event: string | null;
  m_system_user_ids: unknown;
  m_created_at: Date | null;
  m_edited_at: Date | null;
  m_deleted_at: Date | null;
  m_expires_at: Date | null;
  m_forward_count: number | null;
  m_pinned_at: Date | null;
  m_pinned_by: string | null;
  r_reactions: Array<{ emoji: string; user_id: string }> | null;
  q_status_id: string | null;
  q_author_id: string | null;
  q_content_type: string | null;
  q_content: string | null;
  c_first: boolean | null;
  c_left: boolean | null;
  c_left_view: unknown;
  c_people: Array<{ user_id: string; joined_seq: string; last_delivered_seq: string; last_read_seq: string }> | null;
  c_is_group: boolean | null;
  c_read_receipts: Array<boolean | null> | null;
}

/**
 * The user's stored events after `afterPosition` (up to `upToPosition`),
 * oldest first, at most `limit`, those of `messageEvents` with their message
 * as it is now: one round trip (server/db/sql/chatwire_replay_inbox.sql).
 */
export async function readReplayPage(
  db: Db,
  userId: string,
  afterPosition: bigint,
  limit: number,
  upToPosition: bigint | undefined,
  messageEvents: readonly string[],
): Promise<ReplayRow[]> {
  const { rows } =
    await sql<ReplayRow>`select * from chatwire_replay_inbox(${userId}, ${afterPosition.toString()}, ${upToPosition?.toString() ?? null}, ${limit}, ${[...messageEvents]})`.execute(
      db,
    );
  return rows;
}

/**
 * Deletes inbox events created before `cutoff`, at most `batch` rows per
 * statement until none are left, and raises each user's pruning floor to the
 * highest position deleted, so a resume from before it gets resync_required.
 * Returns how many rows were deleted.
 */
export async function pruneInbox(db: Kysely<Database>, cutoff: Date, batch = 5000): Promise<number> {
  let total = 0;
  for (;;) {
    const result = await sql<{ n: string }>`
      with doomed as (
        select user_id, position from inbox
        where created_at < ${cutoff}
        order by created_at
        limit ${batch}
      ), deleted as (
        delete from inbox i using doomed d
        where i.user_id = d.user_id and i.position = d.position
        returning i.user_id, i.position
      ), floors as (
        update inbox_positions p
        set pruned_through = greatest(p.pruned_through, f.max_position)
        from (select user_id, max(position) as max_position from deleted group by user_id) f
        where p.user_id = f.user_id
        returning 1
      )
      select (select count(*) from deleted)::text as n, (select count(*) from floors) as floors
    `.execute(db);
    const n = Number(result.rows[0]?.n ?? 0);
    total += n;
    if (n < batch) return total;
  }
}
