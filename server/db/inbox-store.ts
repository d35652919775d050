import { sql, type Kysely, type Transaction } from "kysely";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

export interface InboxRow {
  position: string;
  event_type: string;
  conversation_id: string | null;
  message_id: string | null;
  payload: unknown;
  created_at: Date;
}

/** The user's stored events after `afterPosition`, oldest first. */
export function readInbox(db: Db, userId: string, afterPosition: string, limit: number, upToPosition?: string): Promise<InboxRow[]> {
  let q = db
    .selectFrom("inbox")
    .select(["position", "event_type", "conversation_id", "message_id", "payload", "created_at"])
    .where("user_id", "=", userId)
    .where("position", ">", afterPosition);
  if (upToPosition !== undefined) q = q.where("position", "<=", upToPosition);
  return q.orderBy("position").limit(limit).execute() as Promise<InboxRow[]>;
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
