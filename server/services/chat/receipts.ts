import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { MessageReceiptSchema } from "../../../gen/chat/chat_pb.js";
import * as convs from "../../db/conversation-store.js";
import * as history from "../../db/history-store.js";
import { readStateSharedIn } from "../../db/privacy-store.js";
import { receiptState, recipientsOf } from "../../domain/message-view.js";
import { receiptUpdates, watermarksMoved } from "../../domain/receipts.js";
import { storedEvent } from "../../realtime/events.js";
import { bad, callerOf, uuidField } from "../rpc-input.js";
import { notFound, type ChatHandlers, type ChatRoom } from "./context.js";

/** Delivery and read receipts: reading them per message, and raising the caller's watermarks. */
export function receiptHandlers(room: ChatRoom): ChatHandlers<"getMessageReceipts" | "markDelivered" | "markRead"> {
  const { db, clock, participation, withEvents, visibleMessage, peopleSeenBy } = room;

  /**
   * Raises the caller's delivered (and with `read` read) watermark to `upToSeq`
   * and tells whoever's receipt view changed. The aggregation is pure
   * (domain/receipts.ts); this is its database side, under the conversation's
   * shared lock so concurrent marks see each other's watermarks.
   */
  async function mark(me: string, rawConversationId: string, upToSeq: bigint, read: boolean) {
    const conversationId = uuidField("conversation_id", rawConversationId);
    await participation(conversationId, me);
    const conv = await convs.getConversationRow(db, conversationId);
    if (!conv) throw notFound(conversationId);
    if (upToSeq < 0n) throw bad("up_to_seq: must not be negative");
    if (upToSeq > BigInt(conv.last_seq)) throw bad(`up_to_seq: ${upToSeq} is beyond the conversation's last message (seq ${conv.last_seq})`);
    return withEvents(async (trx, emit) => {
      await convs.lockConversationShared(trx, conversationId);
      const before = await convs.participantsOf(trx, conversationId);
      const w = await convs.raiseWatermarks(trx, conversationId, me, upToSeq.toString(), read, clock.now());
      if (!watermarksMoved(before, me, w)) return w;
      // Read state is shared in groups, and in a direct chat only while both have read receipts on.
      const canSeeRead = (await readStateSharedIn(trx, [conversationId])).get(conversationId) ?? true;
      emit(
        receiptUpdates(before, me, w, canSeeRead).map(({ viewer, ...receipt }) =>
          storedEvent(
            viewer,
            { case: "receiptUpdated", value: { $typeName: "realtime.ReceiptUpdated", conversationId, userId: me, ...receipt } },
            clock.now(),
            { conversationId },
          ),
        ),
      );
      return w;
    });
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
