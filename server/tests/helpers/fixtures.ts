import { randomUUID } from "node:crypto";
import type { Kysely } from "kysely";
import type { Database } from "../../db/schema.js";
import { messageIdFor } from "../../messaging/message-queue.js";
import type { OutgoingMessage } from "../../messaging/types.js";

// Rows the message-path tests need before any message moves: users and a
// conversation of them, written straight to the database (test set-up only).

let phone = 14155560000 + Math.floor(Math.random() * 1000) * 1000;

export async function insertUsers(db: Kysely<Database>, n: number): Promise<string[]> {
  const rows = await db
    .insertInto("users")
    .values(Array.from({ length: n }, () => ({ phone_number: `+${++phone}` })))
    .returning("id")
    .execute();
  return rows.map((r) => r.id);
}

export async function insertConversation(db: Kysely<Database>, members: string[], { isGroup = true } = {}): Promise<string> {
  const { id } = await db.insertInto("conversations").values({ is_group: isGroup }).returning("id").executeTakeFirstOrThrow();
  await db
    .insertInto("conversation_participants")
    .values(members.map((user_id) => ({ conversation_id: id, user_id })))
    .execute();
  return id;
}

/** What SendMessage would hand the queue for this sender and client id. */
export function outgoing(
  conversationId: string,
  senderId: string,
  clientMessageId: string = randomUUID(),
  extra: Partial<OutgoingMessage> = {},
): OutgoingMessage {
  return {
    id: messageIdFor(senderId, clientMessageId),
    conversationId,
    senderId,
    clientMessageId,
    content: `hello ${clientMessageId}`,
    mediaUrl: "",
    mediaType: "",
    replyToMessageId: null,
    mentionUserIds: [],
    sentAt: new Date().toISOString(),
    ...extra,
  };
}
