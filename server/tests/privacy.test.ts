import { Code } from "@connectrpc/connect";
import { createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ReceiptState, type Message } from "../../gen/chat/chat_pb.js";
import { RealtimeService } from "../../gen/realtime/realtime_pb.js";
import { backfillFormerViews } from "../../migrations/0012_former_participant_view.js";
import { bearerTransport } from "./helpers/login.js";
import { Subscription } from "./helpers/realtime.js";
import { codeOf, errorOf, phoneSequence, socialUser, type SocialUser } from "./helpers/social.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// Issue 13, "Authorization and privacy": what a removed participant still
// sees, what a block stops, what read receipts off hide, and the message
// ReplyToStatus answers.

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(async () => {
  await s?.stop();
});

const nextPhone = phoneSequence("614");
const newUser = () => socialUser(s, nextPhone());
const realtime = (u: SocialUser) => createClient(RealtimeService, bearerTransport(s.url, u.token));

/** The message with `id` once the worker has stored it (production stores after SendMessage answers). */
async function storedMessage(u: SocialUser, conversationId: string, id: string): Promise<Message> {
  for (let i = 0; ; i++) {
    const m = (await u.chat.listMessages({ conversationId })).messages.find((x) => x.id === id);
    if (m && m.seq > 0n) return m;
    if (i > 200) throw new Error(`message ${id} was not stored`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("a removed participant sees the group as it was when they were removed", () => {
  test("GetConversation: participants, group fields and last seq of then; GetMessageReceipts: the receipts of then", async () => {
    const [o, m, r, n] = [await newUser(), await newUser(), await newUser(), await newUser()];
    const g = (await o.chat.createConversation({ isGroup: true, groupName: "Before", participantIds: [m.id, r.id] })).conversation!.id;
    const sent = (await o.chat.sendMessage({ conversationId: g, content: "before the removal" })).message!;
    const msg = await storedMessage(o, g, sent.id);
    await m.chat.markDelivered({ conversationId: g, upToSeq: msg.seq });
    await o.chat.removeParticipant({ conversationId: g, userId: r.id });
    const asRemoved = (await r.chat.getConversation({ conversationId: g })).conversation!;

    // After the removal: someone joins, the group is renamed, M reads, more is said.
    await o.chat.addParticipants({ conversationId: g, userIds: [n.id] });
    await o.chat.updateGroup({ conversationId: g, groupName: "After", groupDescription: "new" });
    await o.chat.sendMessage({ conversationId: g, content: "after the removal" });
    const last = (await o.chat.getConversation({ conversationId: g })).conversation!.lastSeq;
    await m.chat.markRead({ conversationId: g, upToSeq: last });

    const c = (await r.chat.getConversation({ conversationId: g })).conversation!;
    expect(c.participantIds.sort()).toEqual([o.id, m.id].sort());
    expect(c.participants.map((p) => p.userId).sort()).toEqual([o.id, m.id].sort());
    expect([c.groupName, c.groupDescription]).toEqual(["Before", ""]);
    expect(c.lastSeq).toBe(asRemoved.lastSeq);
    expect(c.lastActivityAt).toEqual(asRemoved.lastActivityAt);
    expect(c.unreadCount).toBe(asRemoved.unreadCount);
    expect(c.lastMessage?.id).toBe(asRemoved.lastMessage?.id);

    // Receipts of then: M had it delivered, not read; N, who came later, has no row.
    const seenByRemoved = await r.chat.getMessageReceipts({ messageId: msg.id });
    expect(seenByRemoved.receipts.map((x) => x.userId)).toEqual([m.id]);
    const mRow = seenByRemoved.receipts.find((x) => x.userId === m.id)!;
    expect(mRow.deliveredAt).toBeDefined();
    expect(mRow.readAt).toBeUndefined();
    expect(seenByRemoved.receiptState).toBe(ReceiptState.DELIVERED);

    // The owner sees now: M has read it; N joined after it and has no row.
    const seenByOwner = await o.chat.getMessageReceipts({ messageId: msg.id });
    expect(seenByOwner.receipts.map((x) => x.userId)).not.toContain(n.id);
    expect(seenByOwner.receipts.find((x) => x.userId === m.id)!.readAt).toBeDefined();
    // The current members see the new state.
    const now = (await m.chat.getConversation({ conversationId: g })).conversation!;
    expect(now.participantIds.sort()).toEqual([o.id, m.id, n.id].sort());
    expect(now.groupName).toBe("After");
  });
});

describe("participations that ended before migration 0012", () => {
  test("get the closest snapshot the rows allow: who was there then and is still there", async () => {
    const [o, m, r, n] = [await newUser(), await newUser(), await newUser(), await newUser()];
    const g = (await o.chat.createConversation({ isGroup: true, groupName: "Old", participantIds: [m.id, r.id] })).conversation!.id;
    await o.chat.removeParticipant({ conversationId: g, userId: r.id });
    const asRemoved = (await r.chat.getConversation({ conversationId: g })).conversation!;
    await o.chat.addParticipants({ conversationId: g, userIds: [n.id] });
    const db = s.server.ctx.database.db;
    await db.updateTable("conversation_participants").set({ left_view: null }).where("user_id", "=", r.id).execute();
    await backfillFormerViews(db);
    const c = (await r.chat.getConversation({ conversationId: g })).conversation!;
    expect(c.participants).toEqual(asRemoved.participants);
    expect(c.participantIds.sort()).toEqual([o.id, m.id].sort());
  });
});

describe("a block stops typing and reactions in the direct conversation, as it stops messages", () => {
  test("SendTyping, ReactToMessage and EditMessage: PermissionDenied both ways, nothing reaches the blocker; unblocking restores them", async () => {
    const [a, x, c] = [await newUser(), await newUser(), await newUser()];
    const direct = (await a.chat.createConversation({ participantIds: [x.id] })).conversation!.id;
    const withC = (await c.chat.createConversation({ participantIds: [a.id] })).conversation!.id;
    const fromA = (await a.chat.sendMessage({ conversationId: direct, content: "hi X" })).message!;
    await storedMessage(a, direct, fromA.id);
    const fromX = (await x.chat.sendMessage({ conversationId: direct, content: "hi A" })).message!;
    await storedMessage(x, direct, fromX.id);
    await a.users.blockUser({ userId: x.id });

    const stream = new Subscription(bearerTransport(s.url, a.token));
    try {
      await stream.untilKind("caughtUp");
      const typing = await errorOf(realtime(x).sendTyping({ conversationId: direct, active: true }));
      expect(typing.code).toBe(Code.PermissionDenied);
      expect(typing.rawMessage).toMatch(/has blocked you/);
      const reaction = await errorOf(x.chat.reactToMessage({ messageId: fromA.id, emoji: "👍" }));
      expect(reaction.code).toBe(Code.PermissionDenied);
      expect(reaction.rawMessage).toMatch(/has blocked you/);
      // X's own earlier message cannot be changed under A's eyes either.
      const edit = await errorOf(x.chat.editMessage({ messageId: fromX.id, content: "edited after the block" }));
      expect(edit.code).toBe(Code.PermissionDenied);
      expect(edit.rawMessage).toMatch(/has blocked you/);
      // The blocker is held to the same rule as for messages.
      expect(await codeOf(realtime(a).sendTyping({ conversationId: direct, active: true }))).toBe(Code.PermissionDenied);

      // A typing indicator that may reach A arrives; X's never did.
      expect((await realtime(c).sendTyping({ conversationId: withC, active: true })).deliveredTo).toBe(1);
      await stream.until((st) => st.of("typing").some((t) => t.userId === c.id), 10_000, "C's typing");
      expect(stream.of("typing").map((t) => t.userId)).toEqual([c.id]);
      expect(stream.of("reactionChanged")).toEqual([]);
      expect(stream.of("messageEdited")).toEqual([]);
    } finally {
      await stream.close();
    }
    expect((await storedMessage(a, direct, fromA.id)).reactions).toEqual([]);

    await a.users.unblockUser({ userId: x.id });
    await realtime(x).sendTyping({ conversationId: direct, active: false });
    expect((await x.chat.reactToMessage({ messageId: fromA.id, emoji: "👍" })).reactions.map((r) => r.emoji)).toEqual(["👍"]);
    expect((await x.chat.editMessage({ messageId: fromX.id, content: "edited" })).message!.content).toBe("edited");
  });
});

describe("read receipts off: in a direct chat neither side sees the other's read state", () => {
  test.each([["the reader", "reader"] as const, ["the sender", "sender"] as const])(
    "%s has them off: ListMessages, GetConversations, GetMessageReceipts and the stream show delivered, never read",
    async (_name, who) => {
      const [sender, reader] = [await newUser(), await newUser()];
      await (who === "reader" ? reader : sender).users.updatePrivacy({ readReceipts: false });
      const direct = (await sender.chat.createConversation({ participantIds: [reader.id] })).conversation!.id;
      const sent = (await sender.chat.sendMessage({ conversationId: direct, content: "did you read this?" })).message!;
      const back = (await reader.chat.sendMessage({ conversationId: direct, content: "and this?" })).message!;
      const { seq } = await storedMessage(sender, direct, back.id);
      await reader.chat.markRead({ conversationId: direct, upToSeq: seq });
      await sender.chat.markRead({ conversationId: direct, upToSeq: seq });

      // Each side, about the other's reading of its own message.
      for (const [viewer, mine] of [
        [sender, sent.id],
        [reader, back.id],
      ] as const) {
        expect((await storedMessage(viewer, direct, mine)).receiptState).toBe(ReceiptState.DELIVERED);
        const listed = (await viewer.chat.getConversations({})).conversations.find((x) => x.id === direct)!;
        expect(listed.lastMessage!.id).toBe(back.id);
        expect(listed.lastMessage!.receiptState).toBe(ReceiptState.DELIVERED);
        const receipts = await viewer.chat.getMessageReceipts({ messageId: mine });
        expect(receipts.receiptState).toBe(ReceiptState.DELIVERED);
        expect(receipts.receipts).toHaveLength(1);
        expect(receipts.receipts[0]!.deliveredAt).toBeDefined();
        expect(receipts.receipts[0]!.readAt).toBeUndefined();
      }

      // The stream, replayed from the start: the message events and receipt updates carry no read state.
      const replay = new Subscription(bearerTransport(s.url, sender.token), 0n);
      try {
        await replay.untilKind("caughtUp");
        const created = replay
          .of("messageCreated")
          .map((e) => e.message!)
          .find((m) => m.id === sent.id)!;
        expect(created.receiptState).not.toBe(ReceiptState.READ);
        const fromReader = replay.of("receiptUpdated").filter((e) => e.userId === reader.id);
        expect(fromReader.length).toBeGreaterThan(0);
        expect(fromReader.map((e) => [e.lastReadSeq, e.readByAllSeq])).toEqual(fromReader.map(() => [0n, 0n]));
        const own = replay.of("receiptUpdated").filter((e) => e.userId === sender.id);
        expect(own.map((e) => e.readByAllSeq)).toEqual(own.map(() => 0n));
      } finally {
        await replay.close();
      }
    },
  );

  test("with both on the read state shows; in a group it shows even with them off (the README's rule is for direct chats)", async () => {
    const [a, b, c] = [await newUser(), await newUser(), await newUser()];
    const direct = (await a.chat.createConversation({ participantIds: [b.id] })).conversation!.id;
    const m1 = await storedMessage(a, direct, (await a.chat.sendMessage({ conversationId: direct, content: "1" })).message!.id);
    await b.chat.markRead({ conversationId: direct, upToSeq: m1.seq });
    expect((await storedMessage(a, direct, m1.id)).receiptState).toBe(ReceiptState.READ);
    expect((await a.chat.getMessageReceipts({ messageId: m1.id })).receipts[0]!.readAt).toBeDefined();

    await b.users.updatePrivacy({ readReceipts: false });
    expect((await storedMessage(a, direct, m1.id)).receiptState).toBe(ReceiptState.DELIVERED);
    const group = (await a.chat.createConversation({ isGroup: true, groupName: "G", participantIds: [b.id, c.id] })).conversation!.id;
    const g1 = await storedMessage(a, group, (await a.chat.sendMessage({ conversationId: group, content: "g" })).message!.id);
    await b.chat.markRead({ conversationId: group, upToSeq: g1.seq });
    await c.chat.markRead({ conversationId: group, upToSeq: g1.seq });
    expect((await storedMessage(a, group, g1.id)).receiptState).toBe(ReceiptState.READ);
    expect((await a.chat.getMessageReceipts({ messageId: g1.id })).receipts.every((r) => r.readAt !== undefined)).toBe(true);
  });
});

describe("ReplyToStatus answers the message as ListMessages shows it", () => {
  test("reply_to_status is in the answer", async () => {
    const [author, fan] = [await newUser(), await newUser()];
    await author.users.syncContacts({ phoneNumbers: [fan.phone] });
    const statusId = (await author.statuses.createStatus({ content: "sunrise" })).statusId;
    const reply = await fan.statuses.replyToStatus({ statusId, content: "lovely", clientMessageId: "r-1" });
    expect(reply.message!.replyToStatus).toMatchObject({ statusId, authorId: author.id, contentType: "text", content: "sunrise" });
    const listed = await storedMessage(fan, reply.conversationId, reply.message!.id);
    expect(reply.message!.replyToStatus).toEqual(listed.replyToStatus);
    // Stored before it answered (embedded), or a retry after the store: the whole message is ListMessages'.
    const again = await fan.statuses.replyToStatus({ statusId, content: "lovely", clientMessageId: "r-1" });
    expect(again.message).toEqual(listed);
    if (reply.message!.seq > 0n) expect(reply.message).toEqual(listed);
  });
});
