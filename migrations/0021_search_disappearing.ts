import { sql, type Kysely } from "kysely";
import { applySqlFunctions } from "../server/db/sql-functions.js";

// Search and disappearing messages (issue 17, items 6 and 7).
//
// Search: a GIN index on to_tsvector('simple', content), an expression index
// rather than a stored generated column, so no table rewrite and no second
// copy of every text; queries repeat the exact expression (search-store.ts).
// 'simple' (lower-casing, no stemming, no stop words) treats every language
// alike. Only user messages are indexed; a purged or deleted message has
// empty content, so it leaves the index by the same update.
//
// Disappearing messages: the conversation's timer, and each message's expiry,
// set by chatwire_store_messages from the timer at store time (its result
// gains r_expires_at, so the old signature is dropped first). The purge job
// finds due messages through a partial index that holds only the ones not
// yet purged (purging sets deleted_at).
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable("conversations")
    .addColumn("disappearing_seconds", "int4", (col) => col.notNull().defaultTo(0))
    .execute();
  await db.schema.alterTable("messages").addColumn("expires_at", "timestamptz").execute();
  await sql`create index messages_expiry_due_idx on messages (expires_at) where expires_at is not null and deleted_at is null`.execute(db);
  await sql`create index messages_search_idx on messages using gin (to_tsvector('simple'::regconfig, content)) where kind = 'user'`.execute(db);
  await sql`drop function if exists chatwire_store_messages(jsonb, timestamptz)`.execute(db);
  await applySqlFunctions(db, ["chatwire_store_messages"]);
}

// The function's file is the new definition (the earlier migrations apply it too); only the schema is undone.
export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists messages_search_idx`.execute(db);
  await sql`drop index if exists messages_expiry_due_idx`.execute(db);
  await db.schema.alterTable("messages").dropColumn("expires_at").execute();
  await db.schema.alterTable("conversations").dropColumn("disappearing_seconds").execute();
}
