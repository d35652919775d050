import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createRouterTransport, type HandlerContext } from "@connectrpc/connect";
import { afterEach, describe, expect, test } from "vitest";
import { AuthService } from "../../gen/auth/auth_pb.js";
import { ChatService, MessageSchema } from "../../gen/chat/chat_pb.js";
import { EventSchema, RealtimeService, type Event, type SubscribeRequest } from "../../gen/realtime/realtime_pb.js";
import { createChatwireClient, MemoryTokenStore, type ChatwireClient, type Tokens } from "./node.js";

/** Bound for expect.poll: generous, as CI runs two test workers on two busy cores. */
const SLOW = { timeout: 15_000, interval: 50 };

// The reconnect logic against an in-memory RealtimeService: each test scripts
// what every connection attempt streams.

type Script = (req: SubscribeRequest, ctx: HandlerContext) => AsyncIterable<Event>;

interface Fake {
  client: ChatwireClient;
  requests: Array<{ since: bigint | undefined; auth: string | null }>;
  delivered: Array<{ conversationId: string; upToSeq: bigint }>;
  refreshes: number;
}

const TOKENS: Tokens = {
  accessToken: "access-1",
  refreshToken: "refresh-1",
  accessTokenExpiresAt: Date.now() + 3600_000,
  refreshTokenExpiresAt: 0,
  sessionId: "s1",
  userId: "me",
};

const ev = (init: Parameters<typeof create<typeof EventSchema>>[1]) => create(EventSchema, init);
const ready = (position: bigint, heartbeatSeconds = 15) => ev({ kind: { case: "ready", value: { position, heartbeatSeconds } } });
const caughtUp = (position: bigint) => ev({ kind: { case: "caughtUp", value: { position } } });
const message = (position: bigint, conversationId: string, seq: bigint, senderId = "other") =>
  ev({ position, kind: { case: "messageCreated", value: { message: create(MessageSchema, { id: `m${seq}`, conversationId, seq, senderId }) } } });

const until = (signal: AbortSignal) => new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));

const made: ChatwireClient[] = [];
afterEach(() => {
  for (const c of made.splice(0)) c.close();
});

function fake(scripts: Script[], opts: { refreshFails?: boolean } = {}): Fake {
  const f: Fake = { client: undefined as unknown as ChatwireClient, requests: [], delivered: [], refreshes: 0 };
  let attempt = 0;
  f.client = createChatwireClient({
    baseUrl: "http://fake",
    tokenStore: new MemoryTokenStore({ ...TOKENS }),
    transport: ({ interceptors }) =>
      createRouterTransport(
        (router) => {
          router.service(RealtimeService, {
            subscribe(req, ctx) {
              f.requests.push({ since: req.sincePosition, auth: ctx.requestHeader.get("authorization") });
              const script = scripts[Math.min(attempt++, scripts.length - 1)]!;
              return script(req, ctx);
            },
          });
          router.service(ChatService, {
            markDelivered(req) {
              f.delivered.push({ conversationId: req.conversationId, upToSeq: req.upToSeq });
              return { lastDeliveredSeq: req.upToSeq };
            },
          });
          router.service(AuthService, {
            refreshToken() {
              f.refreshes++;
              if (opts.refreshFails) throw new ConnectError("session revoked", Code.Unauthenticated);
              return { accessToken: `access-${f.refreshes + 1}`, refreshToken: `refresh-${f.refreshes + 1}`, sessionId: "s1" };
            },
          });
        },
        { transport: { interceptors } },
      ),
  });
  made.push(f.client);
  return f;
}

describe("Subscription", () => {
  test("resumes after a broken stream from the last stored position; delivery acknowledged once per conversation", async () => {
    const f = fake([
      async function* () {
        yield ready(5n);
        yield caughtUp(5n);
        yield message(6n, "c1", 3n);
        yield message(7n, "c1", 4n);
        yield message(8n, "c2", 1n, "me");
        throw new ConnectError("connection reset", Code.Unavailable);
      },
      async function* (_req, ctx) {
        yield ready(8n);
        yield caughtUp(8n);
        yield message(9n, "c1", 5n);
        await until(ctx.signal);
      },
    ]);
    const sub = f.client.subscribe({ initialBackoffMs: 10 });
    const seen: bigint[] = [];
    const disconnects: Code[] = [];
    sub.on("message", (m) => seen.push(m.seq));
    sub.on("disconnected", (err) => disconnects.push(err.code));
    await expect.poll(() => seen, SLOW).toEqual([3n, 4n, 1n, 5n]);
    expect(f.requests.map((r) => r.since)).toEqual([undefined, 8n]);
    expect(disconnects).toEqual([Code.Unavailable]);
    expect(sub.position).toBe(9n);
    await expect
      .poll(() => f.delivered, SLOW)
      .toEqual([
        { conversationId: "c1", upToSeq: 4n },
        { conversationId: "c1", upToSeq: 5n },
      ]);
    sub.close();
    await sub.done;
  });

  test("a stream silent past the heartbeat timeout is reopened", async () => {
    const f = fake([
      async function* (_req, ctx) {
        yield ready(1n, 1);
        await until(ctx.signal); // the network died: nothing, not even heartbeats
      },
      async function* (_req, ctx) {
        yield ready(1n, 1);
        yield message(2n, "c1", 1n);
        await until(ctx.signal);
      },
    ]);
    const sub = f.client.subscribe({ since: 1n, heartbeatTimeoutMs: 150, initialBackoffMs: 10 });
    const errors: string[] = [];
    sub.on("disconnected", (err) => errors.push(err.rawMessage));
    const got = await new Promise((resolve) => sub.on("message", (m) => resolve(m.seq)));
    expect(got).toBe(1n);
    expect(errors[0]).toMatch(/presumed dead/);
    expect(f.requests.map((r) => r.since)).toEqual([1n, 1n]);
    sub.close();
  });

  test("resync_required is announced and the stream continues from its position", async () => {
    const f = fake([
      async function* () {
        yield ready(3n);
        yield ev({ kind: { case: "resyncRequired", value: { position: 42n, reason: "too old" } } });
        throw new ConnectError("shutdown", Code.Unavailable);
      },
      async function* (_req, ctx) {
        yield ready(42n);
        await until(ctx.signal);
      },
    ]);
    const sub = f.client.subscribe({ since: 3n, initialBackoffMs: 10 });
    const resyncs: bigint[] = [];
    sub.on("resync", (r) => resyncs.push(r.position));
    await expect.poll(() => f.requests.length, SLOW).toBe(2);
    expect(resyncs).toEqual([42n]);
    expect(f.requests[1]!.since).toBe(42n);
    sub.close();
  });

  test("Unauthenticated: refreshes the token and reconnects with it", async () => {
    const f = fake([
      async function* () {
        yield ready(1n);
        throw new ConnectError("token expired", Code.Unauthenticated);
      },
      async function* (_req, ctx) {
        yield ready(1n);
        yield message(2n, "c1", 1n);
        await until(ctx.signal);
      },
    ]);
    const sub = f.client.subscribe();
    await new Promise((resolve) => sub.on("message", resolve));
    expect(f.refreshes).toBe(1);
    expect(f.requests.map((r) => r.auth)).toEqual(["Bearer access-1", "Bearer access-2"]);
    sub.close();
  });

  test("a session that cannot be refreshed ends the subscription; the iterator throws", async () => {
    const f = fake(
      [
        async function* () {
          yield ready(1n);
          throw new ConnectError("session revoked", Code.Unauthenticated);
        },
      ],
      { refreshFails: true },
    );
    const sub = f.client.subscribe();
    const kinds: string[] = [];
    await expect(
      (async () => {
        for await (const e of sub) kinds.push(e.kind.case ?? "");
      })(),
    ).rejects.toMatchObject({ code: Code.Unauthenticated });
    expect(kinds).toEqual(["ready"]);
    expect(await f.client.isLoggedIn()).toBe(false);
  });

  test("for await: events in order; break closes the stream", async () => {
    let aborted = false;
    const f = fake([
      async function* (_req, ctx) {
        yield ready(0n);
        yield caughtUp(0n);
        yield message(1n, "c1", 1n);
        await until(ctx.signal);
        aborted = true;
      },
    ]);
    const kinds: string[] = [];
    for await (const e of f.client.subscribe({ autoDeliver: false })) {
      kinds.push(e.kind.case ?? "");
      if (e.kind.case === "messageCreated") break;
    }
    expect(kinds).toEqual(["ready", "caughtUp", "messageCreated"]);
    await expect.poll(() => aborted, SLOW).toBe(true);
    expect(f.delivered).toEqual([]);
  });
});
