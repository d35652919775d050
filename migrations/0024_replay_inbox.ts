import { sql, type Kysely } from "kysely";
import { applySqlFunctions } from "../server/db/sql-functions.js";

// Subscribe's replay in one round trip per page (issue 15, item 6): the inbox
// page with each message event's message, reactions, status quote and, per
// conversation, the participants (or the user's view of when they left) and
// the read-state settings, as one database function, chatwire_replay_inbox,
// instead of seven statements. A new function: nothing else changes.
export async function up(db: Kysely<any>): Promise<void> {
  await applySqlFunctions(db, ["chatwire_replay_inbox"]);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function if exists chatwire_replay_inbox(uuid, bigint, bigint, integer, text[])`.execute(db);
}
