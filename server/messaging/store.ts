import type { Kysely, Transaction } from "kysely";
import { appendInboxEvents, insertSystemMessageRow, storeMessageRows, type NewSystemMessageRow } from "../db/message-store.js";
import type { Database } from "../db/schema.js";
import { eventBody, messageFromOutgoing, systemMessageView } from "../realtime/events.js";
import type { InboxNotice, NewInboxEvent, OutgoingMessage, RejectReason, StoredMessage } from "./types.js";

// Storing a message and building its live events: the store (db/) writes rows
// and says whose inbox got which position; the wire events are encoded here.

const MESSAGE_CREATED = "message_created";

/** What storeMessages did with one message, in input order. */
export type StoreResult =
  | {
      ok: true;
      message: StoredMessage;
      /** One per current participant; empty for a duplicate. Publish them after commit. */
      notices: InboxNotice[];
    }
  | { ok: false; reason: RejectReason; error: string };

/**
 * Stores a batch of user messages (storeMessageRows: one round trip, its own
 * transaction or the caller's) and builds each new message's live notices.
 */
export async function storeMessages(db: Kysely<Database> | Transaction<Database>, msgs: readonly OutgoingMessage[], now: Date): Promise<StoreResult[]> {
  const rows = await storeMessageRows(db, msgs, now);
  return rows.map((r, i): StoreResult => {
    if (!r.ok) return r;
    const { message, recipients, mentions } = r;
    if (recipients.length === 0) return { ok: true, message, notices: [] };
    const m = msgs[i]!;
    // Encoded once; every recipient's frame shares it (only the position differs).
    const body = eventBody(
      {
        case: "messageCreated",
        value: { $typeName: "realtime.MessageCreated", message: messageFromOutgoing(m, message.seq, message.createdAt, message.expiresAt) },
      },
      now,
    );
    const notices = recipients.map(
      ({ userId, position }): InboxNotice => ({
        userId,
        position,
        eventType: MESSAGE_CREATED,
        conversationId: m.conversationId,
        messageId: m.id,
        seq: message.seq,
        body,
      }),
    );
    if (mentions.length > 0) {
      const mentioned = eventBody(
        {
          case: "mentionAdded",
          value: { $typeName: "realtime.MentionAdded", conversationId: m.conversationId, messageId: m.id, seq: BigInt(message.seq), senderId: m.senderId },
        },
        now,
      );
      for (const { userId, position } of mentions) {
        notices.push({ userId, position, eventType: "mention_added", conversationId: m.conversationId, messageId: m.id, body: mentioned });
      }
    }
    return { ok: true, message, notices };
  });
}

export interface NewSystemMessage extends NewSystemMessageRow {
  /** Who gets the inbox event: the participants who can see it. */
  recipients: string[];
  /**
   * Further events of the same change (participant added, conversation
   * updated ...), appended after the message's, in the same single
   * appendInboxEvents call: one lock pass over inbox positions per transaction.
   */
  extraEvents?: (seq: string) => NewInboxEvent[];
}

/**
 * Writes a membership or group change into the timeline as a system message
 * with the conversation's next seq (same lock order as storeMessages:
 * conversation row, then inbox positions) and appends its inbox events.
 */
export async function insertSystemMessage(
  trx: Transaction<Database>,
  m: NewSystemMessage,
  now: Date,
): Promise<{ id: string; seq: string; notices: InboxNotice[] }> {
  const { id, seq } = await insertSystemMessageRow(trx, m, now);
  const body = eventBody(
    {
      case: "messageCreated",
      value: {
        $typeName: "realtime.MessageCreated",
        message: systemMessageView({
          id,
          conversationId: m.conversationId,
          actorId: m.actorId,
          event: m.event,
          userIds: m.userIds,
          seq,
          createdAt: now,
          content: m.content,
          replyToMessageId: m.replyToMessageId,
        }),
      },
    },
    now,
  );
  const payload = { seq, sender_id: m.actorId, system_event: m.event };
  const notices = await appendInboxEvents(
    trx,
    [
      ...[...new Set(m.recipients)].map((userId) => ({
        userId,
        eventType: MESSAGE_CREATED,
        conversationId: m.conversationId,
        messageId: id,
        seq,
        payload,
        body,
      })),
      ...(m.extraEvents?.(seq) ?? []),
    ],
    now,
  );
  return { id, seq, notices };
}
