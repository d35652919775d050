import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ChatService } from "../../gen/chat/chat_pb.js";
import { StatusService } from "../../gen/status/status_pb.js";
import { UserService } from "../../gen/user/user_pb.js";
import { bearerTransport, login, type LoggedIn } from "./helpers/login.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// Text limits count Unicode code points: 😀 is one character, though it is two
// UTF-16 units in JavaScript (and four bytes in UTF-8).
const EMOJI = "😀";
const emoji = (n: number) => EMOJI.repeat(n);

let s: TestServer;
let alice: LoggedIn;
let bob: LoggedIn;
let direct: string;

beforeAll(async () => {
  s = await startTestServer();
  [alice, bob] = (await Promise.all(["+14155550601", "+14155550602"].map((p) => login(s.url, p)))) as [LoggedIn, LoggedIn];
  direct = (await createClient(ChatService, bearerTransport(s.url, alice.accessToken)).createConversation({ participantIds: [bob.id] })).conversation!.id;
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

/** Waits (bounded) until the worker has stored message `id` (production profile: SendMessage answers once the queue has it). */
async function storedMessage(id: string) {
  const chat = createClient(ChatService, bearerTransport(s.url, alice.accessToken));
  for (let i = 0; i < 200; i++) {
    const found = (await chat.listMessages({ conversationId: direct, limit: 20 })).messages.find((m) => m.id === id);
    if (found) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`message ${id} was never stored`);
}

async function refused(call: Promise<unknown>, field: RegExp): Promise<void> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  expect(err, "the call should have been refused").toBeDefined();
  expect(err!.code).toBe(Code.InvalidArgument);
  expect(err!.rawMessage).toMatch(field);
}

describe.each(["connect", "grpc"] as const)("text limits in Unicode code points (%s)", (protocol) => {
  const chat = () => createClient(ChatService, bearerTransport(s.url, alice.accessToken, protocol));

  test("SendMessage: 4,096 emoji are accepted and stored whole; 4,097 → InvalidArgument naming content", async () => {
    const sent = await chat().sendMessage({ conversationId: direct, content: emoji(4096) });
    expect(sent.message!.content).toBe(emoji(4096));
    expect((await storedMessage(sent.message!.id)).content).toBe(emoji(4096));
    await refused(chat().sendMessage({ conversationId: direct, content: emoji(4097) }), /content: at most 4096 characters \(got 4097\)/);
  });

  test("EditMessage: 4,096 emoji are accepted; 4,097 → InvalidArgument naming content", async () => {
    const { message } = await chat().sendMessage({ conversationId: direct, content: "draft" });
    await storedMessage(message!.id);
    const edited = await chat().editMessage({ messageId: message!.id, content: emoji(4096) });
    expect(edited.message!.content).toBe(emoji(4096));
    await refused(chat().editMessage({ messageId: message!.id, content: emoji(4097) }), /content: at most 4096 characters/);
  });

  test("group name (100) and description (512): emoji count one each", async () => {
    const created = await chat().createConversation({ isGroup: true, participantIds: [bob.id], groupName: emoji(100), groupDescription: emoji(512) });
    expect(created.conversation!.groupName).toBe(emoji(100));
    const id = created.conversation!.id;
    await refused(chat().createConversation({ isGroup: true, participantIds: [bob.id], groupName: emoji(101) }), /group_name/);
    await refused(chat().createConversation({ isGroup: true, participantIds: [bob.id], groupName: "g", groupDescription: emoji(513) }), /group_description/);
    await chat().updateGroup({ conversationId: id, groupName: `${emoji(99)}x`, groupDescription: emoji(512) });
    await refused(chat().updateGroup({ conversationId: id, groupName: emoji(101) }), /group_name/);
    await refused(chat().updateGroup({ conversationId: id, groupDescription: emoji(513) }), /group_description/);
  });

  test("group fields: CreateConversation and UpdateGroup refuse the same things with the same words", async () => {
    const id = (await chat().createConversation({ isGroup: true, participantIds: [bob.id], groupName: "rules" })).conversation!.id;
    const longUrl = `https://x.example/${"a".repeat(2048)}`;
    const cases: Array<[{ groupName?: string; groupDescription?: string; groupAvatarUrl?: string }, string]> = [
      [{ groupName: "  " }, "group_name: a group needs a name"],
      [{ groupName: emoji(101) }, "group_name: at most 100 characters"],
      [{ groupDescription: emoji(513) }, "group_description: at most 512 characters"],
      [{ groupAvatarUrl: "ftp://x.example/a.png" }, "group_avatar_url: must be an http(s) URL"],
      [{ groupAvatarUrl: longUrl }, "group_avatar_url: at most 2048 characters"],
    ];
    for (const [fields, message] of cases) {
      const exact = new RegExp(`^${message.replace(/[()]/g, "\\$&")}$`);
      await refused(chat().createConversation({ isGroup: true, participantIds: [bob.id], groupName: "g", ...fields }), exact);
      await refused(chat().updateGroup({ conversationId: id, ...fields }), exact);
    }
    const avatar = "https://x.example/team.png";
    expect(
      (await chat().createConversation({ isGroup: true, participantIds: [bob.id], groupName: "g", groupAvatarUrl: avatar })).conversation!.groupAvatarUrl,
    ).toBe(avatar);
    expect((await chat().updateGroup({ conversationId: id, groupAvatarUrl: avatar })).conversation!.groupAvatarUrl).toBe(avatar);
  });

  test("status text (700), about (140) and display name (64)", async () => {
    const statuses = createClient(StatusService, bearerTransport(s.url, alice.accessToken, protocol));
    expect((await statuses.createStatus({ content: emoji(700) })).status!.content).toBe(emoji(700));
    await refused(statuses.createStatus({ content: emoji(701) }), /content: at most 700/);
    const users = createClient(UserService, bearerTransport(s.url, alice.accessToken, protocol));
    const me = await users.updateProfile({ aboutText: emoji(140), displayName: emoji(64) });
    expect(me.user!.aboutText).toBe(emoji(140));
    await refused(users.updateProfile({ aboutText: emoji(141) }), /about_text/);
    await refused(users.updateProfile({ displayName: emoji(65) }), /display_name/);
  });
});
