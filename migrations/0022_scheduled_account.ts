import { type Kysely, sql } from "kysely";

// Issue 17, items 8 and 9.
//
// Scheduled messages: kept until send_at, then sent through the normal
// message path by a periodic job on any instance. A run claims due rows by a
// lease (claimed_until) taken with FOR UPDATE SKIP LOCKED, so instances never
// work the same row at once; a run that dies mid-send leaves the lease to
// expire and the next run sends again with the same client_message_id, which
// the message path stores once.
//
// Account deletion: the users row stays as a tombstone (deleted_at set, the
// profile blanked, the phone number replaced by "deleted:<id>" so the number
// may register again) because messages and participations point at it.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("users").addColumn("deleted_at", "timestamptz").execute();

  await db.schema
    .createTable("scheduled_messages")
    .addColumn("id", "uuid", (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn("sender_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    .addColumn("conversation_id", "uuid", (col) => col.notNull().references("conversations.id").onDelete("cascade"))
    .addColumn("content", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("media_url", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("media_type", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("reply_to_message_id", "uuid")
    .addColumn("mention_user_ids", "jsonb", (col) => col.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn("send_at", "timestamptz", (col) => col.notNull())
    // pending | sent | failed | cancelled.
    .addColumn("state", "text", (col) => col.notNull().defaultTo("pending"))
    .addColumn("message_id", "uuid")
    .addColumn("failure_reason", "text", (col) => col.notNull().defaultTo(""))
    // A sending run's lease: other runs skip the row until it has passed.
    .addColumn("claimed_until", "timestamptz")
    .addColumn("client_request_id", "text")
    .addColumn("created_at", "timestamptz", (col) => col.notNull())
    .addColumn("finished_at", "timestamptz")
    .execute();
  // The job's scan: due pending rows, soonest first.
  await sql`create index scheduled_messages_due_idx on scheduled_messages (send_at) where state = 'pending'`.execute(db);
  // A sender's list (by send_at), and their pending count.
  await db.schema.createIndex("scheduled_messages_sender_idx").on("scheduled_messages").columns(["sender_id", "send_at", "id"]).execute();
  await db.schema.createIndex("scheduled_messages_conversation_idx").on("scheduled_messages").column("conversation_id").execute();
  // ScheduleMessage's idempotency key.
  await db.schema
    .createIndex("scheduled_messages_request_idx")
    .on("scheduled_messages")
    .columns(["sender_id", "client_request_id"])
    .unique()
    .where(sql.ref("client_request_id"), "is not", null)
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("scheduled_messages").execute();
  await db.schema.alterTable("users").dropColumn("deleted_at").execute();
}
