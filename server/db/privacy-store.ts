import { sql, type Kysely, type Transaction } from "kysely";
import { allows, allowsGroupAdd, DEFAULT_PRIVACY, readStateShared, type PrivacySettings, type Relation, type Visibility } from "../domain/privacy.js";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

// Privacy settings, blocks, and the relations (contact, block) privacy rules
// are decided on. Also what realtime presence asks: who may see a user's
// presence, who has a user as a contact, whose read receipts are on.

interface PrivacyRow {
  user_id: string;
  last_seen: string;
  profile_photo: string;
  about: string;
  status: string;
  read_receipts: boolean;
  group_add: string;
}

const fromRow = (r: PrivacyRow): PrivacySettings => ({
  lastSeen: r.last_seen as Visibility,
  profilePhoto: r.profile_photo as Visibility,
  about: r.about as Visibility,
  status: r.status as Visibility,
  readReceipts: r.read_receipts,
  groupAdd: r.group_add as Visibility,
});

export async function getPrivacy(db: Db, userId: string): Promise<PrivacySettings> {
  return (await getPrivacyMany(db, [userId])).get(userId)!;
}

/** Settings per user; users without a row get the defaults. */
export async function getPrivacyMany(db: Db, userIds: readonly string[]): Promise<Map<string, PrivacySettings>> {
  const out = new Map<string, PrivacySettings>(userIds.map((id) => [id, { ...DEFAULT_PRIVACY }]));
  if (userIds.length === 0) return out;
  const rows = await db
    .selectFrom("privacy_settings")
    .select(["user_id", "last_seen", "profile_photo", "about", "status", "read_receipts", "group_add"])
    .where("user_id", "in", [...new Set(userIds)])
    .execute();
  for (const r of rows) out.set(r.user_id, fromRow(r));
  return out;
}

export async function updatePrivacy(db: Db, userId: string, patch: Partial<PrivacySettings>, now: Date): Promise<PrivacySettings> {
  const cols = {
    ...(patch.lastSeen ? { last_seen: patch.lastSeen } : {}),
    ...(patch.profilePhoto ? { profile_photo: patch.profilePhoto } : {}),
    ...(patch.about ? { about: patch.about } : {}),
    ...(patch.status ? { status: patch.status } : {}),
    ...(patch.readReceipts !== undefined ? { read_receipts: patch.readReceipts } : {}),
    ...(patch.groupAdd ? { group_add: patch.groupAdd } : {}),
  };
  const row = await db
    .insertInto("privacy_settings")
    .values({ user_id: userId, ...cols, updated_at: now })
    .onConflict((oc) => oc.column("user_id").doUpdateSet({ ...cols, updated_at: now }))
    .returning(["user_id", "last_seen", "profile_photo", "about", "status", "read_receipts", "group_add"])
    .executeTakeFirstOrThrow();
  return fromRow(row);
}

// ---- blocks ----------------------------------------------------------------------

/** Blocks (idempotent); returns when the block started. */
export async function block(db: Db, blockerId: string, blockedId: string, now: Date): Promise<Date> {
  await db
    .insertInto("blocked_users")
    .values({ blocker_id: blockerId, blocked_id: blockedId, created_at: now })
    .onConflict((oc) => oc.columns(["blocker_id", "blocked_id"]).doNothing())
    .execute();
  const row = await db
    .selectFrom("blocked_users")
    .select("created_at")
    .where("blocker_id", "=", blockerId)
    .where("blocked_id", "=", blockedId)
    .executeTakeFirstOrThrow();
  return row.created_at;
}

export async function unblock(db: Db, blockerId: string, blockedId: string): Promise<boolean> {
  const res = await db.deleteFrom("blocked_users").where("blocker_id", "=", blockerId).where("blocked_id", "=", blockedId).executeTakeFirst();
  return Number(res.numDeletedRows) > 0;
}

export function listBlocked(db: Db, blockerId: string): Promise<Array<{ blocked_id: string; created_at: Date }>> {
  return db
    .selectFrom("blocked_users")
    .select(["blocked_id", "created_at"])
    .where("blocker_id", "=", blockerId)
    .orderBy("created_at", "desc")
    .orderBy("blocked_id")
    .execute();
}

/** Of `others`, those `userId` has blocked. */
export async function blockedBy(db: Db, userId: string, others: readonly string[]): Promise<Set<string>> {
  if (others.length === 0) return new Set();
  const rows = await db
    .selectFrom("blocked_users")
    .select("blocked_id")
    .where("blocker_id", "=", userId)
    .where("blocked_id", "in", [...others])
    .execute();
  return new Set(rows.map((r) => r.blocked_id));
}

/** Of `others`, those who have blocked `userId`. */
export async function blockersOf(db: Db, userId: string, others: readonly string[]): Promise<Set<string>> {
  if (others.length === 0) return new Set();
  const rows = await db
    .selectFrom("blocked_users")
    .select("blocker_id")
    .where("blocked_id", "=", userId)
    .where("blocker_id", "in", [...others])
    .execute();
  return new Set(rows.map((r) => r.blocker_id));
}

/** Of `others`, those with a block either way with `userId`. */
export async function blockedEitherWay(db: Db, userId: string, others: readonly string[]): Promise<Set<string>> {
  const [a, b] = await Promise.all([blockedBy(db, userId, others), blockersOf(db, userId, others)]);
  return new Set([...a, ...b]);
}

// ---- contacts as relations ---------------------------------------------------------

/** Of `candidates`, those in `ownerId`'s contacts. */
export async function contactsAmong(db: Db, ownerId: string, candidates: readonly string[]): Promise<Set<string>> {
  if (candidates.length === 0) return new Set();
  const rows = await db
    .selectFrom("contacts")
    .select("contact_user_id")
    .where("user_id", "=", ownerId)
    .where("contact_user_id", "in", [...candidates])
    .execute();
  return new Set(rows.map((r) => r.contact_user_id));
}

/** The users in `ownerId`'s contacts. */
export async function contactsOf(db: Db, ownerId: string): Promise<string[]> {
  const rows = await db.selectFrom("contacts").select("contact_user_id").where("user_id", "=", ownerId).execute();
  return rows.map((r) => r.contact_user_id);
}

/** Of `owners`, those who have `userId` in their contacts. */
export async function ownersHavingContact(db: Db, userId: string, owners: readonly string[]): Promise<Set<string>> {
  if (owners.length === 0) return new Set();
  const rows = await db
    .selectFrom("contacts")
    .select("user_id")
    .where("contact_user_id", "=", userId)
    .where("user_id", "in", [...owners])
    .execute();
  return new Set(rows.map((r) => r.user_id));
}

/** The users who have `userId` in their contacts. */
export async function usersWithContact(db: Db, userId: string): Promise<string[]> {
  const rows = await db.selectFrom("contacts").select("user_id").where("contact_user_id", "=", userId).orderBy("user_id").execute();
  return rows.map((r) => r.user_id);
}

/** How `viewerId` stands to each subject (for privacy decisions about the subjects). */
export async function relationsTo(db: Db, viewerId: string, subjectIds: readonly string[]): Promise<Map<string, Relation>> {
  const subjects = [...new Set(subjectIds)];
  const [theyHaveMe, blocked] = await Promise.all([ownersHavingContact(db, viewerId, subjects), blockedEitherWay(db, viewerId, subjects)]);
  return new Map(subjects.map((id) => [id, { self: id === viewerId, viewerIsContact: theyHaveMe.has(id), blocked: blocked.has(id) }]));
}

/**
 * Of `viewerIds`, those allowed to see `subjectId`'s presence and last seen:
 * the subject's last-seen setting (everyone / contacts = in the subject's
 * contacts / nobody), and no block either way. The subject always sees
 * their own.
 */
export async function filterPresenceViewers(db: Db, subjectId: string, viewerIds: readonly string[]): Promise<Set<string>> {
  const viewers = [...new Set(viewerIds)];
  if (viewers.length === 0) return new Set();
  const [settings, contacts, blocked] = await Promise.all([
    getPrivacy(db, subjectId),
    contactsAmong(db, subjectId, viewers),
    blockedEitherWay(db, subjectId, viewers),
  ]);
  return new Set(viewers.filter((v) => allows(settings.lastSeen, { self: v === subjectId, viewerIsContact: contacts.has(v), blocked: blocked.has(v) })));
}

/** A row of chatwire_presence_audience (server/db/sql/): a candidate viewer and what the last-seen rule decides on. */
export interface AudienceRow {
  viewer: string;
  is_contact: boolean;
  blocked: boolean;
  last_seen: string | null;
}

/**
 * Who hears `subjectId`'s presence changes, in one round trip: the users with
 * a direct conversation with them (group members are not peers for presence)
 * or who have them as a contact, as far as the subject's last-seen setting and
 * blocks (either way) allow. The same people, by the same rule (allows), as
 * filterPresenceViewers over directPeers ∪ usersWithContact.
 */
export async function presenceAudience(db: Db, subjectId: string): Promise<string[]> {
  const { rows } = await sql<AudienceRow>`select viewer, is_contact, blocked, last_seen from chatwire_presence_audience(${subjectId})`.execute(db);
  return allowedAudience(subjectId, rows);
}

/** The viewers among chatwire_presence_audience rows that the subject's last-seen setting and blocks allow. */
export function allowedAudience(subjectId: string, rows: readonly AudienceRow[]): string[] {
  return rows
    .filter((r) =>
      allows((r.last_seen ?? DEFAULT_PRIVACY.lastSeen) as Visibility, { self: r.viewer === subjectId, viewerIsContact: r.is_contact, blocked: r.blocked }),
    )
    .map((r) => r.viewer);
}

/**
 * Of `userIds`, the first whose group-add setting refuses `adderId` (who is
 * then not in their contacts, or they let nobody add them), if any.
 */
export async function firstRefusingGroupAdd(db: Db, adderId: string, userIds: readonly string[]): Promise<string | undefined> {
  return (await refusingGroupAdd(db, adderId, userIds))[0];
}

/** Every user among `userIds` whose group_add setting does not let `adderId` add them, in the given order. */
export async function refusingGroupAdd(db: Db, adderId: string, userIds: readonly string[]): Promise<string[]> {
  const others = userIds.filter((id) => id !== adderId);
  if (others.length === 0) return [];
  const settings = await getPrivacyMany(db, others);
  const needContact = others.filter((id) => settings.get(id)!.groupAdd === "contacts");
  const haveMe = await ownersHavingContact(db, adderId, needContact);
  return others.filter((id) => !allowsGroupAdd(settings.get(id)!.groupAdd, haveMe.has(id)));
}

/** Whether each user has read receipts on (the default). */
export async function readReceiptsEnabled(db: Db, userIds: readonly string[]): Promise<Map<string, boolean>> {
  const settings = await getPrivacyMany(db, userIds);
  return new Map([...settings].map(([id, s]) => [id, s.readReceipts]));
}

/**
 * Per conversation, whether its participants see each other's read state
 * (readStateShared), in one round trip: only direct conversations need their
 * two participants' settings.
 */
export async function readStateSharedIn(db: Db, conversationIds: readonly string[]): Promise<Map<string, boolean>> {
  const ids = [...new Set(conversationIds)];
  const out = new Map<string, boolean>(ids.map((id) => [id, true]));
  if (ids.length === 0) return out;
  const rows = await db
    .selectFrom("conversations as c")
    .innerJoin("conversation_participants as p", "p.conversation_id", "c.id")
    .leftJoin("privacy_settings as ps", "ps.user_id", "p.user_id")
    .select(["c.id", "c.is_group", "ps.read_receipts"])
    .where("c.id", "in", ids)
    .where("c.is_group", "=", false)
    .execute();
  const settings = new Map<string, boolean[]>();
  for (const r of rows) settings.set(r.id, [...(settings.get(r.id) ?? []), r.read_receipts ?? DEFAULT_PRIVACY.readReceipts]);
  for (const [id, on] of settings) out.set(id, readStateShared(false, on));
  return out;
}

/** Blocks between a user and the other participant of a direct conversation (otherId null for a group). */
export interface DirectBlockState {
  otherId: string | null;
  /** The user has blocked the other participant. */
  iBlocked: boolean;
  /** The other participant has blocked the user. */
  blockedMe: boolean;
}

/** The blocks either way in a direct conversation, for `userId`, in one round trip (SendMessage reads the same in its preflight). */
export async function directBlockState(db: Db, conversationId: string, userId: string): Promise<DirectBlockState> {
  const { rows } = await sql<{ other_id: string; i_blocked: boolean; blocked_me: boolean }>`
    select o.user_id as other_id,
      exists (select 1 from blocked_users b where b.blocker_id = ${userId}::uuid and b.blocked_id = o.user_id) as i_blocked,
      exists (select 1 from blocked_users b where b.blocker_id = o.user_id and b.blocked_id = ${userId}::uuid) as blocked_me
    from conversations c
    join conversation_participants o on o.conversation_id = c.id and o.user_id <> ${userId}::uuid
    where c.id = ${conversationId}::uuid and not c.is_group
    limit 1`.execute(db);
  const r = rows[0];
  return r ? { otherId: r.other_id, iBlocked: r.i_blocked, blockedMe: r.blocked_me } : { otherId: null, iBlocked: false, blockedMe: false };
}
