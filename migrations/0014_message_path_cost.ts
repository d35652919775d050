import type { Kysely } from "kysely";
import { applySqlFunctions } from "../server/db/sql-functions.js";

// The database's cost per stored message (issue 15, measured with
// bench/pg-functions.ts): chatwire_store_messages reads each message's facts
// (an earlier copy, its conversation, the sender's participation) with one
// index probe each, instead of plans that hashed whole tables, and locks the
// batch's conversations with a plan that is cached. Same arguments, same
// result: only the body changes.
export async function up(db: Kysely<any>): Promise<void> {
  await applySqlFunctions(db, ["chatwire_store_messages"]);
}

// Nothing to undo: the function's contract is unchanged, and the migrations
// before this one apply the current file too.
export async function down(): Promise<void> {}
