import { sql, type Kysely } from "kysely";

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("users")
    .addColumn("id", "uuid", (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn("phone_number", "text", (col) => col.notNull())
    .addColumn("display_name", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("profile_picture_url", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("about_text", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("last_seen_at", "timestamptz")
    .addColumn("created_at", "timestamptz", (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn("updated_at", "timestamptz", (col) => col.notNull().defaultTo(sql`now()`))
    // Named explicitly so services can map unique violations by constraint name.
    .addUniqueConstraint("users_phone_number_key", ["phone_number"])
    .execute();

  await db.schema
    .createTable("user_devices")
    .addColumn("id", "uuid", (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn("user_id", "uuid", (col) => col.notNull())
    .addColumn("device_id", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("device_name", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("device_type", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("push_notification_token", "text", (col) => col.notNull().defaultTo(""))
    .addColumn("refresh_token_hash", "text")
    .addColumn("refresh_expires_at", "timestamptz")
    .addColumn("created_at", "timestamptz", (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn("last_login_at", "timestamptz", (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn("last_active_at", "timestamptz", (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn("revoked_at", "timestamptz")
    .addForeignKeyConstraint("user_devices_user_id_fkey", ["user_id"], "users", ["id"], (fk) => fk.onDelete("cascade"))
    .execute();

  await db.schema.createIndex("user_devices_user_id_idx").on("user_devices").column("user_id").execute();

  await db.schema
    .createIndex("user_devices_refresh_token_hash_key")
    .on("user_devices")
    .column("refresh_token_hash")
    .unique()
    .where("refresh_token_hash", "is not", null)
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("user_devices").execute();
  await db.schema.dropTable("users").execute();
}
