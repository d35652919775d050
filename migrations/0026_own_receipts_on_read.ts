import type { Kysely } from "kysely";
import { applySqlFunctions } from "../server/db/sql-functions.js";

// A participant's own devices hear of their receipt only when their read
// watermark moved (issue 15; domain/receipts.ts receiptUpdates). MarkDelivered
// alone no longer appends a receipt_updated to the caller's own inbox: each of
// their devices receives the messages itself, and that event's aggregates are
// the other participants', which the caller's delivery does not change. It was
// one of the four stream events of every 1:1 message.
export async function up(db: Kysely<any>): Promise<void> {
  await applySqlFunctions(db, ["chatwire_mark_receipts"]);
}

// The function's file is the new definition (the earlier migrations apply it too); nothing else to undo.
export async function down(): Promise<void> {}
