import { sql, type Kysely } from "kysely";

// Conversations, participants (with receipt watermarks), messages with a
// gapless per-conversation seq, reactions, per-user hidden messages, the
// per-user inbox (ordered events the realtime stream replays) and dead letters.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("conversations")
    .addColumn("id", "uuid", (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn("is_group", "boolean", (col) => col.notNull())
    .addColumn("group_name", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("group_description", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("group_avatar_url", "text", (col) => col.notNull().defaultTo(""))
    // "<smaller user id>:<larger user id>" for direct conversations: one per pair.
    .addColumn("direct_key", "text")
    .addColumn("created_by", "uuid", (col) => col.references("users.id").onDelete("set null"))
    .addColumn("client_request_id", "text")
    .addColumn("last_seq", "bigint", (col) => col.notNull().defaultTo(0))
    .addColumn("created_at", "timestamptz", (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn("last_activity_at", "timestamptz", (col) => col.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint("conversations_direct_key_key", ["direct_key"])
    .addUniqueConstraint("conversations_created_by_client_request_id_key", ["created_by", "client_request_id"])
    .execute();
  await db.schema.createIndex("conversations_created_by_idx").on("conversations").column("created_by").execute();

  await db.schema
    .createTable("conversation_participants")
    .addColumn("conversation_id", "uuid", (col) => col.notNull().references("conversations.id").onDelete("cascade"))
    .addColumn("user_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    .addColumn("role", "text", (col) => col.notNull().defaultTo("member"))
    .addColumn("joined_at", "timestamptz", (col) => col.notNull().defaultTo(sql`now()`))
    // History is visible from joined_seq (exclusive) to left_seq (inclusive) for former participants.
    .addColumn("joined_seq", "bigint", (col) => col.notNull().defaultTo(0))
    .addColumn("left_at", "timestamptz")
    .addColumn("left_seq", "bigint")
    .addColumn("last_delivered_seq", "bigint", (col) => col.notNull().defaultTo(0))
    .addColumn("last_read_seq", "bigint", (col) => col.notNull().defaultTo(0))
    .addColumn("muted_until", "timestamptz")
    .addColumn("archived", "boolean", (col) => col.notNull().defaultTo(false))
    .addPrimaryKeyConstraint("conversation_participants_pkey", ["conversation_id", "user_id"])
    .execute();
  await db.schema.createIndex("conversation_participants_user_id_idx").on("conversation_participants").column("user_id").execute();

  // One row per watermark advance (not per message and participant): the
  // delivered/read time of seq s for a user is the first mark reaching s.
  await db.schema
    .createTable("receipt_marks")
    .addColumn("conversation_id", "uuid", (col) => col.notNull().references("conversations.id").onDelete("cascade"))
    .addColumn("user_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    .addColumn("kind", "text", (col) => col.notNull())
    .addColumn("up_to_seq", "bigint", (col) => col.notNull())
    .addColumn("at", "timestamptz", (col) => col.notNull())
    .addPrimaryKeyConstraint("receipt_marks_pkey", ["conversation_id", "user_id", "kind", "up_to_seq"])
    .execute();
  await db.schema.createIndex("receipt_marks_user_id_idx").on("receipt_marks").column("user_id").execute();

  await db.schema
    .createTable("messages")
    .addColumn("id", "uuid", (col) => col.primaryKey())
    .addColumn("conversation_id", "uuid", (col) => col.notNull().references("conversations.id").onDelete("cascade"))
    .addColumn("seq", "bigint", (col) => col.notNull())
    .addColumn("kind", "text", (col) => col.notNull().defaultTo("user"))
    .addColumn("sender_id", "uuid", (col) => col.references("users.id").onDelete("set null"))
    .addColumn("client_message_id", "text")
    .addColumn("content", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("media_url", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("media_type", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("reply_to_message_id", "uuid", (col) => col.references("messages.id").onDelete("set null"))
    .addColumn("mention_user_ids", "jsonb", (col) => col.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn("system_event", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("system_user_ids", "jsonb", (col) => col.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn("created_at", "timestamptz", (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn("edited_at", "timestamptz")
    .addColumn("deleted_at", "timestamptz")
    .addUniqueConstraint("messages_conversation_id_seq_key", ["conversation_id", "seq"])
    .addUniqueConstraint("messages_sender_id_client_message_id_key", ["sender_id", "client_message_id"])
    .execute();
  await db.schema.createIndex("messages_reply_to_message_id_idx").on("messages").column("reply_to_message_id").execute();

  await db.schema
    .createTable("message_reactions")
    .addColumn("message_id", "uuid", (col) => col.notNull().references("messages.id").onDelete("cascade"))
    .addColumn("user_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    .addColumn("emoji", "text", (col) => col.notNull())
    .addColumn("created_at", "timestamptz", (col) => col.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint("message_reactions_pkey", ["message_id", "user_id"])
    .execute();
  await db.schema.createIndex("message_reactions_user_id_idx").on("message_reactions").column("user_id").execute();

  await db.schema
    .createTable("hidden_messages")
    .addColumn("user_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    .addColumn("message_id", "uuid", (col) => col.notNull().references("messages.id").onDelete("cascade"))
    .addColumn("hidden_at", "timestamptz", (col) => col.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint("hidden_messages_pkey", ["user_id", "message_id"])
    .execute();
  await db.schema.createIndex("hidden_messages_message_id_idx").on("hidden_messages").column("message_id").execute();

  // Per-user counter: positions are assigned under this row's lock, so they
  // commit in order and a reader never skips one still in flight.
  await db.schema
    .createTable("inbox_positions")
    .addColumn("user_id", "uuid", (col) => col.primaryKey().references("users.id").onDelete("cascade"))
    .addColumn("last_position", "bigint", (col) => col.notNull().defaultTo(0))
    .execute();

  await db.schema
    .createTable("inbox")
    .addColumn("user_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    .addColumn("position", "bigint", (col) => col.notNull())
    .addColumn("event_type", "text", (col) => col.notNull())
    .addColumn("conversation_id", "uuid", (col) => col.references("conversations.id").onDelete("cascade"))
    .addColumn("message_id", "uuid", (col) => col.references("messages.id").onDelete("cascade"))
    .addColumn("payload", "jsonb", (col) => col.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn("created_at", "timestamptz", (col) => col.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint("inbox_pkey", ["user_id", "position"])
    .execute();
  await db.schema.createIndex("inbox_created_at_idx").on("inbox").column("created_at").execute();
  await db.schema.createIndex("inbox_conversation_id_idx").on("inbox").column("conversation_id").execute();
  await db.schema.createIndex("inbox_message_id_idx").on("inbox").column("message_id").execute();

  await db.schema
    .createTable("dead_letters")
    .addColumn("id", "uuid", (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn("subject", "text", (col) => col.notNull())
    .addColumn("payload", "text", (col) => col.notNull())
    .addColumn("error", "text", (col) => col.notNull())
    .addColumn("created_at", "timestamptz", (col) => col.notNull().defaultTo(sql`now()`))
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const t of [
    "dead_letters",
    "inbox",
    "inbox_positions",
    "hidden_messages",
    "message_reactions",
    "messages",
    "receipt_marks",
    "conversation_participants",
    "conversations",
  ]) {
    await db.schema.dropTable(t).execute();
  }
}
