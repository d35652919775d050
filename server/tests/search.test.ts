import * as grpc from "@grpc/grpc-js";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ChatService } from "../../gen/chat/chat_pb.js";
import { grpcJsClient, grpcJsUnary } from "./helpers/grpc-js.js";
import { protocolTransport, Subscription } from "./helpers/realtime.js";
import { codeOf, curlJson, phoneSequence, socialUser, type SocialUser } from "./helpers/social.js";
import { FakeClock, startTestServer, type TestServer } from "./helpers/test-server.js";

// SearchMessages (full text, ranked, paged, only what the caller may read) and
// SearchConversations (group names, people's names, phone numbers, contacts),
// through the generated Connect client, Connect JSON (curl) and @grpc/grpc-js.

const phone = phoneSequence("861");
const clock = new FakeClock();
let s: TestServer;
let a: SocialUser, b: SocialUser, c: SocialUser;
let aStream: Subscription;
let direct: string, group: string;
const ids = new Map<string, string>();

beforeAll(async () => {
  s = await startTestServer({ ACCESS_TOKEN_TTL_SECONDS: "86400" }, { clock });
  [a, b, c] = [await socialUser(s, phone()), await socialUser(s, phone()), await socialUser(s, phone())];
  await b.users.updateProfile({ displayName: "Bora Yılmaz" });
  await c.users.updateProfile({ displayName: "Cem" });
  await a.users.syncContacts({ phoneNumbers: [b.phone, c.phone] });
  aStream = new Subscription(protocolTransport(s.url, a.token, "connect"));
  await aStream.untilKind("caughtUp");
  direct = (await a.chat.createConversation({ participantIds: [b.id] })).conversation!.id;
  group = (await a.chat.createConversation({ participantIds: [b.id, c.id], isGroup: true, groupName: "Ankara Trip" })).conversation!.id;
  const say = async (who: SocialUser, conversationId: string, key: string, content: string) => {
    const { message } = await who.chat.sendMessage({ conversationId, content, clientMessageId: key });
    ids.set(key, message!.id);
  };
  await say(a, direct, "d1", "Hello world from Ankara");
  await say(b, direct, "d2", "the quick brown fox jumps");
  await say(a, direct, "d3", "hello again, hello!");
  await say(b, direct, "d4", "Hello for Bora's eyes only");
  await say(c, group, "g1", "hello group, Cem here");
  await say(a, group, "g2", "Merhaba! Çay içelim mi?");
  // Every message stored (the production profile stores after SendMessage answers).
  await aStream.until((x) => x.of("messageCreated").filter((e) => e.message!.kind === 1).length >= 6, 10_000, "6 stored messages");
  await a.chat.removeParticipant({ conversationId: group, userId: c.id });
  await b.chat.sendMessage({ conversationId: group, content: "hello after Cem left", clientMessageId: "g3" });
  await aStream.until((x) => x.of("messageCreated").some((e) => e.message!.clientMessageId === "g3"), 10_000, "g3 stored");
});
afterAll(async () => {
  await aStream?.close();
  await s?.stop();
});

const contents = (r: { messages: Array<{ content: string }> }) => r.messages.map((m) => m.content);

describe("SearchMessages", () => {
  test("words in any case, the last one as a prefix; best rank first; one conversation or all", async () => {
    const r = await a.chat.searchMessages({ query: "HEL" });
    expect(new Set(contents(r))).toEqual(
      new Set(["Hello world from Ankara", "hello again, hello!", "Hello for Bora's eyes only", "hello group, Cem here", "hello after Cem left"]),
    );
    // Two occurrences rank above one.
    expect(r.messages[0]!.content).toBe("hello again, hello!");
    expect(contents(await a.chat.searchMessages({ query: "quick fox" }))).toEqual(["the quick brown fox jumps"]);
    expect(contents(await a.chat.searchMessages({ query: "çay" }))).toEqual(["Merhaba! Çay içelim mi?"]);
    const onlyGroup = await a.chat.searchMessages({ query: "hello", conversationId: group });
    expect(new Set(contents(onlyGroup))).toEqual(new Set(["hello group, Cem here", "hello after Cem left"]));
    expect(r.messages.find((m) => m.content === "Hello world from Ankara")!.seq).toBeGreaterThan(0n);
  });

  test("pages with page_token, each match once", async () => {
    const seen: string[] = [];
    let pageToken = "";
    for (let i = 0; i < 10; i++) {
      const r = await a.chat.searchMessages({ query: "hello", limit: 2, pageToken });
      seen.push(...r.messages.map((m) => m.id));
      pageToken = r.nextPageToken;
      if (pageToken === "") break;
    }
    expect(seen.length).toBe(5);
    expect(new Set(seen).size).toBe(5);
    expect(await codeOf(a.chat.searchMessages({ query: "other", pageToken: (await a.chat.searchMessages({ query: "hello", limit: 1 })).nextPageToken }))).toBe(
      Code.InvalidArgument,
    );
  });

  test("removal, delete for everyone and delete for me are honoured", async () => {
    // c was removed: finds what they saw, not what came after.
    expect(contents(await c.chat.searchMessages({ query: "hello" }))).toEqual(["hello group, Cem here"]);
    await a.chat.deleteMessage({ messageId: ids.get("d4")!, forEveryone: false });
    expect(contents(await a.chat.searchMessages({ query: "bora eyes" }))).toEqual([]);
    expect(contents(await b.chat.searchMessages({ query: "bora eyes" }))).toEqual(["Hello for Bora's eyes only"]);
    await b.chat.deleteMessage({ messageId: ids.get("d4")!, forEveryone: true });
    expect(contents(await b.chat.searchMessages({ query: "bora eyes" }))).toEqual([]);
  });

  test("errors: no words, bad page token, a conversation never joined", async () => {
    expect(await codeOf(a.chat.searchMessages({ query: " ?! " }))).toBe(Code.InvalidArgument);
    expect(await codeOf(a.chat.searchMessages({ query: "hello", pageToken: "nonsense" }))).toBe(Code.InvalidArgument);
    const other = (await b.chat.createConversation({ participantIds: [c.id] })).conversation!.id;
    expect(await codeOf(a.chat.searchMessages({ query: "hello", conversationId: other }))).toBe(Code.NotFound);
  });

  test("over gRPC (@grpc/grpc-js) and Connect JSON (curl)", async () => {
    const client = grpcJsClient(s.url);
    try {
      const md = new grpc.Metadata();
      md.set("authorization", `Bearer ${a.token}`);
      const r = await grpcJsUnary(client, ChatService.method.searchMessages, { query: "quick" }, md);
      expect(r.messages.map((m) => m.content)).toEqual(["the quick brown fox jumps"]);
    } finally {
      client.close();
    }
    const json = await curlJson(s, a.token, "chat.ChatService", "SearchMessages", { query: "ankara", conversationId: direct });
    expect(json.status).toBe(200);
    expect(json.body.messages.map((m: { content: string }) => m.content)).toEqual(["Hello world from Ankara"]);
  });
});

describe("SearchConversations", () => {
  test("groups by name, direct conversations and contacts by name or number", async () => {
    const byGroup = await a.chat.searchConversations({ query: "ankara" });
    expect(byGroup.conversations.map((x) => x.id)).toEqual([group]);
    expect(byGroup.contacts).toEqual([]);

    const byName = await a.chat.searchConversations({ query: "bora" });
    expect(byName.conversations.map((x) => x.id)).toEqual([direct]);
    expect(byName.contacts.map((x) => [x.userId, x.displayName, x.conversationId])).toEqual([[b.id, "Bora Yılmaz", direct]]);

    // A number with spaces, without +: digits match the stored E.164.
    const digits = b.phone.slice(2, 9).replace(/(\d{3})(\d+)/, "$1 $2");
    const byNumber = await a.chat.searchConversations({ query: digits });
    expect(byNumber.conversations.map((x) => x.id)).toContain(direct);
    expect(byNumber.contacts.map((x) => x.userId)).toContain(b.id);

    // A contact without a conversation; c left the group, so it is not c's any more.
    const cem = await a.chat.searchConversations({ query: "cem" });
    expect(cem.contacts.map((x) => [x.userId, x.conversationId])).toEqual([[c.id, ""]]);
    expect((await c.chat.searchConversations({ query: "ankara" })).conversations).toEqual([]);
    // Pattern characters are literal.
    expect((await a.chat.searchConversations({ query: "%" })).conversations).toEqual([]);
  });

  test("over Connect JSON (curl) and gRPC; errors", async () => {
    const json = await curlJson(s, b.token, "chat.ChatService", "SearchConversations", { query: "Trip" });
    expect(json.status).toBe(200);
    expect(json.body.conversations.map((x: { id: string }) => x.id)).toEqual([group]);
    const client = grpcJsClient(s.url);
    try {
      const md = new grpc.Metadata();
      md.set("authorization", `Bearer ${a.token}`);
      const r = await grpcJsUnary(client, ChatService.method.searchConversations, { query: "trip" }, md);
      expect(r.conversations.map((x) => x.id)).toEqual([group]);
    } finally {
      client.close();
    }
    expect(await codeOf(a.chat.searchConversations({ query: "  " }))).toBe(Code.InvalidArgument);
    expect(await codeOf(a.chat.searchConversations({ query: "x", limit: -1 }))).toBe(Code.InvalidArgument);
  });
});

// Last: it moves the clock a day on (past the access tokens' lifetime, so b logs in again).
test("disappearing messages are not found once expired, before any purge", async () => {
  await a.chat.setDisappearingTimer({ conversationId: direct, seconds: 86_400 });
  await a.chat.sendMessage({ conversationId: direct, content: "ephemeral secret", clientMessageId: "e1" });
  await aStream.until((x) => x.of("messageCreated").some((e) => e.message!.clientMessageId === "e1"), 10_000, "e1 stored");
  expect(contents(await b.chat.searchMessages({ query: "secret" }))).toEqual(["ephemeral secret"]);
  clock.advance(86_400_000 + 1000);
  const again = await socialUser(s, b.phone);
  expect(contents(await again.chat.searchMessages({ query: "secret" }))).toEqual([]);
});
