import type { ColumnType, Generated, Selectable } from "kysely";
import type { GroupInviteTables } from "./group-invite-schema.js";
import type { MediaTables } from "./media-schema.js";
import type { ScheduledTables } from "./scheduled-schema.js";

// Mirrors migrations/0001_initial.ts .. 0003_chat.ts. Columns with a database
// default are Generated<> so inserts may omit them; timestamptz columns are JS
// Dates on both backends (see database.ts).
//
// bigint (int8) columns read back as decimal strings on both backends
// (lossless above 2^53); writes accept a string or a number.
// jsonb columns read back parsed (both drivers parse jsonb), but are WRITTEN as
// JSON text (JSON.stringify): pg would send a JS array as a Postgres array
// literal, which is not valid jsonb.

/** int8 NOT NULL without a default. */
type Int8 = ColumnType<string, string | number, string | number>;
/** int8 NOT NULL with a default. */
type GeneratedInt8 = ColumnType<string, string | number | undefined, string | number>;
/** A jsonb column with a default, read as T, written as JSON text. */
type JsonbWithDefault<T> = ColumnType<T, string | undefined, string>;

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
  /** 0022: set when the account was deleted (the row stays as a tombstone). */
  deleted_at: Date | null;
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
interface OtpCodesTable {
  phone_number: string;
  attempts: Generated<number>;
  max_attempts: number;
  expires_at: Date;
  created_at: Generated<Date>;
  /** The session a successful VerifyOTP opened with this code (0011); null while unused. */
  session_id: string | null;
  /** HMAC of number, code and device id, for a repeat of that VerifyOTP. */
  replay_mac: string | null;
  new_user: Generated<boolean>;
  /** client_request_id of the SendOTP that issued the code. */
  send_request_id: string | null;
}

/** What a mutating RPC answered to one request key of one caller, kept 24 h (0011). */
interface RequestAnswersTable {
  /** A user id, or a phone number before there is a user. */
  owner: string;
  rpc: string;
  request_key: string;
  /** The answer's protobuf binary encoding. */
  answer: Uint8Array;
  created_at: Date;
}

/** Fixed-window counters for abuse limits, shared by every instance. */
interface RateLimitsTable {
  key: string;
  window_started_at: Date;
  window_seconds: number;
  count: number;
}

// ---- 0003_chat -----------------------------------------------------------------

interface ConversationsTable {
  id: Generated<string>;
  is_group: boolean;
  group_name: Generated<string>;
  group_description: Generated<string>;
  group_avatar_url: Generated<string>;
  /** "<smaller user id>:<larger user id>" for direct conversations; null for groups. */
  direct_key: string | null;
  created_by: string | null;
  client_request_id: string | null;
  /** Seq of the newest message; the next one gets last_seq + 1 under this row's lock. */
  last_seq: GeneratedInt8;
  created_at: Generated<Date>;
  last_activity_at: Generated<Date>;
  /** 0019: 'all' or 'admins' (group-policies.ts). */
  send_policy: Generated<string>;
  edit_info_policy: Generated<string>;
  add_policy: Generated<string>;
  approve_new_members: Generated<boolean>;
  /** Disappearing-messages timer (0021): 0 (off) or seconds added to a new message's created_at. */
  disappearing_seconds: Generated<number>;
}

interface ConversationParticipantsTable {
  conversation_id: string;
  user_id: string;
  /** owner, admin or member. */
  role: Generated<string>;
  joined_at: Generated<Date>;
  /** History is visible after joined_seq (exclusive) up to left_seq (inclusive) once left. */
  joined_seq: GeneratedInt8;
  /** Null while a current participant. */
  left_at: Date | null;
  left_seq: ColumnType<string | null, string | number | null | undefined, string | number | null>;
  last_delivered_seq: GeneratedInt8;
  last_read_seq: GeneratedInt8;
  muted_until: Date | null;
  archived: Generated<boolean>;
  /** Once left: the group as it was then (FormerView, server/domain/conversation-view.ts); null while current. */
  left_view: ColumnType<unknown, string | null | undefined, string | null>;
  /** 0020: pinned in this participant's chat list (PinConversation); null when not. */
  pinned_at: Date | null;
}

/** One row per watermark advance: kind is 'delivered' or 'read'. */
interface ReceiptMarksTable {
  conversation_id: string;
  user_id: string;
  kind: string;
  up_to_seq: Int8;
  at: Date;
}

interface MessagesTable {
  /** Deterministic from (sender_id, client_message_id) for user messages: messageIdFor(). */
  id: string;
  conversation_id: string;
  /** Gapless per conversation, from 1. */
  seq: Int8;
  /** 'user' or 'system'. */
  kind: Generated<string>;
  /** Null for system messages and once the sender's account is deleted. */
  sender_id: string | null;
  client_message_id: string | null;
  content: Generated<string>;
  media_url: Generated<string>;
  media_type: Generated<string>;
  reply_to_message_id: string | null;
  /** User ids (uuid strings). */
  mention_user_ids: JsonbWithDefault<string[]>;
  system_event: Generated<string>;
  system_user_ids: JsonbWithDefault<string[]>;
  created_at: Generated<Date>;
  edited_at: Date | null;
  deleted_at: Date | null;
  /** Disappearing messages (0021): unreadable from then on, purged by the job (which sets deleted_at). */
  expires_at: Generated<Date | null>;
  /** 0020: how many forwards led to this copy (0 for an original). */
  forward_count: Generated<number>;
  /** 0020: pinned in its conversation (PinMessage), and by whom. */
  pinned_at: Date | null;
  pinned_by: string | null;
}

interface MessageReactionsTable {
  message_id: string;
  user_id: string;
  emoji: string;
  created_at: Generated<Date>;
}

interface HiddenMessagesTable {
  user_id: string;
  message_id: string;
  hidden_at: Generated<Date>;
}

/** The per-user counter inbox positions are drawn from (under this row's lock). */
interface InboxPositionsTable {
  user_id: string;
  last_position: GeneratedInt8;
  /** Events at or below this position were pruned: a resume from before it must resync. */
  pruned_through: GeneratedInt8;
}

/** One open Subscribe stream (presence across instances). */
interface PresenceStreamsTable {
  stream_id: string;
  serial: GeneratedInt8;
  user_id: string;
  session_id: string;
  instance_id: string;
  opened_at: Date;
  /** Renewed by the stream's instance; a row past it belongs to a dead instance. */
  expires_at: Date;
}

/** Per-user ordered events that a device's Subscribe(since) replays. */
interface InboxTable {
  user_id: string;
  /** 1, 2, 3 ... per user, no gaps. */
  position: Int8;
  /** e.g. 'message_created'. */
  event_type: string;
  conversation_id: string | null;
  message_id: string | null;
  /** Event details, e.g. { seq, sender_id } for message_created. */
  payload: JsonbWithDefault<Record<string, unknown>>;
  created_at: Generated<Date>;
}

/** Queue messages that can never be stored, kept for inspection. */
interface DeadLettersTable {
  id: Generated<string>;
  subject: string;
  /** The message body as received (UTF-8 text). */
  payload: string;
  error: string;
  created_at: Generated<Date>;
}

// ---- 0005_users_status ---------------------------------------------------------

/** A registered user in another user's address book. */
interface ContactsTable {
  user_id: string;
  contact_user_id: string;
  /** E.164. */
  contact_phone_number: string;
  display_name_override: Generated<string>;
  created_at: Generated<Date>;
}

interface BlockedUsersTable {
  blocker_id: string;
  blocked_id: string;
  created_at: Generated<Date>;
}

/** 'everyone' | 'contacts' | 'nobody' per setting; no row means the defaults. */
interface PrivacySettingsTable {
  user_id: string;
  last_seen: Generated<string>;
  profile_photo: Generated<string>;
  about: Generated<string>;
  status: Generated<string>;
  read_receipts: Generated<boolean>;
  updated_at: Generated<Date>;
  /** 0010: who may add the user to groups. */
  group_add: Generated<string>;
}

interface StatusUpdatesTable {
  id: Generated<string>;
  user_id: string;
  /** 'text' | 'image' | 'video'. */
  content_type: string;
  content: Generated<string>;
  media_url: Generated<string>;
  caption: Generated<string>;
  background_color: Generated<string>;
  /** status.StatusFont number. */
  font: Generated<number>;
  /** 'contacts' | 'except' | 'only'. */
  audience: Generated<string>;
  created_at: Date;
  expires_at: Date;
}

interface StatusAudienceTable {
  status_id: string;
  user_id: string;
}

interface StatusViewsTable {
  status_id: string;
  viewer_id: string;
  viewed_at: Date;
}

interface StatusRepliesTable {
  message_id: string;
  status_id: string;
  status_author_id: string;
  replier_id: string;
  conversation_id: string;
  status_content_type: string;
  status_content: string;
  created_at: Date;
}

export interface Database extends MediaTables, ScheduledTables, GroupInviteTables {
  users: UsersTable;
  user_devices: UserDevicesTable;
  otp_codes: OtpCodesTable;
  rate_limits: RateLimitsTable;
  request_answers: RequestAnswersTable;
  conversations: ConversationsTable;
  conversation_participants: ConversationParticipantsTable;
  receipt_marks: ReceiptMarksTable;
  messages: MessagesTable;
  message_reactions: MessageReactionsTable;
  hidden_messages: HiddenMessagesTable;
  inbox_positions: InboxPositionsTable;
  inbox: InboxTable;
  presence_streams: PresenceStreamsTable;
  dead_letters: DeadLettersTable;
  contacts: ContactsTable;
  blocked_users: BlockedUsersTable;
  privacy_settings: PrivacySettingsTable;
  status_updates: StatusUpdatesTable;
  status_audience: StatusAudienceTable;
  status_views: StatusViewsTable;
  status_replies: StatusRepliesTable;
  rate_limit_points: RateLimitPointsTable;
  push_tokens: PushTokensTable;
  push_settings: PushSettingsTable;
  starred_messages: StarredMessagesTable;
}

// ---- 0020_forwards_mentions_pins_stars ---------------------------------------------

/** A message a user starred for themselves. */
interface StarredMessagesTable {
  user_id: string;
  message_id: string;
  conversation_id: string;
  starred_at: Date;
}

// ---- 0010_limits_group_privacy ---------------------------------------------------

/** rate-limiter-flexible's RateLimiterPostgres rows: per-user call limits with long windows. */
interface RateLimitPointsTable {
  /** `<limit>_<window seconds>:<user id>`. */
  key: string;
  points: Generated<number>;
  /** End of the window, epoch milliseconds (bigint: a string). */
  expire: string | null;
}

// ---- 0017_push ----------------------------------------------------------------------

/** Where a session's device is woken (at most one per session; dies with it). */
interface PushTokensTable {
  session_id: string;
  user_id: string;
  /** 'fcm' | 'apns' | 'web_push'. */
  platform: string;
  /** The FCM or APNs token, or the Web Push endpoint. */
  token: string;
  apns_sandbox: Generated<boolean>;
  /** Web Push keys (base64url); empty otherwise. */
  p256dh: Generated<string>;
  auth: Generated<string>;
  updated_at: Date;
}

interface PushSettingsTable {
  user_id: string;
  show_previews: Generated<boolean>;
  updated_at: Date;
}

export type User = Selectable<UsersTable>;
export type PushTokenRow = Selectable<PushTokensTable>;
export type UserDevice = Selectable<UserDevicesTable>;
