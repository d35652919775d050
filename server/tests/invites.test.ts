import * as grpc from "@grpc/grpc-js";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ChatService, JoinRequestState, MessageKind } from "../../gen/chat/chat_pb.js";
import { Visibility } from "../../gen/user/user_pb.js";
import { grpcJsClient, grpcJsUnary } from "./helpers/grpc-js.js";
import { protocolTransport, Subscription } from "./helpers/realtime.js";
import { codeOf, curlJson, errorOf, phoneSequence, socialUser, type SocialUser } from "./helpers/social.js";
import { FakeClock, startTestServer, type TestServer } from "./helpers/test-server.js";

// Invite links (issue 17, item 2): created by admins with expiry, use limit
// and approval; previewed and joined by code; revoked and reset; join
// requests decided by admins with events to them and to the requester; a add
// refused by the invitee's group_add privacy setting becomes a personal invite.

const phone = phoneSequence("719");
const clock = new FakeClock();
let s: TestServer;

beforeAll(async () => {
  s = await startTestServer({}, { clock });
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

const newUser = () => socialUser(s, phone());
const stream = async (u: SocialUser) => {
  const sub = new Subscription(protocolTransport(s.url, u.token, "connect"));
  await sub.untilKind("caughtUp");
  return sub;
};
const group = async (owner: SocialUser, members: SocialUser[], name = "Club") =>
  (await owner.chat.createConversation({ isGroup: true, groupName: name, participantIds: members.map((m) => m.id) })).conversation!.id;

describe("invite links", () => {
  test("over Connect JSON: create, preview, join (a system message, one use), retry, used up, revoke, reset", async () => {
    const [owner, member, joiner, late] = [await newUser(), await newUser(), await newUser(), await newUser()];
    const g = await group(owner, [member], "Book club");
    await owner.chat.updateGroup({ conversationId: g, groupAvatarUrl: "https://example.com/books.png" });
    const made = await curlJson(s, owner.token, "chat.ChatService", "CreateInviteLink", { conversation_id: g, max_uses: 1, expires_in_seconds: 3600 });
    expect(made.status).toBe(200);
    const code = made.body.link.code as string;
    expect(code).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(made.body.link).toMatchObject({ conversation_id: g, created_by: owner.id, max_uses: 1, use_count: 0, active: true });

    const preview = await curlJson(s, joiner.token, "chat.ChatService", "GetInvitePreview", { code });
    expect(preview.body.preview).toMatchObject({
      conversation_id: g,
      group_name: "Book club",
      group_avatar_url: "https://example.com/books.png",
      participant_count: 2,
      requires_approval: false,
      already_participant: false,
    });

    const memberStream = await stream(member);
    const joined = await curlJson(s, joiner.token, "chat.ChatService", "JoinByInvite", { code });
    expect(joined.status).toBe(200);
    expect(joined.body.conversation.participant_ids).toContain(joiner.id);
    await memberStream.until((x) => x.of("participantAdded").some((e) => e.userIds.includes(joiner.id) && e.actorId === joiner.id));
    const sys = (await member.chat.listMessages({ conversationId: g })).messages.find((m) => m.kind === MessageKind.SYSTEM);
    expect(sys).toMatchObject({ systemEvent: "participant_joined", senderId: joiner.id, systemUserIds: [joiner.id] });
    // A retry answers the group and counts no second use.
    const again = await curlJson(s, joiner.token, "chat.ChatService", "JoinByInvite", { code });
    expect(again.body.conversation.id).toBe(g);
    const [link] = (await owner.chat.listInviteLinks({ conversationId: g, includeInactive: true })).links;
    expect(link).toMatchObject({ code, useCount: 1, active: false });
    // Used up: failed_precondition for the next person.
    const full = await curlJson(s, late.token, "chat.ChatService", "JoinByInvite", { code });
    expect(full.body).toMatchObject({ code: "failed_precondition", message: expect.stringContaining("used its 1 times") });

    // Revoke, and reset: every shared link revoked, a new one works.
    const open = (await owner.chat.createInviteLink({ conversationId: g })).link!;
    const revoked = await curlJson(s, owner.token, "chat.ChatService", "RevokeInviteLink", { conversation_id: g, code: open.code });
    expect(revoked.body.link.active).toBe(false);
    expect((await errorOf(late.chat.getInvitePreview({ code: open.code }))).rawMessage).toContain("revoked");
    const another = (await owner.chat.createInviteLink({ conversationId: g })).link!;
    const reset = await curlJson(s, owner.token, "chat.ChatService", "ResetInviteLinks", { conversation_id: g, client_request_id: "reset-1" });
    expect(reset.body.revoked_count).toBe(1);
    const retried = await curlJson(s, owner.token, "chat.ChatService", "ResetInviteLinks", { conversation_id: g, client_request_id: "reset-1" });
    expect(retried.body.link.code).toBe(reset.body.link.code);
    expect(await codeOf(late.chat.joinByInvite({ code: another.code }))).toBe(Code.FailedPrecondition);
    expect((await late.chat.joinByInvite({ code: reset.body.link.code })).conversation!.participantIds).toContain(late.id);
    expect((await owner.chat.listInviteLinks({ conversationId: g })).links.map((l) => l.code)).toEqual([reset.body.link.code]);
    await memberStream.close();
  });

  test("an expired link; bad input and callers get precise codes", async () => {
    const [owner, member, outsider] = [await newUser(), await newUser(), await newUser()];
    const g = await group(owner, [member]);
    const { link } = await owner.chat.createInviteLink({ conversationId: g, expiresInSeconds: 60n, clientRequestId: "k1" });
    expect((await owner.chat.createInviteLink({ conversationId: g, expiresInSeconds: 60n, clientRequestId: "k1" })).link!.code).toBe(link!.code);
    clock.advance(61_000);
    const expired = await errorOf(outsider.chat.joinByInvite({ code: link!.code }));
    expect([expired.code, expired.rawMessage]).toEqual([Code.FailedPrecondition, "this invite link has expired; ask an admin for a new one"]);

    expect((await errorOf(owner.chat.createInviteLink({ conversationId: g, expiresInSeconds: -1n }))).rawMessage).toMatch(/^expires_in_seconds: /);
    expect((await errorOf(owner.chat.createInviteLink({ conversationId: g, maxUses: 100_001 }))).rawMessage).toMatch(/^max_uses: /);
    expect(await codeOf(member.chat.createInviteLink({ conversationId: g }))).toBe(Code.PermissionDenied);
    expect(await codeOf(outsider.chat.createInviteLink({ conversationId: g }))).toBe(Code.NotFound);
    const direct = (await owner.chat.createConversation({ participantIds: [outsider.id] })).conversation!.id;
    expect(await codeOf(owner.chat.createInviteLink({ conversationId: direct }))).toBe(Code.FailedPrecondition);
    expect(await codeOf(outsider.chat.joinByInvite({ code: "" }))).toBe(Code.InvalidArgument);
    expect(await codeOf(outsider.chat.joinByInvite({ code: "no-such-code" }))).toBe(Code.NotFound);
    expect(await codeOf(outsider.chat.getInvitePreview({ code: "x".repeat(100) }))).toBe(Code.NotFound);
    expect(await codeOf(owner.chat.revokeInviteLink({ conversationId: g, code: "no-such-code" }))).toBe(Code.NotFound);
    expect(await codeOf(owner.chat.approveJoinRequest({ conversationId: g, userId: outsider.id }))).toBe(Code.NotFound);
  });

  test("approval: the request reaches the admins live, is approved or rejected, and the requester hears of it", async () => {
    const [owner, admin, asker, refused] = [await newUser(), await newUser(), await newUser(), await newUser()];
    const g = await group(owner, [admin]);
    await owner.chat.setParticipantRole({ conversationId: g, userId: admin.id, role: 2 });
    const { link } = await owner.chat.createInviteLink({ conversationId: g, requiresApproval: true });
    expect((await asker.chat.getInvitePreview({ code: link!.code })).preview!.requiresApproval).toBe(true);
    const [adminStream, askerStream, refusedStream] = [await stream(admin), await stream(asker), await stream(refused)];

    const asked = await asker.chat.joinByInvite({ code: link!.code });
    expect(asked.conversation).toBeUndefined();
    expect(asked.joinRequest).toMatchObject({ conversationId: g, userId: asker.id, state: JoinRequestState.PENDING });
    // A retry answers the pending request.
    expect((await asker.chat.joinByInvite({ code: link!.code })).joinRequest!.state).toBe(JoinRequestState.PENDING);
    await adminStream.until((x) => x.of("joinRequestUpdated").some((e) => e.request?.userId === asker.id && e.request.state === JoinRequestState.PENDING));
    await refused.chat.joinByInvite({ code: link!.code });
    // Oldest first; the test clock stands still, so ties go by user id.
    expect((await admin.chat.listJoinRequests({ conversationId: g })).requests.map((r) => r.userId).sort()).toEqual([asker.id, refused.id].sort());

    const approved = await admin.chat.approveJoinRequest({ conversationId: g, userId: asker.id });
    expect(approved.conversation!.participantIds).toContain(asker.id);
    await askerStream.until((x) => x.of("joinRequestUpdated").some((e) => e.request?.state === JoinRequestState.APPROVED && e.actorId === admin.id));
    await askerStream.until((x) => x.of("conversationCreated").some((e) => e.conversation?.id === g));
    // Approving again (a retry) answers the group.
    expect((await admin.chat.approveJoinRequest({ conversationId: g, userId: asker.id })).conversation!.id).toBe(g);

    const rejected = await owner.chat.rejectJoinRequest({ conversationId: g, userId: refused.id });
    expect(rejected.request!.state).toBe(JoinRequestState.REJECTED);
    await refusedStream.until((x) => x.of("joinRequestUpdated").some((e) => e.request?.state === JoinRequestState.REJECTED));
    expect(await codeOf(refused.chat.joinByInvite({ code: link!.code }))).toBe(Code.PermissionDenied);
    expect(await codeOf(owner.chat.approveJoinRequest({ conversationId: g, userId: refused.id }))).toBe(Code.FailedPrecondition);
    expect(await codeOf(owner.chat.rejectJoinRequest({ conversationId: g, userId: asker.id }))).toBe(Code.FailedPrecondition);
    expect(await codeOf(asker.chat.rejectJoinRequest({ conversationId: g, userId: refused.id }))).toBe(Code.PermissionDenied);
    expect((await owner.chat.listJoinRequests({ conversationId: g })).requests).toEqual([]);
    await Promise.all([adminStream.close(), askerStream.close(), refusedStream.close()]);
  });

  test("a refused add becomes a personal invite: listed, announced, joinable by the invitee only", async () => {
    const [owner, member, shy, other] = [await newUser(), await newUser(), await newUser(), await newUser()];
    await shy.users.updatePrivacy({ groupAdd: Visibility.NOBODY });
    const g = await group(owner, [member]);
    const shyStream = await stream(shy);
    const added = await owner.chat.addParticipants({ conversationId: g, userIds: [shy.id, other.id] });
    expect(added.invitedUserIds).toEqual([shy.id]);
    expect(added.conversation!.participantIds).toContain(other.id);
    expect(added.conversation!.participantIds).not.toContain(shy.id);
    await shyStream.untilKind("groupInviteReceived");
    const code = shyStream.of("groupInviteReceived")[0]!.invite!.link!.code;
    // A retry makes no second invite.
    expect((await owner.chat.addParticipants({ conversationId: g, userIds: [shy.id] })).invitedUserIds).toEqual([shy.id]);
    const mine = await shy.chat.listMyGroupInvites({});
    expect(mine.invites).toHaveLength(1);
    expect(mine.invites[0]).toMatchObject({ link: { code, inviteeId: shy.id, maxUses: 1 }, preview: { conversationId: g, participantCount: 3 } });
    expect(await codeOf(other.chat.joinByInvite({ code }))).toBe(Code.NotFound);
    expect((await shy.chat.joinByInvite({ code })).conversation!.participantIds).toContain(shy.id);
    expect((await shy.chat.listMyGroupInvites({})).invites).toEqual([]);
    await shyStream.close();
  });

  test("over gRPC (@grpc/grpc-js): create a link, join by it, and NOT_FOUND for a wrong code", async () => {
    const [owner, joiner] = [await newUser(), await newUser()];
    const g = await group(owner, [], "gRPC");
    const client = grpcJsClient(s.url);
    const md = (u: SocialUser) => {
      const m = new grpc.Metadata();
      m.set("authorization", `Bearer ${u.token}`);
      return m;
    };
    try {
      const { link } = await grpcJsUnary(client, ChatService.method.createInviteLink, { conversationId: g, maxUses: 5 }, md(owner));
      const preview = await grpcJsUnary(client, ChatService.method.getInvitePreview, { code: link!.code }, md(joiner));
      expect(preview.preview).toMatchObject({ groupName: "gRPC", participantCount: 1 });
      const joined = await grpcJsUnary(client, ChatService.method.joinByInvite, { code: link!.code }, md(joiner));
      expect(joined.conversation!.participantIds).toContain(joiner.id);
      const err = (await grpcJsUnary(client, ChatService.method.joinByInvite, { code: "nope" }, md(joiner)).catch((e: unknown) => e)) as grpc.ServiceError;
      expect(err.code).toBe(grpc.status.NOT_FOUND);
      const empty = (await grpcJsUnary(client, ChatService.method.getInvitePreview, { code: " " }, md(joiner)).catch((e: unknown) => e)) as grpc.ServiceError;
      expect(empty.code).toBe(grpc.status.INVALID_ARGUMENT);
    } finally {
      client.close();
    }
  });
});
