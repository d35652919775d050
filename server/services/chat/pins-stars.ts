import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import * as convs from "../../db/conversation-store.js";
import * as history from "../../db/history-store.js";
import { pinnedMessageIds, setConversationPinned, setMessagePinned } from "../../db/pins-store.js";
import { readStateSharedIn } from "../../db/privacy-store.js";
import { listStarred, starMessages, starredAmong, unstarMessages } from "../../db/stars-store.js";
import { isUuid } from "../../domain/ids.js";
import { toMessage } from "../../domain/message-view.js";
import { withMedia } from "../../media/attach.js";
import { publishNotices } from "../../messaging/message-queue.js";
import { insertSystemMessage } from "../../messaging/store.js";
import { storedEvent } from "../../realtime/events.js";
import { requireDirectNotBlocked } from "../blocking.js";
import { bad, callerOf, uuidField } from "../rpc-input.js";
import { pageSize, requireAdmin, type ChatHandlers, type ChatRoom } from "./context.js";

/** Messages pinned per conversation at most (WhatsApp's 3). */
const MAX_PINNED_MESSAGES = 3;
const MAX_STAR_IDS = 100;

/** Pinning conversations (the caller's list) and messages (the conversation's), starring messages (the caller's own). */
export function pinStarHandlers(room: ChatRoom): ChatHandlers<"pinConversation" | "pinMessage" | "starMessages" | "listStarredMessages"> {
  const { ctx, db, clock, participation, conversationFor, withEvents, visibleMessage } = room;
  const MAX_PINNED_CONVERSATIONS = ctx.config.chat.maxPinnedConversations;

  return {
    async pinConversation(req, hc) {
      const me = callerOf(hc).userId;
      const conversationId = uuidField("conversation_id", req.conversationId);
      await participation(conversationId, me);
      const now = clock.now();
      await withEvents(async (trx, emit) => {
        const outcome = await setConversationPinned(trx, conversationId, me, req.pinned, MAX_PINNED_CONVERSATIONS, now);
        if (outcome === "limit") {
          throw new ConnectError(`at most ${MAX_PINNED_CONVERSATIONS} conversations can be pinned; unpin one first`, Code.FailedPrecondition);
        }
        if (outcome === "unchanged") return;
        emit([
          storedEvent(
            me,
            {
              case: "conversationPinned",
              value: {
                $typeName: "realtime.ConversationPinned",
                conversationId,
                pinned: req.pinned,
                pinnedAt: req.pinned ? timestampFromDate(now) : undefined,
              },
            },
            now,
            { conversationId },
          ),
        ]);
      });
      return { conversation: await conversationFor(me, conversationId) };
    },

    async pinMessage(req, hc) {
      const me = callerOf(hc).userId;
      const { message, my } = await visibleMessage(me, req.messageId);
      const conversationId = message.conversation_id;
      if (my.left_at !== null) throw new ConnectError("you are no longer a participant of this conversation", Code.PermissionDenied);
      if (message.kind !== "user") throw new ConnectError("system messages cannot be pinned", Code.FailedPrecondition);
      if (message.deleted_at) throw new ConnectError("the message was deleted", Code.FailedPrecondition);
      const conv = await convs.getConversationRow(db, conversationId);
      // The rule: anyone in a direct conversation, admins (and the owner) in a group.
      if (conv?.is_group) requireAdmin(my);
      else await requireDirectNotBlocked(db, conversationId, me);
      const now = clock.now();
      const { pinned, notices } = await db.transaction().execute(async (trx) => {
        // Pins of one conversation queue up, so its limit holds.
        await convs.lockConversation(trx, conversationId);
        const outcome = await setMessagePinned(trx, message, me, req.pinned, MAX_PINNED_MESSAGES, now);
        if (outcome === "limit") {
          throw new ConnectError(`at most ${MAX_PINNED_MESSAGES} messages can be pinned in a conversation; unpin one first`, Code.FailedPrecondition);
        }
        const pinned = (await pinnedMessageIds(trx, [conversationId])).get(conversationId) ?? [];
        if (outcome === "unchanged") return { pinned, notices: [] };
        const recipients = (await convs.participantsOf(trx, conversationId)).map((p) => p.user_id);
        const sys = await insertSystemMessage(
          trx,
          {
            conversationId,
            actorId: me,
            event: req.pinned ? "message_pinned" : "message_unpinned",
            userIds: [],
            replyToMessageId: message.id,
            recipients,
            extraEvents: () =>
              recipients.map((userId) =>
                storedEvent(
                  userId,
                  {
                    case: "messagePinned",
                    value: {
                      $typeName: "realtime.MessagePinned",
                      conversationId,
                      messageId: message.id,
                      pinned: req.pinned,
                      actorId: me,
                      pinnedMessageIds: pinned,
                    },
                  },
                  now,
                  { conversationId, messageId: message.id },
                ),
              ),
          },
          now,
        );
        return { pinned, notices: sys.notices };
      });
      publishNotices(ctx.bus, ctx.config.natsSubjectPrefix, notices);
      return { pinnedMessageIds: pinned };
    },

    async starMessages(req, hc) {
      const me = callerOf(hc).userId;
      const ids = [...new Set(req.messageIds.map((id, i) => uuidField(`message_ids[${i}]`, id)))];
      if (ids.length === 0) throw bad("message_ids: name at least one message");
      if (ids.length > MAX_STAR_IDS) throw bad(`message_ids: at most ${MAX_STAR_IDS} per call (got ${ids.length})`);
      const now = clock.now();
      // Checked before the transaction (outside it the embedded database's one connection is taken).
      const visible: history.MessageRow[] = [];
      const starredNow = await starredAmong(db, me, ids);
      // Unstarring what is starred needs no look (it may have gone out of sight); anything else must be visible.
      for (const id of ids) if (req.starred || !starredNow.has(id)) visible.push((await visibleMessage(me, id)).message);
      await withEvents(async (trx, emit) => {
        const changed = req.starred ? await starMessages(trx, me, visible, now) : await unstarMessages(trx, me, ids);
        if (changed.length === 0) return;
        emit([
          storedEvent(me, { case: "messagesStarred", value: { $typeName: "realtime.MessagesStarred", messageIds: changed, starred: req.starred } }, now, {
            conversationId: null,
          }),
        ]);
      });
      return {};
    },

    async listStarredMessages(req, hc) {
      const me = callerOf(hc).userId;
      const limit = pageSize(req.limit);
      let conversationId: string | undefined;
      if (req.conversationId.trim() !== "") {
        conversationId = uuidField("conversation_id", req.conversationId);
        await participation(conversationId, me, true);
      }
      const after = req.pageToken === "" ? undefined : decodeStarToken(req.pageToken);
      const rows = await listStarred(db, me, { conversationId, after, limit: limit + 1 });
      const page = rows.slice(0, limit);
      const ids = page.map((m) => m.id);
      const conversationIds = [...new Set(page.map((m) => m.conversation_id))];
      const [people, readShared, reactions, quotes] = await Promise.all([
        convs.currentParticipants(db, conversationIds),
        readStateSharedIn(db, conversationIds),
        history.reactionsOf(db, ids),
        history.statusQuotesOf(db, ids),
      ]);
      const messages = page.map((m) => {
        const view = toMessage(m, people.get(m.conversation_id) ?? [], reactions, quotes, readShared.get(m.conversation_id));
        view.starred = true;
        return view;
      });
      const last = page.at(-1);
      return {
        messages: await withMedia(db, messages),
        nextPageToken: rows.length > limit && last ? Buffer.from(JSON.stringify({ at: last.starred_at.toISOString(), id: last.id })).toString("base64url") : "",
      };
    },
  };
}

function decodeStarToken(token: string): { at: Date; id: string } {
  try {
    const { at, id } = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { at: string; id: string };
    const date = new Date(at);
    if (Number.isNaN(date.getTime()) || typeof id !== "string" || !isUuid(id)) throw new Error("bad token");
    return { at: date, id };
  } catch {
    throw bad("page_token: not a token from a previous ListStarredMessages page");
  }
}
