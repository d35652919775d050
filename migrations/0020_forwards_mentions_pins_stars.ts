import { type Kysely, sql } from "kysely";
import { applySqlFunctions } from "../server/db/sql-functions.js";

// Forwards, mentions, pins and stars (issue 17 items 3-5): a message's forward
// count, a message pinned in its conversation, a conversation pinned in one
// participant's chat list, and each user's starred messages. The store
// function writes forward_count and the mentioned recipients' mention_added
// events (its result gains r_mentions, so the old signature goes first).
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable("messages")
    .addColumn("forward_count", "int4", (col) => col.notNull().defaultTo(0))
    .addColumn("pinned_at", "timestamptz")
    .addColumn("pinned_by", "uuid")
    .execute();
  // A conversation's pinned messages (at most a few per conversation).
  await sql`create index messages_pinned_idx on messages (conversation_id, pinned_at desc) where pinned_at is not null`.execute(db);
  await db.schema.alterTable("conversation_participants").addColumn("pinned_at", "timestamptz").execute();
  // The pin limit counts a user's pinned conversations.
  await sql`create index conversation_participants_pinned_idx on conversation_participants (user_id) where pinned_at is not null`.execute(db);

  await db.schema
    .createTable("starred_messages")
    .addColumn("user_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    .addColumn("message_id", "uuid", (col) => col.notNull().references("messages.id").onDelete("cascade"))
    .addColumn("conversation_id", "uuid", (col) => col.notNull().references("conversations.id").onDelete("cascade"))
    .addColumn("starred_at", "timestamptz", (col) => col.notNull())
    .addPrimaryKeyConstraint("starred_messages_pk", ["user_id", "message_id"])
    .execute();
  // ListStarredMessages pages by (starred_at, message_id), across conversations or in one.
  await sql`create index starred_messages_page_idx on starred_messages (user_id, starred_at desc, message_id desc)`.execute(db);
  await sql`create index starred_messages_conversation_idx on starred_messages (user_id, conversation_id, starred_at desc, message_id desc)`.execute(db);
  await db.schema.createIndex("starred_messages_message_idx").on("starred_messages").column("message_id").execute();
  await db.schema.createIndex("starred_messages_conv_fk_idx").on("starred_messages").column("conversation_id").execute();

  await sql`drop function if exists chatwire_store_messages(jsonb, timestamptz)`.execute(db);
  await applySqlFunctions(db, ["chatwire_store_messages"]);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("starred_messages").execute();
  await db.schema.alterTable("conversation_participants").dropColumn("pinned_at").execute();
  await db.schema.alterTable("messages").dropColumn("forward_count").dropColumn("pinned_at").dropColumn("pinned_by").execute();
}
