import { sql, type Kysely } from "kysely";
import { applySqlFunctions } from "../server/db/sql-functions.js";

// MarkDelivered and MarkRead in one round trip (issue 15): the checks, the
// watermark raise under the conversation's shared lock and the receipt_updated
// inbox events as one database function, chatwire_mark_receipts, instead of
// about ten statements. A new function: nothing else changes.
export async function up(db: Kysely<any>): Promise<void> {
  await applySqlFunctions(db, ["chatwire_mark_receipts"]);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function if exists chatwire_mark_receipts(uuid, uuid, bigint, boolean, timestamptz)`.execute(db);
}
