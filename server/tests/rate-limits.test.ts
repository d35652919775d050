import { Code, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ChatService } from "../../gen/chat/chat_pb.js";
import { RealtimeService } from "../../gen/realtime/realtime_pb.js";
import { bearerTransport } from "./helpers/login.js";
import { curlJson, errorOf, phoneSequence, socialUser, type SocialUser } from "./helpers/social.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// Per-user call limits (server/interceptors/rate-limit.ts), through real
// clients. Short windows (2 s) show a refusal, its retry-after, and the call
// working again once the window has passed; one-minute windows on a second
// deployment of two instances show which limits every instance shares (the
// database) and which each instance counts (memory, per message).

const phone = phoneSequence("710");
const SHORT = "3/2s";

let s: TestServer;
let wide: TestServer;
let wide2: TestServer;

beforeAll(async () => {
  s = await startTestServer({
    RATE_LIMITS: "on",
    RATE_LIMIT_SEND_MESSAGE: SHORT,
    RATE_LIMIT_REACT: SHORT,
    RATE_LIMIT_EDIT: SHORT,
    RATE_LIMIT_TYPING: SHORT,
    RATE_LIMIT_CREATE_GROUP: SHORT,
    RATE_LIMIT_CREATE_DIRECT: SHORT,
    RATE_LIMIT_ADD_PARTICIPANTS: SHORT,
    RATE_LIMIT_CREATE_STATUS: SHORT,
    RATE_LIMIT_SYNC_CONTACTS: SHORT,
  });
  const long = { RATE_LIMITS: "on", RATE_LIMIT_SEND_MESSAGE: "3/1m", RATE_LIMIT_CREATE_GROUP: "3/1m" };
  wide = await startTestServer(long);
  wide2 = await startTestServer(long, { shareWith: wide });
}, 60_000);

afterAll(async () => {
  await wide2?.stop();
  await wide?.stop();
  await s?.stop();
});

type User = SocialUser & { realtime: Client<typeof RealtimeService> };

async function user(server: TestServer): Promise<User> {
  const u = await socialUser(server, phone());
  return { ...u, realtime: createClient(RealtimeService, bearerTransport(server.url, u.token)) };
}

/** `actor`'s call number `i` of the RPC under a limit, and what it needs set up first (never a call of that limit by `actor`). */
interface Case {
  name: string;
  setup(actor: User, other: User): Promise<string>;
  call(actor: User, ctx: string, i: number): Promise<unknown>;
}

const direct = async (actor: User, other: User) => (await other.chat.createConversation({ participantIds: [actor.id] })).conversation!.id;
const cases: Case[] = [
  {
    name: "SendMessage",
    setup: direct,
    call: (a, conv, i) => a.chat.sendMessage({ conversationId: conv, content: `m${i}`, clientMessageId: `m-${a.id}-${i}` }),
  },
  {
    name: "ReactToMessage",
    setup: async (a, o) => (await o.chat.sendMessage({ conversationId: await direct(a, o), content: "react to me" })).message!.id,
    call: (a, msg, i) => a.chat.reactToMessage({ messageId: msg, emoji: ["👍", "❤️", "😂", "😮", "🙏", "🎉"][i % 6]! }),
  },
  {
    name: "EditMessage",
    setup: async (a, o) => (await a.chat.sendMessage({ conversationId: await direct(a, o), content: "edit me" })).message!.id,
    call: (a, msg, i) => a.chat.editMessage({ messageId: msg, content: `edited ${i}` }),
  },
  {
    name: "SendTyping",
    setup: direct,
    call: (a, conv, i) => a.realtime.sendTyping({ conversationId: conv, active: i % 2 === 0 }),
  },
  {
    name: "CreateConversation (group)",
    setup: async (_a, o) => o.id,
    call: (a, other, i) => a.chat.createConversation({ participantIds: [other], isGroup: true, groupName: `g${i}` }),
  },
  {
    name: "CreateConversation (direct)",
    setup: async (_a, o) => o.id,
    call: (a, other) => a.chat.createConversation({ participantIds: [other] }),
  },
  {
    name: "AddParticipants",
    setup: async (a, o) => {
      const third = await user(s);
      return `${(await a.chat.createConversation({ participantIds: [third.id], isGroup: true, groupName: "adds" })).conversation!.id} ${o.id}`;
    },
    call: (a, ctx) => {
      const [conv, other] = ctx.split(" ");
      return a.chat.addParticipants({ conversationId: conv!, userIds: [other!] });
    },
  },
  {
    name: "CreateStatus",
    setup: async () => "",
    call: (a, _ctx, i) => a.statuses.createStatus({ content: `status ${i}` }),
  },
  {
    name: "SyncContacts",
    setup: async (_a, o) => o.phone,
    call: (a, other) => a.users.syncContacts({ phoneNumbers: [other] }),
  },
];

/** Calls until one succeeds (the window has passed); returns the milliseconds that took. */
async function untilAllowed(call: () => Promise<unknown>, withinMs: number): Promise<number> {
  const started = Date.now();
  for (;;) {
    try {
      await call();
      return Date.now() - started;
    } catch (err) {
      const code = (await errorOf(Promise.reject(err))).code;
      if (code !== Code.ResourceExhausted || Date.now() - started > withinMs) throw err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.concurrent("each limit: the call past it is refused with a retry-after, others are not, and the window passes", () => {
  test.for(cases)("$name", async ({ setup, call }, { expect }) => {
    const [me, other] = [await user(s), await user(s)];
    const [mine, theirs] = [await setup(me, other), await setup(other, me)];

    // Four at once: three fit in the window, one does not.
    const results = await Promise.allSettled([0, 1, 2, 3].map((i) => call(me, mine, i)));
    const refused = results.flatMap((r) => (r.status === "rejected" ? [r.reason] : []));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(3);
    expect(refused).toHaveLength(1);
    const err = await errorOf(Promise.reject(refused[0]));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toMatch(/^too many .*: at most 3 per 2 seconds; try again in \d s$/);
    const wait = Number(err.metadata.get("retry-after"));
    expect(wait).toBeGreaterThanOrEqual(1);
    expect(wait).toBeLessThanOrEqual(2);
    expect(err.rawMessage).toContain(`try again in ${wait} s`);

    // Someone else's calls are theirs.
    await expect(call(other, theirs, 4)).resolves.toBeDefined();

    // Once the window has passed, the same user may call again.
    const waited = await untilAllowed(() => call(me, mine, 5), 5000);
    expect(waited).toBeLessThanOrEqual(wait * 1000 + 3000);
  });
});

describe("one-minute windows, two instances", () => {
  test("the refusal carries retry-after on gRPC (trailers), gRPC-Web and Connect JSON (HTTP 429 header)", async () => {
    const [me, other] = [await user(wide), await user(wide)];
    const conv = await direct(me, other);
    for (let i = 0; i < 3; i++) await me.chat.sendMessage({ conversationId: conv, content: `m${i}` });

    const grpc = createClient(ChatService, bearerTransport(wide.url, me.token, "grpc"));
    const err = await errorOf(grpc.sendMessage({ conversationId: conv, content: "over gRPC" }));
    expect(err.code).toBe(Code.ResourceExhausted);
    const wait = Number(err.metadata.get("retry-after"));
    expect(wait).toBeGreaterThan(30);
    expect(wait).toBeLessThanOrEqual(60);
    expect(err.rawMessage).toBe(`too many messages sent: at most 3 per minute; try again in ${wait} s`);

    // gRPC-Web goes through connect-node's handler rather than the fast path: the same interceptor answers.
    const bearer: Interceptor = (next) => (req) => {
      req.header.set("authorization", `Bearer ${me.token}`);
      return next(req);
    };
    const web = createClient(ChatService, createGrpcWebTransport({ baseUrl: wide.url, httpVersion: "1.1", interceptors: [bearer] }));
    const webErr = await errorOf(web.sendMessage({ conversationId: conv, content: "over gRPC-Web" }));
    expect(webErr.code).toBe(Code.ResourceExhausted);
    expect(Number(webErr.metadata.get("retry-after"))).toBeGreaterThan(30);

    const res = await curlJson(wide, me.token, "chat.ChatService", "SendMessage", { conversation_id: conv, content: "over curl" });
    expect(res.status).toBe(429);
    expect(res.body.code).toBe("resource_exhausted");
    const headerWait = Number(res.headers.get("retry-after"));
    expect(headerWait).toBeGreaterThan(30);
    expect(res.body.message).toContain(`try again in ${headerWait} s`);
  });

  test("group creation is counted in the database: every instance sees the same budget", async () => {
    const [me, other] = [await user(wide), await user(wide)];
    const onSecond = createClient(ChatService, bearerTransport(wide2.url, me.token));
    const group = (c: Client<typeof ChatService>, i: number) => c.createConversation({ participantIds: [other.id], isGroup: true, groupName: `g${i}` });
    await group(me.chat, 1);
    await group(onSecond, 2);
    await group(me.chat, 3);
    expect((await errorOf(group(onSecond, 4))).code).toBe(Code.ResourceExhausted);
    expect((await errorOf(group(me.chat, 5))).code).toBe(Code.ResourceExhausted);
    // The refused calls created nothing.
    const { conversations } = await me.chat.getConversations({});
    expect(conversations.filter((c) => c.isGroup)).toHaveLength(3);
  });

  test("messages are counted per instance, in memory (no database round trip per message)", async () => {
    const [me, other] = [await user(wide), await user(wide)];
    const conv = await direct(me, other);
    const onSecond = createClient(ChatService, bearerTransport(wide2.url, me.token));
    for (let i = 0; i < 3; i++) await me.chat.sendMessage({ conversationId: conv, content: `m${i}` });
    expect((await errorOf(me.chat.sendMessage({ conversationId: conv, content: "4th here" }))).code).toBe(Code.ResourceExhausted);
    await expect(onSecond.sendMessage({ conversationId: conv, content: "4th there" })).resolves.toBeDefined();
  });
});
