import { Code } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ChatService, MessageKind } from "../../gen/chat/chat_pb.js";
import { grpcJsClient, grpcJsUnary } from "./helpers/grpc-js.js";
import { whenSome } from "./helpers/media.js";
import { protocolTransport, Subscription } from "./helpers/realtime.js";
import { curlJson, errorOf, phoneSequence, socialUser, type SocialUser } from "./helpers/social.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// Mentions, pins and stars (issue 17 items 4 and 5): unread mention counts
// with their event, pinned conversations first in the list (at most
// CHAT_MAX_PINNED_CONVERSATIONS), messages pinned by group admins with a
// system message, and each user's starred messages.

const phone = phoneSequence("722");
let s: TestServer;
let a: SocialUser;
let b: SocialUser;
let c: SocialUser;
let group: string;
let grpcClient: grpc.Client;

beforeAll(async () => {
  s = await startTestServer();
  [a, b, c] = [await socialUser(s, phone()), await socialUser(s, phone()), await socialUser(s, phone())];
  group = (await a.chat.createConversation({ isGroup: true, groupName: "mp", participantIds: [b.id, c.id] })).conversation!.id;
  grpcClient = grpcJsClient(s.url);
}, 60_000);
afterAll(async () => {
  grpcClient?.close();
  await s?.stop();
});

const asGrpc = (u: SocialUser) => {
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${u.token}`);
  return md;
};
const stored = (u: SocialUser, conversationId: string, id: string) =>
  whenSome(async () => (await u.chat.listMessages({ conversationId, limit: 100 })).messages.find((m) => m.id === id));
const conversationOf = async (u: SocialUser, id: string) => (await u.chat.getConversation({ conversationId: id })).conversation!;

describe("mentions", () => {
  test("Connect JSON send, event, count in GetConversations (gRPC), down on MarkRead; replayed after reconnect", async () => {
    const live = new Subscription(protocolTransport(s.url, b.token, "connect"));
    try {
      await live.untilKind("ready");
      const sent = await curlJson(s, a.token, "chat.ChatService", "SendMessage", { conversation_id: group, content: "@b look", mention_user_ids: [b.id] });
      expect(sent.status).toBe(200);
      const id = sent.body.message.id as string;
      const plain = (await a.chat.sendMessage({ conversationId: group, content: "no mention" })).message!.id;
      await live.until((x) => x.of("mentionAdded").some((m) => m.messageId === id), 10_000, "mention_added");
      // Both stored (production: a send is answered once queued) before the counts are read.
      await live.until((x) => x.of("messageCreated").some((m) => m.message?.id === plain), 10_000, "the second message");
      const event = live.of("mentionAdded").find((m) => m.messageId === id)!;
      expect([event.conversationId, event.senderId]).toEqual([group, a.id]);
      // After its message_created.
      const kinds = live.stored().map((e) => (e.kind.case === "messageCreated" ? e.kind.value.message!.id : e.kind.case));
      expect(kinds.indexOf("mentionAdded")).toBe(kinds.indexOf(id) + 1);

      const list = await grpcJsUnary(grpcClient, ChatService.method.getConversations, {}, asGrpc(b));
      const conv = list.conversations.find((x) => x.id === group)!;
      expect([conv.unreadCount, conv.unreadMentionCount]).toEqual([2, 1]);
      // Nobody else is mentioned.
      expect((await conversationOf(c, group)).unreadMentionCount).toBe(0);

      // A stored event: a device reconnecting from 0 gets it in the replay.
      const replay = new Subscription(protocolTransport(s.url, b.token, "grpc"), 0n);
      try {
        await replay.untilKind("caughtUp");
        expect(replay.of("mentionAdded").map((m) => [m.messageId, m.seq])).toEqual([[id, event.seq]]);
      } finally {
        await replay.close();
      }

      await b.chat.markRead({ conversationId: group, upToSeq: event.seq - 1n });
      expect((await conversationOf(b, group)).unreadMentionCount).toBe(1);
      await b.chat.markRead({ conversationId: group, upToSeq: event.seq });
      const after = await conversationOf(b, group);
      expect([after.unreadCount, after.unreadMentionCount]).toEqual([1, 0]);
    } finally {
      await live.close();
    }
  });

  test("mentioning someone not in the conversation is refused", async () => {
    const outsider = await socialUser(s, phone());
    const err = await errorOf(a.chat.sendMessage({ conversationId: group, content: "hi", mentionUserIds: [outsider.id] }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("is not a participant");
  });
});

describe("pinned conversations", () => {
  test("at most 3 (the default), listed first, latest pinned first; paging keeps the order; events to own devices", async () => {
    const u = await socialUser(s, phone());
    const others = [await socialUser(s, phone()), await socialUser(s, phone()), await socialUser(s, phone()), await socialUser(s, phone())];
    const ids: string[] = [];
    for (const o of others) ids.push((await u.chat.createConversation({ participantIds: [o.id] })).conversation!.id);
    const live = new Subscription(protocolTransport(s.url, u.token, "connect"));
    try {
      await live.untilKind("ready");
      // Connect JSON for the first pin, gRPC for the second.
      const pinned = await curlJson(s, u.token, "chat.ChatService", "PinConversation", { conversation_id: ids[0], pinned: true });
      expect(pinned.status).toBe(200);
      expect(pinned.body.conversation).toMatchObject({ id: ids[0], pinned: true });
      await grpcJsUnary(grpcClient, ChatService.method.pinConversation, { conversationId: ids[1], pinned: true }, asGrpc(u));
      await u.chat.pinConversation({ conversationId: ids[2], pinned: true });
      // A retry changes nothing.
      await u.chat.pinConversation({ conversationId: ids[2], pinned: true });
      const fourth = await errorOf(u.chat.pinConversation({ conversationId: ids[3], pinned: true }));
      expect(fourth.code).toBe(Code.FailedPrecondition);
      expect(fourth.rawMessage).toContain("at most 3 conversations");
      await live.untilKind("conversationPinned", 3);
      expect(live.of("conversationPinned").map((e) => [e.conversationId, e.pinned])).toEqual([
        [ids[0], true],
        [ids[1], true],
        [ids[2], true],
      ]);

      // The unpinned one has the latest activity, and still comes after the pinned ones.
      await others[3]!.chat.sendMessage({ conversationId: ids[3]!, content: "newest" });
      const order = [ids[2], ids[1], ids[0], ids[3]];
      expect((await u.chat.getConversations({})).conversations.map((x) => x.id)).toEqual(order);
      const paged: string[] = [];
      let token = "";
      do {
        const page = await u.chat.getConversations({ limit: 1, pageToken: token });
        paged.push(...page.conversations.map((x) => x.id));
        token = page.nextPageToken;
      } while (token);
      expect(paged).toEqual(order);

      await u.chat.pinConversation({ conversationId: ids[1], pinned: false });
      const conv = await conversationOf(u, ids[1]!);
      expect([conv.pinned, conv.pinnedAt]).toEqual([false, undefined]);
      await u.chat.pinConversation({ conversationId: ids[3], pinned: true });
      expect((await u.chat.getConversations({})).conversations.map((x) => x.id)).toEqual([ids[3], ids[2], ids[0], ids[1]]);
    } finally {
      await live.close();
    }
  });
});

describe("pinned messages", () => {
  test("group admins pin (system message and event), members may not; retries write nothing; direct: either side", async () => {
    const m = (await b.chat.sendMessage({ conversationId: group, content: "pin me" })).message!;
    await stored(a, group, m.id);
    expect((await errorOf(b.chat.pinMessage({ messageId: m.id, pinned: true }))).code).toBe(Code.PermissionDenied);
    const live = new Subscription(protocolTransport(s.url, c.token, "connect"));
    try {
      await live.untilKind("ready");
      const res = await curlJson(s, a.token, "chat.ChatService", "PinMessage", { message_id: m.id, pinned: true });
      expect(res.status).toBe(200);
      expect(res.body.pinned_message_ids).toEqual([m.id]);
      const again = await grpcJsUnary(grpcClient, ChatService.method.pinMessage, { messageId: m.id, pinned: true }, asGrpc(a));
      expect(again.pinnedMessageIds).toEqual([m.id]);
      await live.untilKind("messagePinned");
      expect(live.of("messagePinned")[0]).toMatchObject({ conversationId: group, messageId: m.id, pinned: true, actorId: a.id });

      const timeline = (await c.chat.listMessages({ conversationId: group, limit: 100 })).messages;
      const system = timeline.filter((x) => x.kind === MessageKind.SYSTEM && x.systemEvent === "message_pinned");
      expect(system.map((x) => x.replyToMessageId)).toEqual([m.id]);
      const pinnedView = timeline.find((x) => x.id === m.id)!;
      expect(pinnedView.pinnedBy).toBe(a.id);
      expect(pinnedView.pinnedAt).toBeDefined();
      expect((await conversationOf(c, group)).pinnedMessageIds).toEqual([m.id]);

      await a.chat.pinMessage({ messageId: m.id, pinned: false });
      expect((await conversationOf(c, group)).pinnedMessageIds).toEqual([]);
      await live.untilKind("messagePinned", 2);
    } finally {
      await live.close();
    }

    const direct = (await b.chat.createConversation({ participantIds: [c.id] })).conversation!.id;
    const pins: string[] = [];
    for (let i = 0; i < 4; i++) {
      const d = (await b.chat.sendMessage({ conversationId: direct, content: `d${i}` })).message!;
      await stored(c, direct, d.id);
      pins.push(d.id);
    }
    for (const id of pins.slice(0, 3)) await c.chat.pinMessage({ messageId: id, pinned: true });
    expect((await conversationOf(b, direct)).pinnedMessageIds).toEqual(pins.slice(0, 3).reverse());
    const limit = await errorOf(b.chat.pinMessage({ messageId: pins[3]!, pinned: true }));
    expect(limit.code).toBe(Code.FailedPrecondition);
  });
});

describe("starred messages", () => {
  test("star for oneself, listed latest first in pages (gRPC and Connect JSON), starred in ListMessages, unstar", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const m = (await a.chat.sendMessage({ conversationId: group, content: `star ${i}` })).message!;
      await stored(b, group, m.id);
      ids.push(m.id);
    }
    const live = new Subscription(protocolTransport(s.url, b.token, "connect"));
    try {
      await live.untilKind("ready");
      for (const id of ids) await b.chat.starMessages({ messageIds: [id], starred: true });
      // A retry: no change, no event.
      await grpcJsUnary(grpcClient, ChatService.method.starMessages, { messageIds: [ids[0]!], starred: true }, asGrpc(b));
      await live.untilKind("messagesStarred", 3);
      expect(live.of("messagesStarred").map((e) => e.messageIds)).toEqual(ids.map((id) => [id]));
    } finally {
      await live.close();
    }

    const first = await grpcJsUnary(grpcClient, ChatService.method.listStarredMessages, { limit: 2 }, asGrpc(b));
    expect(first.messages.map((m) => [m.id, m.starred])).toEqual([
      [ids[2], true],
      [ids[1], true],
    ]);
    const second = await curlJson(s, b.token, "chat.ChatService", "ListStarredMessages", { conversation_id: group, limit: 2, page_token: first.nextPageToken });
    expect(second.status).toBe(200);
    expect((second.body.messages as Array<{ id: string; content: string }>).map((m) => [m.id, m.content])).toEqual([[ids[0], "star 0"]]);
    expect(second.body.next_page_token).toBe("");

    // Only b's: a sees no star.
    expect((await a.chat.listStarredMessages({})).messages).toEqual([]);
    const listed = (await b.chat.listMessages({ conversationId: group, limit: 100 })).messages;
    expect(
      listed
        .filter((m) => m.starred)
        .map((m) => m.id)
        .sort(),
    ).toEqual([...ids].sort());

    await b.chat.starMessages({ messageIds: [ids[1]!], starred: false });
    // Deleted for everyone: left out.
    await a.chat.deleteMessage({ messageId: ids[2]!, forEveryone: true });
    expect((await b.chat.listStarredMessages({})).messages.map((m) => m.id)).toEqual([ids[0]]);
    expect((await errorOf(b.chat.listStarredMessages({ pageToken: "nope" }))).code).toBe(Code.InvalidArgument);
  });
});
