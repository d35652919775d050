import { type Kysely, sql } from "kysely";

// Media (issue 16): what CreateUpload declared and where its upload stands
// (the bytes live on disk or in S3, keyed by the media id), and which
// conversations and statuses reference each item: the participants of one
// (or the audience of the other) may download it, and an item with no
// reference left is collected.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("media")
    .addColumn("id", "uuid", (col) => col.primaryKey())
    .addColumn("uploader_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    // image, video, audio, document or sticker.
    .addColumn("kind", "text", (col) => col.notNull())
    .addColumn("mime_type", "text", (col) => col.notNull())
    .addColumn("size_bytes", "int8", (col) => col.notNull())
    // Lower-case hex.
    .addColumn("sha256", "text", (col) => col.notNull())
    .addColumn("file_name", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("width", "int4", (col) => col.notNull().defaultTo(0))
    .addColumn("height", "int4", (col) => col.notNull().defaultTo(0))
    .addColumn("duration_ms", "int4", (col) => col.notNull().defaultTo(0))
    .addColumn("thumbnail", "bytea")
    .addColumn("encrypted", "boolean", (col) => col.notNull().defaultTo(false))
    // pending (bytes not all there) or ready (checked).
    .addColumn("state", "text", (col) => col.notNull().defaultTo("pending"))
    .addColumn("created_at", "timestamptz", (col) => col.notNull())
    // Set by the first reference: from then on, losing the last one deletes the item.
    .addColumn("referenced_at", "timestamptz")
    .execute();
  // Quota and daily budget sum per uploader; the collector scans by age.
  await db.schema.createIndex("media_uploader_created_idx").on("media").columns(["uploader_id", "created_at"]).execute();

  await db.schema
    .createTable("media_refs")
    .addColumn("media_id", "uuid", (col) => col.notNull().references("media.id").onDelete("cascade"))
    // Exactly one of the two: a conversation whose participants may download it, or a status whose audience may.
    .addColumn("conversation_id", "uuid", (col) => col.references("conversations.id").onDelete("cascade"))
    .addColumn("status_id", "uuid", (col) => col.references("status_updates.id").onDelete("cascade"))
    // The referencing message (messages' rows are not cascaded here: their delete-for-everyone drops it explicitly).
    .addColumn("message_id", "uuid")
    .addCheckConstraint("media_refs_one_target", sql`(conversation_id is null) <> (status_id is null)`)
    .execute();
  await db.schema.createIndex("media_refs_media_idx").on("media_refs").column("media_id").execute();
  await db.schema.createIndex("media_refs_conversation_idx").on("media_refs").column("conversation_id").execute();
  await db.schema.createIndex("media_refs_status_idx").on("media_refs").column("status_id").execute();
  // Unique: a retried SendMessage adds its reference once.
  await db.schema.createIndex("media_refs_message_idx").on("media_refs").columns(["message_id", "media_id"]).unique().execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("media_refs").execute();
  await db.schema.dropTable("media").execute();
}
