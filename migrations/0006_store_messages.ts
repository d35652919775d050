import { sql, type Kysely } from "kysely";
import { applySqlFunctions } from "../server/db/sql-functions.js";

// storeMessages (server/db/message-store.ts) in one round trip: the database
// function chatwire_store_messages, defined in server/db/sql/ (its README says
// why migrations apply the current definition).
export async function up(db: Kysely<any>): Promise<void> {
  await applySqlFunctions(db, ["chatwire_store_messages"]);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function chatwire_store_messages(jsonb, timestamptz)`.execute(db);
}
