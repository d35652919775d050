import { sql, type Kysely, type Transaction } from "kysely";
import type { Database, User, UserDevice } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

// ---- users -----------------------------------------------------------------

/** The user with this E.164 number, created if new; concurrent first logins create one. */
export async function findOrCreateUser(db: Db, phoneNumber: string): Promise<{ user: User; created: boolean }> {
  const inserted = await db
    .insertInto("users")
    .values({ phone_number: phoneNumber })
    .onConflict((oc) => oc.column("phone_number").doNothing())
    .returningAll()
    .executeTakeFirst();
  if (inserted) return { user: inserted, created: true };
  const user = await db.selectFrom("users").selectAll().where("phone_number", "=", phoneNumber).executeTakeFirstOrThrow();
  return { user, created: false };
}

export function getUser(db: Db, id: string): Promise<User | undefined> {
  return db.selectFrom("users").selectAll().where("id", "=", id).executeTakeFirst();
}

// ---- sessions (user_devices) ---------------------------------------------------

export interface NewSession {
  userId: string;
  deviceId: string;
  deviceName: string;
  deviceType: string;
  pushToken: string;
  now: Date;
}

export function createSession(db: Db, s: NewSession): Promise<UserDevice> {
  return db
    .insertInto("user_devices")
    .values({
      user_id: s.userId,
      device_id: s.deviceId,
      device_name: s.deviceName,
      device_type: s.deviceType,
      push_notification_token: s.pushToken,
      created_at: s.now,
      last_login_at: s.now,
      last_active_at: s.now,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export interface RefreshState {
  hash: string;
  jti: string;
  issuedAt: Date;
  expiresAt: Date;
}

/** Stores the session's first refresh token (right after createSession). */
export async function setRefreshToken(db: Db, sessionId: string, r: RefreshState): Promise<void> {
  await db
    .updateTable("user_devices")
    .set({ refresh_token_hash: r.hash, refresh_token_jti: r.jti, refresh_issued_at: r.issuedAt, refresh_expires_at: r.expiresAt })
    .where("id", "=", sessionId)
    .execute();
}

/**
 * Rotates atomically: succeeds only if `presentedHash` is still the current
 * token of a live session, so of concurrent refreshes exactly one wins.
 */
export function rotateRefreshToken(db: Db, sessionId: string, presentedHash: string, next: RefreshState, now: Date): Promise<UserDevice | undefined> {
  return db
    .updateTable("user_devices")
    .set({
      previous_refresh_token_hash: presentedHash,
      refresh_rotated_at: now,
      refresh_token_hash: next.hash,
      refresh_token_jti: next.jti,
      refresh_issued_at: next.issuedAt,
      refresh_expires_at: next.expiresAt,
      last_active_at: now,
    })
    .where("id", "=", sessionId)
    .where("refresh_token_hash", "=", presentedHash)
    .where("revoked_at", "is", null)
    .returningAll()
    .executeTakeFirst();
}

export function getSession(db: Db, sessionId: string): Promise<UserDevice | undefined> {
  return db.selectFrom("user_devices").selectAll().where("id", "=", sessionId).executeTakeFirst();
}

/** What a liveness check needs of several sessions, in one query (missing ids are absent). */
export function getSessionStates(
  db: Db,
  sessionIds: readonly string[],
): Promise<Array<Pick<UserDevice, "id" | "user_id" | "revoked_at" | "refresh_expires_at">>> {
  return db.selectFrom("user_devices").select(["id", "user_id", "revoked_at", "refresh_expires_at"]).where("id", "in", sessionIds).execute();
}

/** Revokes one session (of `userId` when given); returns whether it was live. */
export async function revokeSession(db: Db, sessionId: string, reason: string, now: Date, userId?: string): Promise<boolean> {
  let q = db
    .updateTable("user_devices")
    .set({ revoked_at: now, revoked_reason: reason, refresh_token_hash: null })
    .where("id", "=", sessionId)
    .where("revoked_at", "is", null);
  if (userId !== undefined) q = q.where("user_id", "=", userId);
  const res = await q.executeTakeFirst();
  return res.numUpdatedRows > 0n;
}

/** Revokes every live session of a user; returns their ids. */
export async function revokeUserSessions(db: Db, userId: string, reason: string, now: Date): Promise<string[]> {
  const rows = await db
    .updateTable("user_devices")
    .set({ revoked_at: now, revoked_reason: reason, refresh_token_hash: null })
    .where("user_id", "=", userId)
    .where("revoked_at", "is", null)
    .returning("id")
    .execute();
  return rows.map((r) => r.id);
}

export function listLiveSessions(db: Db, userId: string, now: Date): Promise<UserDevice[]> {
  return db
    .selectFrom("user_devices")
    .selectAll()
    .where("user_id", "=", userId)
    .where("revoked_at", "is", null)
    .where("refresh_expires_at", ">", now)
    .orderBy("last_active_at", "desc")
    .orderBy("id")
    .execute();
}

// ---- one-time codes --------------------------------------------------------------

/** A new code for the number replaces any pending (or used) one: attempts start over. */
export async function issueOtp(
  db: Db,
  phoneNumber: string,
  expiresAt: Date,
  maxAttempts: number,
  now: Date,
  sendRequestId: string | null = null,
): Promise<void> {
  const fresh = {
    attempts: 0,
    max_attempts: maxAttempts,
    expires_at: expiresAt,
    created_at: now,
    session_id: null,
    replay_mac: null,
    new_user: false,
    send_request_id: sendRequestId,
  };
  await db
    .insertInto("otp_codes")
    .values({ phone_number: phoneNumber, ...fresh })
    .onConflict((oc) => oc.column("phone_number").doUpdateSet(fresh))
    .execute();
}

/** What a successful VerifyOTP leaves of its code, for a repeat of that call. */
export interface UsedOtp {
  sessionId: string;
  /** HMAC of number, code and device id (TokenService.mac). */
  replayMac: string;
  newUser: boolean;
  /** The end of the window for a repeat. */
  expiresAt: Date;
  /** Attempts the window allows (counted as before). */
  maxAttempts: number;
}

/** The number's code row, locked until the transaction ends (a concurrent VerifyOTP waits). */
export function lockOtp(trx: Transaction<Database>, phoneNumber: string) {
  return trx.selectFrom("otp_codes").selectAll().where("phone_number", "=", phoneNumber).forUpdate().executeTakeFirst();
}

/** Marks the code used by a session: from now on only a repeat of that VerifyOTP is accepted. */
export async function markOtpUsed(db: Db, phoneNumber: string, u: UsedOtp): Promise<void> {
  await db
    .updateTable("otp_codes")
    .set({ session_id: u.sessionId, replay_mac: u.replayMac, new_user: u.newUser, expires_at: u.expiresAt, attempts: 0, max_attempts: u.maxAttempts })
    .where("phone_number", "=", phoneNumber)
    .execute();
}

/**
 * Counts one verification attempt with a single conditional update: only a
 * live code with attempts left is counted, so N parallel guesses are at most
 * max_attempts checks. Undefined: no live code, or none left.
 */
export function claimOtpAttempt(
  db: Db,
  phoneNumber: string,
  now: Date,
): Promise<{ attempts: number; max_attempts: number; session_id: string | null; replay_mac: string | null; new_user: boolean } | undefined> {
  return db
    .updateTable("otp_codes")
    .set((eb) => ({ attempts: eb("attempts", "+", 1) }))
    .where("phone_number", "=", phoneNumber)
    .where("expires_at", ">", now)
    .where((eb) => eb("attempts", "<", eb.ref("max_attempts")))
    .returning(["attempts", "max_attempts", "session_id", "replay_mac", "new_user"])
    .executeTakeFirst();
}

export function getOtp(db: Db, phoneNumber: string) {
  return db.selectFrom("otp_codes").selectAll().where("phone_number", "=", phoneNumber).executeTakeFirst();
}

// ---- abuse limits ------------------------------------------------------------------

/**
 * Counts one hit on a fixed-window counter shared by every instance, in one
 * statement (exact under concurrency). Returns the count in the current
 * window and when that window ends.
 */
export async function hitRateLimit(db: Db, key: string, windowSeconds: number, now: Date): Promise<{ count: number; windowEndsAt: Date }> {
  const expired = sql<boolean>`rate_limits.window_started_at <= ${now}::timestamptz - make_interval(secs => rate_limits.window_seconds)`;
  const row = await db
    .insertInto("rate_limits")
    .values({ key, window_started_at: now, window_seconds: windowSeconds, count: 1 })
    .onConflict((oc) =>
      oc.column("key").doUpdateSet({
        count: sql<number>`case when ${expired} then 1 else rate_limits.count + 1 end`,
        window_started_at: sql<Date>`case when ${expired} then ${now}::timestamptz else rate_limits.window_started_at end`,
        window_seconds: windowSeconds,
      }),
    )
    .returning(["count", "window_started_at"])
    .executeTakeFirstOrThrow();
  return { count: row.count, windowEndsAt: new Date(row.window_started_at.getTime() + windowSeconds * 1000) };
}

/** Takes back a hit that did not lead to work (a refusal by a later limit). */
export async function unhitRateLimit(db: Db, key: string): Promise<void> {
  await db
    .updateTable("rate_limits")
    .set((eb) => ({ count: eb("count", "-", 1) }))
    .where("key", "=", key)
    .where("count", ">", 0)
    .execute();
}

export async function pruneAuthRows(db: Db, now: Date): Promise<void> {
  await db.deleteFrom("otp_codes").where("expires_at", "<", now).execute();
  await db.deleteFrom("rate_limits").where(sql<boolean>`window_started_at < ${now}::timestamptz - make_interval(secs => window_seconds)`).execute();
}
