import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ChatService, ParticipantRole, ReceiptState, type Message } from "../../gen/chat/chat_pb.js";
import { bearerTransport, login } from "./helpers/login.js";
import { queueDrained } from "./helpers/queue-state.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// chat.ChatService over real clients: curl-style JSON for the original four
// RPCs, the generated client (gRPC) for the rest. On the production profile
// SendMessage answers once JetStream has the message and the worker stores it
// a moment later, so reads wait for it (bounded).

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(async () => {
  await s?.stop();
});

let nextNumber = 100;
interface U {
  id: string;
  phone: string;
  token: string;
  chat: Client<typeof ChatService>;
}

async function newUser(): Promise<U> {
  const u = await login(s.url, `+1415556${String(nextNumber++).padStart(4, "0")}`);
  return { id: u.id, phone: u.phone, token: u.accessToken, chat: createClient(ChatService, bearerTransport(s.url, u.accessToken, "grpc")) };
}

/** POSTs JSON the way curl does and returns status and parsed body. */
async function curl(token: string | undefined, method: string, body: unknown) {
  const res = await fetch(`${s.url}/chat.ChatService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

/** Waits (bounded) until the conversation holds `count` messages, as the worker stores them. */
async function stored(u: U, conversationId: string, count: number): Promise<Message[]> {
  for (let i = 0; i < 100; i++) {
    const { messages } = await u.chat.listMessages({ conversationId, limit: 100 });
    if (messages.length >= count) return messages;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`conversation ${conversationId} never reached ${count} messages`);
}

async function codeOf(p: Promise<unknown>): Promise<Code> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err).code;
  }
  throw new Error("expected the call to fail");
}

describe("the original four RPCs with curl JSON", () => {
  test("open a direct conversation, send, list history, and see it in the conversation list", async () => {
    const a = await newUser();
    const b = await newUser();
    const created = await curl(a.token, "CreateConversation", { participant_ids: [b.id], is_group: false });
    expect(created.status).toBe(200);
    const conv = created.body.conversation;
    expect(conv.participant_ids.sort()).toEqual([a.id, b.id].sort());
    expect(conv.is_group).toBe(false);
    expect(conv.created_at).toMatch(/^\d{4}-\d\d-\d\dT/);

    // The same pair again, from the other side: the same conversation.
    const again = await curl(b.token, "CreateConversation", { participant_ids: [a.id] });
    expect(again.body.conversation.id).toBe(conv.id);
    expect(again.body.created).toBe(false);

    const sent = await curl(a.token, "SendMessage", { conversation_id: conv.id, content: "Merhaba!", client_message_id: "c-1" });
    expect(sent.status).toBe(200);
    expect(sent.body.message).toMatchObject({ conversation_id: conv.id, sender_id: a.id, content: "Merhaba!", client_message_id: "c-1" });
    expect(sent.body.message.id).toMatch(/^[0-9a-f-]{36}$/);

    await stored(a, conv.id, 1);
    const listed = await curl(b.token, "ListMessages", { conversation_id: conv.id });
    expect(listed.body.messages).toHaveLength(1);
    expect(listed.body.messages[0]).toMatchObject({ id: sent.body.message.id, content: "Merhaba!", seq: "1", sender_id: a.id });

    const list = await curl(b.token, "GetConversations", {});
    expect(list.status).toBe(200);
    const mine = list.body.conversations.find((c: { id: string }) => c.id === conv.id);
    expect(mine.unread_count).toBe(1);
    expect(mine.last_message.content).toBe("Merhaba!");
    expect(mine.my_role).toBe("PARTICIPANT_ROLE_MEMBER");
  });
});

describe("messages", () => {
  test("a retry with the same client_message_id stores one message with the same id", async () => {
    const a = await newUser();
    const b = await newUser();
    const { conversation } = await a.chat.createConversation({ participantIds: [b.id] });
    const first = await a.chat.sendMessage({ conversationId: conversation!.id, content: "once", clientMessageId: "retry-me" });
    const second = await a.chat.sendMessage({ conversationId: conversation!.id, content: "once", clientMessageId: "retry-me" });
    expect(second.message!.id).toBe(first.message!.id);
    await stored(a, conversation!.id, 1);
    await queueDrained(s.server);
    const { messages } = await a.chat.listMessages({ conversationId: conversation!.id });
    expect(messages).toHaveLength(1);
    // The same id for another conversation is a client bug, not a retry.
    const other = (await a.chat.createConversation({ participantIds: [(await newUser()).id] })).conversation!.id;
    expect(await codeOf(a.chat.sendMessage({ conversationId: other, content: "once", clientMessageId: "retry-me" }))).toBe(Code.InvalidArgument);
  });

  test("seq is gapless and in send order for one sender; paging both ways", async () => {
    const a = await newUser();
    const b = await newUser();
    const { conversation } = await a.chat.createConversation({ participantIds: [b.id] });
    const id = conversation!.id;
    for (let i = 1; i <= 12; i++) await a.chat.sendMessage({ conversationId: id, content: `m${i}` });
    const all = await stored(a, id, 12);
    expect(all.map((m) => Number(m.seq))).toEqual([12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
    expect(all.map((m) => m.content)).toEqual(Array.from({ length: 12 }, (_, i) => `m${12 - i}`));

    const newest = await a.chat.listMessages({ conversationId: id, limit: 5 });
    expect(newest.messages.map((m) => Number(m.seq))).toEqual([12, 11, 10, 9, 8]);
    expect(newest.hasMore).toBe(true);
    const older = await a.chat.listMessages({ conversationId: id, limit: 5, beforeMessageId: newest.messages.at(-1)!.id });
    expect(older.messages.map((m) => Number(m.seq))).toEqual([7, 6, 5, 4, 3]);
    const oldest = await a.chat.listMessages({ conversationId: id, limit: 5, beforeSeq: 3n });
    expect(oldest.messages.map((m) => Number(m.seq))).toEqual([2, 1]);
    expect(oldest.hasMore).toBe(false);
    const forward = await a.chat.listMessages({ conversationId: id, limit: 4, afterSeq: 8n });
    expect(forward.messages.map((m) => Number(m.seq))).toEqual([9, 10, 11, 12]);
  });

  test("receipts: watermarks make a message delivered, then read, by everyone in a group of three", async () => {
    const [a, b, c] = [await newUser(), await newUser(), await newUser()];
    const { conversation } = await a.chat.createConversation({ participantIds: [b.id, c.id], isGroup: true, groupName: "Trio" });
    const id = conversation!.id;
    expect(conversation!.myRole).toBe(ParticipantRole.OWNER);
    await a.chat.sendMessage({ conversationId: id, content: "hello all" });
    // seq 1 is the system message that created the group; the text is seq 2.
    const [m, created] = await stored(a, id, 2);
    expect(created!.systemEvent).toBe("group_created");
    expect(m!.seq).toBe(2n);
    expect(m!.receiptState).toBe(ReceiptState.SENT);

    await b.chat.markDelivered({ conversationId: id, upToSeq: 2n });
    expect((await a.chat.listMessages({ conversationId: id })).messages[0]!.receiptState).toBe(ReceiptState.SENT);
    await c.chat.markDelivered({ conversationId: id, upToSeq: 2n });
    expect((await a.chat.listMessages({ conversationId: id })).messages[0]!.receiptState).toBe(ReceiptState.DELIVERED);

    const read = await b.chat.markRead({ conversationId: id, upToSeq: 2n });
    expect(read).toMatchObject({ lastReadSeq: 2n, lastDeliveredSeq: 2n });
    expect((await c.chat.getConversation({ conversationId: id })).conversation!.unreadCount).toBe(1);
    await c.chat.markRead({ conversationId: id, upToSeq: 2n });
    expect((await c.chat.getConversation({ conversationId: id })).conversation!.unreadCount).toBe(0);
    expect((await a.chat.listMessages({ conversationId: id })).messages[0]!.receiptState).toBe(ReceiptState.READ);

    expect(await codeOf(b.chat.markRead({ conversationId: id, upToSeq: 3n }))).toBe(Code.InvalidArgument);
  });
});

describe("conversation list", () => {
  test("sorted by last activity, paged with a token, with the inbox position", async () => {
    const me = await newUser();
    const peers = [await newUser(), await newUser(), await newUser()];
    const ids: string[] = [];
    for (const p of peers) ids.push((await me.chat.createConversation({ participantIds: [p.id] })).conversation!.id);
    // Activity in the first one makes it the newest.
    await peers[0]!.chat.sendMessage({ conversationId: ids[0]!, content: "bump" });
    await stored(me, ids[0]!, 1);

    const first = await me.chat.getConversations({ limit: 2 });
    expect(first.conversations.map((c) => c.id)).toEqual([ids[0], ids[2]]);
    expect(first.nextPageToken).not.toBe("");
    expect(first.inboxPosition).toBeGreaterThanOrEqual(0n);
    const second = await me.chat.getConversations({ limit: 2, pageToken: first.nextPageToken });
    expect(second.conversations.map((c) => c.id)).toEqual([ids[1]]);
    expect(second.nextPageToken).toBe("");
    expect(await codeOf(me.chat.getConversations({ pageToken: "garbage" }))).toBe(Code.InvalidArgument);
  });
});

describe("authorization and bad input", () => {
  let a: U, b: U, stranger: U, conv: string;
  beforeAll(async () => {
    [a, b, stranger] = [await newUser(), await newUser(), await newUser()];
    conv = (await a.chat.createConversation({ participantIds: [b.id] })).conversation!.id;
  });

  test("no token: Unauthenticated", async () => {
    const r = await curl(undefined, "GetConversations", {});
    expect(r.status).toBe(401);
    expect(r.body.code).toBe("unauthenticated");
  });

  test("a stranger gets NotFound for every conversation RPC: existence is not leaked", async () => {
    expect(await codeOf(stranger.chat.sendMessage({ conversationId: conv, content: "hi" }))).toBe(Code.NotFound);
    expect(await codeOf(stranger.chat.listMessages({ conversationId: conv }))).toBe(Code.NotFound);
    expect(await codeOf(stranger.chat.getConversation({ conversationId: conv }))).toBe(Code.NotFound);
    expect(await codeOf(stranger.chat.markRead({ conversationId: conv, upToSeq: 0n }))).toBe(Code.NotFound);
    const unknown = "00000000-0000-4000-8000-000000000000";
    expect(await codeOf(stranger.chat.getConversation({ conversationId: unknown }))).toBe(Code.NotFound);
  });

  test.each([
    ["an invalid id", { conversationId: "nope", content: "x" }, /conversation_id/],
    ["an empty message", { content: "   " }, /text or media/],
    ["text over 4,096 characters", { content: "x".repeat(4097) }, /4096/],
    ["a non-http media URL", { content: "", mediaUrl: "ftp://x/y" }, /media_url/],
    ["a mention of a non-participant", { content: "hi", mentionUserIds: ["00000000-0000-4000-8000-000000000000"] }, /mention_user_ids/],
  ])("SendMessage refuses %s with InvalidArgument", async (_what, req, message) => {
    const err = await a.chat.sendMessage({ conversationId: conv, ...req }).catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    expect((err as ConnectError).rawMessage).toMatch(message);
  });

  test("a reply to a message of another conversation is refused", async () => {
    const other = (await a.chat.createConversation({ participantIds: [stranger.id] })).conversation!.id;
    await a.chat.sendMessage({ conversationId: other, content: "elsewhere" });
    const [elsewhere] = await stored(a, other, 1);
    const err = await a.chat.sendMessage({ conversationId: conv, content: "re", replyToMessageId: elsewhere!.id }).catch((e: unknown) => ConnectError.from(e));
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
  });

  test("CreateConversation: a group needs a name, a direct conversation one other person, users must exist", async () => {
    expect(await codeOf(a.chat.createConversation({ participantIds: [b.id, stranger.id], isGroup: true }))).toBe(Code.InvalidArgument);
    expect(await codeOf(a.chat.createConversation({ participantIds: [b.id, stranger.id] }))).toBe(Code.InvalidArgument);
    expect(await codeOf(a.chat.createConversation({ participantIds: ["00000000-0000-4000-8000-000000000000"] }))).toBe(Code.NotFound);
    expect(await codeOf(a.chat.createConversation({ participantPhoneNumbers: ["+14155550000"] }))).toBe(Code.NotFound);
    expect(await codeOf(a.chat.createConversation({ participantPhoneNumbers: ["12"] }))).toBe(Code.InvalidArgument);
  });

  test("by phone number, a direct conversation opens with that user", async () => {
    const c = await newUser();
    const { conversation } = await a.chat.createConversation({ participantPhoneNumbers: [c.phone] });
    expect([...conversation!.participantIds].sort()).toEqual([a.id, c.id].sort());
  });
});

describe("edits, deletes, reactions, receipts, mute and archive", () => {
  test("edit own message only; delete for me hides it for me alone; delete for everyone leaves a tombstone", async () => {
    const [a, b] = [await newUser(), await newUser()];
    const id = (await a.chat.createConversation({ participantIds: [b.id] })).conversation!.id;
    await a.chat.sendMessage({ conversationId: id, content: "typo" });
    await a.chat.sendMessage({ conversationId: id, content: "second" });
    const [second, first] = await stored(a, id, 2);

    const edited = await a.chat.editMessage({ messageId: first!.id, content: "fixed" });
    expect(edited.message!.content).toBe("fixed");
    expect(edited.message!.editedAt).toBeDefined();
    expect(await codeOf(b.chat.editMessage({ messageId: first!.id, content: "not yours" }))).toBe(Code.PermissionDenied);
    expect(await codeOf(a.chat.editMessage({ messageId: first!.id, content: "  " }))).toBe(Code.InvalidArgument);

    await b.chat.deleteMessage({ messageId: second!.id, forEveryone: false });
    expect((await b.chat.listMessages({ conversationId: id })).messages.map((m) => m.id)).toEqual([first!.id]);
    expect((await a.chat.listMessages({ conversationId: id })).messages).toHaveLength(2);

    expect(await codeOf(b.chat.deleteMessage({ messageId: first!.id, forEveryone: true }))).toBe(Code.PermissionDenied);
    await a.chat.deleteMessage({ messageId: first!.id, forEveryone: true });
    const tomb = (await b.chat.listMessages({ conversationId: id })).messages[0]!;
    expect(tomb.id).toBe(first!.id);
    expect(tomb.content).toBe("");
    expect(tomb.deletedAt).toBeDefined();
    expect(await codeOf(a.chat.editMessage({ messageId: first!.id, content: "back" }))).toBe(Code.FailedPrecondition);
  });

  test("one reaction per user per message; empty removes it", async () => {
    const [a, b] = [await newUser(), await newUser()];
    const id = (await a.chat.createConversation({ participantIds: [b.id] })).conversation!.id;
    await a.chat.sendMessage({ conversationId: id, content: "react to me" });
    const [m] = await stored(a, id, 1);
    await a.chat.reactToMessage({ messageId: m!.id, emoji: "👍" });
    await b.chat.reactToMessage({ messageId: m!.id, emoji: "👍" });
    let r = await b.chat.reactToMessage({ messageId: m!.id, emoji: "❤️" });
    expect(r.reactions.map((x) => [x.emoji, x.count]).sort()).toEqual(
      [
        ["❤️", 1],
        ["👍", 1],
      ].sort(),
    );
    r = await a.chat.reactToMessage({ messageId: m!.id, emoji: "" });
    expect(r.reactions.map((x) => [x.emoji, x.userIds])).toEqual([["❤️", [b.id]]]);
    expect(await codeOf(a.chat.reactToMessage({ messageId: m!.id, emoji: "hello" }))).toBe(Code.InvalidArgument);
  });

  test("GetMessageReceipts tells per participant when delivered and read", async () => {
    const [a, b, c] = [await newUser(), await newUser(), await newUser()];
    const id = (await a.chat.createConversation({ participantIds: [b.id, c.id], isGroup: true, groupName: "R" })).conversation!.id;
    await a.chat.sendMessage({ conversationId: id, content: "receipt me" });
    const [m] = await stored(a, id, 2);
    await b.chat.markRead({ conversationId: id, upToSeq: m!.seq });
    await c.chat.markDelivered({ conversationId: id, upToSeq: m!.seq });
    const res = await a.chat.getMessageReceipts({ messageId: m!.id });
    const byUser = new Map(res.receipts.map((x) => [x.userId, x]));
    expect([...byUser.keys()].sort()).toEqual([b.id, c.id].sort());
    expect(byUser.get(b.id)!.readAt).toBeDefined();
    expect(byUser.get(b.id)!.deliveredAt).toBeDefined();
    expect(byUser.get(c.id)!.deliveredAt).toBeDefined();
    expect(byUser.get(c.id)!.readAt).toBeUndefined();
    expect(res.receiptState).toBe(ReceiptState.DELIVERED);
  });

  test("mute until a time and archive: per caller, shown in the list", async () => {
    const [a, b] = [await newUser(), await newUser()];
    const id = (await a.chat.createConversation({ participantIds: [b.id] })).conversation!.id;
    const until = new Date(Date.now() + 3_600_000);
    await a.chat.muteConversation({ conversationId: id, mutedUntil: { seconds: BigInt(Math.floor(until.getTime() / 1000)), nanos: 0 } });
    await a.chat.archiveConversation({ conversationId: id, archived: true });
    expect((await a.chat.getConversations({})).conversations.map((c) => c.id)).not.toContain(id);
    const withArchived = (await a.chat.getConversations({ includeArchived: true })).conversations.find((c) => c.id === id)!;
    expect(withArchived.archived).toBe(true);
    expect(withArchived.mutedUntil).toBeDefined();
    const theirs = (await b.chat.getConversation({ conversationId: id })).conversation!;
    expect(theirs.archived).toBe(false);
    expect(theirs.mutedUntil).toBeUndefined();
    expect(await codeOf(a.chat.muteConversation({ conversationId: id, mutedUntil: { seconds: 1n, nanos: 0 } }))).toBe(Code.InvalidArgument);
  });
});

describe("groups", () => {
  test("lifecycle: update, add, roles, remove, leave; each change is a system message in the timeline", async () => {
    const [owner, admin, member, late] = [await newUser(), await newUser(), await newUser(), await newUser()];
    const id = (await owner.chat.createConversation({ participantIds: [admin.id, member.id], isGroup: true, groupName: "Team" })).conversation!.id;
    await owner.chat.setParticipantRole({ conversationId: id, userId: admin.id, role: ParticipantRole.ADMIN });
    expect(await codeOf(member.chat.updateGroup({ conversationId: id, groupName: "Mine" }))).toBe(Code.PermissionDenied);
    const updated = await admin.chat.updateGroup({ conversationId: id, groupName: "Team 2", groupDescription: "we ship" });
    expect(updated.conversation).toMatchObject({ groupName: "Team 2", groupDescription: "we ship" });

    await owner.chat.sendMessage({ conversationId: id, content: "before late joins" });
    await stored(owner, id, 4);
    const added = await admin.chat.addParticipants({ conversationId: id, userIds: [late.id, member.id] });
    expect([...added.conversation!.participantIds].sort()).toEqual([owner.id, admin.id, member.id, late.id].sort());
    // The newcomer sees the timeline from the message that added them.
    const lateView = await late.chat.listMessages({ conversationId: id });
    expect(lateView.messages.map((m) => m.systemEvent)).toEqual(["participants_added"]);

    expect(await codeOf(admin.chat.removeParticipant({ conversationId: id, userId: owner.id }))).toBe(Code.PermissionDenied);
    expect(await codeOf(member.chat.removeParticipant({ conversationId: id, userId: late.id }))).toBe(Code.PermissionDenied);
    await admin.chat.removeParticipant({ conversationId: id, userId: member.id });
    // A removed participant keeps history up to the removal and nothing after, and cannot write.
    await owner.chat.sendMessage({ conversationId: id, content: "after removal" });
    const all = await stored(owner, id, 7);
    const memberView = await member.chat.listMessages({ conversationId: id });
    expect(memberView.messages[0]!.systemEvent).toBe("participant_removed");
    expect(memberView.messages.map((m) => m.content)).not.toContain("after removal");
    expect(await codeOf(member.chat.sendMessage({ conversationId: id, content: "let me in" }))).toBe(Code.NotFound);
    expect(all.map((m) => m.systemEvent).filter(Boolean)).toEqual([
      "participant_removed",
      "participants_added",
      "group_updated",
      "role_changed",
      "group_created",
    ]);

    // The owner leaves: the longest-standing admin takes over.
    await owner.chat.leaveConversation({ conversationId: id });
    const after = (await admin.chat.getConversation({ conversationId: id })).conversation!;
    expect(after.myRole).toBe(ParticipantRole.OWNER);
    expect([...after.participantIds].sort()).toEqual([admin.id, late.id].sort());
    expect(await codeOf(owner.chat.sendMessage({ conversationId: id, content: "gone" }))).toBe(Code.NotFound);
  });

  test("group operations on a direct conversation are refused", async () => {
    const [a, b] = [await newUser(), await newUser()];
    const id = (await a.chat.createConversation({ participantIds: [b.id] })).conversation!.id;
    expect(await codeOf(a.chat.updateGroup({ conversationId: id, groupName: "x" }))).toBe(Code.FailedPrecondition);
    expect(await codeOf(a.chat.leaveConversation({ conversationId: id }))).toBe(Code.FailedPrecondition);
  });
});
