import type { Message } from "../../gen/chat/chat_pb.js";
import type { AppContext } from "../context.js";
import * as convs from "../db/conversation-store.js";
import * as history from "../db/history-store.js";
import { readStateSharedIn } from "../db/privacy-store.js";
import { toMessage } from "../domain/message-view.js";
import { withMedia } from "../media/attach.js";

/**
 * A stored message as a current participant sees it in ListMessages (reactions,
 * the status it quotes, receipt state within the read-receipt rule), for the
 * answers of SendMessage and ReplyToStatus. A message `justStored` has been
 * read by no one yet, so the read-receipt rule cannot change how it looks and
 * its read is skipped (ForwardMessages' embedded path; SendMessage's builds a new
 * message's answer from what it sent and reads back only a duplicate).
 */
export async function storedMessageView(ctx: AppContext, row: history.MessageRow, justStored = false): Promise<Message> {
  const db = ctx.database.db;
  const [people, readShared, reactions, quotes] = await Promise.all([
    convs.currentParticipants(db, [row.conversation_id]),
    justStored ? new Map<string, boolean>() : readStateSharedIn(db, [row.conversation_id]),
    history.reactionsOf(db, [row.id]),
    history.statusQuotesOf(db, [row.id]),
  ]);
  const message = toMessage(row, people.get(row.conversation_id) ?? [], reactions, quotes, readShared.get(row.conversation_id));
  return (await withMedia(db, [message]))[0]!;
}
