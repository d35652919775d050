import { sql, type Kysely } from "kysely";
import { applySqlFunctions } from "../server/db/sql-functions.js";

// SendMessage's preflight read (server/db/conversation-store.ts, sendPreflight)
// as the PL/pgSQL function chatwire_send_preflight, defined in server/db/sql/:
// PL/pgSQL keeps the statement's plan per connection.
export async function up(db: Kysely<any>): Promise<void> {
  await applySqlFunctions(db, ["chatwire_send_preflight"]);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function chatwire_send_preflight(uuid, uuid, text)`.execute(db);
}
