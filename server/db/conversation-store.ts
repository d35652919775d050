import { sql, type Kysely, type Transaction } from "kysely";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

export type Role = "owner" | "admin" | "member";

export interface ConversationRow {
  id: string;
  is_group: boolean;
  group_name: string;
  group_description: string;
  group_avatar_url: string;
  last_seq: string;
  created_at: Date;
  last_activity_at: Date;
  /** The group's policies: 'all' or 'admins' (domain/group-policies.ts). */
  send_policy: string;
  edit_info_policy: string;
  add_policy: string;
  approve_new_members: boolean;
  /** Disappearing-messages timer in seconds, 0 when off (absent where not read). */
  disappearing_seconds?: number;
}

/** The columns of a ConversationRow. */
const CONVERSATION_COLUMNS = [
  "id",
  "is_group",
  "group_name",
  "group_description",
  "group_avatar_url",
  "last_seq",
  "created_at",
  "last_activity_at",
  "send_policy",
  "edit_info_policy",
  "add_policy",
  "approve_new_members",
  "disappearing_seconds",
] as const;

export interface ParticipantRow {
  conversation_id: string;
  user_id: string;
  role: string;
  joined_at: Date;
  joined_seq: string;
  left_at: Date | null;
  left_seq: string | null;
  last_delivered_seq: string;
  last_read_seq: string;
  muted_until: Date | null;
  archived: boolean;
  /** Pinned in this participant's chat list (absent from views built by hand). */
  pinned_at?: Date | null;
  /** Once left: the group as it was then (parse with formerView); null or absent while current. */
  left_view?: unknown;
}

/** "<smaller id>:<larger id>": the one direct conversation of a pair. */
export function directKey(a: string, b: string): string {
  return a < b ? `${a}:${b}` : `${b}:${a}`;
}

export async function existingUserIds(db: Db, ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const rows = await db.selectFrom("users").select("id").where("id", "in", ids).execute();
  return new Set(rows.map((r) => r.id));
}

export async function userIdsByPhone(db: Db, phones: string[]): Promise<Map<string, string>> {
  if (phones.length === 0) return new Map();
  const rows = await db.selectFrom("users").select(["id", "phone_number"]).where("phone_number", "in", phones).execute();
  return new Map(rows.map((r) => [r.phone_number, r.id]));
}

export function findDirect(db: Db, key: string): Promise<ConversationRow | undefined> {
  return db.selectFrom("conversations").select(CONVERSATION_COLUMNS).where("direct_key", "=", key).executeTakeFirst();
}

export function findGroupByRequest(db: Db, createdBy: string, clientRequestId: string): Promise<ConversationRow | undefined> {
  return db
    .selectFrom("conversations")
    .select(CONVERSATION_COLUMNS)
    .where("created_by", "=", createdBy)
    .where("client_request_id", "=", clientRequestId)
    .executeTakeFirst();
}

export interface NewConversation {
  isGroup: boolean;
  groupName: string;
  groupDescription: string;
  groupAvatarUrl: string;
  directKey: string | null;
  createdBy: string;
  clientRequestId: string | null;
  now: Date;
  /** Participants with roles; the creator included. */
  participants: Array<{ userId: string; role: Role }>;
  /** A group's policies; absent: the columns' defaults. */
  policies?: { send_policy: string; edit_info_policy: string; add_policy: string; approve_new_members: boolean };
}

/**
 * Inserts a conversation and its participants. A direct conversation that
 * raced another creation of the same pair yields undefined (the caller reads
 * the winner).
 */
export async function insertConversation(db: Db, c: NewConversation): Promise<ConversationRow | undefined> {
  const row = await db
    .insertInto("conversations")
    .values({
      is_group: c.isGroup,
      group_name: c.groupName,
      group_description: c.groupDescription,
      group_avatar_url: c.groupAvatarUrl,
      direct_key: c.directKey,
      created_by: c.createdBy,
      client_request_id: c.clientRequestId,
      created_at: c.now,
      last_activity_at: c.now,
      ...c.policies,
    })
    .onConflict((oc) => oc.doNothing())
    .returning(CONVERSATION_COLUMNS)
    .executeTakeFirst();
  if (!row) return undefined;
  await db
    .insertInto("conversation_participants")
    .values(c.participants.map((p) => ({ conversation_id: row.id, user_id: p.userId, role: p.role, joined_at: c.now })))
    .execute();
  return row;
}

/** The caller's participation, current or former; undefined if never a participant. */
export function getParticipation(db: Db, conversationId: string, userId: string): Promise<ParticipantRow | undefined> {
  return db.selectFrom("conversation_participants").selectAll().where("conversation_id", "=", conversationId).where("user_id", "=", userId).executeTakeFirst();
}

export function getConversationRow(db: Db, id: string): Promise<ConversationRow | undefined> {
  return db.selectFrom("conversations").select(CONVERSATION_COLUMNS).where("id", "=", id).executeTakeFirst();
}

/** Current participants of the conversations, oldest first. */
/** The current participants of one conversation (ordered as currentParticipants orders them). */
export async function participantsOf(db: Db, conversationId: string): Promise<ParticipantRow[]> {
  return (await currentParticipants(db, [conversationId])).get(conversationId) ?? [];
}

export async function currentParticipants(db: Db, conversationIds: string[]): Promise<Map<string, ParticipantRow[]>> {
  const out = new Map<string, ParticipantRow[]>();
  if (conversationIds.length === 0) return out;
  const rows = await db
    .selectFrom("conversation_participants")
    .selectAll()
    .where("conversation_id", "in", conversationIds)
    .where("left_at", "is", null)
    .orderBy("joined_at")
    .orderBy("user_id")
    .execute();
  for (const r of rows) {
    const list = out.get(r.conversation_id) ?? [];
    list.push(r);
    out.set(r.conversation_id, list);
  }
  return out;
}

/** The user's ended participations among the conversations, by conversation. */
export async function formerParticipations(db: Db, userId: string, conversationIds: string[]): Promise<Map<string, ParticipantRow>> {
  if (conversationIds.length === 0) return new Map();
  const rows = await db
    .selectFrom("conversation_participants")
    .selectAll()
    .where("user_id", "=", userId)
    .where("conversation_id", "in", conversationIds)
    .where("left_at", "is not", null)
    .execute();
  return new Map(rows.map((r) => [r.conversation_id, r]));
}

export interface ConversationListRow extends ConversationRow {
  my: ParticipantRow;
}

/**
 * One page of the caller's conversations by last activity, newest first,
 * after the keyset (last_activity_at, id) when given.
 */
export async function listConversations(
  db: Db,
  userId: string,
  opts: { limit: number; after?: { at: Date; id: string; pinnedAt?: Date | null }; includeArchived: boolean },
): Promise<ConversationListRow[]> {
  let q = db
    .selectFrom("conversation_participants as p")
    .innerJoin("conversations as c", "c.id", "p.conversation_id")
    .selectAll("p")
    .select(CONVERSATION_COLUMNS.map((c) => `c.${c}` as const))
    .where("p.user_id", "=", userId)
    .where("p.left_at", "is", null);
  if (!opts.includeArchived) q = q.where("p.archived", "=", false);
  if (opts.after) {
    // Pinned ones first (latest pinned first), then by last activity: the keyset is (pinned_at, last_activity_at, id).
    const { at, id, pinnedAt } = opts.after;
    q = q.where((eb) => {
      const later = eb.or([eb("c.last_activity_at", "<", at), eb.and([eb("c.last_activity_at", "=", at), eb("c.id", "<", id)])]);
      if (!pinnedAt) return eb.and([eb("p.pinned_at", "is", null), later]);
      return eb.or([eb("p.pinned_at", "is", null), eb("p.pinned_at", "<", pinnedAt), eb.and([eb("p.pinned_at", "=", pinnedAt), later])]);
    });
  }
  const rows = await q.orderBy(sql`p.pinned_at desc nulls last`).orderBy("c.last_activity_at", "desc").orderBy("c.id", "desc").limit(opts.limit).execute();
  return rows.map((r) => ({
    id: r.id,
    is_group: r.is_group,
    group_name: r.group_name,
    group_description: r.group_description,
    group_avatar_url: r.group_avatar_url,
    last_seq: r.last_seq,
    created_at: r.created_at,
    last_activity_at: r.last_activity_at,
    send_policy: r.send_policy,
    edit_info_policy: r.edit_info_policy,
    add_policy: r.add_policy,
    approve_new_members: r.approve_new_members,
    disappearing_seconds: r.disappearing_seconds,
    my: {
      conversation_id: r.conversation_id,
      user_id: r.user_id,
      role: r.role,
      joined_at: r.joined_at,
      joined_seq: r.joined_seq,
      left_at: r.left_at,
      left_seq: r.left_seq,
      last_delivered_seq: r.last_delivered_seq,
      last_read_seq: r.last_read_seq,
      muted_until: r.muted_until,
      archived: r.archived,
      pinned_at: r.pinned_at,
    },
  }));
}

/**
 * Messages after `afterSeq` (up to `upToSeq`, for a former participant) not
 * sent by the user and not expired at `now` (a disappearing message is unread
 * no longer once it is due, before the purge too): the unread count, and of
 * them those mentioning the user, per conversation.
 */
export async function unreadCounts(
  db: Db,
  userId: string,
  items: Array<{ conversationId: string; afterSeq: string; upToSeq?: string | null }>,
  now: Date,
): Promise<Map<string, { unread: number; mentions: number }>> {
  const out = new Map<string, { unread: number; mentions: number }>();
  // One indexed range count per conversation ((conversation_id, seq) is unique-indexed); pages are ≤ 100.
  await Promise.all(
    items.map(async (i) => {
      let q = db
        .selectFrom("messages")
        .select((eb) => eb.fn.countAll<string>().as("n"))
        .select(sql<string>`count(*) filter (where mention_user_ids @> ${JSON.stringify([userId])}::jsonb)`.as("mentions"))
        .where("conversation_id", "=", i.conversationId)
        .where("seq", ">", i.afterSeq);
      if (i.upToSeq != null) q = q.where("seq", "<=", i.upToSeq);
      const row = await q
        .where("kind", "=", "user")
        .where("deleted_at", "is", null)
        .where((eb) => eb.or([eb("expires_at", "is", null), eb("expires_at", ">", now)]))
        .where((eb) => eb.or([eb("sender_id", "is", null), eb("sender_id", "!=", userId)]))
        .executeTakeFirstOrThrow();
      out.set(i.conversationId, { unread: Number(row.n), mentions: i.upToSeq == null ? Number(row.mentions) : 0 });
    }),
  );
  return out;
}

/** The user's inbox position now (0 when nothing has happened to them yet). */
export async function inboxPosition(db: Db, userId: string): Promise<string> {
  const row = await db.selectFrom("inbox_positions").select("last_position").where("user_id", "=", userId).executeTakeFirst();
  return row?.last_position ?? "0";
}

/** False when it already was so (nothing to announce). */
export async function setMuted(db: Db, conversationId: string, userId: string, until: Date | null): Promise<boolean> {
  const res = await db
    .updateTable("conversation_participants")
    .set({ muted_until: until })
    .where("conversation_id", "=", conversationId)
    .where("user_id", "=", userId)
    .where(sql<boolean>`muted_until is distinct from ${until}::timestamptz`)
    .executeTakeFirst();
  return res.numUpdatedRows > 0n;
}

/** False when it already was so (nothing to announce). */
export async function setArchived(db: Db, conversationId: string, userId: string, archived: boolean): Promise<boolean> {
  const res = await db
    .updateTable("conversation_participants")
    .set({ archived })
    .where("conversation_id", "=", conversationId)
    .where("user_id", "=", userId)
    .where("archived", "<>", archived)
    .executeTakeFirst();
  return res.numUpdatedRows > 0n;
}

/** Locks the conversation row for a membership change: changes to one conversation queue up. */
export async function lockConversation(trx: Transaction<Database>, id: string): Promise<ConversationRow | undefined> {
  return trx.selectFrom("conversations").select(CONVERSATION_COLUMNS).where("id", "=", id).forUpdate().executeTakeFirst();
}

export async function updateGroupFields(
  trx: Transaction<Database>,
  id: string,
  fields: {
    group_name?: string;
    group_description?: string;
    group_avatar_url?: string;
    send_policy?: string;
    edit_info_policy?: string;
    add_policy?: string;
    approve_new_members?: boolean;
  },
): Promise<void> {
  if (Object.keys(fields).length === 0) return;
  await trx.updateTable("conversations").set(fields).where("id", "=", id).execute();
}

/** Adds users, or brings former participants back, seeing history after `joinedSeq`. */
export async function addParticipants(trx: Transaction<Database>, conversationId: string, userIds: string[], joinedSeq: string, now: Date): Promise<void> {
  if (userIds.length === 0) return;
  await trx
    .insertInto("conversation_participants")
    .values(userIds.map((userId) => ({ conversation_id: conversationId, user_id: userId, role: "member", joined_at: now, joined_seq: joinedSeq })))
    .onConflict((oc) =>
      oc.columns(["conversation_id", "user_id"]).doUpdateSet({
        role: "member",
        joined_at: now,
        joined_seq: joinedSeq,
        left_at: null,
        left_seq: null,
        last_delivered_seq: joinedSeq,
        last_read_seq: joinedSeq,
        archived: false,
        muted_until: null,
        left_view: null,
        pinned_at: null,
      }),
    )
    .execute();
}

/**
 * Ends a participation; they keep history up to and including `leftSeq`, and
 * the group as it is at this moment (the other current participants with
 * their roles and watermarks, and the group's fields) is kept with it, so they
 * go on seeing it as it was when they left (FormerView).
 */
export async function markLeft(trx: Transaction<Database>, conversationId: string, userId: string, leftSeq: string, now: Date): Promise<void> {
  await sql`
    update conversation_participants f
    set left_at = ${now}, left_seq = ${leftSeq}::bigint, left_view = jsonb_build_object(
      'group_name', c.group_name,
      'group_description', c.group_description,
      'group_avatar_url', c.group_avatar_url,
      'participants', coalesce((
        select jsonb_agg(jsonb_build_object(
          'user_id', p.user_id,
          'role', p.role,
          'joined_at', p.joined_at,
          'joined_seq', p.joined_seq::text,
          'last_delivered_seq', p.last_delivered_seq::text,
          'last_read_seq', p.last_read_seq::text
        ) order by p.joined_at, p.user_id)
        from conversation_participants p
        where p.conversation_id = f.conversation_id and p.user_id <> f.user_id and p.left_at is null
      ), '[]'::jsonb)
    )
    from conversations c
    where c.id = f.conversation_id and f.conversation_id = ${conversationId}::uuid and f.user_id = ${userId}::uuid
  `.execute(trx);
}

export async function setRole(trx: Transaction<Database>, conversationId: string, userId: string, role: Role): Promise<void> {
  await trx.updateTable("conversation_participants").set({ role }).where("conversation_id", "=", conversationId).where("user_id", "=", userId).execute();
}

/**
 * Takes the conversation row's weakest lock before appending inbox events for
 * it: it waits for membership changes (FOR UPDATE) but not for message
 * stores (FOR NO KEY UPDATE), and keeps every writer's lock order
 * conversation → participants → inbox positions.
 */
export async function lockConversationShared(trx: Transaction<Database>, id: string): Promise<void> {
  await trx.selectFrom("conversations").select("id").where("id", "=", id).forKeyShare().execute();
}

/** What SendMessage must know before it accepts a message, read in one round trip. */
export interface SendPreflight {
  /** The sender's participation; undefined if never a participant. */
  leftAt: Date | null | undefined;
  /** The other participant of a direct conversation (null for groups). */
  otherId: string | null;
  /** Direct conversation: the sender has blocked the other participant. */
  iBlocked: boolean;
  /** Direct conversation: the other participant has blocked the sender. */
  blockedMe: boolean;
  /** The conversation of a message the sender already sent with this client message id, if any. */
  existingConversationId: string | null;
  /** A group whose send policy is admins-only, and the sender is a plain member. */
  adminsOnly: boolean;
  /** The conversation's disappearing timer in seconds (0: off): what a message sent now is stored under. */
  disappearingSeconds: number;
}

/**
 * Participation, blocks either way in a direct conversation, and a message
 * already sent with `clientMessageId`: the reads SendMessage did one by one
 * (getParticipation, requireDirectNotBlocked, getMessageBySenderClientId), as one statement:
 * the database function chatwire_send_preflight (server/db/sql/chatwire_send_preflight.sql),
 * so the statement is planned once per connection.
 */
export async function sendPreflight(db: Db, conversationId: string, senderId: string, clientMessageId: string): Promise<SendPreflight> {
  const { rows } = await sql<{
    participant: boolean;
    left_at: Date | null;
    other_id: string | null;
    i_blocked: boolean;
    blocked_me: boolean;
    existing_conversation_id: string | null;
    admins_only: boolean;
    disappearing_seconds: number;
  }>`select * from chatwire_send_preflight(${conversationId}::uuid, ${senderId}::uuid, ${clientMessageId}::text)`.execute(db);
  const r = rows[0]!;
  return {
    leftAt: r.participant ? r.left_at : undefined,
    otherId: r.other_id,
    iBlocked: r.i_blocked,
    blockedMe: r.blocked_me,
    existingConversationId: r.existing_conversation_id,
    adminsOnly: r.admins_only,
    disappearingSeconds: r.disappearing_seconds,
  };
}
