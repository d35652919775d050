import { sql, type Kysely } from "kysely";

// Sessions learn refresh-token rotation (the replaced token's hash, for the
// retry grace and reuse detection) and the revocation reason; one-time codes
// and abuse-limit counters live in the database so every instance shares them.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable("user_devices")
    // jti and iat of the current refresh token: with its hash and expiry they let
    // a retried refresh (lost response) get back the very same token.
    .addColumn("refresh_token_jti", "text")
    .addColumn("refresh_issued_at", "timestamptz")
    .addColumn("previous_refresh_token_hash", "text")
    .addColumn("refresh_rotated_at", "timestamptz")
    .addColumn("revoked_reason", "text")
    .execute();

  await db.schema
    .createIndex("user_devices_previous_refresh_token_hash_idx")
    .on("user_devices")
    .column("previous_refresh_token_hash")
    .where("previous_refresh_token_hash", "is not", null)
    .execute();

  await db.schema
    .createTable("otp_codes")
    .addColumn("phone_number", "text", (col) => col.primaryKey())
    .addColumn("attempts", "integer", (col) => col.notNull().defaultTo(0))
    .addColumn("max_attempts", "integer", (col) => col.notNull())
    .addColumn("expires_at", "timestamptz", (col) => col.notNull())
    .addColumn("created_at", "timestamptz", (col) => col.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex("otp_codes_expires_at_idx").on("otp_codes").column("expires_at").execute();

  await db.schema
    .createTable("rate_limits")
    .addColumn("key", "text", (col) => col.primaryKey())
    .addColumn("window_started_at", "timestamptz", (col) => col.notNull())
    .addColumn("window_seconds", "integer", (col) => col.notNull())
    .addColumn("count", "integer", (col) => col.notNull())
    .execute();
  await db.schema.createIndex("rate_limits_window_started_at_idx").on("rate_limits").column("window_started_at").execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("rate_limits").execute();
  await db.schema.dropTable("otp_codes").execute();
  await db.schema.dropIndex("user_devices_previous_refresh_token_hash_idx").execute();
  await db.schema
    .alterTable("user_devices")
    .dropColumn("refresh_token_jti")
    .dropColumn("refresh_issued_at")
    .dropColumn("previous_refresh_token_hash")
    .dropColumn("refresh_rotated_at")
    .dropColumn("revoked_reason")
    .execute();
}
