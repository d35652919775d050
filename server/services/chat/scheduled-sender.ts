import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, createHandlerContext } from "@connectrpc/connect";
import { ChatService, SendMessageRequestSchema } from "../../../gen/chat/chat_pb.js";
import { callerKey } from "../../auth/auth-context.js";
import type { AppContext } from "../../context.js";
import * as sched from "../../db/scheduled-store.js";
import { chatRoom } from "./context.js";
import { messageHandlers } from "./messages.js";
import { scheduledUpdated } from "./scheduled.js";

/** How often the sending job runs. */
export const SCHEDULED_SEND_EVERY_MS = 5_000;
/** A claimed row is the claimant's this long; after it, another run may send it (the same client_message_id: stored once). */
const LEASE_MS = 60_000;
/** Rows claimed at once, and claims per run: a run is bounded. */
const BATCH = 50;
const BATCHES_PER_RUN = 4;

/** Answers that say "not now" rather than "never": the row is given back for the next run. */
const TRANSIENT = new Set([Code.Unavailable, Code.Aborted, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Internal, Code.Unknown, Code.Canceled]);

/** The client_message_id a scheduled message is sent with: the message path's idempotency makes it one message. */
const scheduledClientMessageId = (scheduledId: string) => `scheduled:${scheduledId}`;

export interface SendRun {
  sent: number;
  failed: number;
  retried: number;
}

/**
 * The periodic job: sends the due scheduled messages through SendMessage's
 * handler, as their sender then (so the participation, block and
 * conversation rules of that moment apply), and records each outcome with a
 * `scheduled_message_updated` event for the sender.
 */
export function scheduledSender(ctx: AppContext): () => Promise<SendRun> {
  const room = chatRoom(ctx);
  const { sendMessage } = messageHandlers(room);
  const method = ChatService.method.sendMessage;

  async function sendOne(row: sched.ScheduledRow): Promise<"sent" | "failed" | "retried"> {
    const hc = createHandlerContext({
      service: ChatService,
      method,
      protocolName: "scheduled",
      requestMethod: "POST",
      url: `internal:///chat.ChatService/SendMessage`,
      contextValues: createContextValues().set(callerKey, { userId: row.sender_id, sessionId: "" }),
    });
    const req = create(SendMessageRequestSchema, {
      conversationId: row.conversation_id,
      content: row.content,
      mediaUrl: row.media_url,
      mediaType: row.media_type,
      clientMessageId: scheduledClientMessageId(row.id),
      replyToMessageId: row.reply_to_message_id ?? "",
      mentionUserIds: row.mention_user_ids,
    });
    let outcome: { state: "sent"; messageId: string } | { state: "failed"; reason: string };
    try {
      const res = await sendMessage(req, hc);
      outcome = { state: "sent", messageId: res.message?.id ?? "" };
    } catch (err) {
      const ce = err instanceof ConnectError ? err : undefined;
      if (!ce || TRANSIENT.has(ce.code)) {
        ctx.logger.warn({ err, scheduledMessageId: row.id }, "scheduled message not sent now; the next run tries again");
        await sched.releaseClaim(ctx.database.db, row.id).catch(() => undefined);
        return "retried";
      }
      outcome = { state: "failed", reason: ce.rawMessage };
    }
    const now = ctx.clock.now();
    await room.withEvents(async (trx, emit) => {
      const done = await sched.finishScheduled(trx, row.id, outcome, now);
      if (done) emit([scheduledUpdated(done, now)]);
    });
    return outcome.state;
  }

  return async () => {
    const run: SendRun = { sent: 0, failed: 0, retried: 0 };
    for (let i = 0; i < BATCHES_PER_RUN; i++) {
      const rows = await sched.claimDue(ctx.database.db, ctx.clock.now(), LEASE_MS, BATCH);
      for (const row of rows) run[await sendOne(row)]++;
      if (rows.length < BATCH) break;
    }
    return run;
  };
}
