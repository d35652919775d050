import * as grpc from "@grpc/grpc-js";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ChatService, ScheduledMessageState } from "../../gen/chat/chat_pb.js";
import { scheduledSender } from "../services/chat/scheduled-sender.js";
import { grpcJsClient, grpcJsUnary } from "./helpers/grpc-js.js";
import { protocolTransport, Subscription } from "./helpers/realtime.js";
import { codeOf, curlJson, phoneSequence, socialUser, type SocialUser } from "./helpers/social.js";
import { FakeClock, startTestServer, type TestServer } from "./helpers/test-server.js";

// Issue 17, item 8: scheduled messages. The sending job is called directly
// (the server's own timer may run it too: assertions are on what is stored,
// never on which run sent it); time moves on a FakeClock.

const MINUTE = 60_000;
const clock = new FakeClock();
let s: TestServer;
/** A second instance of the same deployment (same database and bus; its own pool on PostgreSQL). */
let s2: TestServer;
const open: Subscription[] = [];
const nextPhone = phoneSequence("617");

beforeAll(async () => {
  s = await startTestServer({}, { clock });
  s2 = await startTestServer({}, { clock, shareWith: s });
});
afterAll(async () => {
  for (const sub of open) await sub.close();
  await s2?.stop();
  await s?.stop();
});

function subscribe(u: SocialUser, server = s): Subscription {
  const sub = new Subscription(protocolTransport(server.url, u.token, "connect"));
  open.push(sub);
  return sub;
}

/** A direct conversation of two new users. */
async function pair(protocol: "grpc" | "connect" = "connect") {
  const a = await socialUser(s, nextPhone(), protocol);
  const b = await socialUser(s, nextPhone(), protocol);
  const conversationId = (await a.chat.createConversation({ participantIds: [b.id] })).conversation!.id;
  return { a, b, conversationId };
}

const at = (msFromNow: number) => new Date(clock.now().getTime() + msFromNow);

describe("scheduled messages", () => {
  test("over Connect JSON: scheduled, listed, cancelled, sent once at its time with the sender's id", async () => {
    const { a, b, conversationId } = await pair();
    const aStream = subscribe(a);
    const bStream = subscribe(b);
    await Promise.all([aStream.untilKind("caughtUp"), bStream.untilKind("caughtUp")]);
    const call = (method: string, body: unknown) => curlJson(s, a.token, "chat.ChatService", method, body);

    // Past, now and more than a year ahead are refused.
    for (const when of [at(-MINUTE), at(0), at(366 * 24 * 60 * MINUTE)]) {
      const r = await call("ScheduleMessage", { conversationId, content: "x", sendAt: when.toISOString() });
      expect(r.status).toBe(400);
      expect(r.body.code).toBe("invalid_argument");
      expect(r.body.message).toMatch(/^send_at: /);
    }
    const first = await call("ScheduleMessage", {
      conversationId,
      content: "in ten minutes",
      sendAt: at(10 * MINUTE).toISOString(),
      clientRequestId: "sched-1",
    });
    expect(first.status).toBe(200);
    const scheduled = first.body.scheduled_message;
    expect(scheduled).toMatchObject({ conversation_id: conversationId, content: "in ten minutes", state: "SCHEDULED_MESSAGE_STATE_PENDING" });
    // A retry with the same key: the same scheduled message, nothing new.
    const retry = await call("ScheduleMessage", {
      conversationId,
      content: "in ten minutes",
      sendAt: at(10 * MINUTE).toISOString(),
      clientRequestId: "sched-1",
    });
    expect(retry.body.scheduled_message.id).toBe(scheduled.id);
    const other = (await call("ScheduleMessage", { conversationId, content: "never", sendAt: at(20 * MINUTE).toISOString() })).body.scheduled_message;

    const listed = await call("ListScheduledMessages", {});
    expect(listed.body.scheduled_messages.map((m: { id: string }) => m.id)).toEqual([scheduled.id, other.id]);
    const cancelled = await call("CancelScheduledMessage", { scheduledMessageId: other.id });
    expect(cancelled.body.scheduled_message.state).toBe("SCHEDULED_MESSAGE_STATE_CANCELLED");
    // Safe to retry.
    expect((await call("CancelScheduledMessage", { scheduledMessageId: other.id })).status).toBe(200);
    // Only the sender's devices hear of it: scheduled (2) and cancelled (1).
    await aStream.untilKind("scheduledMessageUpdated", 3);

    // Not due yet: nothing is sent.
    clock.advance(10 * MINUTE - 1000);
    await scheduledSender(s.server.ctx)();
    expect((await b.chat.listMessages({ conversationId })).messages).toHaveLength(0);
    clock.advance(1000);
    await scheduledSender(s.server.ctx)();
    await bStream.untilKind("messageCreated", 1);
    const [created] = bStream.of("messageCreated");
    expect(created!.message).toMatchObject({ senderId: a.id, content: "in ten minutes", clientMessageId: `scheduled:${scheduled.id}` });
    await aStream.until((x) => x.of("scheduledMessageUpdated").some((m) => m.state === ScheduledMessageState.SENT), 10_000, "sent update");

    const all = await call("ListScheduledMessages", { includeFinished: true });
    const sent = all.body.scheduled_messages.find((m: { id: string }) => m.id === scheduled.id);
    expect(sent).toMatchObject({ state: "SCHEDULED_MESSAGE_STATE_SENT", message_id: created!.message!.id });
    expect((await call("ListScheduledMessages", {})).body.scheduled_messages ?? []).toEqual([]);
    // Sent: cancelling it is refused; running the job again sends nothing more.
    expect((await call("CancelScheduledMessage", { scheduledMessageId: scheduled.id })).body.code).toBe("failed_precondition");
    await scheduledSender(s.server.ctx)();
    const db = s.server.ctx.database.db;
    const rows = await db.selectFrom("messages").select("id").where("client_message_id", "=", `scheduled:${scheduled.id}`).execute();
    expect(rows).toHaveLength(1);
  });

  test("over gRPC (@grpc/grpc-js): permissions are checked at send time; a refused send fails the row and tells the sender", async () => {
    const { a, b, conversationId } = await pair("grpc");
    const client = grpcJsClient(s.url);
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${a.token}`);
    try {
      const { scheduledMessage } = await grpcJsUnary(
        client,
        ChatService.method.scheduleMessage,
        { conversationId, content: "after the block", sendAt: timestampFromDate(at(5 * MINUTE)) },
        md,
      );
      expect(scheduledMessage!.state).toBe(ScheduledMessageState.PENDING);
      const err = (await grpcJsUnary(
        client,
        ChatService.method.scheduleMessage,
        { conversationId, content: "x", sendAt: timestampFromDate(at(-1000)) },
        md,
      ).catch((e: unknown) => e)) as grpc.ServiceError;
      expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);

      const aStream = subscribe(a);
      await aStream.untilKind("caughtUp");
      // Allowed when scheduled; B blocks A before its time.
      await b.users.blockUser({ userId: a.id });
      clock.advance(5 * MINUTE);
      await scheduledSender(s.server.ctx)();
      await aStream.until((x) => x.of("scheduledMessageUpdated").some((m) => m.state === ScheduledMessageState.FAILED), 10_000, "failed update");
      const failed = aStream.of("scheduledMessageUpdated").find((m) => m.state === ScheduledMessageState.FAILED)!;
      expect(failed.id).toBe(scheduledMessage!.id);
      expect(failed.failureReason).not.toBe("");
      const listed = await grpcJsUnary(client, ChatService.method.listScheduledMessages, { includeFinished: true }, md);
      expect(listed.scheduledMessages.map((m) => [m.id, m.state])).toEqual([[scheduledMessage!.id, ScheduledMessageState.FAILED]]);
      expect((await b.chat.listMessages({ conversationId })).messages).toHaveLength(0);
      // Failed: nothing to cancel.
      expect(await codeOf(a.chat.cancelScheduledMessage({ scheduledMessageId: scheduledMessage!.id }))).toBe(Code.FailedPrecondition);
    } finally {
      client.close();
    }
  });

  test("exactly once across instances and restarts: two instances' jobs race for the same due rows", async () => {
    const { a, b, conversationId } = await pair();
    const N = 30;
    const ids: string[] = [];
    for (let i = 0; i < N; i++) {
      ids.push((await a.chat.scheduleMessage({ conversationId, content: `race ${i}`, sendAt: timestampFromDate(at(MINUTE + i)) })).scheduledMessage!.id);
    }
    const bStream = subscribe(b, s2);
    await bStream.untilKind("caughtUp");
    clock.advance(2 * MINUTE);
    // Both instances at once, each several times: every due row is claimed by one run at a time.
    const runs = await Promise.all([s, s2, s, s2].map((x) => scheduledSender(x.server.ctx)()));
    expect(runs.reduce((n, r) => n + r.sent, 0)).toBeLessThanOrEqual(N);
    await bStream.untilKind("messageCreated", N);

    const db = s.server.ctx.database.db;
    const states = await db.selectFrom("scheduled_messages").select(["state", "message_id"]).where("id", "in", ids).execute();
    expect(states.every((r) => r.state === "sent" && r.message_id !== null)).toBe(true);

    // A run that sent but died before recording it (a restart): the row is pending again; the next run sends
    // with the same client_message_id, and the message path stores nothing twice.
    await db.updateTable("scheduled_messages").set({ state: "pending", message_id: null, finished_at: null }).where("id", "in", ids.slice(0, 5)).execute();
    await Promise.all([scheduledSender(s2.server.ctx)(), scheduledSender(s.server.ctx)()]);
    const after = await db.selectFrom("scheduled_messages").select(["id", "state", "message_id"]).where("id", "in", ids).execute();
    expect(after.every((r) => r.state === "sent")).toBe(true);

    const { messages } = await b.chat.listMessages({ conversationId, limit: 100 });
    expect(messages).toHaveLength(N);
    expect(new Set(messages.map((m) => m.clientMessageId))).toEqual(new Set(ids.map((id) => `scheduled:${id}`)));
    // The ids the rows recorded are the stored messages'.
    expect(new Set(after.map((r) => r.message_id))).toEqual(new Set(messages.map((m) => m.id)));
    expect(bStream.of("messageCreated")).toHaveLength(N);
  });
});
