import { randomUUID } from "node:crypto";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { AuthService } from "../../gen/auth/auth_pb.js";
import { ParticipantRole, type Message } from "../../gen/chat/chat_pb.js";
import type { Event } from "../../gen/realtime/realtime_pb.js";
import { StatusAudience } from "../../gen/status/status_pb.js";
import { DEV_CODE, bearerTransport } from "./helpers/login.js";
import { Subscription, protocolTransport } from "./helpers/realtime.js";
import { codeOf, phoneSequence, socialUser, type SocialUser } from "./helpers/social.js";
import { FakeClock, startTestServer, type TestServer } from "./helpers/test-server.js";
import { pruneRequestAnswers } from "../db/request-store.js";

// Every mutating RPC is safe to retry (issue 13 §5): each test makes a call,
// then makes it again as a client would after losing the answer, through real
// clients, and checks the retry got the first answer, that the effect happened
// once (one row, one status, one system message), and that each stream saw
// exactly one event. "Exactly one" is read after a marker: a message sent
// later, whose inbox position comes after anything the two calls stored, so
// once the marker is on the stream every event of the calls is too.

let s: TestServer;
let clock: FakeClock;
beforeAll(async () => {
  clock = new FakeClock();
  s = await startTestServer({ ACCESS_TOKEN_TTL_SECONDS: "86400" }, { clock });
});
afterAll(async () => {
  await s?.stop();
});

const phone = phoneSequence("559");

interface Device extends SocialUser {
  sub: Subscription;
  /** A group of their own where markers are sent. */
  markerConversation: string;
}

/** A user with an open stream (caught up) and a marker conversation. */
async function device(): Promise<Device> {
  const u = await socialUser(s, phone());
  const sub = new Subscription(protocolTransport(s.url, u.token, "grpc"));
  await sub.untilKind("ready");
  const markerConversation = (await u.chat.createConversation({ isGroup: true, groupName: "markers" })).conversation!.id;
  return { ...u, sub, markerConversation };
}

/** Sends a marker in the device's own group and waits until its stream has it. */
async function settle(...devices: Device[]): Promise<void> {
  for (const d of devices) {
    const content = `marker ${randomUUID()}`;
    await d.chat.sendMessage({ conversationId: d.markerConversation, content });
    await d.sub.until((x) => x.of("messageCreated").some((e) => e.message?.content === content), 10_000, content);
  }
}

/** Stored events of `kind` on the device's stream about the conversation. */
function eventsOf(d: Device, kind: NonNullable<Event["kind"]["case"]>, conversationId: string): Event[] {
  return d.sub.stored(kind).filter((e) => {
    const v = e.kind.value as { conversationId?: string; conversation?: { id: string }; message?: { conversationId: string } };
    return (v.conversationId ?? v.conversation?.id ?? v.message?.conversationId) === conversationId;
  });
}

/** The conversation's system messages, oldest first, as its owner lists them. */
async function systemEvents(u: SocialUser, conversationId: string): Promise<string[]> {
  const { messages } = await u.chat.listMessages({ conversationId, limit: 100 });
  return messages
    .filter((m) => m.systemEvent !== "")
    .map((m) => m.systemEvent)
    .reverse();
}

/** Waits (bounded) until the conversation holds `count` messages, as the worker stores them. */
async function stored(u: SocialUser, conversationId: string, count: number): Promise<Message[]> {
  for (let i = 0; i < 200; i++) {
    const { messages } = await u.chat.listMessages({ conversationId, limit: 100 });
    if (messages.length >= count) return messages;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`conversation ${conversationId} never reached ${count} messages`);
}

async function group(owner: Device, others: Device[], name = "G"): Promise<string> {
  const id = (await owner.chat.createConversation({ isGroup: true, groupName: name, participantIds: others.map((o) => o.id) })).conversation!.id;
  await settle(owner, ...others);
  return id;
}

describe("chat: a retry makes no second change and no second event", () => {
  test("UpdateGroup twice: the same answer, one system message, one conversation_updated per member", async () => {
    const [owner, member] = [await device(), await device()];
    const id = await group(owner, [member]);
    const first = await owner.chat.updateGroup({ conversationId: id, groupName: "Renamed", groupDescription: "d" });
    const retry = await owner.chat.updateGroup({ conversationId: id, groupName: "Renamed", groupDescription: "d" });
    expect(retry).toEqual(first);
    expect(await systemEvents(owner, id)).toEqual(["group_created", "group_updated"]);
    await settle(owner, member);
    expect(eventsOf(member, "conversationUpdated", id)).toHaveLength(1);
    expect(eventsOf(owner, "conversationUpdated", id)).toHaveLength(1);
  });

  test("RemoveParticipant twice: the retry succeeds with the same answer; one removal; never-members stay NotFound", async () => {
    const [owner, member, gone, stranger] = [await device(), await device(), await device(), await device()];
    const id = await group(owner, [member, gone]);
    const first = await owner.chat.removeParticipant({ conversationId: id, userId: gone.id });
    const retry = await owner.chat.removeParticipant({ conversationId: id, userId: gone.id });
    expect(retry).toEqual(first);
    expect(await systemEvents(owner, id)).toEqual(["group_created", "participant_removed"]);
    await settle(member, gone);
    expect(eventsOf(member, "participantRemoved", id)).toHaveLength(1);
    expect(eventsOf(gone, "participantRemoved", id)).toHaveLength(1);
    expect(await codeOf(owner.chat.removeParticipant({ conversationId: id, userId: stranger.id }))).toBe(Code.NotFound);
  });

  test("LeaveConversation twice: the retry succeeds; one leave; a stranger still gets NotFound", async () => {
    const [owner, member, stranger] = [await device(), await device(), await device()];
    const id = await group(owner, [member]);
    const first = await member.chat.leaveConversation({ conversationId: id });
    const retry = await member.chat.leaveConversation({ conversationId: id });
    expect(retry).toEqual(first);
    expect(await systemEvents(owner, id)).toEqual(["group_created", "participant_left"]);
    await settle(owner, member);
    expect(eventsOf(owner, "participantRemoved", id)).toHaveLength(1);
    expect(eventsOf(member, "participantRemoved", id)).toHaveLength(1);
    expect(await codeOf(stranger.chat.leaveConversation({ conversationId: id }))).toBe(Code.NotFound);
  });

  test("EditMessage twice: the same message, one message_edited; even once the edit window has passed", async () => {
    const [a, b] = [await device(), await device()];
    const id = await group(a, [b]);
    const sent = await a.chat.sendMessage({ conversationId: id, content: "helo" });
    await stored(a, id, 2);
    const first = await a.chat.editMessage({ messageId: sent.message!.id, content: "hello" });
    const retry = await a.chat.editMessage({ messageId: sent.message!.id, content: "hello" });
    expect(retry).toEqual(first);
    clock.advance(16 * 60_000);
    expect(await a.chat.editMessage({ messageId: sent.message!.id, content: "hello" })).toEqual(first);
    expect(await codeOf(a.chat.editMessage({ messageId: sent.message!.id, content: "hello!" }))).toBe(Code.FailedPrecondition);
    await settle(b);
    expect(eventsOf(b, "messageEdited", id)).toHaveLength(1);
  });

  test("DeleteMessage for everyone twice: one message_deleted; for me twice: the retry succeeds, one event", async () => {
    const [a, b] = [await device(), await device()];
    const id = await group(a, [b]);
    const one = await a.chat.sendMessage({ conversationId: id, content: "oops" });
    const two = await a.chat.sendMessage({ conversationId: id, content: "mine only" });
    await stored(a, id, 3);
    await a.chat.deleteMessage({ messageId: one.message!.id, forEveryone: true });
    await a.chat.deleteMessage({ messageId: one.message!.id, forEveryone: true });
    await b.chat.deleteMessage({ messageId: two.message!.id, forEveryone: false });
    await b.chat.deleteMessage({ messageId: two.message!.id, forEveryone: false });
    await settle(b);
    const deleted = eventsOf(b, "messageDeleted", id).map((e) => e.kind.value as { messageId: string; forEveryone: boolean });
    expect(deleted.map((d) => [d.messageId, d.forEveryone])).toEqual([
      [one.message!.id, true],
      [two.message!.id, false],
    ]);
  });

  test("ReactToMessage twice: the same reactions, one reaction_changed", async () => {
    const [a, b] = [await device(), await device()];
    const id = await group(a, [b]);
    const sent = await a.chat.sendMessage({ conversationId: id, content: "react" });
    await stored(a, id, 2);
    const first = await b.chat.reactToMessage({ messageId: sent.message!.id, emoji: "👍" });
    const retry = await b.chat.reactToMessage({ messageId: sent.message!.id, emoji: "👍" });
    expect(retry).toEqual(first);
    await settle(a);
    expect(eventsOf(a, "reactionChanged", id)).toHaveLength(1);
  });

  test("MuteConversation and ArchiveConversation twice: one conversation_updated each", async () => {
    const [a, b] = [await device(), await device()];
    const id = await group(a, [b]);
    const until = { seconds: BigInt(Math.floor(clock.now().getTime() / 1000) + 3600), nanos: 0 };
    await b.chat.muteConversation({ conversationId: id, mutedUntil: until });
    await b.chat.muteConversation({ conversationId: id, mutedUntil: until });
    await settle(b);
    expect(eventsOf(b, "conversationUpdated", id)).toHaveLength(1);
    await b.chat.archiveConversation({ conversationId: id, archived: true });
    await b.chat.archiveConversation({ conversationId: id, archived: true });
    await settle(b);
    expect(eventsOf(b, "conversationUpdated", id)).toHaveLength(2);
  });
});

// These RPCs were safe to retry already (they pass on the old code too); the
// tests keep them so.
describe("already safe by themselves, and kept so", () => {
  test("SetParticipantRole (ownership hand-over) twice: the same answer, one owner_changed, one pair of role events", async () => {
    const [owner, member] = [await device(), await device()];
    const id = await group(owner, [member]);
    const first = await owner.chat.setParticipantRole({ conversationId: id, userId: member.id, role: ParticipantRole.OWNER });
    const retry = await owner.chat.setParticipantRole({ conversationId: id, userId: member.id, role: ParticipantRole.OWNER });
    expect(retry).toEqual(first);
    expect(first.conversation!.myRole).toBe(ParticipantRole.ADMIN);
    expect(await systemEvents(owner, id)).toEqual(["group_created", "owner_changed"]);
    await settle(member);
    expect(eventsOf(member, "participantRoleChanged", id)).toHaveLength(2);
  });

  test("AddParticipants of someone already in: the same answer, one participants_added, one event", async () => {
    const [owner, member, late] = [await device(), await device(), await device()];
    const id = await group(owner, [member]);
    const first = await owner.chat.addParticipants({ conversationId: id, userIds: [late.id] });
    const retry = await owner.chat.addParticipants({ conversationId: id, userIds: [late.id] });
    expect(retry).toEqual(first);
    expect(await systemEvents(owner, id)).toEqual(["group_created", "participants_added"]);
    await settle(member, late);
    expect(eventsOf(member, "participantAdded", id)).toHaveLength(1);
    expect(eventsOf(late, "conversationCreated", id)).toHaveLength(1);
  });

  test("MarkRead twice: the same watermarks, one receipt_updated", async () => {
    const [a, b] = [await device(), await device()];
    const id = await group(a, [b]);
    await a.chat.sendMessage({ conversationId: id, content: "read me" });
    await stored(b, id, 2);
    const first = await b.chat.markRead({ conversationId: id, upToSeq: 2n });
    const retry = await b.chat.markRead({ conversationId: id, upToSeq: 2n });
    expect(retry).toEqual(first);
    await settle(a);
    expect(eventsOf(a, "receiptUpdated", id)).toHaveLength(1);
  });

  test("ReplyToStatus twice with one client_message_id: the same message, stored once, one message_created", async () => {
    const [author, fan] = [await device(), await device()];
    await author.users.syncContacts({ phoneNumbers: [fan.phone] });
    const { statusId } = await author.statuses.createStatus({ content: "story" });
    const first = await fan.statuses.replyToStatus({ statusId, content: "nice", clientMessageId: "reply-1" });
    const retry = await fan.statuses.replyToStatus({ statusId, content: "nice", clientMessageId: "reply-1" });
    expect(retry.message!.id).toBe(first.message!.id);
    expect(retry.conversationId).toBe(first.conversationId);
    const messages = await stored(author, first.conversationId, 1);
    expect(messages.filter((m) => m.content === "nice")).toHaveLength(1);
    await settle(author);
    expect(eventsOf(author, "messageCreated", first.conversationId)).toHaveLength(1);
  });

  test("ViewStatus, BlockUser twice: the first view's and the first block's time", async () => {
    const [author, fan] = [await device(), await device()];
    await author.users.syncContacts({ phoneNumbers: [fan.phone] });
    const { statusId } = await author.statuses.createStatus({ content: "seen?" });
    const first = await fan.statuses.viewStatus({ statusId });
    clock.advance(1_000);
    const retry = await fan.statuses.viewStatus({ statusId });
    expect(retry.viewedAt).toEqual(first.viewedAt);
    expect((await author.statuses.getStatusViewers({ statusId })).viewers).toHaveLength(1);
    const block = await fan.users.blockUser({ userId: author.id });
    clock.advance(1_000);
    expect(await fan.users.blockUser({ userId: author.id })).toEqual(block);
    expect((await fan.users.listBlocked({})).blocked).toHaveLength(1);
  });
});

describe("status: a retry posts and deletes nothing twice", () => {
  test("CreateStatus twice with one client_request_id: the same answer, one status, one status_posted", async () => {
    const [author, viewer] = [await device(), await device()];
    await author.users.syncContacts({ phoneNumbers: [viewer.phone] });
    const req = { content: "once", clientRequestId: "status-1", audience: StatusAudience.CONTACTS };
    const first = await author.statuses.createStatus(req);
    const retry = await author.statuses.createStatus(req);
    expect(retry).toEqual(first);
    expect((await author.statuses.listMyStatuses({})).statuses.map((x) => x.id)).toEqual([first.statusId]);
    // The key is the caller's: someone else's same key is their own request.
    const other = await viewer.statuses.createStatus({ content: "mine", clientRequestId: "status-1" });
    expect(other.statusId).not.toBe(first.statusId);
    await settle(viewer);
    expect(viewer.sub.of("statusPosted").filter((p) => p.statusId === first.statusId)).toHaveLength(1);
  });

  test("DeleteStatus twice: the retry succeeds; someone else's status is still refused", async () => {
    const [author, viewer] = [await device(), await device()];
    await author.users.syncContacts({ phoneNumbers: [viewer.phone] });
    const { statusId } = await author.statuses.createStatus({ content: "short-lived" });
    await author.statuses.deleteStatus({ statusId });
    await author.statuses.deleteStatus({ statusId });
    expect((await author.statuses.listMyStatuses({})).statuses).toEqual([]);
    const { statusId: theirs } = await author.statuses.createStatus({ content: "not yours" });
    expect(await codeOf(viewer.statuses.deleteStatus({ statusId: theirs }))).toBe(Code.PermissionDenied);
    expect(await codeOf(viewer.statuses.deleteStatus({ statusId }))).toBe(Code.NotFound);
  });
});

describe("auth: a retried login or logout", () => {
  const auth = () => createClient(AuthService, createGrpcTransport({ baseUrl: s.url }));

  test("VerifyOTP repeated within 60 s (same number, code, device): the same session, refresh token and user; one session; nothing rotated", async () => {
    const number = phone();
    const a = auth();
    await a.sendOTP({ phoneNumber: number });
    const req = { phoneNumber: number, otpCode: DEV_CODE, deviceId: "phone-1", deviceName: "Phone" };
    const first = await a.verifyOTP(req);
    clock.advance(30_000);
    const retry = await a.verifyOTP(req);
    expect(retry.sessionId).toBe(first.sessionId);
    expect(retry.refreshToken).toBe(first.refreshToken);
    expect(retry.user).toEqual(first.user);
    expect(retry.isNewUser).toBe(true);
    expect((await a.validateToken({ accessToken: retry.accessToken })).isValid).toBe(true);
    const sessions = createClient(AuthService, bearerTransport(s.url, retry.accessToken));
    expect((await sessions.listSessions({})).sessions.map((x) => x.sessionId)).toEqual([first.sessionId]);
    // Whichever answer the client kept, its refresh token is the live one: no reuse alarm.
    const refreshed = await a.refreshToken({ refreshToken: first.refreshToken });
    expect((await a.validateToken({ accessToken: refreshed.accessToken })).isValid).toBe(true);
    // After a refresh, a late repeat gets the session's current refresh token.
    const late = await a.verifyOTP(req);
    expect(late.refreshToken).toBe(refreshed.refreshToken);
    expect((await a.validateToken({ accessToken: late.accessToken })).isValid).toBe(true);
  });

  test("a used code opens nothing but a repeat of its own call: not another device, a wrong code, a signed-out session, after 60 s, or past the attempts", async () => {
    const a = auth();
    const login = async (deviceId: string) => {
      const number = phone();
      await a.sendOTP({ phoneNumber: number });
      const req = { phoneNumber: number, otpCode: DEV_CODE, deviceId };
      return { number, req, first: await a.verifyOTP(req) };
    };

    const one = await login("phone-1");
    expect((await a.verifyOTP(one.req)).sessionId).toBe(one.first.sessionId);
    expect(await codeOf(a.verifyOTP({ ...one.req, deviceId: "phone-2" }))).toBe(Code.FailedPrecondition);
    expect(await codeOf(a.verifyOTP({ ...one.req, otpCode: "000000" }))).toBe(Code.FailedPrecondition);
    clock.advance(61_000);
    expect(await codeOf(a.verifyOTP(one.req))).toBe(Code.FailedPrecondition);
    const sessions = createClient(AuthService, bearerTransport(s.url, one.first.accessToken));
    expect((await sessions.listSessions({})).sessions).toHaveLength(1);

    const signedOut = await login("d");
    await a.revokeCurrentDevice({ refreshToken: signedOut.first.refreshToken });
    expect(await codeOf(a.verifyOTP(signedOut.req))).toBe(Code.FailedPrecondition);

    // Guesses at the device are counted like guesses at a code: five, then the code is dead.
    const guessed = await login("d");
    for (let i = 0; i < 5; i++) expect(await codeOf(a.verifyOTP({ ...guessed.req, deviceId: `guess-${i}` }))).toBe(Code.FailedPrecondition);
    expect(await codeOf(a.verifyOTP(guessed.req))).toBe(Code.ResourceExhausted);
  });

  test("SendOTP twice with one client_request_id: the first answer, and the pending code is not replaced", async () => {
    const number = phone();
    const a = createClient(AuthService, createConnectTransport({ baseUrl: s.url, httpVersion: "1.1" }));
    const first = await a.sendOTP({ phoneNumber: number, clientRequestId: "send-1" });
    expect(await codeOf(a.verifyOTP({ phoneNumber: number, otpCode: "000000" }))).toBe(Code.Unauthenticated);
    const retry = await a.sendOTP({ phoneNumber: number, clientRequestId: "send-1" });
    expect(retry).toEqual(first);
    // The wrong guess still counts: the code was not issued again.
    try {
      await a.verifyOTP({ phoneNumber: number, otpCode: "000001" });
      throw new Error("expected a refusal");
    } catch (err) {
      expect(String(err)).toMatch(/3 attempt/);
    }
    // Another key within the resend window is a new request, limited as before.
    expect(await codeOf(a.sendOTP({ phoneNumber: number, clientRequestId: "send-2" }))).toBe(Code.ResourceExhausted);
  });

  test("LogoutAllDevices twice with the same access token: both succeed", async () => {
    const number = phone();
    const a = auth();
    await a.sendOTP({ phoneNumber: number });
    const { accessToken } = await a.verifyOTP({ phoneNumber: number, otpCode: DEV_CODE });
    expect(await a.logoutAllDevices({ accessToken })).toMatchObject({ success: true });
    expect(await a.logoutAllDevices({ accessToken })).toMatchObject({ success: true });
    expect((await a.validateToken({ accessToken })).isValid).toBe(false);
    // A session that ended otherwise is not logged out by its dead token.
    const other = phone();
    await a.sendOTP({ phoneNumber: other });
    const signedOut = await a.verifyOTP({ phoneNumber: other, otpCode: DEV_CODE });
    await a.revokeCurrentDevice({ refreshToken: signedOut.refreshToken });
    expect(await codeOf(a.logoutAllDevices({ accessToken: signedOut.accessToken }))).toBe(Code.Unauthenticated);
  });
});

describe("user: a retry answers the same state", () => {
  test("SyncContacts twice with one client_request_id: the same answer, the budget spent once", async () => {
    const [u, friend] = [await socialUser(s, phone()), await socialUser(s, phone())];
    // One registered number and two that match no one (those cost budget on every check).
    const req = { phoneNumbers: [friend.phone, "+14155550001", "+14155550002"], clientRequestId: "sync-1" };
    const first = await u.users.syncContacts(req);
    const retry = await u.users.syncContacts(req);
    expect(retry).toEqual(first);
    expect(first.contacts.map((c) => c.user!.id)).toEqual([friend.id]);
    const next = await u.users.syncContacts({ phoneNumbers: ["+14155550003"], clientRequestId: "sync-2" });
    expect(next.budgetRemaining).toBe(first.budgetRemaining - 1);
  });

  test("UpdateProfile twice: the same profile, updated_at included", async () => {
    const u = await socialUser(s, phone());
    const first = await u.users.updateProfile({ displayName: "Ayşe", aboutText: "hi" });
    clock.advance(2_000);
    const retry = await u.users.updateProfile({ displayName: "Ayşe", aboutText: "hi" });
    expect(retry).toEqual(first);
    clock.advance(2_000);
    const changed = await u.users.updateProfile({ aboutText: "hello" });
    expect(changed.user!.updatedAt).not.toBe(first.user!.updatedAt);
  });
});

// Last: it moves the clock a day on.
describe("request answers expire", () => {
  test("a client_request_id answer is kept 24 h: then it is pruned and the key is free again", async () => {
    const author = await socialUser(s, phone());
    const first = await author.statuses.createStatus({ content: "day one", clientRequestId: "daily" });
    clock.advance(24 * 3600_000 + 1_000);
    // The periodic job's work, run now rather than waited for.
    expect(await pruneRequestAnswers(s.server.ctx.database.db, clock.now())).toBeGreaterThan(0);
    const later = await socialUser(s, author.phone);
    const next = await later.statuses.createStatus({ content: "day two", clientRequestId: "daily" });
    expect(next.statusId).not.toBe(first.statusId);
    expect((await later.statuses.listMyStatuses({})).statuses.map((x) => x.id)).toEqual([next.statusId]);
  });
});
