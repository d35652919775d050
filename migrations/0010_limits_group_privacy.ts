import { sql, type Kysely } from "kysely";

// Per-user call limits with long windows, shared by every instance: the table
// rate-limiter-flexible's RateLimiterPostgres reads and writes (its own shape:
// key, points, expire in epoch ms), created here so the schema stays the
// migrations'. And who may add a user to groups, beside the other privacy settings.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("rate_limit_points")
    .addColumn("key", "varchar(255)", (col) => col.primaryKey())
    .addColumn("points", "integer", (col) => col.notNull().defaultTo(0))
    .addColumn("expire", "bigint")
    .execute();
  await db.schema.createIndex("rate_limit_points_expire_idx").on("rate_limit_points").column("expire").execute();

  // 'everyone' | 'contacts' | 'nobody'
  await db.schema
    .alterTable("privacy_settings")
    .addColumn("group_add", "text", (col) => col.notNull().defaultTo(sql`'everyone'`))
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("privacy_settings").dropColumn("group_add").execute();
  await db.schema.dropTable("rate_limit_points").execute();
}
