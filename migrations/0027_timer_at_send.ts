import { sql, type Kysely } from "kysely";
import { applySqlFunctions } from "../server/db/sql-functions.js";

// Disappearing messages follow the timer in force when a message was sent,
// not when the worker stored it. On the production profile SendMessage
// answers once the message is in JetStream; a timer set right after could
// reach the database first, and the message acknowledged before it was
// stored under it (and disappeared a day later). chatwire_send_preflight now
// returns the conversation's disappearing_seconds, SendMessage and
// ForwardMessages carry it with the message, and chatwire_store_messages
// uses it (a queued message without it, sent by the previous release, still
// gets the timer at store time). The preflight's result type changes, so its
// old signature is dropped first; instances still running the previous
// release fail their preflight ("cached plan must not change result type")
// until they are restarted, as with 0025.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`drop function if exists chatwire_send_preflight(uuid, uuid, text)`.execute(db);
  await applySqlFunctions(db, ["chatwire_send_preflight", "chatwire_store_messages"]);
}

// The functions' files are the new definitions (the earlier migrations apply them too); nothing else to undo.
export async function down(): Promise<void> {}
