import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  ChatService,
  MessageKind,
  MessageSchema,
  ParticipantRole,
  MessageReceiptSchema,
  ReceiptState,
  type Conversation,
  type Message,
} from "../../gen/chat/chat_pb.js";
import { InvalidPhoneNumberError, normalizePhoneNumber } from "../auth/phone.js";
import type { AppContext } from "../context.js";
import * as convs from "../db/conversation-store.js";
import * as history from "../db/history-store.js";
import type { Transaction } from "kysely";
import { appendInboxEvents } from "../db/message-store.js";
import { insertSystemMessage } from "../messaging/store.js";
import type { NewInboxEvent } from "../messaging/types.js";
import { eventBody, storedEvent } from "../realtime/events.js";
import { asSeenBy, formerParticipants, roleToProto, toConversation } from "../domain/conversation-view.js";
import { readStateSharedIn } from "../db/privacy-store.js";
import type { Database } from "../db/schema.js";
import { MessageRejectedError, QueueUnavailableError, messageIdFor, publishNotices } from "../messaging/message-queue.js";
import { isUuid } from "../domain/ids.js";
import { codePoints } from "../domain/text.js";
import { bad, callerOf, uuidField } from "./rpc-input.js";
import { conversationCreatedEvents, openDirectConversation } from "./direct-conversations.js";
import { storedMessageView } from "./message-views.js";
import { directBlockRefusal, requireDirectNotBlocked, requireNoBlockBetween, requireNotBlockedByAny } from "../domain/blocking.js";
import { receiptState, recipientsOf, toMessage } from "../domain/message-view.js";
import { requireGroupAddAllowed } from "./group-add-privacy.js";

const PAGE_DEFAULT = 50;
const PAGE_MAX = 100;
const MAX_EMOJI = 16;


const PROTO_TO_ROLE: Partial<Record<ParticipantRole, convs.Role>> = {
  [ParticipantRole.MEMBER]: "member",
  [ParticipantRole.ADMIN]: "admin",
  [ParticipantRole.OWNER]: "owner",
};


function requireAdmin(my: convs.ParticipantRow): void {
  if (my.role !== "admin" && my.role !== "owner") throw new ConnectError("only group admins can do this", Code.PermissionDenied);
}

function pageSize(limit: number): number {
  if (limit < 0) throw bad("limit: must not be negative");
  return limit === 0 ? PAGE_DEFAULT : Math.min(limit, PAGE_MAX);
}

/**
 * chat.ChatService: the original four RPCs (CreateConversation, SendMessage,
 * ListMessages, GetConversations) grown as chat.proto describes, plus
 * conversation reads, group management, receipts, edits, deletes,
 * reactions, mute and archive.
 */
export function createChatService(ctx: AppContext): Partial<ServiceImpl<typeof ChatService>> {
  const db = ctx.database.db;
  const { clock } = ctx;
  const { maxParticipants: MAX_PARTICIPANTS, maxTextLength: MAX_TEXT } = ctx.config.chat;
  const EDIT_WINDOW_MS = ctx.config.chat.editWindowSeconds * 1000;
  const DELETE_WINDOW_MS = ctx.config.chat.deleteWindowSeconds * 1000;

  const notFound = (id: string) => new ConnectError(`conversation ${id} not found`, Code.NotFound);

  /** The caller's current participation, or NotFound (existence is not leaked). */
  async function participation(conversationId: string, userId: string, allowFormer = false) {
    const p = await convs.getParticipation(db, conversationId, userId);
    if (!p || (p.left_at !== null && !allowFormer)) throw notFound(conversationId);
    return p;
  }

  /** What of the timeline the participant may see. */
  const windowOf = (p: convs.ParticipantRow): history.Window => ({ afterSeq: p.joined_seq, upToSeq: p.left_seq });

  async function toConversations(userId: string, rows: convs.ConversationListRow[]): Promise<Conversation[]> {
    const ids = rows.map((r) => r.id);
    const [participants, unread, last, readShared] = await Promise.all([
      convs.currentParticipants(db, ids),
      convs.unreadCounts(
        db,
        userId,
        rows.map((r) => ({ conversationId: r.id, afterSeq: maxSeq(r.my.last_read_seq, r.my.joined_seq), upToSeq: r.my.left_seq })),
      ),
      history.lastVisibleMessages(
        db,
        userId,
        rows.map((r) => ({ conversationId: r.id, window: windowOf(r.my) })),
      ),
      readStateSharedIn(db, ids),
    ]);
    const lastRows = [...last.values()];
    const [reactions, quotes] = await Promise.all([history.reactionsOf(db, lastRows.map((m) => m.id)), history.statusQuotesOf(db, lastRows.map((m) => m.id))]);
    return rows.map((r) => {
      // A former participant sees the group as it was when they left.
      const { conv, people } = asSeenBy(r, participants.get(r.id) ?? [], r.my);
      const lastRow = last.get(r.id);
      const c = toConversation(conv, people, r.my, clock.now());
      c.lastMessage = lastRow ? toMessage(lastRow, people, reactions, quotes, readShared.get(r.id)) : undefined;
      c.unreadCount = unread.get(r.id) ?? 0;
      return c;
    });
  }

  async function conversationFor(userId: string, conversationId: string): Promise<Conversation> {
    const row = await convs.getConversationRow(db, conversationId);
    const my = await convs.getParticipation(db, conversationId, userId);
    if (!row || !my) throw notFound(conversationId);
    const [c] = await toConversations(userId, [{ ...row, my }]);
    return c!;
  }

  async function resolveParticipants(callerId: string, ids: string[], phones: string[]): Promise<string[]> {
    const wanted = new Set<string>();
    ids.forEach((id, i) => wanted.add(uuidField(`participant_ids[${i}]`, id)));
    const normalized = phones.map((raw, i) => {
      try {
        return normalizePhoneNumber(raw);
      } catch (err) {
        if (err instanceof InvalidPhoneNumberError) throw bad(`participant_phone_numbers[${i}]: ${err.message}`);
        throw err;
      }
    });
    const existing = await convs.existingUserIds(db, [...wanted]);
    for (const id of wanted) if (!existing.has(id)) throw new ConnectError(`participant_ids: no user with id ${id}`, Code.NotFound);
    const byPhone = await convs.userIdsByPhone(db, normalized);
    for (const phone of normalized) {
      const id = byPhone.get(phone);
      if (!id) throw new ConnectError(`participant_phone_numbers: no Chatwire user has the number ${phone}`, Code.NotFound);
      wanted.add(id);
    }
    wanted.delete(callerId);
    return [...wanted];
  }

  return {
    async createConversation(req, hc) {
      const me = callerOf(hc).userId;
      const now = clock.now();
      const others = await resolveParticipants(me, req.participantIds, req.participantPhoneNumbers);

      if (!req.isGroup) {
        if (others.length !== 1) {
          throw bad(`participant_ids: a direct conversation has exactly one other participant (got ${others.length}); set is_group for more`);
        }
        await requireNoBlockBetween(db, me, others[0]!);
        const { id, created } = await openDirectConversation(ctx, me, others[0]!);
        return { conversation: await conversationFor(me, id), created };
      }

      const name = req.groupName.trim();
      if (name === "") throw bad("group_name: a group needs a name");
      if (codePoints(name) > 100) throw bad("group_name: at most 100 characters");
      if (codePoints(req.groupDescription) > 512) throw bad("group_description: at most 512 characters");
      if (req.groupAvatarUrl.length > 2048) throw bad("group_avatar_url: at most 2048 characters");
      if (others.length + 1 > MAX_PARTICIPANTS) throw bad(`participant_ids: a group has at most ${MAX_PARTICIPANTS} participants`);
      await requireNotBlockedByAny(db, me, others);
      await requireGroupAddAllowed(db, me, others);
      const requestId = req.clientRequestId.trim();
      if (requestId.length > 64) throw bad("client_request_id: at most 64 characters");
      if (requestId) {
        const existing = await convs.findGroupByRequest(db, me, requestId);
        if (existing) return { conversation: await conversationFor(me, existing.id), created: false };
      }
      const { inserted, notices } = await db.transaction().execute(async (trx) => {
        const inserted = await convs.insertConversation(trx, {
          isGroup: true,
          groupName: name,
          groupDescription: req.groupDescription.trim(),
          groupAvatarUrl: req.groupAvatarUrl.trim(),
          directKey: null,
          createdBy: me,
          clientRequestId: requestId || null,
          now,
          participants: [{ userId: me, role: "owner" }, ...others.map((userId) => ({ userId, role: "member" as const }))],
        });
        if (!inserted) return { inserted, notices: [] };
        const created = await conversationCreatedEvents(trx, inserted.id, [me, ...others], now, 1n);
        const sys = await insertSystemMessage(
          trx,
          {
            conversationId: inserted.id,
            actorId: me,
            event: "group_created",
            userIds: others,
            recipients: [me, ...others],
            extraEvents: () => created,
          },
          now,
        );
        return { inserted, notices: sys.notices };
      });
      publishNotices(ctx.bus, ctx.config.natsSubjectPrefix, notices);
      const id = inserted?.id ?? (await convs.findGroupByRequest(db, me, requestId))!.id;
      return { conversation: await conversationFor(me, id), created: inserted !== undefined };
    },

    async sendMessage(req, hc) {
      const me = callerOf(hc).userId;
      const conversationId = uuidField("conversation_id", req.conversationId);
      const clientMessageId = req.clientMessageId.trim() || randomUUID();
      // One round trip for participation, blocks and a previous send of this client id.
      const pre = await convs.sendPreflight(db, conversationId, me, clientMessageId);
      if (pre.leftAt !== null) throw notFound(conversationId);
      const refusal = directBlockRefusal(pre);
      if (refusal) throw refusal;
      const content = req.content;
      if (codePoints(content) > MAX_TEXT) throw bad(`content: at most ${MAX_TEXT} characters (got ${codePoints(content)})`);
      const mediaUrl = req.mediaUrl.trim();
      if (content.trim() === "" && mediaUrl === "") throw bad("content: a message needs text or media_url");
      if (mediaUrl && !/^https?:\/\/\S+$/.test(mediaUrl)) throw bad("media_url: must be an http(s) URL");
      if (mediaUrl.length > 2048) throw bad("media_url: at most 2048 characters");
      if (req.mediaType.length > 128) throw bad("media_type: at most 128 characters");
      if (clientMessageId.length > 64) throw bad("client_message_id: at most 64 characters");

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
        const people = (await convs.currentParticipants(db, [conversationId])).get(conversationId) ?? [];
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
      let stored;
      try {
        ({ stored } = await ctx.messages.publish({
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
        }));
      } catch (err) {
        // Membership changed between the check and the store (inline profile).
        if (err instanceof MessageRejectedError) throw notFound(conversationId);
        if (err instanceof QueueUnavailableError) {
          throw new ConnectError("messaging is unavailable right now; retry with the same client_message_id", Code.Unavailable, undefined, undefined, err);
        }
        throw err;
      }
      if (stored) {
        const row = await history.getMessage(db, stored.id);
        if (row) return { message: await messageFor(row, !stored.duplicate) };
      }
      // Durable in the queue, not stored yet: seq is 0 until the worker assigns it
      // (the realtime stream and ListMessages then carry it).
      return {
        message: create(MessageSchema, {
          id,
          conversationId,
          senderId: me,
          content,
          mediaUrl,
          mediaType: req.mediaType.trim(),
          clientMessageId,
          createdAt: sentAt.toISOString(),
          seq: 0n,
          replyToMessageId: replyTo ?? "",
          mentionUserIds: mentions,
          receiptState: ReceiptState.SENT,
          kind: MessageKind.USER,
        }),
      };
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
      const rows = await history.listMessages(db, conversationId, me, windowOf(my), { beforeSeq, afterSeq, limit: limit + 1 });
      const hasMore = rows.length > limit;
      const page = rows.slice(0, limit);
      const ids = page.map((m) => m.id);
      const [people, readShared, reactions, quotes] = await Promise.all([
        peopleSeenBy(my),
        readStateSharedIn(db, [conversationId]),
        history.reactionsOf(db, ids),
        history.statusQuotesOf(db, ids),
      ]);
      return { messages: page.map((m) => toMessage(m, people, reactions, quotes, readShared.get(conversationId))), hasMore };
    },

    async getConversations(req, hc) {
      const me = callerOf(hc).userId;
      const limit = pageSize(req.limit);
      let after: { at: Date; id: string } | undefined;
      if (req.pageToken !== "") after = decodePageToken(req.pageToken);
      // One snapshot for the list and the inbox position, so a Subscribe from
      // that position neither misses nor repeats what the list shows.
      const { rows, position } = await db
        .transaction()
        .setIsolationLevel("repeatable read")
        .execute(async (trx) => {
          const position = await convs.inboxPosition(trx, me);
          const rows = await convs.listConversations(trx, me, { limit: limit + 1, after, includeArchived: req.includeArchived });
          return { rows, position };
        });
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      return {
        conversations: await toConversations(me, page),
        nextPageToken: rows.length > limit && last ? encodePageToken(last.last_activity_at, last.id) : "",
        inboxPosition: BigInt(position),
      };
    },

    async getConversation(req, hc) {
      const me = callerOf(hc).userId;
      const conversationId = uuidField("conversation_id", req.conversationId);
      await participation(conversationId, me, true);
      return { conversation: await conversationFor(me, conversationId) };
    },

    async updateGroup(req, hc) {
      const me = callerOf(hc).userId;
      const fields: { group_name?: string; group_description?: string; group_avatar_url?: string } = {};
      if (req.groupName !== undefined) {
        const name = req.groupName.trim();
        if (name === "" || codePoints(name) > 100) throw bad("group_name: 1 to 100 characters");
        fields.group_name = name;
      }
      if (req.groupDescription !== undefined) {
        if (codePoints(req.groupDescription) > 512) throw bad("group_description: at most 512 characters");
        fields.group_description = req.groupDescription.trim();
      }
      if (req.groupAvatarUrl !== undefined) {
        const url = req.groupAvatarUrl.trim();
        if (url !== "" && !/^https?:\/\/\S+$/.test(url)) throw bad("group_avatar_url: must be an http(s) URL");
        fields.group_avatar_url = url;
      }
      if (Object.keys(fields).length === 0) throw bad("set at least one of group_name, group_description, group_avatar_url");
      await changeGroup(me, req.conversationId, async (trx, { my, conv }) => {
        requireAdmin(my);
        // Every field already so (e.g. a retry): no system message, no event.
        if (Object.entries(fields).every(([k, v]) => conv[k as keyof typeof fields] === v)) return null;
        await convs.updateGroupFields(trx, conv.id, fields);
        const after = (await convs.getConversationRow(trx, conv.id))!;
        const people = (await convs.currentParticipants(trx, [conv.id])).get(conv.id) ?? [];
        return {
          event: "group_updated",
          userIds: [],
          events: (seq) =>
            people.map((p) =>
              storedEvent(
                p.user_id,
                { case: "conversationUpdated", value: { $typeName: "realtime.ConversationUpdated", conversation: snapshotFor({ ...after, last_seq: seq }, people, p.user_id), actorId: me } },
                clock.now(),
                { conversationId: conv.id },
              ),
            ),
        };
      });
      return { conversation: await conversationFor(me, uuidField("conversation_id", req.conversationId)) };
    },

    async addParticipants(req, hc) {
      const me = callerOf(hc).userId;
      const ids = [...new Set(req.userIds.map((id, i) => uuidField(`user_ids[${i}]`, id)))];
      if (ids.length === 0) throw bad("user_ids: name at least one user to add");
      const existing = await convs.existingUserIds(db, ids);
      const unknown = ids.find((id) => !existing.has(id));
      if (unknown) throw new ConnectError(`user_ids: no user with id ${unknown}`, Code.NotFound);
      await requireNotBlockedByAny(db, me, ids);
      await changeGroup(me, req.conversationId, async (trx, { my, conv, people }) => {
        requireAdmin(my);
        const current = new Set(people.map((p) => p.user_id));
        const fresh = ids.filter((id) => !current.has(id));
        if (fresh.length === 0) return null;
        await requireGroupAddAllowed(trx, me, fresh);
        if (current.size + fresh.length > MAX_PARTICIPANTS) {
          throw new ConnectError(`a group has at most ${MAX_PARTICIPANTS} participants (${current.size} now)`, Code.FailedPrecondition);
        }
        // They see the timeline from the message that adds them.
        await convs.addParticipants(trx, conv.id, fresh, conv.last_seq, clock.now());
        const created = await conversationCreatedEvents(trx, conv.id, fresh, clock.now(), BigInt(conv.last_seq) + 1n);
        return {
          event: "participants_added",
          userIds: fresh,
          recipients: [...current, ...fresh],
          events: () => [
            ...created,
            ...[...current, ...fresh].map((userId) =>
              storedEvent(userId, { case: "participantAdded", value: { $typeName: "realtime.ParticipantAdded", conversationId: conv.id, userIds: fresh, actorId: me } }, clock.now(), {
                conversationId: conv.id,
              }),
            ),
          ],
        };
      });
      return { conversation: await conversationFor(me, uuidField("conversation_id", req.conversationId)) };
    },

    async removeParticipant(req, hc) {
      const me = callerOf(hc).userId;
      const target = uuidField("user_id", req.userId);
      if (target === me) throw bad("user_id: to remove yourself, call LeaveConversation");
      await changeGroup(me, req.conversationId, async (trx, { my, conv, people }) => {
        requireAdmin(my);
        const them = people.find((p) => p.user_id === target);
        // Already gone (e.g. a retry): done, nothing to write or tell.
        if (!them && (await convs.getParticipation(trx, conv.id, target))?.left_at) return null;
        if (!them) throw new ConnectError(`user ${target} is not a participant of this group`, Code.NotFound);
        if (them.role === "owner") throw new ConnectError("the group's owner cannot be removed", Code.PermissionDenied);
        if (them.role === "admin" && my.role !== "owner") throw new ConnectError("only the owner can remove an admin", Code.PermissionDenied);
        return {
          event: "participant_removed",
          userIds: [target],
          events: () => people.map((p) => participantRemoved(p.user_id, conv.id, target, me)),
          // They see their removal, and nothing after it.
          after: (seq: string) => convs.markLeft(trx, conv.id, target, seq, clock.now()),
        };
      });
      return { conversation: await conversationFor(me, uuidField("conversation_id", req.conversationId)) };
    },

    async setParticipantRole(req, hc) {
      const me = callerOf(hc).userId;
      const target = uuidField("user_id", req.userId);
      const role = PROTO_TO_ROLE[req.role];
      if (!role) throw bad("role: one of PARTICIPANT_ROLE_MEMBER, PARTICIPANT_ROLE_ADMIN, PARTICIPANT_ROLE_OWNER");
      await changeGroup(me, req.conversationId, async (trx, { my, conv, people }) => {
        requireAdmin(my);
        const them = people.find((p) => p.user_id === target);
        if (!them) throw new ConnectError(`user ${target} is not a participant of this group`, Code.NotFound);
        if (them.role === role) return null;
        if (my.role !== "owner" && !(them.role === "member" && role === "admin")) {
          throw new ConnectError("admins can only make members admins; other role changes are the owner's", Code.PermissionDenied);
        }
        if (them.role === "owner") throw new ConnectError("hand ownership over by making someone else the owner", Code.FailedPrecondition);
        if (role === "owner") await convs.setRole(trx, conv.id, me, "admin");
        await convs.setRole(trx, conv.id, target, role);
        const changes: Array<[string, convs.Role]> = role === "owner" ? [[target, "owner"], [me, "admin"]] : [[target, role]];
        return {
          event: role === "owner" ? "owner_changed" : "role_changed",
          userIds: [target],
          events: () => changes.flatMap(([userId, r]) => people.map((p) => roleChanged(p.user_id, conv.id, userId, r, me))),
        };
      });
      return { conversation: await conversationFor(me, uuidField("conversation_id", req.conversationId)) };
    },

    async leaveConversation(req, hc) {
      const me = callerOf(hc).userId;
      await changeGroup(me, req.conversationId, async (trx, { my, conv, people }) => {
        const others = people.filter((p) => p.user_id !== me);
        let heir: convs.ParticipantRow | undefined;
        if (my.role === "owner" && others.length > 0) {
          // people are ordered by joined_at: the longest-standing admin, else participant.
          heir = others.find((p) => p.role === "admin") ?? others[0]!;
          await convs.setRole(trx, conv.id, heir.user_id, "owner");
        }
        return {
          event: "participant_left",
          userIds: [me],
          after: (seq: string) => convs.markLeft(trx, conv.id, me, seq, clock.now()),
          events: () => [
            ...people.map((p) => participantRemoved(p.user_id, conv.id, me, me)),
            ...(heir ? others.map((p) => roleChanged(p.user_id, conv.id, heir.user_id, "owner", me)) : []),
          ],
        };
      }, { formerIsDone: true });
      return {};
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
        const people = (await convs.currentParticipants(trx, [row.conversation_id])).get(row.conversation_id) ?? [];
        const view = toMessage(row, people, await history.reactionsOf(trx, [row.id]), await history.statusQuotesOf(trx, [row.id]), await readShared(trx, row.conversation_id));
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
        throw new ConnectError(`messages can be deleted for everyone for ${ctx.config.chat.deleteWindowSeconds / 3600} hours after sending`, Code.FailedPrecondition);
      }
      await withEvents(async (trx, emit) => {
        await convs.lockConversationShared(trx, message.conversation_id);
        // False: a concurrent delete won and announced it.
        if (!(await history.tombstoneMessage(trx, message.id, now))) return;
        const people = (await convs.currentParticipants(trx, [message.conversation_id])).get(message.conversation_id) ?? [];
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
      if (codePoints(emoji) > MAX_EMOJI || /[\s\p{L}\p{N}]/u.test(emoji)) throw bad("emoji: one emoji, or empty to remove the reaction");
      const reactions = await withEvents(async (trx, emit) => {
        await convs.lockConversationShared(trx, message.conversation_id);
        const changed = await history.setReaction(trx, message.id, me, emoji, clock.now());
        const people = (await convs.currentParticipants(trx, [message.conversation_id])).get(message.conversation_id) ?? [];
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
      const receipts = recipientsOf(message, people)
        .map((p) => {
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

    async muteConversation(req, hc) {
      const me = callerOf(hc).userId;
      const conversationId = uuidField("conversation_id", req.conversationId);
      await participation(conversationId, me);
      const until = req.mutedUntil ? timestampDate(req.mutedUntil) : null;
      if (until && until <= clock.now()) throw bad("muted_until: must be in the future (leave it unset to unmute)");
      await withEvents(async (trx, emit) => {
        if (await convs.setMuted(trx, conversationId, me, until)) emit([await selfUpdated(trx, conversationId, me)]);
      });
      return {};
    },

    async archiveConversation(req, hc) {
      const me = callerOf(hc).userId;
      const conversationId = uuidField("conversation_id", req.conversationId);
      await participation(conversationId, me);
      await withEvents(async (trx, emit) => {
        if (await convs.setArchived(trx, conversationId, me, req.archived)) emit([await selfUpdated(trx, conversationId, me)]);
      });
      return {};
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

  async function mark(me: string, rawConversationId: string, upToSeq: bigint, read: boolean) {
    const conversationId = uuidField("conversation_id", rawConversationId);
    await participation(conversationId, me);
    const conv = await convs.getConversationRow(db, conversationId);
    if (!conv) throw notFound(conversationId);
    if (upToSeq < 0n) throw bad("up_to_seq: must not be negative");
    if (upToSeq > BigInt(conv.last_seq)) throw bad(`up_to_seq: ${upToSeq} is beyond the conversation's last message (seq ${conv.last_seq})`);
    return withEvents(async (trx, emit) => {
      await convs.lockConversationShared(trx, conversationId);
      const before = (await convs.currentParticipants(trx, [conversationId])).get(conversationId) ?? [];
      const w = await convs.raiseWatermarks(trx, conversationId, me, upToSeq.toString(), read, clock.now());
      const after = before.map((p) => (p.user_id === me ? { ...p, ...w } : p));
      const mine = before.find((p) => p.user_id === me);
      if (!mine || (mine.last_delivered_seq === w.last_delivered_seq && mine.last_read_seq === w.last_read_seq)) return w;
      // Read state is shared in groups, and in a direct chat only while both have read receipts on.
      const canSeeRead = (await readStateSharedIn(trx, [conversationId])).get(conversationId) ?? true;
      const aggregate = (people: convs.ParticipantRow[], viewer: string, key: "last_delivered_seq" | "last_read_seq") => {
        let min: bigint | undefined;
        for (const p of people) {
          if (p.user_id === viewer) continue;
          const v = BigInt(p[key]);
          if (min === undefined || v < min) min = v;
        }
        return min ?? 0n;
      };
      const events: NewInboxEvent[] = [];
      for (const p of after) {
        const viewer = p.user_id;
        const delivered = aggregate(after, viewer, "last_delivered_seq");
        const readAll = canSeeRead ? aggregate(after, viewer, "last_read_seq") : 0n;
        if (viewer !== me) {
          const changed =
            delivered !== aggregate(before, viewer, "last_delivered_seq") || (canSeeRead && readAll !== aggregate(before, viewer, "last_read_seq"));
          if (!changed) continue;
        }
        events.push(
          storedEvent(
            viewer,
            {
              case: "receiptUpdated",
              value: {
                $typeName: "realtime.ReceiptUpdated",
                conversationId,
                userId: me,
                lastDeliveredSeq: BigInt(w.last_delivered_seq),
                lastReadSeq: viewer === me || canSeeRead ? BigInt(w.last_read_seq) : 0n,
                deliveredToAllSeq: delivered,
                readByAllSeq: readAll,
              },
            },
            clock.now(),
            { conversationId },
          ),
        );
      }
      emit(events);
      return w;
    });
  }

  /**
   * Runs `work` in a transaction; the inbox events it emits are appended in
   * one pass at the end (one lock pass over inbox positions) and announced
   * after the commit.
   */
  async function withEvents<T>(work: (trx: Transaction<Database>, emit: (events: NewInboxEvent[]) => void) => Promise<T>): Promise<T> {
    const { result, notices } = await db.transaction().execute(async (trx) => {
      const events: NewInboxEvent[] = [];
      const result = await work(trx, (e) => events.push(...e));
      return { result, notices: await appendInboxEvents(trx, events, clock.now()) };
    });
    publishNotices(ctx.bus, ctx.config.natsSubjectPrefix, notices);
    return result;
  }

  /** A conversation as `userId`, one of `people`, sees it now (for realtime events). */
  function snapshotFor(conv: convs.ConversationRow, people: convs.ParticipantRow[], userId: string): Conversation {
    return toConversation(conv, people, people.find((p) => p.user_id === userId), clock.now());
  }

  /** Current participants whose window includes the message at `seq` (they joined before it). */
  function seeing(people: convs.ParticipantRow[], seq: string): string[] {
    return people.filter((p) => BigInt(p.joined_seq) < BigInt(seq)).map((p) => p.user_id);
  }

  /** conversation_updated for the caller's own devices (their mute/archive settings). */
  async function selfUpdated(trx: Transaction<Database>, conversationId: string, me: string): Promise<NewInboxEvent> {
    const row = (await convs.getConversationRow(trx, conversationId))!;
    const people = (await convs.currentParticipants(trx, [conversationId])).get(conversationId) ?? [];
    return storedEvent(
      me,
      { case: "conversationUpdated", value: { $typeName: "realtime.ConversationUpdated", conversation: snapshotFor(row, people, me), actorId: me } },
      clock.now(),
      { conversationId },
    );
  }

  function participantRemoved(to: string, conversationId: string, userId: string, actorId: string): NewInboxEvent {
    return storedEvent(to, { case: "participantRemoved", value: { $typeName: "realtime.ParticipantRemoved", conversationId, userId, actorId } }, clock.now(), {
      conversationId,
    });
  }

  function roleChanged(to: string, conversationId: string, userId: string, role: convs.Role, actorId: string): NewInboxEvent {
    return storedEvent(
      to,
      { case: "participantRoleChanged", value: { $typeName: "realtime.ParticipantRoleChanged", conversationId, userId, role: roleToProto(role), actorId } },
      clock.now(),
      { conversationId },
    );
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

  interface GroupChange {
    event: string;
    userIds: string[];
    /** Who sees the system message; default: the current participants. */
    recipients?: string[];
    /** Runs after the system message has its seq (e.g. mark a participant left at it). */
    after?: (seq: string) => Promise<void>;
    /** The change's structured realtime events (participant added, conversation updated ...). */
    events?: (seq: string) => NewInboxEvent[];
  }

  /**
   * A membership or group change in one transaction, under the conversation's
   * row lock: checks that the caller is a current participant of a group, applies
   * the change, writes it into the timeline as a system message, and tells the
   * participants after the commit.
   */
  async function changeGroup(
    me: string,
    rawConversationId: string,
    apply: (
      trx: Transaction<Database>,
      c: { conv: convs.ConversationRow; my: convs.ParticipantRow; people: convs.ParticipantRow[] },
    ) => Promise<GroupChange | null>,
    opts: { formerIsDone?: boolean } = {},
  ): Promise<void> {
    const conversationId = uuidField("conversation_id", rawConversationId);
    const notices = await db.transaction().execute(async (trx) => {
      const conv = await convs.lockConversation(trx, conversationId);
      const my = conv ? await convs.getParticipation(trx, conversationId, me) : undefined;
      // A former participant's leave is already done (a retry): nothing to change.
      if (conv && my && my.left_at !== null && opts.formerIsDone) return [];
      if (!conv || !my || my.left_at !== null) throw notFound(conversationId);
      if (!conv.is_group) throw new ConnectError("this is a direct conversation, not a group", Code.FailedPrecondition);
      const people = (await convs.currentParticipants(trx, [conversationId])).get(conversationId) ?? [];
      const change = await apply(trx, { conv, my, people });
      if (!change) return [];
      const sys = await insertSystemMessage(
        trx,
        {
          conversationId,
          actorId: me,
          event: change.event,
          userIds: change.userIds,
          recipients: change.recipients ?? people.map((p) => p.user_id),
          extraEvents: change.events,
        },
        clock.now(),
      );
      await change.after?.(sys.seq);
      return sys.notices;
    });
    publishNotices(ctx.bus, ctx.config.natsSubjectPrefix, notices);
  }

  /** A message the caller may see (in their window, not hidden), or NotFound. */
  async function visibleMessage(me: string, rawId: string) {
    const id = uuidField("message_id", rawId);
    const message = await history.getMessage(db, id);
    const missing = new ConnectError(`message ${id} not found`, Code.NotFound);
    if (!message) throw missing;
    const my = await convs.getParticipation(db, message.conversation_id, me);
    if (!my) throw missing;
    const seq = BigInt(message.seq);
    if (seq <= BigInt(my.joined_seq) || (my.left_seq !== null && seq > BigInt(my.left_seq))) throw missing;
    const [visible] = await history.listMessages(db, message.conversation_id, me, windowOf(my), { afterSeq: (seq - 1n).toString(), limit: 1 });
    if (!visible || visible.id !== id) throw missing;
    return { message, my };
  }

  async function messageFor(row: history.MessageRow, justStored = false): Promise<Message> {
    return storedMessageView(ctx, row, justStored);
  }

  /** Whether the conversation's participants see each other's read state (readStateShared). */
  async function readShared(trx: Transaction<Database>, conversationId: string): Promise<boolean> {
    return (await readStateSharedIn(trx, [conversationId])).get(conversationId) ?? true;
  }

  /** The participants as `my` sees them: current ones, or for a former participant those of when they left. */
  async function peopleSeenBy(my: convs.ParticipantRow): Promise<convs.ParticipantRow[]> {
    if (my.left_at !== null) return formerParticipants(my);
    return (await convs.currentParticipants(db, [my.conversation_id])).get(my.conversation_id) ?? [];
  }
}

function maxSeq(a: string, b: string): string {
  return BigInt(a) >= BigInt(b) ? a : b;
}

function encodePageToken(at: Date, id: string): string {
  return Buffer.from(JSON.stringify({ at: at.toISOString(), id })).toString("base64url");
}

function decodePageToken(token: string): { at: Date; id: string } {
  try {
    const { at, id } = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { at: string; id: string };
    const date = new Date(at);
    if (Number.isNaN(date.getTime()) || typeof id !== "string" || !isUuid(id)) throw new Error("bad token");
    return { at: date, id };
  } catch {
    throw bad("page_token: not a token from a previous GetConversations page");
  }
}
