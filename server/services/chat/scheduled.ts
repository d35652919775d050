import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { ScheduledMessageSchema, ScheduledMessageState, type ScheduledMessage } from "../../../gen/chat/chat_pb.js";
import * as sched from "../../db/scheduled-store.js";
import { CLIENT_ID_MAX, MEDIA_TYPE_MAX, URL_MAX } from "../../domain/limits.js";
import { codePoints } from "../../domain/text.js";
import type { NewInboxEvent } from "../../messaging/types.js";
import { storedEvent } from "../../realtime/events.js";
import { requireDirectNotBlocked } from "../blocking.js";
import { requestIdField } from "../request-replay.js";
import { bad, callerOf, uuidField } from "../rpc-input.js";
import { pageSize, type ChatHandlers, type ChatRoom } from "./context.js";

/** How far ahead a message may be scheduled. */
const MAX_AHEAD_MS = 365 * 24 * 3600_000;
/** Pending scheduled messages per user. */
const MAX_PENDING = 100;

const STATE_TO_PROTO: Record<string, ScheduledMessageState> = {
  pending: ScheduledMessageState.PENDING,
  sent: ScheduledMessageState.SENT,
  failed: ScheduledMessageState.FAILED,
  cancelled: ScheduledMessageState.CANCELLED,
};

function toScheduledMessage(r: sched.ScheduledRow): ScheduledMessage {
  return create(ScheduledMessageSchema, {
    id: r.id,
    conversationId: r.conversation_id,
    content: r.content,
    mediaUrl: r.media_url,
    mediaType: r.media_type,
    replyToMessageId: r.reply_to_message_id ?? "",
    mentionUserIds: r.mention_user_ids,
    sendAt: timestampFromDate(r.send_at),
    state: STATE_TO_PROTO[r.state] ?? ScheduledMessageState.UNSPECIFIED,
    messageId: r.message_id ?? "",
    failureReason: r.failure_reason,
    createdAt: timestampFromDate(r.created_at),
    finishedAt: r.finished_at ? timestampFromDate(r.finished_at) : undefined,
  });
}

/** The `scheduled_message_updated` event for the sender's devices. */
export function scheduledUpdated(r: sched.ScheduledRow, at: Date): NewInboxEvent {
  return storedEvent(r.sender_id, { case: "scheduledMessageUpdated", value: toScheduledMessage(r) }, at, { conversationId: null });
}

function pageToken(r: sched.ScheduledRow): string {
  return Buffer.from(`${r.send_at.getTime()}:${r.id}`, "utf8").toString("base64url");
}

function afterOf(token: string): { sendAt: Date; id: string } | undefined {
  if (token === "") return undefined;
  const m = /^(\d{1,15}):([0-9a-f-]{36})$/.exec(Buffer.from(token, "base64url").toString("utf8"));
  if (!m) throw bad("page_token: not a token from a previous ListScheduledMessages page");
  return { sendAt: new Date(Number(m[1])), id: m[2]! };
}

/** Scheduled messages: kept now, sent later by server/services/chat/scheduled-sender.ts. */
export function scheduledHandlers(room: ChatRoom): ChatHandlers<"scheduleMessage" | "listScheduledMessages" | "cancelScheduledMessage"> {
  const { ctx, db, clock, participation, withEvents } = room;
  const MAX_TEXT = ctx.config.chat.maxTextLength;

  return {
    async scheduleMessage(req, hc) {
      const me = callerOf(hc).userId;
      const requestId = requestIdField(req.clientRequestId);
      if (requestId) {
        const kept = await sched.scheduledByRequest(db, me, requestId);
        if (kept) return { scheduledMessage: toScheduledMessage(kept) };
      }
      const conversationId = uuidField("conversation_id", req.conversationId);
      const now = clock.now();
      if (!req.sendAt) throw bad("send_at: required (when to send the message)");
      const sendAt = timestampDate(req.sendAt);
      if (!(sendAt.getTime() > now.getTime())) throw bad(`send_at: must be in the future (now is ${now.toISOString()})`);
      if (sendAt.getTime() - now.getTime() > MAX_AHEAD_MS) throw bad("send_at: at most 365 days ahead");
      // The same checks SendMessage makes of the fields; permissions are checked again when it is sent.
      const content = req.content;
      const mediaUrl = req.mediaUrl.trim();
      if (codePoints(content) > MAX_TEXT) throw bad(`content: at most ${MAX_TEXT} characters (got ${codePoints(content)})`);
      if (content.trim() === "" && mediaUrl === "") throw bad("content: a message needs text or media_url");
      if (mediaUrl && !/^https?:\/\/\S+$/.test(mediaUrl)) throw bad("media_url: must be an http(s) URL");
      if (mediaUrl.length > URL_MAX) throw bad(`media_url: at most ${URL_MAX} characters`);
      if (req.mediaType.length > MEDIA_TYPE_MAX) throw bad(`media_type: at most ${MEDIA_TYPE_MAX} characters`);
      if (requestId && requestId.length > CLIENT_ID_MAX) throw bad(`client_request_id: at most ${CLIENT_ID_MAX} characters`);
      const replyTo = req.replyToMessageId.trim() === "" ? null : uuidField("reply_to_message_id", req.replyToMessageId);
      const mentions = [...new Set(req.mentionUserIds.map((id, i) => uuidField(`mention_user_ids[${i}]`, id)))];
      await participation(conversationId, me);
      await requireDirectNotBlocked(db, conversationId, me);
      if ((await sched.pendingCount(db, me)) >= MAX_PENDING) {
        throw new ConnectError(`at most ${MAX_PENDING} scheduled messages may be pending; cancel one or wait`, Code.ResourceExhausted);
      }
      const row = await withEvents(async (trx, emit) => {
        const { row, created } = await sched.insertScheduled(trx, {
          senderId: me,
          conversationId,
          content,
          mediaUrl,
          mediaType: req.mediaType.trim(),
          replyToMessageId: replyTo,
          mentionUserIds: mentions,
          sendAt,
          clientRequestId: requestId ?? null,
          now,
        });
        if (created) emit([scheduledUpdated(row, now)]);
        return row;
      });
      return { scheduledMessage: toScheduledMessage(row) };
    },

    async listScheduledMessages(req, hc) {
      const me = callerOf(hc).userId;
      const conversationId = req.conversationId.trim() === "" ? undefined : uuidField("conversation_id", req.conversationId);
      const limit = pageSize(req.limit);
      const rows = await sched.listScheduled(db, me, { conversationId, includeFinished: req.includeFinished, after: afterOf(req.pageToken), limit: limit + 1 });
      const page = rows.slice(0, limit);
      return {
        scheduledMessages: page.map(toScheduledMessage),
        nextPageToken: rows.length > limit ? pageToken(page[page.length - 1]!) : "",
      };
    },

    async cancelScheduledMessage(req, hc) {
      const me = callerOf(hc).userId;
      const id = uuidField("scheduled_message_id", req.scheduledMessageId);
      const now = clock.now();
      const done = await withEvents(async (trx, emit) => {
        const done = await sched.cancelScheduled(trx, id, me, now);
        if (done?.changed) emit([scheduledUpdated(done.row, now)]);
        return done;
      });
      if (!done) throw new ConnectError(`scheduled message ${id} not found`, Code.NotFound);
      const { row } = done;
      if (row.state === "sent") throw new ConnectError("the scheduled message was already sent", Code.FailedPrecondition);
      if (row.state === "failed") throw new ConnectError("the scheduled message already failed to send; nothing to cancel", Code.FailedPrecondition);
      if (row.state === "pending") throw new ConnectError("the scheduled message is being sent right now", Code.FailedPrecondition);
      return { scheduledMessage: toScheduledMessage(row) };
    },
  };
}
