import type { Migration } from "kysely";
import * as m0001 from "./0001_initial.js";
import * as m0002 from "./0002_auth.js";
import * as m0003 from "./0003_chat.js";
import * as m0004 from "./0004_realtime.js";
import * as m0005 from "./0005_users_status.js";
import * as m0006 from "./0006_store_messages.js";
import * as m0007 from "./0007_send_preflight.js";
import * as m0008 from "./0008_inbox_cascade_triggers.js";
import * as m0009 from "./0009_presence_functions.js";
import * as m0010 from "./0010_limits_group_privacy.js";
import * as m0011 from "./0011_idempotency.js";
import * as m0012 from "./0012_former_participant_view.js";
import * as m0013 from "./0013_sql_functions.js";
import * as m0014 from "./0014_message_path_cost.js";
import * as m0015 from "./0015_mark_receipts.js";
import * as m0017 from "./0017_push.js";
import * as m0018 from "./0018_media.js";
import * as m0019 from "./0019_group_policies_invites.js";
import * as m0020 from "./0020_forwards_mentions_pins_stars.js";
import * as m0021 from "./0021_search_disappearing.js";
import * as m0022 from "./0022_scheduled_account.js";
import * as m0023 from "./0023_generic_plans.js";
import * as m0024 from "./0024_replay_inbox.js";
import * as m0025 from "./0025_store_push_flag.js";
import * as m0026 from "./0026_mark_receipts_cost.js";
import * as m0027 from "./0027_timer_at_send.js";

// Static imports instead of FileMigrationProvider so the same code runs under
// vitest (.ts) and from dist/ (.js). Keys sort lexically = apply order.
export const migrations: Record<string, Migration> = {
  "0001_initial": m0001,
  "0002_auth": m0002,
  "0003_chat": m0003,
  "0004_realtime": m0004,
  "0005_users_status": m0005,
  "0006_store_messages": m0006,
  "0007_send_preflight": m0007,
  "0008_inbox_cascade_triggers": m0008,
  "0009_presence_functions": m0009,
  "0010_limits_group_privacy": m0010,
  "0011_idempotency": m0011,
  "0012_former_participant_view": m0012,
  "0013_sql_functions": m0013,
  "0014_message_path_cost": m0014,
  "0015_mark_receipts": m0015,
  "0017_push": m0017,
  "0018_media": m0018,
  "0019_group_policies_invites": m0019,
  "0020_forwards_mentions_pins_stars": m0020,
  "0021_search_disappearing": m0021,
  "0022_scheduled_account": m0022,
  "0023_generic_plans": m0023,
  "0024_replay_inbox": m0024,
  "0025_store_push_flag": m0025,
  "0026_mark_receipts_cost": m0026,
  "0027_timer_at_send": m0027,
};
