import { sql, type Kysely } from "kysely";
import { applySqlFunctions } from "../server/db/sql-functions.js";

// MarkDelivered in big groups (issue 15). chatwire_mark_receipts gathered
// every participant's watermarks on every call and returned them all, and the
// server worked out the events from them: in a 1,024-member group where every
// member acknowledges every message, that was about a million participant
// rows read, aggregated and sent back per message. It now writes only the
// caller's own event, from two aggregates, when no other viewer's minimum can
// move (the usual case), and returns the events it appended (r_updates)
// instead of everyone's watermarks (r_before, r_positions). The result type
// changes, so the old signature is dropped first; instances still running the
// previous release fail their MarkDelivered/MarkRead calls ("cached plan must
// not change result type") until they are restarted, as with 0021 and 0025.
// chatwire_mark_receipts_many (new): calls that arrive while others run go
// to PostgreSQL together, one round trip and one commit.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`drop function if exists chatwire_mark_receipts(uuid, uuid, bigint, boolean, timestamptz)`.execute(db);
  await applySqlFunctions(db, ["chatwire_mark_receipts", "chatwire_mark_receipts_many"]);
}

// chatwire_mark_receipts' file is the new definition (the earlier migrations apply it too).
export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function if exists chatwire_mark_receipts_many(jsonb)`.execute(db);
}
