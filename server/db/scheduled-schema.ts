import type { ColumnType, Generated } from "kysely";

// ---- 0022_scheduled_account ---------------------------------------------------------

/** A message kept for later (ChatService.ScheduleMessage). */
interface ScheduledMessagesTable {
  id: Generated<string>;
  sender_id: string;
  conversation_id: string;
  content: Generated<string>;
  media_url: Generated<string>;
  media_type: Generated<string>;
  reply_to_message_id: string | null;
  /** jsonb: read as an array, written as JSON text. */
  mention_user_ids: ColumnType<string[], string | undefined, string>;
  send_at: Date;
  /** pending | sent | failed | cancelled. */
  state: Generated<string>;
  message_id: string | null;
  failure_reason: Generated<string>;
  /** A sending run's lease. */
  claimed_until: Date | null;
  client_request_id: string | null;
  created_at: Date;
  finished_at: Date | null;
}

export interface ScheduledTables {
  scheduled_messages: ScheduledMessagesTable;
}
