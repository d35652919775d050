import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import { StatusReferenceSchema, type StatusReference } from "../../gen/chat/chat_pb.js";
import { EventSchema, MessageCreatedSchema, MessageEditedSchema, type Event } from "../../gen/realtime/realtime_pb.js";
import type { Clock } from "../clock.js";
import type { MessageRow } from "../db/history-store.js";
import { readReplayPage, type ReplayRow } from "../db/inbox-store.js";
import type { Database } from "../db/schema.js";
import { formerParticipants } from "../domain/conversation-view.js";
import { toMessage, type ReceiptPeer } from "../domain/message-view.js";
import { DEFAULT_PRIVACY, readStateShared } from "../domain/privacy.js";
import { MESSAGE_EVENTS, eventFromPayload } from "./events.js";

const MESSAGE_EVENT_TYPES = [...MESSAGE_EVENTS];

/** One page of a user's stored events, as Subscribe replays them. */
export interface ReplayPage {
  /** The events to send, oldest first (fewer than the rows when messages are gone or expired). */
  events: Event[];
  /** How many inbox rows the page read (a page shorter than the limit is the last). */
  rows: number;
  /** The position of the page's last row (undefined when it read none). */
  lastPosition?: bigint;
}

/**
 * The user's stored events after `after` (up to `upTo`), at most `limit` rows,
 * in one round trip: message events read the message as it is now (skipped
 * when it is gone, or expired by `clock`), other events are their stored
 * payload.
 */
export async function readReplay(
  db: Kysely<Database>,
  userId: string,
  page: { after: bigint; limit: number; upTo?: bigint },
  clock: Clock,
  logger: Logger,
): Promise<ReplayPage> {
  const rows = await readReplayPage(db, userId, page.after, page.limit, page.upTo, MESSAGE_EVENT_TYPES);
  return { events: replayEvents(userId, rows, clock, logger), rows: rows.length, lastPosition: rows.length > 0 ? BigInt(rows.at(-1)!.r_position) : undefined };
}

interface ConversationView {
  /** Whose watermarks the receipt state reads: the current participants, or those of when the user left. */
  seenBy: readonly ReceiptPeer[];
  readShared: boolean;
}

function replayEvents(userId: string, rows: readonly ReplayRow[], clock: Clock, logger: Logger): Event[] {
  const conversations = new Map<string, ConversationView>();
  for (const r of rows) {
    if (!r.c_first || r.m_conversation_id === null) continue;
    conversations.set(r.m_conversation_id, {
      // A former participant sees the receipts of when they left.
      seenBy: r.c_left ? formerParticipants({ conversation_id: r.m_conversation_id, left_view: r.c_left_view }) : (r.c_people ?? []),
      readShared: readStateShared(
        r.c_is_group !== false,
        (r.c_read_receipts ?? []).map((on) => on ?? DEFAULT_PRIVACY.readReceipts),
      ),
    });
  }
  const out: Event[] = [];
  for (const r of rows) {
    const position = BigInt(r.r_position);
    if (MESSAGE_EVENTS.has(r.r_event_type)) {
      const m = messageOf(r);
      // Gone with its conversation, or expired (disappearing messages; its messages_expired event follows).
      if (!m || (m.expires_at && m.expires_at <= clock.now())) continue;
      const view = conversations.get(m.conversation_id);
      const reactions = (r.r_reactions ?? []).map((x) => ({ message_id: m.id, emoji: x.emoji, user_id: x.user_id }));
      const quotes = new Map<string, StatusReference>();
      if (r.q_status_id !== null) {
        quotes.set(
          m.id,
          create(StatusReferenceSchema, { statusId: r.q_status_id, authorId: r.q_author_id!, contentType: r.q_content_type!, content: r.q_content! }),
        );
      }
      const message = toMessage(m, view?.seenBy ?? [], reactions, quotes, view?.readShared ?? true);
      out.push(
        create(EventSchema, {
          position,
          at: timestampFromDate(r.r_created_at),
          kind:
            r.r_event_type === "message_edited"
              ? { case: "messageEdited", value: create(MessageEditedSchema, { message }) }
              : { case: "messageCreated", value: create(MessageCreatedSchema, { message }) },
        }),
      );
      continue;
    }
    const event = eventFromPayload(r.r_payload);
    if (!event) {
      logger.warn({ userId, position: r.r_position, type: r.r_event_type }, "inbox event without a payload; skipped");
      continue;
    }
    event.position = position;
    out.push(event);
  }
  return out;
}

/** The row's message as history-store.ts reads it, or undefined when it is gone. */
function messageOf(r: ReplayRow): MessageRow | undefined {
  if (r.m_id === null) return undefined;
  return {
    id: r.m_id,
    conversation_id: r.m_conversation_id!,
    seq: r.m_seq!,
    kind: r.m_kind!,
    sender_id: r.m_sender_id,
    client_message_id: r.m_client_message_id,
    content: r.m_content!,
    media_url: r.m_media_url!,
    media_type: r.m_media_type!,
    reply_to_message_id: r.m_reply_to_message_id,
    mention_user_ids: r.m_mention_user_ids,
    system_event: r.m_system_event!,
    system_user_ids: r.m_system_user_ids,
    created_at: r.m_created_at!,
    edited_at: r.m_edited_at,
    deleted_at: r.m_deleted_at,
    expires_at: r.m_expires_at,
    forward_count: r.m_forward_count!,
    pinned_at: r.m_pinned_at,
    pinned_by: r.m_pinned_by,
  };
}
