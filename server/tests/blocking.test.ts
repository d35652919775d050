import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { filterPresenceViewers } from "../db/privacy-store.js";
import { codeOf, curlJson, errorOf, phoneSequence, socialUser, type SocialUser } from "./helpers/social.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// Blocking as the server enforces it, across direct conversations, groups,
// presence and statuses, in both directions, and undone by unblocking.

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(async () => {
  await s?.stop();
});

const nextPhone = phoneSequence("603");
const newUser = () => socialUser(s, nextPhone(), "grpc");

/** Mutual contacts, so statuses and presence would flow without the block. */
async function friends(...us: SocialUser[]): Promise<void> {
  for (const u of us) await u.users.syncContacts({ phoneNumbers: us.filter((o) => o !== u).map((o) => o.phone) });
}

describe("a block between A (blocker) and B (blocked)", () => {
  let a: SocialUser, b: SocialUser, c: SocialUser;
  let direct: string;
  beforeAll(async () => {
    [a, b, c] = [await newUser(), await newUser(), await newUser()];
    await friends(a, b, c);
    direct = (await a.chat.createConversation({ participantIds: [b.id] })).conversation!.id;
    await a.chat.sendMessage({ conversationId: direct, content: "before the block" });
    await a.statuses.createStatus({ content: "A's status" });
    await b.statuses.createStatus({ content: "B's status" });
    // Both see each other's statuses before the block.
    expect((await b.statuses.getStatuses({ userId: a.id })).statuses).toHaveLength(1);
    await a.users.blockUser({ userId: b.id });
  });

  test.each([
    ["B opens a direct conversation with A", () => b.chat.createConversation({ participantIds: [a.id] }), /has blocked you/],
    ["A opens a direct conversation with B", () => a.chat.createConversation({ participantIds: [b.id] }), /you have blocked/],
    ["B sends in their existing direct conversation", () => b.chat.sendMessage({ conversationId: direct, content: "hi?" }), /has blocked you/],
    ["A sends in their existing direct conversation", () => a.chat.sendMessage({ conversationId: direct, content: "hi?" }), /you have blocked/],
    ["B creates a group with A", () => b.chat.createConversation({ isGroup: true, groupName: "g", participantIds: [a.id, c.id] }), /has blocked you/],
  ])("%s: PermissionDenied", async (_name, call, message) => {
    const e = await errorOf(call());
    expect(e.code).toBe(Code.PermissionDenied);
    expect(e.rawMessage).toMatch(message);
  });

  test("B cannot add A to an existing group; A can still add B (only the blocked side is refused)", async () => {
    const group = (await b.chat.createConversation({ isGroup: true, groupName: "g2", participantIds: [c.id] })).conversation!.id;
    expect(await codeOf(b.chat.addParticipants({ conversationId: group, userIds: [a.id] }))).toBe(Code.PermissionDenied);
    const ag = (await a.chat.createConversation({ isGroup: true, groupName: "a's", participantIds: [c.id] })).conversation!.id;
    const added = await a.chat.addParticipants({ conversationId: ag, userIds: [b.id] });
    expect(added.conversation!.participantIds).toContain(b.id);
    // Groups are not direct conversations: messages there still flow.
    expect((await b.chat.sendMessage({ conversationId: ag, content: "in the group" })).message!.content).toBe("in the group");
  });

  test("statuses are hidden both ways: GetStatuses, the feed, ViewStatus and ReplyToStatus", async () => {
    expect((await b.statuses.getStatuses({ userId: a.id })).statuses).toHaveLength(0);
    expect((await a.statuses.getStatuses({ userId: b.id })).statuses).toHaveLength(0);
    expect((await b.statuses.listStatusFeed({})).authors.map((x) => x.author!.id)).not.toContain(a.id);
    expect((await a.statuses.listStatusFeed({})).authors.map((x) => x.author!.id)).not.toContain(b.id);
    const aStatus = (await a.statuses.listMyStatuses({})).statuses[0]!.id;
    expect(await codeOf(b.statuses.viewStatus({ statusId: aStatus }))).toBe(Code.NotFound);
    expect(await codeOf(b.statuses.replyToStatus({ statusId: aStatus, content: "!" }))).toBe(Code.NotFound);
    // C, not involved, still sees A's.
    expect((await c.statuses.getStatuses({ userId: a.id })).statuses).toHaveLength(1);
  });

  test("presence, last seen, photo and about are hidden both ways", async () => {
    await a.users.updateProfile({ aboutText: "A about", profilePictureUrl: "https://x.example/a.png" });
    await b.users.updateProfile({ aboutText: "B about" });
    const seenByB = (await b.users.getUsers({ userIds: [a.id] })).users[0]!;
    expect([seenByB.aboutText, seenByB.profilePictureUrl]).toEqual(["", ""]);
    expect((await a.users.getUsers({ userIds: [b.id] })).users[0]!.aboutText).toBe("");
    expect((await c.users.getUsers({ userIds: [a.id] })).users[0]!.aboutText).toBe("A about");
    const db = s.server.ctx.database.db;
    expect([...(await filterPresenceViewers(db, a.id, [b.id, c.id]))]).toEqual([c.id]);
    expect([...(await filterPresenceViewers(db, b.id, [a.id, c.id]))]).toEqual([c.id]);
  });

  test("after UnblockUser everything flows again (curl JSON)", async () => {
    const x = await newUser();
    const y = await newUser();
    const blocked = await curlJson(s, x.token, "user.UserService", "BlockUser", { user_id: y.id });
    expect(blocked.status).toBe(200);
    const refused = await curlJson(s, y.token, "chat.ChatService", "CreateConversation", { participant_ids: [x.id] });
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe("permission_denied");
    const unblocked = await curlJson(s, x.token, "user.UserService", "UnblockUser", { user_id: y.id });
    expect(unblocked.body).toEqual({ was_blocked: true });
    const opened = await curlJson(s, y.token, "chat.ChatService", "CreateConversation", { participant_ids: [x.id] });
    expect(opened.status).toBe(200);
    const sent = await curlJson(s, y.token, "chat.ChatService", "SendMessage", { conversation_id: opened.body.conversation.id, content: "hello again" });
    expect(sent.status).toBe(200);
  });
});
