import { sql, type Kysely } from "kysely";

// Contacts (registered users only: unmatched address-book numbers are not
// kept), blocks, privacy settings (a missing row means the defaults), and
// status updates with their audience lists, views and replies.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("contacts")
    .addColumn("user_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    .addColumn("contact_user_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    // E.164, as the number was matched.
    .addColumn("contact_phone_number", "text", (col) => col.notNull())
    .addColumn("display_name_override", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("created_at", "timestamptz", (col) => col.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint("contacts_pkey", ["user_id", "contact_user_id"])
    .execute();
  // "Who has me as a contact" (presence fan-out, status feed).
  await db.schema.createIndex("contacts_contact_user_id_idx").on("contacts").column("contact_user_id").execute();
  // ListContacts pages by number; SyncContacts removes by number.
  await db.schema.createIndex("contacts_user_id_phone_idx").on("contacts").columns(["user_id", "contact_phone_number"]).execute();

  await db.schema
    .createTable("blocked_users")
    .addColumn("blocker_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    .addColumn("blocked_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    .addColumn("created_at", "timestamptz", (col) => col.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint("blocked_users_pkey", ["blocker_id", "blocked_id"])
    .execute();
  await db.schema.createIndex("blocked_users_blocked_id_idx").on("blocked_users").column("blocked_id").execute();

  await db.schema
    .createTable("privacy_settings")
    .addColumn("user_id", "uuid", (col) => col.primaryKey().references("users.id").onDelete("cascade"))
    // 'everyone' | 'contacts' | 'nobody'
    .addColumn("last_seen", "text", (col) => col.notNull().defaultTo("everyone"))
    .addColumn("profile_photo", "text", (col) => col.notNull().defaultTo("everyone"))
    .addColumn("about", "text", (col) => col.notNull().defaultTo("everyone"))
    .addColumn("status", "text", (col) => col.notNull().defaultTo("contacts"))
    .addColumn("read_receipts", "boolean", (col) => col.notNull().defaultTo(true))
    .addColumn("updated_at", "timestamptz", (col) => col.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema
    .createTable("status_updates")
    .addColumn("id", "uuid", (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn("user_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    // 'text' | 'image' | 'video'
    .addColumn("content_type", "text", (col) => col.notNull())
    .addColumn("content", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("media_url", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("caption", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("background_color", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("font", "integer", (col) => col.notNull().defaultTo(0))
    // 'contacts' | 'except' | 'only'
    .addColumn("audience", "text", (col) => col.notNull().defaultTo("contacts"))
    .addColumn("created_at", "timestamptz", (col) => col.notNull())
    .addColumn("expires_at", "timestamptz", (col) => col.notNull())
    .execute();
  await db.schema.createIndex("status_updates_user_id_created_at_idx").on("status_updates").columns(["user_id", "created_at"]).execute();
  await db.schema.createIndex("status_updates_expires_at_idx").on("status_updates").column("expires_at").execute();

  // The user list of an 'except' or 'only' audience.
  await db.schema
    .createTable("status_audience")
    .addColumn("status_id", "uuid", (col) => col.notNull().references("status_updates.id").onDelete("cascade"))
    .addColumn("user_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    .addPrimaryKeyConstraint("status_audience_pkey", ["status_id", "user_id"])
    .execute();
  await db.schema.createIndex("status_audience_user_id_idx").on("status_audience").column("user_id").execute();

  await db.schema
    .createTable("status_views")
    .addColumn("status_id", "uuid", (col) => col.notNull().references("status_updates.id").onDelete("cascade"))
    .addColumn("viewer_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    .addColumn("viewed_at", "timestamptz", (col) => col.notNull())
    .addPrimaryKeyConstraint("status_views_pkey", ["status_id", "viewer_id"])
    .execute();
  await db.schema.createIndex("status_views_viewer_id_idx").on("status_views").column("viewer_id").execute();

  // Replies sent through ReplyToStatus: the message and the status it quotes.
  // No foreign keys to messages (on the production profile the worker stores
  // the message after this row) or to status_updates (the quote outlives the
  // status's purge).
  await db.schema
    .createTable("status_replies")
    .addColumn("message_id", "uuid", (col) => col.primaryKey())
    .addColumn("status_id", "uuid", (col) => col.notNull())
    .addColumn("status_author_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    .addColumn("replier_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    .addColumn("conversation_id", "uuid", (col) => col.notNull().references("conversations.id").onDelete("cascade"))
    // The status as quoted: content type and content (text, or the media URL).
    .addColumn("status_content_type", "text", (col) => col.notNull())
    .addColumn("status_content", "text", (col) => col.notNull())
    .addColumn("created_at", "timestamptz", (col) => col.notNull())
    .execute();
  await db.schema.createIndex("status_replies_status_id_idx").on("status_replies").column("status_id").execute();
  await db.schema.createIndex("status_replies_status_author_id_idx").on("status_replies").column("status_author_id").execute();
  await db.schema.createIndex("status_replies_replier_id_idx").on("status_replies").column("replier_id").execute();
  await db.schema.createIndex("status_replies_conversation_id_idx").on("status_replies").column("conversation_id").execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const t of ["status_replies", "status_views", "status_audience", "status_updates", "privacy_settings", "blocked_users", "contacts"]) {
    await db.schema.dropTable(t).execute();
  }
}
