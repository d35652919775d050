import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createChatwireClient, MemoryTokenStore, type ChatwireClient, type TokenStore, type Tokens, type TransportKind } from "../../client-sdk/src/node.js";
import { DEV_CODE } from "./helpers/login.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

/** Bound for expect.poll: generous, as CI runs two test workers on two busy cores. */
const SLOW = { timeout: 15_000, interval: 50 };

// @chatwire/client (from source) against a real server: login, the session
// that refreshes itself, chat calls, safe retries of SendMessage.

let s: TestServer;
const clients: ChatwireClient[] = [];
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(async () => {
  for (const c of clients) c.close();
  await s?.stop();
});

let nextNumber = 100;
const freshPhone = () => `+1415557${String(nextNumber++).padStart(4, "0")}`;

function client(opts: { transport?: TransportKind; tokenStore?: TokenStore; interceptors?: Interceptor[] } = {}): ChatwireClient {
  const c = createChatwireClient({ baseUrl: s.url, ...opts });
  clients.push(c);
  return c;
}

async function loggedIn(opts: Parameters<typeof client>[0] = {}): Promise<{ c: ChatwireClient; id: string; phone: string }> {
  const c = client(opts);
  const phone = freshPhone();
  await c.auth.sendCode(phone);
  const res = await c.auth.verify(phone, DEV_CODE, { name: "sdk test" });
  return { c, id: res.user!.id, phone };
}

/** Counts RefreshToken calls that reach the wire. */
function counting(): { interceptor: Interceptor; refreshes: () => number } {
  let n = 0;
  return {
    interceptor: (next) => (req) => {
      if (req.method.name === "RefreshToken") n++;
      return next(req);
    },
    refreshes: () => n,
  };
}

describe.each(["connect", "grpc-web", "grpc"] as const)("over %s", (transport) => {
  test("login, conversation, send, list", async () => {
    const a = await loggedIn({ transport });
    const b = await loggedIn({ transport });
    expect(await a.c.userId()).toBe(a.id);
    const { conversation } = await a.c.chat.createConversation({ participantPhoneNumbers: [b.phone] });
    const sent = await a.c.sendMessage(conversation!.id, "hello from the SDK");
    expect(sent.clientMessageId).toMatch(/^[0-9a-f-]{36}$/);
    await expect
      .poll(async () => (await b.c.chat.listMessages({ conversationId: conversation!.id })).messages.map((m) => m.content), SLOW)
      .toContain("hello from the SDK");
  });
});

describe("every service", () => {
  test("users and status answer through the same session", async () => {
    const { c, id, phone } = await loggedIn();
    const me = await c.users.getMe({});
    expect([me.user?.id, me.user?.phoneNumber]).toEqual([id, phone]);
    const mine = await c.status.listMyStatuses({});
    expect(mine.statuses).toEqual([]);
  });
});

describe("session", () => {
  test("a refused access token is refreshed once for concurrent calls, and each call retried", async () => {
    const count = counting();
    const store = new MemoryTokenStore();
    const { c } = await loggedIn({ tokenStore: store, interceptors: [count.interceptor] });
    const before = store.get()!;
    // A token the server refuses (bad signature) that the client believes is fresh.
    store.set({ ...before, accessToken: `${before.accessToken.slice(0, -4)}AAAA` });
    const results = await Promise.all(Array.from({ length: 5 }, () => c.chat.getConversations({})));
    expect(results).toHaveLength(5);
    expect(count.refreshes()).toBe(1);
    expect(store.get()!.refreshToken).not.toBe(before.refreshToken);
  });

  test("an access token near expiry is refreshed before the call", async () => {
    const count = counting();
    const store = new MemoryTokenStore();
    const { c } = await loggedIn({ tokenStore: store, interceptors: [count.interceptor] });
    const t = store.get()!;
    store.set({ ...t, accessTokenExpiresAt: Date.now() + 10_000 });
    await c.chat.getConversations({});
    expect(count.refreshes()).toBe(1);
    expect(store.get()!.accessToken).not.toBe(t.accessToken);
    expect(store.get()!.accessTokenExpiresAt).toBeGreaterThan(Date.now() + 60_000);
  });

  test("a revoked session ends: tokens are cleared and the call is Unauthenticated", async () => {
    const { c } = await loggedIn();
    const other = client({ tokenStore: new MemoryTokenStore((await c.tokens.get()) as Tokens) });
    const ended: string[] = [];
    c.on("session", (_t, reason) => ended.push(reason));
    await other.logout();
    await expect(c.chat.getConversations({})).rejects.toMatchObject({ code: Code.Unauthenticated });
    expect(ended).toEqual(["expired"]);
    expect(await c.isLoggedIn()).toBe(false);
  });

  test("logout revokes the session on the server and forgets the tokens", async () => {
    const { c } = await loggedIn();
    const tokens = (await c.tokens.get())!;
    await c.logout();
    expect(await c.isLoggedIn()).toBe(false);
    const res = await c.auth.validateToken({ accessToken: tokens.accessToken });
    expect(res.isValid).toBe(false);
    await expect(c.chat.getConversations({})).rejects.toMatchObject({ code: Code.Unauthenticated });
  });
});

describe("sendMessage", () => {
  test("retries on Unavailable with the same client_message_id; stored once", async () => {
    const ids: string[] = [];
    let failures = 2;
    const flaky: Interceptor = (next) => async (req) => {
      if (req.method.name !== "SendMessage") return next(req);
      ids.push((req.message as unknown as { clientMessageId: string }).clientMessageId);
      // The first attempt reaches the server but its answer is "lost"; the second never arrives.
      if (failures-- === 2) {
        await next(req);
        throw new ConnectError("lost answer", Code.Unavailable);
      }
      if (failures >= 0) throw new ConnectError("connection refused", Code.Unavailable);
      return next(req);
    };
    const a = await loggedIn({ interceptors: [flaky] });
    const b = await loggedIn();
    const { conversation } = await a.c.chat.createConversation({ participantIds: [b.id] });
    const sent = await a.c.sendMessage(conversation!.id, "once only");
    expect(ids).toHaveLength(3);
    expect(new Set(ids).size).toBe(1);
    expect(sent.clientMessageId).toBe(ids[0]);
    await expect.poll(async () => (await b.c.chat.listMessages({ conversationId: conversation!.id })).messages.length, SLOW).toBeGreaterThan(0);
    const { messages } = await b.c.chat.listMessages({ conversationId: conversation!.id });
    expect(messages.filter((m) => m.content === "once only")).toHaveLength(1);
  });

  test("does not retry what cannot succeed", async () => {
    const { c } = await loggedIn();
    await expect(c.sendMessage("00000000-0000-4000-8000-000000000000", "x")).rejects.toMatchObject({ code: Code.NotFound });
  });
});

describe("subscribe against the server", () => {
  test("live messages, then a resume from the saved position replays exactly what was missed", async () => {
    const a = await loggedIn();
    const b = await loggedIn();
    const { conversation } = await a.c.chat.createConversation({ participantIds: [b.id] });
    const id = conversation!.id;

    const first = b.c.subscribe();
    const live: string[] = [];
    first.on("message", (m) => live.push(m.content));
    await first.ready();
    await a.c.sendMessage(id, "one");
    await a.c.sendMessage(id, "two");
    await expect.poll(() => live, SLOW).toEqual(["one", "two"]);
    const saved = first.position!;
    first.close();
    await first.done;

    await a.c.sendMessage(id, "three"); // while b is away
    // Stored while b is away (SendMessage returns once queued; the worker stores it):
    // only then is it among what b missed rather than a live event after the replay.
    await expect.poll(async () => (await b.c.chat.listMessages({ conversationId: id })).messages.map((m) => m.content), SLOW).toContain("three");
    const second = b.c.subscribe({ since: saved });
    const seen: string[] = [];
    for await (const e of second) {
      if (e.kind.case === "messageCreated") seen.push(e.kind.value.message!.content);
      if (e.kind.case === "caughtUp") break;
    }
    expect(seen).toEqual(["three"]);
    expect(second.position! > saved).toBe(true);
  });

  test("received messages are acknowledged by themselves: the sender's receipt moves", async () => {
    const a = await loggedIn();
    const b = await loggedIn();
    const { conversation } = await a.c.chat.createConversation({ participantIds: [b.id] });
    const subA = a.c.subscribe();
    const subB = b.c.subscribe();
    await Promise.all([subA.ready(), subB.ready()]);
    const delivered = new Promise<bigint>((resolve) => subA.on("receipt", (r) => r.deliveredToAllSeq > 0n && resolve(r.deliveredToAllSeq)));
    const sent = await a.c.sendMessage(conversation!.id, "ack me");
    const seq = await delivered;
    const { messages } = await a.c.chat.listMessages({ conversationId: conversation!.id });
    expect(messages.find((m) => m.id === sent.id)!.seq).toBe(seq);
    subA.close();
    subB.close();
  });

  test("a session revoked elsewhere ends the stream: error, closed, logged out", async () => {
    const b = await loggedIn();
    const other = client({ tokenStore: new MemoryTokenStore((await b.c.tokens.get()) as Tokens) });
    const sub = b.c.subscribe();
    await sub.ready();
    const ended = new Promise<Code>((resolve) => sub.on("error", (err) => resolve(err.code)));
    await other.logout();
    expect(await ended).toBe(Code.Unauthenticated);
    await sub.done;
    expect(await b.c.isLoggedIn()).toBe(false);
  });
});
