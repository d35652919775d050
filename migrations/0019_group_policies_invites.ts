import { sql, type Kysely } from "kysely";
import { applySqlFunctions } from "../server/db/sql-functions.js";

// Group policies and invite links (issue 17, items 1 and 2).
// - conversations: who may send (announcement groups), edit the group's info
//   and add participants ('all' or 'admins'), and whether new members need an
//   admin's approval. Defaults keep what groups did before: everyone sends,
//   admins edit and add, no approval.
// - group_invite_links: shared links (and personal invites, for one invitee)
//   with expiry, use limit and approval; the code is the key a client shares.
// - group_join_requests: one per (group, user): pending, approved or rejected.
// - chatwire_send_preflight also answers whether the group's send policy
//   refuses the sender (SendMessage checks it with no extra round trip); its
//   result type changes, so the old signature goes first.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable("conversations")
    .addColumn("send_policy", "text", (col) => col.notNull().defaultTo("all"))
    .addColumn("edit_info_policy", "text", (col) => col.notNull().defaultTo("admins"))
    .addColumn("add_policy", "text", (col) => col.notNull().defaultTo("admins"))
    .addColumn("approve_new_members", "boolean", (col) => col.notNull().defaultTo(false))
    .execute();
  await db.schema
    .alterTable("conversations")
    .addCheckConstraint(
      "conversations_policies",
      sql`send_policy in ('all', 'admins') and edit_info_policy in ('all', 'admins') and add_policy in ('all', 'admins')`,
    )
    .execute();

  await db.schema
    .createTable("group_invite_links")
    .addColumn("code", "text", (col) => col.primaryKey())
    .addColumn("conversation_id", "uuid", (col) => col.notNull().references("conversations.id").onDelete("cascade"))
    .addColumn("created_by", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    .addColumn("created_at", "timestamptz", (col) => col.notNull())
    // Null: never expires.
    .addColumn("expires_at", "timestamptz")
    // 0: no limit.
    .addColumn("max_uses", "int4", (col) => col.notNull().defaultTo(0))
    .addColumn("use_count", "int4", (col) => col.notNull().defaultTo(0))
    .addColumn("requires_approval", "boolean", (col) => col.notNull().defaultTo(false))
    .addColumn("revoked_at", "timestamptz")
    // A personal invite (a refused add): only this user may use it.
    .addColumn("invitee_id", "uuid", (col) => col.references("users.id").onDelete("cascade"))
    .execute();
  await db.schema.createIndex("group_invite_links_conversation_idx").on("group_invite_links").columns(["conversation_id", "created_at"]).execute();
  await db.schema.createIndex("group_invite_links_created_by_idx").on("group_invite_links").column("created_by").execute();
  await db.schema.createIndex("group_invite_links_invitee_idx").on("group_invite_links").columns(["invitee_id", "created_at"]).execute();

  await db.schema
    .createTable("group_join_requests")
    .addColumn("conversation_id", "uuid", (col) => col.notNull().references("conversations.id").onDelete("cascade"))
    .addColumn("user_id", "uuid", (col) => col.notNull().references("users.id").onDelete("cascade"))
    // pending, approved or rejected.
    .addColumn("state", "text", (col) => col.notNull())
    .addColumn("created_at", "timestamptz", (col) => col.notNull())
    // The member whose AddParticipants filed it; null when the user asked (JoinByInvite).
    .addColumn("added_by", "uuid", (col) => col.references("users.id").onDelete("set null"))
    .addColumn("invite_code", "text", (col) => col.references("group_invite_links.code").onDelete("set null"))
    .addColumn("decided_at", "timestamptz")
    .addColumn("decided_by", "uuid", (col) => col.references("users.id").onDelete("set null"))
    .addPrimaryKeyConstraint("group_join_requests_pk", ["conversation_id", "user_id"])
    .addCheckConstraint("group_join_requests_state", sql`state in ('pending', 'approved', 'rejected')`)
    .execute();
  await db.schema.createIndex("group_join_requests_user_idx").on("group_join_requests").column("user_id").execute();
  await db.schema.createIndex("group_join_requests_added_by_idx").on("group_join_requests").column("added_by").execute();
  await db.schema.createIndex("group_join_requests_decided_by_idx").on("group_join_requests").column("decided_by").execute();
  await db.schema.createIndex("group_join_requests_invite_idx").on("group_join_requests").column("invite_code").execute();

  await sql`drop function if exists chatwire_send_preflight(uuid, uuid, text)`.execute(db);
  await applySqlFunctions(db, ["chatwire_send_preflight"]);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("group_join_requests").execute();
  await db.schema.dropTable("group_invite_links").execute();
  await db.schema.alterTable("conversations").dropConstraint("conversations_policies").execute();
  for (const c of ["send_policy", "edit_info_policy", "add_policy", "approve_new_members"]) {
    await db.schema.alterTable("conversations").dropColumn(c).execute();
  }
}
