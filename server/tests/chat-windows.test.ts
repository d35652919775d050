import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ChatService, ParticipantRole } from "../../gen/chat/chat_pb.js";
import { bearerTransport, login } from "./helpers/login.js";
import { FakeClock, startTestServer, type TestServer } from "./helpers/test-server.js";

// Time-bound rules of ChatService (edit and delete windows) with a clock the
// test moves, and the authorization table: no token, stranger, participant,
// admin, removed participant, for each conversation RPC.

let s: TestServer;
let clock: FakeClock;
beforeAll(async () => {
  clock = new FakeClock();
  s = await startTestServer(
    // A one-hour delete window (configurable; 60 h by default) keeps the moved clock inside the tokens' lifetime.
    { CHAT_EDIT_WINDOW_SECONDS: "900", CHAT_DELETE_WINDOW_SECONDS: "3600", ACCESS_TOKEN_TTL_SECONDS: "86400" },
    { clock },
  );
});
afterAll(async () => {
  await s?.stop();
});

let next = 100;
async function user(): Promise<{ id: string; chat: Client<typeof ChatService> }> {
  const u = await login(s.url, `+1415557${String(next++).padStart(4, "0")}`);
  return { id: u.id, chat: createClient(ChatService, bearerTransport(s.url, u.accessToken)) };
}

async function codeOf(p: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await p;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

async function storedIds(chat: Client<typeof ChatService>, conversationId: string, n: number): Promise<string[]> {
  for (let i = 0; i < 100; i++) {
    const { messages } = await chat.listMessages({ conversationId });
    if (messages.length >= n) return messages.map((m) => m.id);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("messages were not stored");
}

describe("edit and delete windows", () => {
  test("edit within 15 minutes, not after; delete for everyone within the window, not after; a group admin any time", async () => {
    const [a, b] = [await user(), await user()];
    const direct = (await a.chat.createConversation({ participantIds: [b.id] })).conversation!.id;
    await a.chat.sendMessage({ conversationId: direct, content: "one" });
    await a.chat.sendMessage({ conversationId: direct, content: "two" });
    const [two, one] = await storedIds(a.chat, direct, 2);

    clock.advance(14 * 60_000);
    expect(await codeOf(a.chat.editMessage({ messageId: one!, content: "one!" }))).toBe("ok");
    clock.advance(2 * 60_000);
    expect(await codeOf(a.chat.editMessage({ messageId: one!, content: "one!!" }))).toBe(Code.FailedPrecondition);

    clock.advance(43 * 60_000); // 59 minutes after sending
    expect(await codeOf(a.chat.deleteMessage({ messageId: two!, forEveryone: true }))).toBe("ok");
    clock.advance(2 * 60_000);
    expect(await codeOf(a.chat.deleteMessage({ messageId: one!, forEveryone: true }))).toBe(Code.FailedPrecondition);
    // Deleting for me has no window.
    expect(await codeOf(a.chat.deleteMessage({ messageId: one!, forEveryone: false }))).toBe("ok");

    const group = (await a.chat.createConversation({ participantIds: [b.id], isGroup: true, groupName: "G" })).conversation!.id;
    await b.chat.sendMessage({ conversationId: group, content: "old news" });
    const [old] = await storedIds(a.chat, group, 2);
    clock.advance(3 * 3_600_000);
    expect(await codeOf(a.chat.deleteMessage({ messageId: old!, forEveryone: true }))).toBe("ok");
  });
});

describe("authorization table", () => {
  test("no token, stranger, participant, admin and removed participant, for every conversation RPC", async () => {
    const [owner, member, removed, stranger] = [await user(), await user(), await user(), await user()];
    const id = (await owner.chat.createConversation({ participantIds: [member.id, removed.id], isGroup: true, groupName: "Auth" })).conversation!.id;
    await owner.chat.sendMessage({ conversationId: id, content: "hello" });
    const [msg] = await storedIds(owner.chat, id, 2);
    await owner.chat.removeParticipant({ conversationId: id, userId: removed.id });
    const anonymous = createClient(ChatService, createConnectTransport({ baseUrl: s.url, httpVersion: "1.1" }));

    type Call = (c: Client<typeof ChatService>) => Promise<unknown>;
    const calls: Record<string, Call> = {
      SendMessage: (c) => c.sendMessage({ conversationId: id, content: "x" }),
      ListMessages: (c) => c.listMessages({ conversationId: id }),
      GetConversation: (c) => c.getConversation({ conversationId: id }),
      UpdateGroup: (c) => c.updateGroup({ conversationId: id, groupDescription: "d" }),
      AddParticipants: (c) => c.addParticipants({ conversationId: id, userIds: [owner.id] }),
      SetParticipantRole: (c) => c.setParticipantRole({ conversationId: id, userId: member.id, role: ParticipantRole.MEMBER }),
      MarkRead: (c) => c.markRead({ conversationId: id, upToSeq: 1n }),
      ReactToMessage: (c) => c.reactToMessage({ messageId: msg!, emoji: "👍" }),
      GetMessageReceipts: (c) => c.getMessageReceipts({ messageId: msg! }),
      ArchiveConversation: (c) => c.archiveConversation({ conversationId: id, archived: false }),
    };
    const who = { anonymous, stranger: stranger.chat, member: member.chat, owner: owner.chat, removed: removed.chat };
    const table: Record<string, Record<keyof typeof who, Code | "ok">> = {
      SendMessage: { anonymous: Code.Unauthenticated, stranger: Code.NotFound, member: "ok", owner: "ok", removed: Code.NotFound },
      // A removed participant still reads history up to the removal.
      ListMessages: { anonymous: Code.Unauthenticated, stranger: Code.NotFound, member: "ok", owner: "ok", removed: "ok" },
      GetConversation: { anonymous: Code.Unauthenticated, stranger: Code.NotFound, member: "ok", owner: "ok", removed: "ok" },
      UpdateGroup: { anonymous: Code.Unauthenticated, stranger: Code.NotFound, member: Code.PermissionDenied, owner: "ok", removed: Code.NotFound },
      AddParticipants: { anonymous: Code.Unauthenticated, stranger: Code.NotFound, member: Code.PermissionDenied, owner: "ok", removed: Code.NotFound },
      SetParticipantRole: { anonymous: Code.Unauthenticated, stranger: Code.NotFound, member: Code.PermissionDenied, owner: "ok", removed: Code.NotFound },
      MarkRead: { anonymous: Code.Unauthenticated, stranger: Code.NotFound, member: "ok", owner: "ok", removed: Code.NotFound },
      ReactToMessage: { anonymous: Code.Unauthenticated, stranger: Code.NotFound, member: "ok", owner: "ok", removed: Code.PermissionDenied },
      GetMessageReceipts: { anonymous: Code.Unauthenticated, stranger: Code.NotFound, member: "ok", owner: "ok", removed: "ok" },
      ArchiveConversation: { anonymous: Code.Unauthenticated, stranger: Code.NotFound, member: "ok", owner: "ok", removed: Code.NotFound },
    };
    const seen: Record<string, Record<string, Code | "ok">> = {};
    for (const [rpc, call] of Object.entries(calls)) {
      seen[rpc] = {};
      for (const [name, client] of Object.entries(who)) seen[rpc]![name] = await codeOf(call(client));
    }
    expect(seen).toEqual(table);
  });
});
