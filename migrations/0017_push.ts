import { sql, type Kysely } from "kysely";

// Push notifications (proto/push/push.proto): at most one registration per
// session, which dies with it (the session row's delete cascades; revocation
// deletes it), and the per-user push settings.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("push_tokens")
    .addColumn("session_id", "uuid", (col) => col.primaryKey().references("user_devices.id").onDelete("cascade"))
    .addColumn("user_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    // 'fcm' | 'apns' | 'web_push'
    .addColumn("platform", "text", (col) => col.notNull())
    // FCM/APNs token, or the Web Push endpoint: unique per platform, so a token registered again moves sessions.
    .addColumn("token", "text", (col) => col.notNull())
    .addColumn("apns_sandbox", "boolean", (col) => col.notNull().defaultTo(false))
    .addColumn("p256dh", "text", (col) => col.notNull().defaultTo(sql`''`))
    .addColumn("auth", "text", (col) => col.notNull().defaultTo(sql`''`))
    .addColumn("updated_at", "timestamptz", (col) => col.notNull())
    .execute();
  await db.schema.createIndex("push_tokens_platform_token_key").on("push_tokens").columns(["platform", "token"]).unique().execute();
  await db.schema.createIndex("push_tokens_user_id_idx").on("push_tokens").column("user_id").execute();

  await db.schema
    .createTable("push_settings")
    .addColumn("user_id", "uuid", (col) => col.primaryKey().references("users.id").onDelete("cascade"))
    .addColumn("show_previews", "boolean", (col) => col.notNull().defaultTo(false))
    .addColumn("updated_at", "timestamptz", (col) => col.notNull())
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("push_settings").execute();
  await db.schema.dropTable("push_tokens").execute();
}
