import { sql, type Kysely } from "kysely";
import { applySqlFunctions } from "../server/db/sql-functions.js";

// SendMessage preflights that arrive while others run go to PostgreSQL
// together (issue 15): chatwire_send_preflights answers several in one
// round trip, each as chatwire_send_preflight does.
export async function up(db: Kysely<any>): Promise<void> {
  await applySqlFunctions(db, ["chatwire_send_preflights"]);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function if exists chatwire_send_preflights(jsonb)`.execute(db);
}
