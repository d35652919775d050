import * as grpc from "@grpc/grpc-js";
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ChatService, GroupPermission, JoinRequestState, MessageKind } from "../../gen/chat/chat_pb.js";
import { grpcJsClient, grpcJsUnary } from "./helpers/grpc-js.js";
import { protocolTransport, Subscription } from "./helpers/realtime.js";
import { codeOf, curlJson, errorOf, phoneSequence, socialUser, type SocialUser } from "./helpers/social.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// Group policies (issue 17, item 1): who may send (announcement groups), edit
// the info and add participants, and whether new members need approval; set
// by admins only, shown on Conversation, announced as system messages and
// conversation_updated events, enforced on every path.

const phone = phoneSequence("717");
let s: TestServer;

beforeAll(async () => {
  s = await startTestServer();
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

const newUser = () => socialUser(s, phone());
const stream = (u: SocialUser) => new Subscription(protocolTransport(s.url, u.token, "connect"));
const systemEvents = async (u: SocialUser, conversationId: string) =>
  (await u.chat.listMessages({ conversationId })).messages.filter((m) => m.kind === MessageKind.SYSTEM).map((m) => m.systemEvent);

describe("group policies", () => {
  test("defaults; an announcement group over Connect JSON: set by the owner, a system message and conversation_updated, members refused", async () => {
    const [owner, admin, member] = [await newUser(), await newUser(), await newUser()];
    const created = await curlJson(s, owner.token, "chat.ChatService", "CreateConversation", {
      is_group: true,
      group_name: "News",
      participant_ids: [admin.id, member.id],
    });
    expect(created.status).toBe(200);
    // The defaults: everyone sends, admins edit and add, no approval.
    expect(created.body.conversation.policies).toEqual({
      send_messages: "GROUP_PERMISSION_ALL_PARTICIPANTS",
      edit_info: "GROUP_PERMISSION_ADMINS_ONLY",
      add_participants: "GROUP_PERMISSION_ADMINS_ONLY",
      approve_new_members: false,
    });
    const g = created.body.conversation.id as string;
    await owner.chat.setParticipantRole({ conversationId: g, userId: admin.id, role: 2 });
    const memberStream = stream(member);
    await memberStream.untilKind("caughtUp");

    // Only admins set policies, whatever edit_info says.
    const refused = await curlJson(s, member.token, "chat.ChatService", "UpdateGroup", {
      conversation_id: g,
      send_messages_policy: "GROUP_PERMISSION_ADMINS_ONLY",
    });
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe("permission_denied");
    const bad = await curlJson(s, owner.token, "chat.ChatService", "UpdateGroup", { conversation_id: g, send_messages_policy: 7 });
    expect(bad.body).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/^send_messages_policy: /) });

    const up = await curlJson(s, owner.token, "chat.ChatService", "UpdateGroup", { conversation_id: g, send_messages_policy: "GROUP_PERMISSION_ADMINS_ONLY" });
    expect(up.status).toBe(200);
    expect(up.body.conversation.policies.send_messages).toBe("GROUP_PERMISSION_ADMINS_ONLY");
    await memberStream.until((x) => x.of("conversationUpdated").some((u) => u.conversation?.policies?.sendMessages === GroupPermission.ADMINS_ONLY));
    expect(await systemEvents(member, g)).toContain("group_policies_updated");
    // A retry changes nothing: no second system message.
    await owner.chat.updateGroup({ conversationId: g, sendMessagesPolicy: GroupPermission.ADMINS_ONLY });
    expect((await systemEvents(owner, g)).filter((e) => e === "group_policies_updated")).toHaveLength(1);

    const send = await curlJson(s, member.token, "chat.ChatService", "SendMessage", { conversation_id: g, content: "may I?" });
    expect(send.status).toBe(403);
    expect(send.body).toMatchObject({ code: "permission_denied", message: expect.stringContaining("only admins can send") });
    expect((await admin.chat.sendMessage({ conversationId: g, content: "admins speak" })).message!.id).not.toBe("");
    expect((await owner.chat.sendMessage({ conversationId: g, content: "owner speaks" })).message!.id).not.toBe("");
    // Demoted, the admin is refused too; back to everyone, the member sends.
    await owner.chat.setParticipantRole({ conversationId: g, userId: admin.id, role: 1 });
    expect(await codeOf(admin.chat.sendMessage({ conversationId: g, content: "still?" }))).toBe(Code.PermissionDenied);
    await owner.chat.updateGroup({ conversationId: g, sendMessagesPolicy: GroupPermission.ALL_PARTICIPANTS });
    expect((await member.chat.sendMessage({ conversationId: g, content: "finally" })).message!.content).toBe("finally");
    await memberStream.close();
  });

  test("edit_info and add_participants opened to everyone; info and policies in one call make two system messages", async () => {
    const [owner, member, friend] = [await newUser(), await newUser(), await newUser()];
    const g = (
      await owner.chat.createConversation({
        isGroup: true,
        groupName: "Open",
        participantIds: [member.id],
        policies: { editInfo: GroupPermission.ALL_PARTICIPANTS },
      })
    ).conversation!;
    expect(g.policies).toMatchObject({ editInfo: GroupPermission.ALL_PARTICIPANTS, addParticipants: GroupPermission.ADMINS_ONLY });
    expect((await member.chat.updateGroup({ conversationId: g.id, groupName: "Renamed" })).conversation!.groupName).toBe("Renamed");
    expect(await codeOf(member.chat.addParticipants({ conversationId: g.id, userIds: [friend.id] }))).toBe(Code.PermissionDenied);

    await owner.chat.updateGroup({ conversationId: g.id, groupDescription: "both", addParticipantsPolicy: GroupPermission.ALL_PARTICIPANTS });
    // Newest first.
    expect((await systemEvents(owner, g.id)).slice(0, 2)).toEqual(["group_policies_updated", "group_updated"]);
    const added = await member.chat.addParticipants({ conversationId: g.id, userIds: [friend.id] });
    expect(added.conversation!.participantIds).toContain(friend.id);

    // Closed again: the member may no longer edit.
    await owner.chat.updateGroup({ conversationId: g.id, editInfoPolicy: GroupPermission.ADMINS_ONLY });
    const err = await errorOf(member.chat.updateGroup({ conversationId: g.id, groupName: "Mine" }));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(err.rawMessage).toContain("edit_info");
    const empty = await errorOf(owner.chat.updateGroup({ conversationId: g.id }));
    expect(empty.code).toBe(Code.InvalidArgument);
  });

  test("approve_new_members: a plain member's add becomes a join request an admin approves", async () => {
    const [owner, member, newcomer] = [await newUser(), await newUser(), await newUser()];
    const g = (
      await owner.chat.createConversation({
        isGroup: true,
        groupName: "Gated",
        participantIds: [member.id],
        policies: { addParticipants: GroupPermission.ALL_PARTICIPANTS, approveNewMembers: true },
      })
    ).conversation!.id;
    const ownerStream = stream(owner);
    await ownerStream.untilKind("caughtUp");
    const added = await member.chat.addParticipants({ conversationId: g, userIds: [newcomer.id] });
    expect(added.pendingApprovalUserIds).toEqual([newcomer.id]);
    expect(added.conversation!.participantIds).not.toContain(newcomer.id);
    await ownerStream.until((x) => x.of("joinRequestUpdated").some((e) => e.request?.userId === newcomer.id && e.request.state === JoinRequestState.PENDING));
    const { requests } = await owner.chat.listJoinRequests({ conversationId: g });
    expect(requests).toMatchObject([{ userId: newcomer.id, addedBy: member.id, state: JoinRequestState.PENDING }]);
    expect(await codeOf(member.chat.listJoinRequests({ conversationId: g }))).toBe(Code.PermissionDenied);
    const approved = await owner.chat.approveJoinRequest({ conversationId: g, userId: newcomer.id });
    expect(approved.conversation!.participantIds).toContain(newcomer.id);
    // The owner's own adds need no approval.
    const other = await newUser();
    expect((await owner.chat.addParticipants({ conversationId: g, userIds: [other.id] })).conversation!.participantIds).toContain(other.id);
    await ownerStream.close();
  });

  test("over gRPC (@grpc/grpc-js): an announcement group refuses a member's message with PERMISSION_DENIED", async () => {
    const [owner, member] = [await newUser(), await newUser()];
    const client = grpcJsClient(s.url);
    const md = (u: SocialUser) => {
      const m = new grpc.Metadata();
      m.set("authorization", `Bearer ${u.token}`);
      return m;
    };
    try {
      const g = (
        await grpcJsUnary(
          client,
          ChatService.method.createConversation,
          { isGroup: true, groupName: "Announce", participantIds: [member.id], policies: { sendMessages: GroupPermission.ADMINS_ONLY } },
          md(owner),
        )
      ).conversation!;
      expect(g.policies?.sendMessages).toBe(GroupPermission.ADMINS_ONLY);
      const err = (await grpcJsUnary(client, ChatService.method.sendMessage, { conversationId: g.id, content: "hi" }, md(member)).catch(
        (e: unknown) => e,
      )) as grpc.ServiceError;
      expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
      const policyByMember = (await grpcJsUnary(
        client,
        ChatService.method.updateGroup,
        { conversationId: g.id, sendMessagesPolicy: GroupPermission.ALL_PARTICIPANTS },
        md(member),
      ).catch((e: unknown) => e)) as grpc.ServiceError;
      expect(policyByMember.code).toBe(grpc.status.PERMISSION_DENIED);
      const sent = await grpcJsUnary(client, ChatService.method.sendMessage, { conversationId: g.id, content: "news" }, md(owner));
      expect(sent.message!.content).toBe("news");
      // The same refusal over the Connect protocol's generated client, gRPC transport.
      const grpcChat = createClient(ChatService, protocolTransport(s.url, member.token, "grpc"));
      expect(await codeOf(grpcChat.sendMessage({ conversationId: g.id, content: "again" }))).toBe(Code.PermissionDenied);
    } finally {
      client.close();
    }
  });
});
