import { sql, type Kysely } from "kysely";

// Realtime: open Subscribe streams (presence across instances) and the
// inbox's pruning floor (positions at or below it can no longer be replayed).
export async function up(db: Kysely<any>): Promise<void> {
  // One row per open stream. An instance renews expires_at for its streams;
  // rows of an instance that died expire and are swept.
  await db.schema
    .createTable("presence_streams")
    .addColumn("stream_id", "uuid", (col) => col.primaryKey())
    // Opening order (clocks tie; the oldest streams are the ones evicted).
    .addColumn("serial", "bigserial", (col) => col.notNull())
    .addColumn("user_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    .addColumn("session_id", "uuid", (col) => col.notNull())
    .addColumn("instance_id", "text", (col) => col.notNull())
    .addColumn("opened_at", "timestamptz", (col) => col.notNull())
    .addColumn("expires_at", "timestamptz", (col) => col.notNull())
    .execute();
  await db.schema.createIndex("presence_streams_user_id_idx").on("presence_streams").columns(["user_id", "serial"]).execute();
  await db.schema.createIndex("presence_streams_expires_at_idx").on("presence_streams").column("expires_at").execute();

  await db.schema
    .alterTable("inbox_positions")
    .addColumn("pruned_through", "bigint", (col) => col.notNull().defaultTo(sql`0`))
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("inbox_positions").dropColumn("pruned_through").execute();
  await db.schema.dropTable("presence_streams").execute();
}
