import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { MessageReceiptSchema } from "../../../gen/chat/chat_pb.js";
import * as history from "../../db/history-store.js";
import { readStateSharedIn } from "../../db/privacy-store.js";
import { receiptState, recipientsOf } from "../../domain/message-view.js";
import { markReceipts } from "../../db/receipt-store.js";
import { publishNotices } from "../../messaging/message-queue.js";
import type { InboxNotice } from "../../messaging/types.js";
import { eventBody } from "../../realtime/events.js";
import { bad, callerOf, uuidField } from "../rpc-input.js";
import { notFound, type ChatHandlers, type ChatRoom } from "./context.js";

/** Delivery and read receipts: reading them per message, and raising the caller's watermarks. */
export function receiptHandlers(room: ChatRoom): ChatHandlers<"getMessageReceipts" | "markDelivered" | "markRead"> {
  const { ctx, db, clock, visibleMessage, peopleSeenBy } = room;

  /**
   * Raises the caller's delivered (and with `read` read) watermark to `upToSeq`
   * and tells whoever's receipt view changed, in one database round trip
   * (receipt-store.ts markReceipts: the checks, the raise under the
   * conversation's shared lock and the inbox events, in one transaction). The
   * function works out who is owed which event (domain/receipts.ts
   * receiptUpdates is the rule it is held to) and returns what it appended.
   */
  async function mark(me: string, rawConversationId: string, upToSeq: bigint, read: boolean) {
    const conversationId = uuidField("conversation_id", rawConversationId);
    const now = clock.now();
    const r = await markReceipts(db, conversationId, me, upToSeq, read, now);
    switch (r.status) {
      case "not_participant":
      case "conversation_not_found":
        throw notFound(conversationId);
      case "negative":
        throw bad("up_to_seq: must not be negative");
      case "beyond":
        throw bad(`up_to_seq: ${upToSeq} is beyond the conversation's last message (seq ${r.lastSeq})`);
    }
    const w = r.watermarks;
    if (r.updates.length === 0) return w;
    const notices: InboxNotice[] = [];
    const lastDeliveredSeq = BigInt(w.last_delivered_seq);
    for (const { viewer, position, lastReadSeq, deliveredToAllSeq, readByAllSeq } of r.updates) {
      const receipt = { lastDeliveredSeq, lastReadSeq, deliveredToAllSeq, readByAllSeq };
      const kind = { case: "receiptUpdated", value: { $typeName: "realtime.ReceiptUpdated", conversationId, userId: me, ...receipt } } as const;
      notices.push({ userId: viewer, position, eventType: "receipt_updated", conversationId, messageId: null, body: eventBody(kind, now) });
    }
    publishNotices(ctx.bus, ctx.config.natsSubjectPrefix, notices);
    return w;
  }

  return {
    async getMessageReceipts(req, hc) {
      const me = callerOf(hc).userId;
      const { message, my } = await visibleMessage(me, req.messageId);
      // A former participant sees the receipts as they were when they left.
      const until = my.left_at ?? undefined;
      const [people, readShared, delivered, read] = await Promise.all([
        peopleSeenBy(my),
        readStateSharedIn(db, [message.conversation_id]),
        history.firstMarks(db, message.conversation_id, message.seq, "delivered", until),
        history.firstMarks(db, message.conversation_id, message.seq, "read", until),
      ]);
      const showRead = readShared.get(message.conversation_id) ?? true;
      // One row per participant the message reached (not those who joined after it).
      const receipts = recipientsOf(message, people).map((p) => {
        const d = BigInt(p.last_delivered_seq) >= BigInt(message.seq) ? (delivered.get(p.user_id) ?? read.get(p.user_id)) : undefined;
        const r = showRead && BigInt(p.last_read_seq) >= BigInt(message.seq) ? read.get(p.user_id) : undefined;
        return create(MessageReceiptSchema, {
          userId: p.user_id,
          deliveredAt: d ? timestampFromDate(d) : undefined,
          readAt: r ? timestampFromDate(r) : undefined,
        });
      });
      return { receipts, receiptState: receiptState(message, people, showRead) };
    },

    async markDelivered(req, hc) {
      const w = await mark(callerOf(hc).userId, req.conversationId, req.upToSeq, false);
      return { lastDeliveredSeq: BigInt(w.last_delivered_seq) };
    },

    async markRead(req, hc) {
      const w = await mark(callerOf(hc).userId, req.conversationId, req.upToSeq, true);
      return { lastReadSeq: BigInt(w.last_read_seq), lastDeliveredSeq: BigInt(w.last_delivered_seq) };
    },
  };
}
