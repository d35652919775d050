import { sql, type Kysely, type Transaction } from "kysely";
import type { Database, User } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

// Profiles and contacts. Only registered users are kept as contacts: the
// numbers of people who are not on Chatwire are checked and forgotten.

export function getUsers(db: Db, ids: readonly string[]): Promise<User[]> {
  if (ids.length === 0) return Promise.resolve([]);
  return db
    .selectFrom("users")
    .selectAll()
    .where("id", "in", [...ids])
    .execute();
}

export async function updateProfile(
  db: Db,
  userId: string,
  fields: { display_name?: string; about_text?: string; profile_picture_url?: string },
  now: Date,
): Promise<User | undefined> {
  // updated_at moves only when a value does: a repeat (a retry) answers the same profile.
  const changed = [sql<boolean>`false`, ...Object.entries(fields).map(([col, value]) => sql<boolean>`${sql.ref(col)} is distinct from ${value}`)];
  const updatedAt = sql<Date>`case when ${sql.join(changed, sql` or `)} then ${now}::timestamptz else updated_at end`;
  return db
    .updateTable("users")
    .set({ ...fields, updated_at: updatedAt })
    .where("id", "=", userId)
    .returningAll()
    .executeTakeFirst();
}

/** Registered users by E.164 number. */
export async function usersByPhone(db: Db, phones: readonly string[]): Promise<User[]> {
  if (phones.length === 0) return [];
  return db
    .selectFrom("users")
    .selectAll()
    .where("phone_number", "in", [...phones])
    .execute();
}

/** Of `phones`, those already among the user's contacts. */
export async function knownContactPhones(db: Db, userId: string, phones: readonly string[]): Promise<Set<string>> {
  if (phones.length === 0) return new Set();
  const rows = await db
    .selectFrom("contacts")
    .select("contact_phone_number")
    .where("user_id", "=", userId)
    .where("contact_phone_number", "in", [...phones])
    .execute();
  return new Set(rows.map((r) => r.contact_phone_number));
}

export async function addContacts(db: Db, userId: string, contacts: ReadonlyArray<{ userId: string; phone: string }>, now: Date): Promise<void> {
  if (contacts.length === 0) return;
  await db
    .insertInto("contacts")
    .values(contacts.map((c) => ({ user_id: userId, contact_user_id: c.userId, contact_phone_number: c.phone, created_at: now })))
    .onConflict((oc) => oc.columns(["user_id", "contact_user_id"]).doUpdateSet({ contact_phone_number: (eb) => eb.ref("excluded.contact_phone_number") }))
    .execute();
}

export async function removeContactsByPhone(db: Db, userId: string, phones: readonly string[]): Promise<number> {
  if (phones.length === 0) return 0;
  const res = await db
    .deleteFrom("contacts")
    .where("user_id", "=", userId)
    .where("contact_phone_number", "in", [...phones])
    .executeTakeFirst();
  return Number(res.numDeletedRows);
}

export interface ContactRow {
  contact_user_id: string;
  contact_phone_number: string;
  created_at: Date;
}

export function contactsByUserIds(db: Db, userId: string, contactIds: readonly string[]): Promise<ContactRow[]> {
  if (contactIds.length === 0) return Promise.resolve([]);
  return db
    .selectFrom("contacts")
    .select(["contact_user_id", "contact_phone_number", "created_at"])
    .where("user_id", "=", userId)
    .where("contact_user_id", "in", [...contactIds])
    .orderBy("contact_phone_number")
    .execute();
}

/** One page of contacts by phone number, after `afterPhone` when given. */
export function listContacts(db: Db, userId: string, limit: number, afterPhone?: string): Promise<ContactRow[]> {
  let q = db.selectFrom("contacts").select(["contact_user_id", "contact_phone_number", "created_at"]).where("user_id", "=", userId);
  if (afterPhone !== undefined) q = q.where("contact_phone_number", ">", afterPhone);
  return q.orderBy("contact_phone_number").orderBy("contact_user_id").limit(limit).execute();
}

const budgetKey = (userId: string) => `contact_sync:${userId}`;

/**
 * Adds `n` numbers to the user's contact-sync counter (a fixed window in
 * rate_limits, shared by every instance) and returns the new count and when
 * the window ends. Run it in the transaction that stores the contacts, so a
 * refusal (the caller throws) takes the numbers back.
 */
export async function spendContactBudget(db: Db, userId: string, n: number, windowSeconds: number, now: Date): Promise<{ count: number; windowEndsAt: Date }> {
  const expired = sql<boolean>`rate_limits.window_started_at <= ${now}::timestamptz - make_interval(secs => rate_limits.window_seconds)`;
  const row = await db
    .insertInto("rate_limits")
    .values({ key: budgetKey(userId), window_started_at: now, window_seconds: windowSeconds, count: n })
    .onConflict((oc) =>
      oc.column("key").doUpdateSet({
        count: sql<number>`case when ${expired} then ${n}::int else rate_limits.count + ${n}::int end`,
        window_started_at: sql<Date>`case when ${expired} then ${now}::timestamptz else rate_limits.window_started_at end`,
        window_seconds: windowSeconds,
      }),
    )
    .returning(["count", "window_started_at"])
    .executeTakeFirstOrThrow();
  return { count: row.count, windowEndsAt: new Date(row.window_started_at.getTime() + windowSeconds * 1000) };
}
