import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import * as convs from "../../db/conversation-store.js";
import * as history from "../../db/history-store.js";
import type { NewInboxEvent } from "../../messaging/types.js";
import { readStateSharedIn } from "../../db/privacy-store.js";
import { directBlockRefusal, requireDirectNotBlocked } from "../blocking.js";
import { CLIENT_ID_MAX, EMOJI_MAX, MEDIA_TYPE_MAX, URL_MAX } from "../../domain/limits.js";
import { toMessage } from "../../domain/message-view.js";
import { codePoints } from "../../domain/text.js";
import { addReference, dropMessageReferences } from "../../db/media-store.js";
import { starredAmong } from "../../db/stars-store.js";
import { attachableMedia, mediaPath, mediaView, withMedia } from "../../media/attach.js";
import { MessageRejectedError, QueueUnavailableError, messageIdFor } from "../../messaging/message-queue.js";
import { eventBody, messageFromOutgoing, storedEvent } from "../../realtime/events.js";
import { bad, callerOf, uuidField } from "../rpc-input.js";
import { notFound, pageSize, readShared, windowOf, type ChatHandlers, type ChatRoom } from "./context.js";

/** Sending, paging, editing, deleting and reacting to messages. */
export function messageHandlers(room: ChatRoom): ChatHandlers<"sendMessage" | "listMessages" | "editMessage" | "deleteMessage" | "reactToMessage"> {
  const { ctx, db, clock, participation, withEvents, visibleMessage, messageFor, peopleSeenBy } = room;
  const MAX_TEXT = ctx.config.chat.maxTextLength;
  const EDIT_WINDOW_MS = ctx.config.chat.editWindowSeconds * 1000;
  const DELETE_WINDOW_MS = ctx.config.chat.deleteWindowSeconds * 1000;

  /** Current participants whose window includes the message at `seq` (they joined before it). */
  function seeing(people: convs.ParticipantRow[], seq: string): string[] {
    return people.filter((p) => BigInt(p.joined_seq) < BigInt(seq)).map((p) => p.user_id);
  }

  function messageDeleted(to: string, message: history.MessageRow, forEveryone: boolean): NewInboxEvent {
    return storedEvent(
      to,
      {
        case: "messageDeleted",
        value: { $typeName: "realtime.MessageDeleted", conversationId: message.conversation_id, messageId: message.id, seq: BigInt(message.seq), forEveryone },
      },
      clock.now(),
      { conversationId: message.conversation_id, messageId: message.id },
    );
  }

  return {
    async sendMessage(req, hc) {
      const me = callerOf(hc).userId;
      const conversationId = uuidField("conversation_id", req.conversationId);
      const clientMessageId = req.clientMessageId.trim() || randomUUID();
      // One round trip for participation, blocks and a previous send of this client id.
      const pre = await convs.sendPreflight(db, conversationId, me, clientMessageId);
      if (pre.leftAt !== null) throw notFound(conversationId);
      const refusal = directBlockRefusal(pre);
      if (refusal) throw refusal;
      if (pre.adminsOnly) throw new ConnectError("only admins can send messages to this group (its send_messages policy)", Code.PermissionDenied);
      const content = req.content;
      if (codePoints(content) > MAX_TEXT) throw bad(`content: at most ${MAX_TEXT} characters (got ${codePoints(content)})`);
      // Media uploaded here (media.MediaService) travels as media_url "/media/<id>" with its type.
      const media = req.mediaId.trim() === "" ? undefined : await attachableMedia(db, me, req.mediaId, req.mediaUrl);
      const mediaUrl = media ? mediaPath(media.id) : req.mediaUrl.trim();
      if (media) req.mediaType = media.mime_type;
      if (content.trim() === "" && mediaUrl === "") throw bad("content: a message needs text or media_url");
      if (mediaUrl && !media && !/^https?:\/\/\S+$/.test(mediaUrl)) throw bad("media_url: must be an http(s) URL");
      if (mediaUrl.length > URL_MAX) throw bad(`media_url: at most ${URL_MAX} characters`);
      if (req.mediaType.length > MEDIA_TYPE_MAX) throw bad(`media_type: at most ${MEDIA_TYPE_MAX} characters`);
      if (clientMessageId.length > CLIENT_ID_MAX) throw bad(`client_message_id: at most ${CLIENT_ID_MAX} characters`);

      let replyTo: string | null = null;
      if (req.replyToMessageId.trim() !== "") {
        replyTo = uuidField("reply_to_message_id", req.replyToMessageId);
        const target = await history.getMessage(db, replyTo);
        if (!target || target.conversation_id !== conversationId) {
          throw bad("reply_to_message_id: no such message in this conversation");
        }
      }
      const mentions = [...new Set(req.mentionUserIds.map((id, i) => uuidField(`mention_user_ids[${i}]`, id)))];
      if (mentions.length > 0) {
        const people = await convs.participantsOf(db, conversationId);
        const members = new Set(people.map((p) => p.user_id));
        const stranger = mentions.find((id) => !members.has(id));
        if (stranger) throw bad(`mention_user_ids: ${stranger} is not a participant of this conversation`);
      }

      // A retry after the queue's dedup window: the message is already stored.
      const already = pre.existingConversationId === null ? undefined : await history.getMessageBySenderClientId(db, me, clientMessageId);
      if (already && already.conversation_id !== conversationId) {
        throw bad("client_message_id: already used for a message in another conversation; use a new id per message");
      }
      if (already) return { message: await messageFor(already) };

      const sentAt = clock.now();
      const id = messageIdFor(me, clientMessageId);
      if (media) await addReference(db, media.id, { conversationId, messageId: id }, sentAt);
      const outgoing = {
        id,
        conversationId,
        senderId: me,
        clientMessageId,
        content,
        mediaUrl,
        mediaType: req.mediaType.trim(),
        replyToMessageId: replyTo,
        mentionUserIds: mentions,
        sentAt: sentAt.toISOString(),
        disappearingSeconds: pre.disappearingSeconds,
      };
      let stored;
      try {
        ({ stored } = await ctx.messages.publish(outgoing));
      } catch (err) {
        // Membership changed between the check and the store (inline profile).
        if (err instanceof MessageRejectedError) throw notFound(conversationId);
        if (err instanceof QueueUnavailableError) {
          throw new ConnectError("messaging is unavailable right now; retry with the same client_message_id", Code.Unavailable, undefined, undefined, err);
        }
        throw err;
      }
      // Stored now (inline queue): a new message is answered as its live event shows it (no reactions, no
      // receipts yet), without reading it back; a duplicate is read as it is now.
      if (stored && !stored.duplicate) {
        return { message: Object.assign(messageFromOutgoing(outgoing, stored.seq, stored.createdAt, stored.expiresAt), { media: media && mediaView(media) }) };
      }
      if (stored) {
        const row = await history.getMessage(db, stored.id);
        if (row) return { message: await messageFor(row) };
      }
      // Durable in the queue, not stored yet: seq is 0 until the worker assigns it
      // (the realtime stream and ListMessages then carry it). Its expiry is known already: the timer as of now.
      const expiresAt = pre.disappearingSeconds > 0 ? new Date(sentAt.getTime() + pre.disappearingSeconds * 1000) : null;
      return { message: Object.assign(messageFromOutgoing(outgoing, "0", sentAt, expiresAt), { media: media && mediaView(media) }) };
    },

    async listMessages(req, hc) {
      const me = callerOf(hc).userId;
      const conversationId = uuidField("conversation_id", req.conversationId);
      const my = await participation(conversationId, me, true);
      const limit = pageSize(req.limit);
      if (req.beforeSeq < 0n || req.afterSeq < 0n) throw bad("before_seq and after_seq must not be negative");
      if (req.afterSeq > 0n && (req.beforeSeq > 0n || req.beforeMessageId !== "")) {
        throw bad("after_seq pages forward; it cannot be combined with before_seq or before_message_id");
      }
      let beforeSeq: string | undefined = req.beforeSeq > 0n ? req.beforeSeq.toString() : undefined;
      if (req.beforeMessageId.trim() !== "") {
        const anchor = await history.getMessage(db, uuidField("before_message_id", req.beforeMessageId));
        if (!anchor || anchor.conversation_id !== conversationId) throw bad("before_message_id: no such message in this conversation");
        beforeSeq = anchor.seq;
      }
      const afterSeq = req.afterSeq > 0n ? req.afterSeq.toString() : undefined;
      const rows = await history.listMessages(db, conversationId, me, windowOf(my, clock.now()), { beforeSeq, afterSeq, limit: limit + 1 });
      const hasMore = rows.length > limit;
      const page = rows.slice(0, limit);
      const ids = page.map((m) => m.id);
      const [people, readShared, reactions, quotes, starred] = await Promise.all([
        peopleSeenBy(my),
        readStateSharedIn(db, [conversationId]),
        history.reactionsOf(db, ids),
        history.statusQuotesOf(db, ids),
        starredAmong(db, me, ids),
      ]);
      return {
        messages: await withMedia(
          db,
          page.map((m) => Object.assign(toMessage(m, people, reactions, quotes, readShared.get(conversationId)), { starred: starred.has(m.id) })),
        ),
        hasMore,
      };
    },

    async editMessage(req, hc) {
      const me = callerOf(hc).userId;
      const { message } = await visibleMessage(me, req.messageId);
      if (message.sender_id !== me) throw new ConnectError("you can only edit your own messages", Code.PermissionDenied);
      if (message.deleted_at) throw new ConnectError("the message was deleted", Code.FailedPrecondition);
      await requireDirectNotBlocked(db, message.conversation_id, me);
      // The text it already has (e.g. a retry): answered as it is, even past the window.
      if (message.content === req.content) return { message: await messageFor(message) };
      if (clock.now().getTime() - message.created_at.getTime() > EDIT_WINDOW_MS) {
        throw new ConnectError(`messages can be edited for ${ctx.config.chat.editWindowSeconds / 60} minutes after sending`, Code.FailedPrecondition);
      }
      const content = req.content;
      if (content.trim() === "") throw bad("content: the new text must not be empty (delete the message instead)");
      if (codePoints(content) > MAX_TEXT) throw bad(`content: at most ${MAX_TEXT} characters (got ${codePoints(content)})`);
      const edited = await withEvents(async (trx, emit) => {
        await convs.lockConversationShared(trx, message.conversation_id);
        const changed = await history.editMessage(trx, message.id, content, clock.now());
        // Unchanged: deleted meanwhile, or a concurrent identical edit won (and announced it).
        const row = changed ?? (await history.getMessage(trx, message.id));
        if (!row || row.deleted_at) return undefined;
        const people = await convs.participantsOf(trx, row.conversation_id);
        const view = toMessage(
          row,
          people,
          await history.reactionsOf(trx, [row.id]),
          await history.statusQuotesOf(trx, [row.id]),
          await readShared(trx, row.conversation_id),
        );
        if (!changed) return view;
        const body = eventBody({ case: "messageEdited", value: { $typeName: "realtime.MessageEdited", message: view } }, clock.now());
        emit(
          seeing(people, row.seq).map((userId) => ({
            userId,
            eventType: "message_edited",
            conversationId: row.conversation_id,
            messageId: row.id,
            payload: { seq: row.seq },
            body,
          })),
        );
        return view;
      });
      if (!edited) throw new ConnectError("the message was deleted", Code.FailedPrecondition);
      return { message: edited };
    },

    async deleteMessage(req, hc) {
      const me = callerOf(hc).userId;
      // Already hidden for me (e.g. a retry): done, though it is no longer visible to me.
      if (!req.forEveryone && (await history.isHidden(db, me, uuidField("message_id", req.messageId)))) return {};
      const { message, my } = await visibleMessage(me, req.messageId);
      const now = clock.now();
      if (!req.forEveryone) {
        await withEvents(async (trx, emit) => {
          if (await history.hideMessage(trx, me, message.id, now)) emit([messageDeleted(me, message, false)]);
        });
        return {};
      }
      if (my.left_at !== null) throw new ConnectError("you are no longer a participant of this conversation", Code.PermissionDenied);
      const own = message.sender_id === me;
      const admin = my.role === "admin" || my.role === "owner";
      const conv = await convs.getConversationRow(db, message.conversation_id);
      if (!own && !(conv?.is_group && admin)) {
        throw new ConnectError("only the sender, or a group admin, can delete a message for everyone", Code.PermissionDenied);
      }
      // Already deleted for everyone (e.g. a retry): done, whatever the window says now.
      if (message.deleted_at) return {};
      if (own && !admin && now.getTime() - message.created_at.getTime() > DELETE_WINDOW_MS) {
        throw new ConnectError(
          `messages can be deleted for everyone for ${ctx.config.chat.deleteWindowSeconds / 3600} hours after sending`,
          Code.FailedPrecondition,
        );
      }
      await withEvents(async (trx, emit) => {
        await convs.lockConversationShared(trx, message.conversation_id);
        // False: a concurrent delete won and announced it.
        if (!(await history.tombstoneMessage(trx, message.id, now))) return;
        await dropMessageReferences(trx, [message.id]);
        const people = await convs.participantsOf(trx, message.conversation_id);
        emit(seeing(people, message.seq).map((userId) => messageDeleted(userId, message, true)));
      });
      return {};
    },

    async reactToMessage(req, hc) {
      const me = callerOf(hc).userId;
      const { message, my } = await visibleMessage(me, req.messageId);
      if (my.left_at !== null) throw new ConnectError("you are no longer a participant of this conversation", Code.PermissionDenied);
      await requireDirectNotBlocked(db, message.conversation_id, me);
      if (message.deleted_at) throw new ConnectError("the message was deleted", Code.FailedPrecondition);
      const emoji = req.emoji.trim();
      if (codePoints(emoji) > EMOJI_MAX || /[\s\p{L}\p{N}]/u.test(emoji)) throw bad("emoji: one emoji, or empty to remove the reaction");
      const reactions = await withEvents(async (trx, emit) => {
        await convs.lockConversationShared(trx, message.conversation_id);
        const changed = await history.setReaction(trx, message.id, me, emoji, clock.now());
        const people = await convs.participantsOf(trx, message.conversation_id);
        const { reactions } = toMessage(message, people, await history.reactionsOf(trx, [message.id]));
        emit(
          // Unchanged (e.g. a retry): nothing to announce.
          (changed ? seeing(people, message.seq) : []).map((userId) =>
            storedEvent(
              userId,
              {
                case: "reactionChanged",
                value: { $typeName: "realtime.ReactionChanged", conversationId: message.conversation_id, messageId: message.id, userId: me, emoji, reactions },
              },
              clock.now(),
              { conversationId: message.conversation_id, messageId: message.id },
            ),
          ),
        );
        return reactions;
      });
      return { reactions };
    },
  };
}
