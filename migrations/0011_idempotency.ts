import type { Kysely } from "kysely";

// Safe retries. request_answers keeps, for 24 h, what a mutating RPC answered
// to one request key of one caller (a client_request_id, or a natural key such
// as a deleted status's id), so a retry after a lost answer gets that answer
// and causes nothing twice. otp_codes learns what a successful VerifyOTP did
// (for a repeat within 60 s) and which SendOTP request issued the code.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("request_answers")
    // The caller: a user id, or (SendOTP, before there is a user) a phone number.
    .addColumn("owner", "text", (col) => col.notNull())
    // The RPC, e.g. "status.StatusService/CreateStatus".
    .addColumn("rpc", "text", (col) => col.notNull())
    .addColumn("request_key", "text", (col) => col.notNull())
    // The answer's protobuf binary encoding.
    .addColumn("answer", "bytea", (col) => col.notNull())
    .addColumn("created_at", "timestamptz", (col) => col.notNull())
    .addPrimaryKeyConstraint("request_answers_pkey", ["owner", "rpc", "request_key"])
    .execute();
  // The periodic prune deletes by age.
  await db.schema.createIndex("request_answers_created_at_idx").on("request_answers").column("created_at").execute();

  await db.schema
    .alterTable("otp_codes")
    // Set once the code opened a session: a repeat within the replay window
    // (same number, code and device) gets that session instead of a new one.
    .addColumn("session_id", "uuid")
    // HMAC (server secret) of number, code and device id: never the code itself.
    .addColumn("replay_mac", "text")
    .addColumn("new_user", "boolean", (col) => col.notNull().defaultTo(false))
    // The client_request_id of the SendOTP that issued the code.
    .addColumn("send_request_id", "text")
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("otp_codes").dropColumn("session_id").dropColumn("replay_mac").dropColumn("new_user").dropColumn("send_request_id").execute();
  await db.schema.dropTable("request_answers").execute();
}
