import type { Generated, Insertable, Selectable, Updateable } from 'kysely';

// Mirrors migrations/0001_initial.ts. Columns with a database default are
// Generated<> so inserts may omit them; timestamptz columns are JS Dates on
// both backends (see database.ts).

export interface UsersTable {
  id: Generated<string>;
  /** E.164, e.g. +14155550123. */
  phone_number: string;
  display_name: Generated<string>;
  profile_picture_url: Generated<string>;
  about_text: Generated<string>;
  last_seen_at: Date | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

/** One row is one session of one device; `id` is the session id carried in JWTs. */
export interface UserDevicesTable {
  id: Generated<string>;
  user_id: string;
  /** Client-chosen device id. */
  device_id: Generated<string>;
  device_name: Generated<string>;
  device_type: Generated<string>;
  push_notification_token: Generated<string>;
  /** SHA-256 hex of the current refresh token. */
  refresh_token_hash: string | null;
  refresh_expires_at: Date | null;
  created_at: Generated<Date>;
  last_login_at: Generated<Date>;
  last_active_at: Generated<Date>;
  revoked_at: Date | null;
  /** jti and iat of the current refresh token (0002). */
  refresh_token_jti: string | null;
  refresh_issued_at: Date | null;
  /** Hash of the token the last rotation replaced, and when: retry grace and reuse detection. */
  previous_refresh_token_hash: string | null;
  refresh_rotated_at: Date | null;
  /** Why the session ended: logout, logout_all, revoked, refresh_token_reuse. */
  revoked_reason: string | null;
}

/** The pending one-time code of a phone number (the code itself lives at Twilio, or is the dev code). */
export interface OtpCodesTable {
  phone_number: string;
  attempts: Generated<number>;
  max_attempts: number;
  expires_at: Date;
  created_at: Generated<Date>;
}

/** Fixed-window counters for abuse limits, shared by every instance. */
export interface RateLimitsTable {
  key: string;
  window_started_at: Date;
  window_seconds: number;
  count: number;
}

export interface Database {
  users: UsersTable;
  user_devices: UserDevicesTable;
  otp_codes: OtpCodesTable;
  rate_limits: RateLimitsTable;
}

export type User = Selectable<UsersTable>;
export type NewUser = Insertable<UsersTable>;
export type UserUpdate = Updateable<UsersTable>;

export type UserDevice = Selectable<UserDevicesTable>;
export type NewUserDevice = Insertable<UserDevicesTable>;
export type UserDeviceUpdate = Updateable<UserDevicesTable>;
