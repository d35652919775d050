import * as grpc from "@grpc/grpc-js";
import { Code } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ChatService, MessageKind } from "../../gen/chat/chat_pb.js";
import { purgeExpiredMessages } from "../messaging/disappearing.js";
import { grpcJsClient, grpcJsUnary } from "./helpers/grpc-js.js";
import { protocolTransport, Subscription } from "./helpers/realtime.js";
import { codeOf, curlJson, phoneSequence, socialUser } from "./helpers/social.js";
import { FakeClock, startTestServer, type TestServer } from "./helpers/test-server.js";

// Disappearing messages: the per-conversation timer (a system message and a
// conversation_updated event), expires_at on messages stored under it, reads
// that never return an expired message (before the purge too), and the
// bounded purge job with its messages_expired events.

const DAY_MS = 86_400_000;
const phone = phoneSequence("862");
const clock = new FakeClock();
let s: TestServer;

beforeAll(async () => {
  s = await startTestServer({ ACCESS_TOKEN_TTL_SECONDS: "86400" }, { clock });
});
afterAll(async () => {
  await s?.stop();
});

const purge = (batch?: number) => purgeExpiredMessages(s.server.ctx.database.db, s.server.ctx.bus, s.config.natsSubjectPrefix, clock.now(), batch);

/** Waits until the stream has a stored message_created event for this client message id. */
function storedOn(sub: Subscription, clientMessageId: string) {
  return sub.until((x) => x.of("messageCreated").some((e) => e.message!.clientMessageId === clientMessageId), 10_000, `${clientMessageId} stored`);
}

describe("the timer", () => {
  test("any participant sets it (Connect JSON and gRPC); a system message and conversation_updated; a repeat changes nothing", async () => {
    const [a, b, c] = [await socialUser(s, phone()), await socialUser(s, phone()), await socialUser(s, phone())];
    const group = (await a.chat.createConversation({ participantIds: [b.id, c.id], isGroup: true, groupName: "Timers" })).conversation!.id;
    const bStream = new Subscription(protocolTransport(s.url, b.token, "connect"));
    await bStream.untilKind("caughtUp");

    // c, a plain member, over Connect JSON (curl).
    const json = await curlJson(s, c.token, "chat.ChatService", "SetDisappearingTimer", { conversation_id: group, seconds: 604800 });
    expect(json.status).toBe(200);
    expect(json.body.conversation.disappearing_seconds).toBe(604800);
    await bStream.untilKind("conversationUpdated");
    expect(bStream.of("conversationUpdated")[0]!.conversation!.disappearingSeconds).toBe(604800);
    await bStream.until((x) => x.of("messageCreated").some((e) => e.message!.systemEvent === "disappearing_timer_changed"), 10_000, "system message");
    const sys = bStream.of("messageCreated").find((e) => e.message!.systemEvent === "disappearing_timer_changed")!.message!;
    expect([sys.kind, sys.content, sys.systemUserIds]).toEqual([MessageKind.SYSTEM, "604800", [c.id]]);

    // The same value again (a retry), over gRPC: no second system message or event.
    const client = grpcJsClient(s.url);
    try {
      const md = new grpc.Metadata();
      md.set("authorization", `Bearer ${a.token}`);
      const r = await grpcJsUnary(client, ChatService.method.setDisappearingTimer, { conversationId: group, seconds: 604800 }, md);
      expect(r.conversation!.disappearingSeconds).toBe(604800);
      await grpcJsUnary(client, ChatService.method.setDisappearingTimer, { conversationId: group, seconds: 0 }, md);
    } finally {
      client.close();
    }
    await bStream.untilKind("conversationUpdated", 2);
    const timeline = (await b.chat.listMessages({ conversationId: group })).messages.filter((m) => m.systemEvent === "disappearing_timer_changed");
    expect(timeline.map((m) => m.content)).toEqual(["0", "604800"]);
    expect((await b.chat.getConversation({ conversationId: group })).conversation!.disappearingSeconds).toBe(0);
    await bStream.close();

    expect(await codeOf(a.chat.setDisappearingTimer({ conversationId: group, seconds: 3600 }))).toBe(Code.InvalidArgument);
    const stranger = await socialUser(s, phone());
    expect(await codeOf(stranger.chat.setDisappearingTimer({ conversationId: group, seconds: 86400 }))).toBe(Code.NotFound);
  });
});

describe("expiry", () => {
  test("expires_at from the timer a message was sent under (in SendMessage's answer too); hidden from every read once due; purged with messages_expired", async () => {
    const [a, b] = [await socialUser(s, phone()), await socialUser(s, phone())];
    const direct = (await a.chat.createConversation({ participantIds: [b.id] })).conversation!.id;
    const bStream = new Subscription(protocolTransport(s.url, b.token, "grpc"));
    await bStream.untilKind("caughtUp");
    // "stays" is acknowledged before the timer is set; on the production profile the worker may store it after.
    const stays = await a.chat.sendMessage({ conversationId: direct, content: "stays", clientMessageId: "keep" });
    expect(stays.message!.expiresAt).toBeUndefined();
    await a.chat.setDisappearingTimer({ conversationId: direct, seconds: 86400 });
    const vanishes = await a.chat.sendMessage({ conversationId: direct, content: "vanishes", clientMessageId: "gone" });
    await storedOn(bStream, "gone");
    const live = bStream.of("messageCreated").find((e) => e.message!.clientMessageId === "gone")!.message!;
    expect(live.expiresAt).toBeDefined();
    expect(timestampDate(live.expiresAt!).getTime() - new Date(live.createdAt).getTime()).toBe(DAY_MS);
    expect(vanishes.message!.expiresAt).toEqual(live.expiresAt);
    const listed = (await b.chat.listMessages({ conversationId: direct })).messages.filter((m) => m.kind === MessageKind.USER);
    expect(listed.map((m) => [m.content, m.expiresAt !== undefined])).toEqual([
      ["vanishes", true],
      ["stays", false],
    ]);
    await b.chat.reactToMessage({ messageId: live.id, emoji: "👍" });
    const before = bStream.lastPosition;
    expect((await b.chat.getConversations({})).conversations.find((c) => c.id === direct)!.unreadCount).toBe(2);

    // A day on (fresh logins: the tokens' lifetime is a day too). Before any purge, nothing reads it.
    clock.advance(DAY_MS + 1000);
    const [a2, b2] = [await socialUser(s, a.phone), await socialUser(s, b.phone)];
    const after = (await b2.chat.listMessages({ conversationId: direct })).messages;
    expect(after.some((m) => m.id === live.id)).toBe(false);
    expect(after.some((m) => m.content === "stays")).toBe(true);
    const [conv] = (await b2.chat.getConversations({})).conversations;
    expect(conv!.lastMessage!.id).not.toBe(live.id);
    // Nor is it counted unread any more: only "stays" is.
    expect(conv!.unreadCount).toBe(1);
    expect(await codeOf(a2.chat.reactToMessage({ messageId: live.id, emoji: "🎉" }))).toBe(Code.NotFound);
    // Inbox replay (a device reconnecting from before the message) skips it.
    const replay = new Subscription(protocolTransport(s.url, b2.token, "connect"), 0n);
    await replay.untilKind("caughtUp");
    expect(replay.of("messageCreated").map((e) => e.message!.clientMessageId)).not.toContain("gone");
    expect(replay.of("messageCreated").map((e) => e.message!.clientMessageId)).toContain("keep");
    await replay.close();

    // The purge: content, reactions and media references gone; the open stream told.
    expect(await purge()).toBe(1);
    await bStream.untilKind("messagesExpired");
    const expired = bStream.of("messagesExpired")[0]!;
    expect([expired.conversationId, expired.messageIds, expired.seqs]).toEqual([direct, [live.id], [live.seq]]);
    expect(bStream.stored("messagesExpired")[0]!.position).toBeGreaterThan(before);
    const db = s.server.ctx.database.db;
    const row = await db.selectFrom("messages").select(["content", "deleted_at"]).where("id", "=", live.id).executeTakeFirstOrThrow();
    expect(row.content).toBe("");
    expect(row.deleted_at).not.toBeNull();
    expect(await db.selectFrom("message_reactions").select("user_id").where("message_id", "=", live.id).execute()).toEqual([]);
    expect(await purge()).toBe(0);
    await bStream.close();
  });

  test("a run is bounded: batches of the given size, at most four per run; the rest at the next run", async () => {
    const [a, b] = [await socialUser(s, phone()), await socialUser(s, phone())];
    const direct = (await a.chat.createConversation({ participantIds: [b.id] })).conversation!.id;
    await a.chat.setDisappearingTimer({ conversationId: direct, seconds: 86400 });
    const aStream = new Subscription(protocolTransport(s.url, a.token, "connect"));
    await aStream.untilKind("caughtUp");
    for (let i = 0; i < 10; i++) await a.chat.sendMessage({ conversationId: direct, content: `m${i}`, clientMessageId: `b${i}` });
    await storedOn(aStream, "b9");
    await aStream.close();
    clock.advance(DAY_MS + 1000);
    expect(await purge(2)).toBe(8);
    expect(await purge(2)).toBe(2);
    expect(await purge(2)).toBe(0);
  });
});
