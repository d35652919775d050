import { sql, type Kysely } from "kysely";
import { applySqlFunctions } from "../server/db/sql-functions.js";

// Opening and closing a Subscribe stream in one round trip each, and who may
// hear a user's presence: the functions chatwire_presence_audience,
// chatwire_presence_open_stream and chatwire_presence_close_stream, defined in
// server/db/sql/. (Databases migrated before 0013 got them as presence_*;
// 0013 renames them.)
export async function up(db: Kysely<any>): Promise<void> {
  await applySqlFunctions(db, ["chatwire_presence_audience", "chatwire_presence_open_stream", "chatwire_presence_close_stream"]);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function chatwire_presence_close_stream(uuid, uuid, timestamptz)`.execute(db);
  await sql`drop function chatwire_presence_open_stream(uuid, uuid, uuid, text, timestamptz, timestamptz, int)`.execute(db);
  await sql`drop function chatwire_presence_audience(uuid)`.execute(db);
}
