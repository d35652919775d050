import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ChatService, type Message } from "../../gen/chat/chat_pb.js";
import { MediaKind } from "../../gen/media/media_pb.js";
import { grpcJsClient, grpcJsUnary } from "./helpers/grpc-js.js";
import { fakeJpeg, mediaClient, sha256, tusUpload, whenSome } from "./helpers/media.js";
import { curlJson, errorOf, phoneSequence, socialUser, type SocialUser } from "./helpers/social.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";
import * as grpc from "@grpc/grpc-js";

// ForwardMessages (issue 17 item 3): copies through the normal message path,
// a forward counter with its marks, the one-chat limit for messages forwarded
// many times, media referenced (not copied), idempotent retries.

const phone = phoneSequence("721");
let s: TestServer;
let a: SocialUser;
let b: SocialUser;
let c: SocialUser;
/** a's group with b and c; a's direct conversations with b and with c. */
let group: string;
let ab: string;
let ac: string;

beforeAll(async () => {
  s = await startTestServer();
  [a, b, c] = [await socialUser(s, phone()), await socialUser(s, phone()), await socialUser(s, phone())];
  group = (await a.chat.createConversation({ isGroup: true, groupName: "fwd", participantIds: [b.id, c.id] })).conversation!.id;
  ab = (await a.chat.createConversation({ participantIds: [b.id] })).conversation!.id;
  ac = (await a.chat.createConversation({ participantIds: [c.id] })).conversation!.id;
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

/** The message as `u` lists it once stored (production: once the worker has stored it). */
const stored = (u: SocialUser, conversationId: string, id: string) =>
  whenSome(async () => (await u.chat.listMessages({ conversationId, limit: 100 })).messages.find((m) => m.id === id));

describe("ForwardMessages", () => {
  test("Connect JSON: forwards to several conversations, marked forwarded; a retry with the same client_request_id sends nothing twice", async () => {
    const m1 = (await b.chat.sendMessage({ conversationId: group, content: "hello all" })).message!;
    const m2 = (await b.chat.sendMessage({ conversationId: group, content: "second", mentionUserIds: [c.id] })).message!;
    await stored(a, group, m2.id);
    const body = { message_ids: [m1.id, m2.id], conversation_ids: [ab, ac], client_request_id: "fwd-1" };
    const first = await curlJson(s, a.token, "chat.ChatService", "ForwardMessages", body);
    expect(first.status).toBe(200);
    const copies = first.body.messages as Array<Record<string, any>>;
    // By conversation, then by message.
    expect(copies.map((m) => [m.conversation_id, m.content, m.sender_id, m.forward_count, m.forwarded])).toEqual([
      [ab, "hello all", a.id, 1, true],
      [ab, "second", a.id, 1, true],
      [ac, "hello all", a.id, 1, true],
      [ac, "second", a.id, 1, true],
    ]);
    // Mentions and replies stay behind.
    expect([copies[1]!.mention_user_ids, copies[1]!.reply_to_message_id]).toEqual([[], ""]);
    const again = await curlJson(s, a.token, "chat.ChatService", "ForwardMessages", body);
    expect((again.body.messages as Array<{ id: string }>).map((m) => m.id)).toEqual(copies.map((m) => m.id));

    // b sees the copies in order in their direct conversation with a, once each, with the marks.
    await stored(b, ab, copies[1]!.id);
    // Newest first.
    const listed = (await b.chat.listMessages({ conversationId: ab })).messages;
    expect(listed.map((m) => [m.content, m.forwardCount, m.forwarded, m.forwardedManyTimes])).toEqual([
      ["second", 1, true, false],
      ["hello all", 1, true, false],
    ]);
    expect(listed[0]!.seq).toBeGreaterThan(listed[1]!.seq);
  });

  test("gRPC (@grpc/grpc-js): a message forwarded many times (5 hops) goes to one chat at a time", async () => {
    const client = grpcJsClient(s.url);
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${a.token}`);
    try {
      let current: Message = (await a.chat.sendMessage({ conversationId: ab, content: "rumour" })).message!;
      await stored(a, ab, current.id);
      for (let hop = 1; hop <= 5; hop++) {
        const res = await grpcJsUnary(
          client,
          ChatService.method.forwardMessages,
          { messageIds: [current.id], conversationIds: [ab], clientRequestId: `hop-${hop}` },
          md,
        );
        expect(res.messages).toHaveLength(1);
        current = await stored(a, ab, res.messages[0]!.id);
        expect([current.forwardCount, current.forwarded, current.forwardedManyTimes]).toEqual([hop, true, hop >= 5]);
      }
      const refused = await errorOf(a.chat.forwardMessages({ messageIds: [current.id], conversationIds: [ab, ac] }));
      expect(refused.code).toBe(Code.FailedPrecondition);
      expect(refused.rawMessage).toContain("forwarded many times");
      const one = await grpcJsUnary(
        client,
        ChatService.method.forwardMessages,
        { messageIds: [current.id], conversationIds: [ac], clientRequestId: "hop-6" },
        md,
      );
      expect(one.messages[0]!.forwardCount).toBe(6);
    } finally {
      client.close();
    }
  });

  test("media is referenced, not copied: the target's participants may download it", async () => {
    const photo = fakeJpeg(2000);
    const media = (
      await mediaClient(s, a.token).createUpload({ kind: MediaKind.IMAGE, mimeType: "image/jpeg", sizeBytes: BigInt(photo.length), sha256: sha256(photo) })
    ).mediaId;
    await tusUpload(s, a.token, media, photo, { chunk: photo.length });
    const sent = (await a.chat.sendMessage({ conversationId: ab, mediaId: media })).message!;
    await stored(b, ab, sent.id);
    // c has no way to it yet.
    expect((await errorOf(mediaClient(s, c.token).getMedia({ mediaId: media }))).code).toBe(Code.NotFound);
    const fwd = (await b.chat.forwardMessages({ messageIds: [sent.id], conversationIds: [group], clientRequestId: "photo" })).messages[0]!;
    expect(fwd.mediaUrl).toBe(`/media/${media}`);
    expect(fwd.media?.mediaId).toBe(media);
    const seen = await stored(c, group, fwd.id);
    expect(seen.media?.sha256).toBe(sha256(photo));
    expect((await mediaClient(s, c.token).getMedia({ mediaId: media })).media?.mediaId).toBe(media);
  });

  test("refusals: unseen messages, conversations the caller is not in, deleted and system messages, limits", async () => {
    const stranger = await socialUser(s, phone());
    const mine = (await a.chat.sendMessage({ conversationId: ab, content: "x" })).message!;
    await stored(a, ab, mine.id);
    expect((await errorOf(stranger.chat.forwardMessages({ messageIds: [mine.id], conversationIds: [ab] }))).code).toBe(Code.NotFound);
    expect((await errorOf(a.chat.forwardMessages({ messageIds: [mine.id], conversationIds: [crypto.randomUUID()] }))).code).toBe(Code.NotFound);
    expect((await errorOf(a.chat.forwardMessages({ messageIds: [], conversationIds: [ab] }))).code).toBe(Code.InvalidArgument);
    const six = [ab, ac, group, crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()];
    expect((await errorOf(a.chat.forwardMessages({ messageIds: [mine.id], conversationIds: six }))).rawMessage).toMatch(/^conversation_ids: at most 5/);
    await a.chat.addParticipants({ conversationId: group, userIds: [stranger.id] });
    const system = (await a.chat.listMessages({ conversationId: group, limit: 1 })).messages[0]!;
    expect(system.systemEvent).toBe("participants_added");
    expect((await errorOf(a.chat.forwardMessages({ messageIds: [system.id], conversationIds: [ab] }))).code).toBe(Code.FailedPrecondition);
    await a.chat.deleteMessage({ messageId: mine.id, forEveryone: true });
    expect((await errorOf(a.chat.forwardMessages({ messageIds: [mine.id], conversationIds: [ac] }))).code).toBe(Code.FailedPrecondition);
  });
});
