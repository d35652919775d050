import type { Transaction } from "kysely";
import type { AppContext } from "../context.js";
import * as convs from "../db/conversation-store.js";
import { appendInboxEvents } from "../db/message-store.js";
import type { NewInboxEvent } from "../messaging/types.js";
import type { Database } from "../db/schema.js";
import { toConversation } from "../domain/conversation-view.js";
import { publishNotices } from "../messaging/message-queue.js";
import { storedEvent } from "../realtime/events.js";

/**
 * conversation_created for each of `userIds`, as each sees the conversation,
 * from inside the transaction that created it (or added them). `lastSeq`
 * overrides the row's when a system message is being written in the same
 * transaction.
 */
export async function conversationCreatedEvents(
  trx: Transaction<Database>,
  conversationId: string,
  userIds: string[],
  now: Date,
  lastSeq?: bigint,
): Promise<NewInboxEvent[]> {
  const row = (await convs.getConversationRow(trx, conversationId))!;
  const people = await convs.participantsOf(trx, conversationId);
  const snapshotRow = lastSeq === undefined ? row : { ...row, last_seq: lastSeq.toString() };
  return userIds.map((userId) =>
    storedEvent(
      userId,
      {
        case: "conversationCreated",
        value: {
          $typeName: "realtime.ConversationCreated",
          conversation: toConversation(
            snapshotRow,
            people,
            people.find((p) => p.user_id === userId),
            now,
          ),
        },
      },
      now,
      { conversationId },
    ),
  );
}

/**
 * The one direct conversation of two users: the existing one, or a new one
 * whose conversation_created events both hear. A race with the other side
 * opening it at the same moment yields theirs.
 */
export async function openDirectConversation(ctx: AppContext, me: string, other: string): Promise<{ id: string; created: boolean }> {
  const db = ctx.database.db;
  const key = convs.directKey(me, other);
  const existing = await convs.findDirect(db, key);
  if (existing) return { id: existing.id, created: false };
  const now = ctx.clock.now();
  const { row, notices } = await db.transaction().execute(async (trx) => {
    const row = await convs.insertConversation(trx, {
      isGroup: false,
      groupName: "",
      groupDescription: "",
      groupAvatarUrl: "",
      directKey: key,
      createdBy: me,
      clientRequestId: null,
      now,
      participants: [
        { userId: me, role: "member" },
        { userId: other, role: "member" },
      ],
    });
    if (!row) return { row, notices: [] };
    return { row, notices: await appendInboxEvents(trx, await conversationCreatedEvents(trx, row.id, [me, other], now), now) };
  });
  publishNotices(ctx.bus, ctx.config.natsSubjectPrefix, notices);
  if (row) return { id: row.id, created: true };
  const winner = await convs.findDirect(db, key);
  if (!winner) throw new Error(`direct conversation ${key} neither inserted nor found`);
  return { id: winner.id, created: false };
}
