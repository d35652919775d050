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
}

export interface Database {
  users: UsersTable;
  user_devices: UserDevicesTable;
}

export type User = Selectable<UsersTable>;
export type NewUser = Insertable<UsersTable>;
export type UserUpdate = Updateable<UsersTable>;

export type UserDevice = Selectable<UserDevicesTable>;
export type NewUserDevice = Insertable<UserDevicesTable>;
export type UserDeviceUpdate = Updateable<UserDevicesTable>;
