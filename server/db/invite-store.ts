import type { GroupJoinRequestsTable } from "./group-invite-schema.js";
import { sql, type Kysely, type Transaction } from "kysely";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

// Invite links (shared, or personal for one invitee) and join requests of
// groups (migration 0019).

export interface InviteLinkRow {
  code: string;
  conversation_id: string;
  created_by: string;
  created_at: Date;
  expires_at: Date | null;
  max_uses: number;
  use_count: number;
  requires_approval: boolean;
  revoked_at: Date | null;
  invitee_id: string | null;
}

/** A join request as stored (its table has no generated columns). */
export type JoinRequestRow = GroupJoinRequestsTable;

export interface NewInviteLink {
  code: string;
  conversationId: string;
  createdBy: string;
  now: Date;
  expiresAt: Date | null;
  maxUses: number;
  requiresApproval: boolean;
  inviteeId?: string;
}

export function insertInviteLink(db: Db, l: NewInviteLink): Promise<InviteLinkRow> {
  return db
    .insertInto("group_invite_links")
    .values({
      code: l.code,
      conversation_id: l.conversationId,
      created_by: l.createdBy,
      created_at: l.now,
      expires_at: l.expiresAt,
      max_uses: l.maxUses,
      requires_approval: l.requiresApproval,
      invitee_id: l.inviteeId ?? null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export function getInviteLink(db: Db, code: string): Promise<InviteLinkRow | undefined> {
  return db.selectFrom("group_invite_links").selectAll().where("code", "=", code).executeTakeFirst();
}

/** The link, locked against concurrent joins counting its uses (take the conversation's lock first). */
export function lockInviteLink(trx: Transaction<Database>, code: string): Promise<InviteLinkRow | undefined> {
  return trx.selectFrom("group_invite_links").selectAll().where("code", "=", code).forUpdate().executeTakeFirst();
}

/** Usable now: not revoked, not expired, not used up (the SQL twin of domain/invites.ts linkProblem). */
const usable = (now: Date) => sql<boolean>`revoked_at is null and (expires_at is null or expires_at > ${now}) and (max_uses = 0 or use_count < max_uses)`;

export async function listInviteLinks(db: Db, conversationId: string, opts: { includeInactive: boolean; now: Date; limit: number }): Promise<InviteLinkRow[]> {
  let q = db.selectFrom("group_invite_links").selectAll().where("conversation_id", "=", conversationId);
  if (!opts.includeInactive) q = q.where(usable(opts.now));
  return q.orderBy("created_at", "desc").orderBy("code").limit(opts.limit).execute();
}

/** The user's usable personal invites, newest first. */
export function personalInvites(db: Db, userId: string, now: Date, limit: number): Promise<InviteLinkRow[]> {
  return db
    .selectFrom("group_invite_links")
    .selectAll()
    .where("invitee_id", "=", userId)
    .where(usable(now))
    .orderBy("created_at", "desc")
    .limit(limit)
    .execute();
}

/** A usable personal invite of the user to the group, if any (AddParticipants makes one per invitee). */
export function activePersonalInvite(db: Db, conversationId: string, userId: string, now: Date): Promise<InviteLinkRow | undefined> {
  return db
    .selectFrom("group_invite_links")
    .selectAll()
    .where("invitee_id", "=", userId)
    .where("conversation_id", "=", conversationId)
    .where(usable(now))
    .executeTakeFirst();
}

export async function revokeInviteLink(db: Db, code: string, now: Date): Promise<InviteLinkRow | undefined> {
  return db
    .updateTable("group_invite_links")
    .set({ revoked_at: now })
    .where("code", "=", code)
    .where("revoked_at", "is", null)
    .returningAll()
    .executeTakeFirst();
}

/** Revokes the group's usable shared links (not personal invites); how many. */
export async function revokeSharedLinks(db: Db, conversationId: string, now: Date): Promise<number> {
  const res = await db
    .updateTable("group_invite_links")
    .set({ revoked_at: now })
    .where("conversation_id", "=", conversationId)
    .where("invitee_id", "is", null)
    .where(usable(now))
    .executeTakeFirst();
  return Number(res.numUpdatedRows);
}

export async function countUse(trx: Transaction<Database>, code: string): Promise<void> {
  await trx
    .updateTable("group_invite_links")
    .set((eb) => ({ use_count: eb("use_count", "+", 1) }))
    .where("code", "=", code)
    .execute();
}

export function getJoinRequest(db: Db, conversationId: string, userId: string): Promise<JoinRequestRow | undefined> {
  return db.selectFrom("group_join_requests").selectAll().where("conversation_id", "=", conversationId).where("user_id", "=", userId).executeTakeFirst();
}

/** Files (or files again, after a decision) a pending request. */
export function upsertPendingRequest(
  trx: Transaction<Database>,
  r: { conversationId: string; userId: string; addedBy: string | null; inviteCode: string | null; now: Date },
): Promise<JoinRequestRow> {
  const values = { state: "pending", created_at: r.now, added_by: r.addedBy, invite_code: r.inviteCode, decided_at: null, decided_by: null };
  return trx
    .insertInto("group_join_requests")
    .values({ conversation_id: r.conversationId, user_id: r.userId, ...values })
    .onConflict((oc) => oc.columns(["conversation_id", "user_id"]).doUpdateSet(values))
    .returningAll()
    .executeTakeFirstOrThrow();
}

export function pendingRequests(db: Db, conversationId: string, limit: number): Promise<JoinRequestRow[]> {
  return db
    .selectFrom("group_join_requests")
    .selectAll()
    .where("conversation_id", "=", conversationId)
    .where("state", "=", "pending")
    .orderBy("created_at")
    .orderBy("user_id")
    .limit(limit)
    .execute();
}

/** Decides pending requests of the users; the decided rows. */
export function decideRequests(
  trx: Transaction<Database>,
  conversationId: string,
  userIds: string[],
  state: "approved" | "rejected",
  by: string,
  now: Date,
): Promise<JoinRequestRow[]> {
  if (userIds.length === 0) return Promise.resolve([]);
  return trx
    .updateTable("group_join_requests")
    .set({ state, decided_at: now, decided_by: by })
    .where("conversation_id", "=", conversationId)
    .where("user_id", "in", userIds)
    .where("state", "=", "pending")
    .returningAll()
    .execute();
}
