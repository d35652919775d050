import { createHash, randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { MessageKind, MessageSchema, ReceiptState, type Message } from "../../../gen/chat/chat_pb.js";
import * as convs from "../../db/conversation-store.js";
import * as history from "../../db/history-store.js";
import { addReference } from "../../db/media-store.js";
import { isUuid } from "../../domain/ids.js";
import { FORWARDED_MANY_TIMES, forwardMarks } from "../../domain/message-view.js";
import { withMedia } from "../../media/attach.js";
import { MessageRejectedError, QueueUnavailableError, messageIdFor } from "../../messaging/message-queue.js";
import type { OutgoingMessage } from "../../messaging/types.js";
import { directBlockRefusal } from "../blocking.js";
import { requestIdField } from "../request-replay.js";
import { bad, callerOf, uuidField } from "../rpc-input.js";
import { notFound, type ChatHandlers, type ChatRoom } from "./context.js";

// ForwardMessages: each copy is an ordinary message of the forwarder's, sent
// through the message queue like SendMessage's, so the worker stores it (seq,
// inbox events, mentions none) exactly as any other.

const MAX_MESSAGES = 100;
const MAX_TARGETS = 5;
const MEDIA_PATH = /^\/media\/([0-9a-f-]{36})$/;

/**
 * The copy's client_message_id: derived from the request's key, the message
 * and the conversation, so a retry names (and dedups to) the same copies.
 * 44 characters, within the 64 of client_message_id.
 */
function forwardClientId(requestId: string, messageId: string, conversationId: string): string {
  return `fwd:${createHash("sha256").update(`${requestId}\n${messageId}\n${conversationId}`).digest("base64url").slice(0, 40)}`;
}

function distinct(field: string, raw: string[], max: number, what: string): string[] {
  const ids = [...new Set(raw.map((id, i) => uuidField(`${field}[${i}]`, id)))];
  if (ids.length === 0) throw bad(`${field}: name at least one ${what}`);
  if (ids.length > max) throw bad(`${field}: at most ${max} per call (got ${ids.length})`);
  return ids;
}

export function forwardHandlers(room: ChatRoom): ChatHandlers<"forwardMessages"> {
  const { ctx, db, clock, visibleMessage, messageFor } = room;

  return {
    async forwardMessages(req, hc) {
      const me = callerOf(hc).userId;
      const messageIds = distinct("message_ids", req.messageIds, MAX_MESSAGES, "message");
      const targets = distinct("conversation_ids", req.conversationIds, MAX_TARGETS, "conversation");
      const requestId = requestIdField(req.clientRequestId) ?? randomUUID();

      const sources: history.MessageRow[] = [];
      for (const id of messageIds) {
        const { message } = await visibleMessage(me, id);
        if (message.kind !== "user") throw new ConnectError(`message ${id} is a system message; it cannot be forwarded`, Code.FailedPrecondition);
        if (message.deleted_at) throw new ConnectError(`message ${id} was deleted`, Code.FailedPrecondition);
        sources.push(message);
      }
      const many = sources.find((m) => (m.forward_count ?? 0) >= FORWARDED_MANY_TIMES);
      if (many && targets.length > 1) {
        throw new ConnectError(
          `message ${many.id} has been forwarded many times; it can be forwarded to one conversation at a time (got ${targets.length})`,
          Code.FailedPrecondition,
        );
      }
      // Each target's disappearing timer as of now: the copies are stored under it.
      const timers = new Map<string, number>();
      for (const conversationId of targets) {
        const pre = await convs.sendPreflight(db, conversationId, me, "");
        if (pre.leftAt !== null) throw notFound(conversationId);
        const refusal = directBlockRefusal(pre);
        if (refusal) throw refusal;
        timers.set(conversationId, pre.disappearingSeconds);
      }

      const sentAt = clock.now();
      const copies: OutgoingMessage[] = targets.flatMap((conversationId) =>
        sources.map((src) => {
          const clientMessageId = forwardClientId(requestId, src.id, conversationId);
          return {
            id: messageIdFor(me, clientMessageId),
            conversationId,
            senderId: me,
            clientMessageId,
            content: src.content,
            mediaUrl: src.media_url,
            mediaType: src.media_type,
            replyToMessageId: null,
            mentionUserIds: [],
            sentAt: sentAt.toISOString(),
            forwardCount: (src.forward_count ?? 0) + 1,
            disappearingSeconds: timers.get(conversationId) ?? 0,
          };
        }),
      );
      // A retry: the copies stored already are answered as they are.
      const stored = new Map(
        (
          await history.getMessages(
            db,
            copies.map((c) => c.id),
          )
        ).map((r) => [r.id, r]),
      );
      const answers = new Map<string, Message>();
      // In order per conversation (each conversation's copies keep the messages' order); conversations side by side.
      await Promise.all(
        targets.map(async (conversationId) => {
          for (const copy of copies.filter((c) => c.conversationId === conversationId && !stored.has(c.id))) {
            const mediaId = MEDIA_PATH.exec(copy.mediaUrl)?.[1];
            // Media is referenced, not copied: the target's participants may download it too.
            if (mediaId && isUuid(mediaId)) await addReference(db, mediaId, { conversationId, messageId: copy.id }, sentAt);
            answers.set(copy.id, await send(copy));
          }
        }),
      );
      for (const [id, row] of stored) answers.set(id, await messageFor(row));
      return {
        messages: await withMedia(
          db,
          copies.map((c) => answers.get(c.id)!),
        ),
      };
    },
  };

  async function send(copy: OutgoingMessage): Promise<Message> {
    let stored;
    try {
      ({ stored } = await ctx.messages.publish(copy));
    } catch (err) {
      if (err instanceof MessageRejectedError) throw notFound(copy.conversationId);
      if (err instanceof QueueUnavailableError) {
        throw new ConnectError("messaging is unavailable right now; retry with the same client_request_id", Code.Unavailable, undefined, undefined, err);
      }
      throw err;
    }
    if (stored) {
      const row = await history.getMessage(db, stored.id);
      if (row) return await messageFor(row, !stored.duplicate);
    }
    // Queued, not stored yet: seq 0 (as SendMessage's answer).
    return create(MessageSchema, {
      id: copy.id,
      conversationId: copy.conversationId,
      senderId: copy.senderId,
      content: copy.content,
      mediaUrl: copy.mediaUrl,
      mediaType: copy.mediaType,
      clientMessageId: copy.clientMessageId,
      createdAt: copy.sentAt,
      seq: 0n,
      receiptState: ReceiptState.SENT,
      kind: MessageKind.USER,
      ...forwardMarks(copy.forwardCount ?? 0),
    });
  }
}
