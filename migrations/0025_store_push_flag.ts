import { sql, type Kysely } from "kysely";
import { applySqlFunctions } from "../server/db/sql-functions.js";

// Push work only for messages someone could be pushed for (issue 15).
// chatwire_store_messages gains r_push: some recipient other than the sender,
// not muting the conversation, has a push token. The message worker puts only
// those messages on the push stream (and the embedded profile hands only those
// to the dispatcher), so a message nobody can be pushed for costs no push
// stream publish, no push consumer delivery and ack, and no
// chatwire_push_targets query. The result type changes, so the old signature
// is dropped first; instances still running the previous release fail their
// store calls ("cached plan must not change result type", retried from
// JetStream) until they are restarted, as with 0021.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`drop function if exists chatwire_store_messages(jsonb, timestamptz)`.execute(db);
  await applySqlFunctions(db, ["chatwire_store_messages"]);
}

// The function's file is the new definition (the earlier migrations apply it too); nothing else to undo.
export async function down(): Promise<void> {}
