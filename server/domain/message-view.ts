import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { MessageKind, MessageSchema, ReactionSchema, ReceiptState, type Message, type StatusReference } from "../../gen/chat/chat_pb.js";
import type * as convs from "../db/conversation-store.js";
import type * as history from "../db/history-store.js";

function jsonIds(v: unknown): string[] {
  if (Array.isArray(v)) return v.map(String);
  if (typeof v === "string") {
    try {
      const parsed: unknown = JSON.parse(v);
      return Array.isArray(parsed) ? parsed.map(String) : [];
    } catch {
      return [];
    }
  }
  return [];
}

/** Message.forward_count and the marks it implies ("Forwarded", "Forwarded many times" from 5 hops). */
export function forwardMarks(forwardCount: number): { forwardCount: number; forwarded: boolean; forwardedManyTimes: boolean } {
  return { forwardCount, forwarded: forwardCount > 0, forwardedManyTimes: forwardCount >= FORWARDED_MANY_TIMES };
}

/** WhatsApp's "forwarded many times" threshold (hops). */
export const FORWARDED_MANY_TIMES = 5;

/** What the receipt state reads of a participant (a ParticipantRow, or a replayed page's copy of one). */
export type ReceiptPeer = Pick<convs.ParticipantRow, "user_id" | "joined_seq" | "last_delivered_seq" | "last_read_seq">;

/**
 * Sent / delivered to all / read by all, from the watermarks of the other
 * participants who have the message (those who joined before it). Without
 * `showRead` (readStateShared) it goes no further than delivered.
 */
export function receiptState(row: history.MessageRow, people: readonly ReceiptPeer[], showRead = true): ReceiptState {
  if (row.kind !== "user") return ReceiptState.UNSPECIFIED;
  const seq = BigInt(row.seq);
  const others = recipientsOf(row, people);
  if (others.length === 0) return showRead ? ReceiptState.READ : ReceiptState.DELIVERED;
  if (showRead && others.every((p) => BigInt(p.last_read_seq) >= seq)) return ReceiptState.READ;
  if (others.every((p) => BigInt(p.last_delivered_seq) >= seq)) return ReceiptState.DELIVERED;
  return ReceiptState.SENT;
}

/** Of `people`, those a message reached: everyone but its sender who joined before it. */
export function recipientsOf<P extends ReceiptPeer>(row: history.MessageRow, people: readonly P[]): P[] {
  const seq = BigInt(row.seq);
  return people.filter((p) => p.user_id !== row.sender_id && BigInt(p.joined_seq) < seq);
}

/**
 * How a stored message looks on the wire (ListMessages, the realtime stream).
 * `showRead`: whether the conversation shares read state (readStateShared).
 */
export function toMessage(
  row: history.MessageRow,
  people: readonly ReceiptPeer[],
  reactions: readonly history.ReactionAgg[],
  quotes?: ReadonlyMap<string, StatusReference>,
  showRead = true,
): Message {
  const byEmoji = new Map<string, string[]>();
  for (const r of reactions) {
    if (r.message_id !== row.id) continue;
    byEmoji.set(r.emoji, [...(byEmoji.get(r.emoji) ?? []), r.user_id]);
  }
  const deleted = row.deleted_at !== null;
  return create(MessageSchema, {
    id: row.id,
    conversationId: row.conversation_id,
    senderId: row.sender_id ?? "",
    content: deleted ? "" : row.content,
    mediaUrl: deleted ? "" : row.media_url,
    mediaType: deleted ? "" : row.media_type,
    clientMessageId: row.client_message_id ?? "",
    createdAt: row.created_at.toISOString(),
    seq: BigInt(row.seq),
    replyToMessageId: row.reply_to_message_id ?? "",
    mentionUserIds: jsonIds(row.mention_user_ids),
    editedAt: row.edited_at ? timestampFromDate(row.edited_at) : undefined,
    deletedAt: row.deleted_at ? timestampFromDate(row.deleted_at) : undefined,
    reactions: [...byEmoji].map(([emoji, userIds]) => create(ReactionSchema, { emoji, count: userIds.length, userIds })),
    receiptState: receiptState(row, people, showRead),
    kind: row.kind === "system" ? MessageKind.SYSTEM : MessageKind.USER,
    systemEvent: row.system_event,
    systemUserIds: jsonIds(row.system_user_ids),
    replyToStatus: quotes?.get(row.id),
    expiresAt: row.expires_at ? timestampFromDate(row.expires_at) : undefined,
    ...forwardMarks(row.forward_count ?? 0),
    pinnedAt: row.pinned_at && !deleted ? timestampFromDate(row.pinned_at) : undefined,
    pinnedBy: row.pinned_at && !deleted ? (row.pinned_by ?? "") : "",
  });
}
