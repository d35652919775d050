import type { Message } from "../../gen/chat/chat_pb.js";
import type { AppContext } from "../context.js";
import * as convs from "../db/conversation-store.js";
import * as history from "../db/history-store.js";
import { readStateSharedIn } from "../db/privacy-store.js";
import { toMessage } from "../domain/message-view.js";

/**
 * A stored message as a current participant sees it in ListMessages (reactions,
 * the status it quotes, receipt state within the read-receipt rule), for the
 * answers of SendMessage and ReplyToStatus.
 */
export async function storedMessageView(ctx: AppContext, row: history.MessageRow): Promise<Message> {
  const db = ctx.database.db;
  const [people, readShared, reactions, quotes] = await Promise.all([
    convs.currentParticipants(db, [row.conversation_id]),
    readStateSharedIn(db, [row.conversation_id]),
    history.reactionsOf(db, [row.id]),
    history.statusQuotesOf(db, [row.id]),
  ]);
  return toMessage(row, people.get(row.conversation_id) ?? [], reactions, quotes, readShared.get(row.conversation_id));
}
