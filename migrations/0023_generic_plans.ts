import { sql, type Kysely } from "kysely";
import { applySqlFunctions } from "../server/db/sql-functions.js";

// Planning per call (issue 15). Under load PostgreSQL planned two statements of
// the message path afresh on every call: the big statement inside
// chatwire_store_messages (a custom plan each time, about 2.3 ms of its CPU, more
// than running it) and the push dispatcher's pushTargets query (sent unnamed,
// so planned each time, about 1.7 ms, against 0.07 ms to run). The store
// function now keeps one generic plan per connection (set plan_cache_mode), and
// pushTargets becomes chatwire_push_targets, a prepared call with the same.
export async function up(db: Kysely<any>): Promise<void> {
  await applySqlFunctions(db, ["chatwire_store_messages", "chatwire_push_targets"]);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function if exists chatwire_push_targets(uuid, uuid, timestamptz)`.execute(db);
}
