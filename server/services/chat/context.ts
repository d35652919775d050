import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Transaction } from "kysely";
import type { ChatService, Conversation, Message } from "../../../gen/chat/chat_pb.js";
import type { AppContext } from "../../context.js";
import * as convs from "../../db/conversation-store.js";
import * as history from "../../db/history-store.js";
import { appendInboxEvents } from "../../db/message-store.js";
import type { NewInboxEvent } from "../../messaging/types.js";
import { readStateSharedIn } from "../../db/privacy-store.js";
import { pinnedMessageIds } from "../../db/pins-store.js";
import type { Database } from "../../db/schema.js";
import { asSeenBy, formerParticipants, toConversation } from "../../domain/conversation-view.js";
import { PAGE_DEFAULT, PAGE_MAX } from "../../domain/limits.js";
import { toMessage } from "../../domain/message-view.js";
import { publishNotices } from "../../messaging/message-queue.js";
import { storedMessageView } from "../message-views.js";
import { bad, uuidField } from "../rpc-input.js";

// What the ChatService rooms (conversations, groups, messages, receipts)
// share: the caller's participation and visibility checks, the conversation
// and message views, and the transaction that emits inbox events.

/** Some of ChatService's handlers; the rooms' parts add up to the full ServiceImpl. */
export type ChatHandlers<K extends keyof ServiceImpl<typeof ChatService>> = Pick<ServiceImpl<typeof ChatService>, K>;

export function requireAdmin(my: convs.ParticipantRow): void {
  if (my.role !== "admin" && my.role !== "owner") throw new ConnectError("only group admins can do this", Code.PermissionDenied);
}

export function pageSize(limit: number): number {
  if (limit < 0) throw bad("limit: must not be negative");
  return limit === 0 ? PAGE_DEFAULT : Math.min(limit, PAGE_MAX);
}

function maxSeq(a: string, b: string): string {
  return BigInt(a) >= BigInt(b) ? a : b;
}

export const notFound = (id: string) => new ConnectError(`conversation ${id} not found`, Code.NotFound);

/** What of the timeline the participant may see. */
export const windowOf = (p: convs.ParticipantRow, now: Date): history.Window => ({ afterSeq: p.joined_seq, upToSeq: p.left_seq, now });

export type ChatRoom = ReturnType<typeof chatRoom>;

export function chatRoom(ctx: AppContext) {
  const db = ctx.database.db;
  const { clock } = ctx;

  /** The caller's current participation, or NotFound (existence is not leaked). */
  async function participation(conversationId: string, userId: string, allowFormer = false) {
    const p = await convs.getParticipation(db, conversationId, userId);
    if (!p || (p.left_at !== null && !allowFormer)) throw notFound(conversationId);
    return p;
  }

  async function toConversations(userId: string, rows: convs.ConversationListRow[]): Promise<Conversation[]> {
    const ids = rows.map((r) => r.id);
    const [participants, unread, last, readShared, pinnedMessages] = await Promise.all([
      convs.currentParticipants(db, ids),
      convs.unreadCounts(
        db,
        userId,
        rows.map((r) => ({ conversationId: r.id, afterSeq: maxSeq(r.my.last_read_seq, r.my.joined_seq), upToSeq: r.my.left_seq })),
        clock.now(),
      ),
      history.lastVisibleMessages(
        db,
        userId,
        rows.map((r) => ({ conversationId: r.id, window: windowOf(r.my, clock.now()) })),
      ),
      readStateSharedIn(db, ids),
      pinnedMessageIds(db, ids),
    ]);
    const lastRows = [...last.values()];
    const [reactions, quotes] = await Promise.all([
      history.reactionsOf(
        db,
        lastRows.map((m) => m.id),
      ),
      history.statusQuotesOf(
        db,
        lastRows.map((m) => m.id),
      ),
    ]);
    return rows.map((r) => {
      // A former participant sees the group as it was when they left.
      const { conv, people } = asSeenBy(r, participants.get(r.id) ?? [], r.my);
      const lastRow = last.get(r.id);
      const c = toConversation(conv, people, r.my, clock.now());
      c.lastMessage = lastRow ? toMessage(lastRow, people, reactions, quotes, readShared.get(r.id)) : undefined;
      c.unreadCount = unread.get(r.id)?.unread ?? 0;
      c.unreadMentionCount = unread.get(r.id)?.mentions ?? 0;
      c.pinned = r.my.left_at === null && r.my.pinned_at != null;
      c.pinnedAt = c.pinned ? timestampFromDate(r.my.pinned_at!) : undefined;
      // A former participant does not follow the pins made after they left.
      c.pinnedMessageIds = r.my.left_at === null ? (pinnedMessages.get(r.id) ?? []) : [];
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
    return toConversation(
      conv,
      people,
      people.find((p) => p.user_id === userId),
      clock.now(),
    );
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
    const [visible] = await history.listMessages(db, message.conversation_id, me, windowOf(my, clock.now()), { afterSeq: (seq - 1n).toString(), limit: 1 });
    if (!visible || visible.id !== id) throw missing;
    return { message, my };
  }

  async function messageFor(row: history.MessageRow, justStored = false): Promise<Message> {
    return storedMessageView(ctx, row, justStored);
  }

  /** The participants as `my` sees them: current ones, or for a former participant those of when they left. */
  async function peopleSeenBy(my: convs.ParticipantRow): Promise<convs.ParticipantRow[]> {
    if (my.left_at !== null) return formerParticipants(my);
    return await convs.participantsOf(db, my.conversation_id);
  }

  return { ctx, db, clock, participation, toConversations, conversationFor, withEvents, snapshotFor, visibleMessage, messageFor, peopleSeenBy };
}

/** Whether the conversation's participants see each other's read state (readStateShared). */
export async function readShared(trx: Transaction<Database>, conversationId: string): Promise<boolean> {
  return (await readStateSharedIn(trx, [conversationId])).get(conversationId) ?? true;
}
