import http2 from "node:http2";
import { createClient, Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatService } from "../../gen/chat/chat_pb.js";
import { RealtimeService, type Event } from "../../gen/realtime/realtime_pb.js";
import { login, type LoggedIn } from "./helpers/login.js";
import { protocolTransport, Subscription, type Protocol } from "./helpers/realtime.js";
import { FakeClock, startTestServer, type TestServer } from "./helpers/test-server.js";

// One server with small limits: a 20-event stream buffer, 2 streams per user,
// a heartbeat every second, and a clock the test moves (inbox retention).
let s: TestServer;
let alice: LoggedIn;
let bob: LoggedIn;
let direct: string;
const clock = new FakeClock();
const open: Subscription[] = [];

const subscribe = (who: LoggedIn, protocol: Protocol, since?: bigint) => {
  const sub = new Subscription(protocolTransport(s.url, who.accessToken, protocol), since);
  open.push(sub);
  return sub;
};
const chat = (who: LoggedIn) => createClient(ChatService, protocolTransport(s.url, who.accessToken, "connect"));

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith(name))
    .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
}

beforeAll(async () => {
  s = await startTestServer({ REALTIME_STREAM_BUFFER: "20", REALTIME_MAX_STREAMS_PER_USER: "2", REALTIME_HEARTBEAT_SECONDS: "1" }, { clock });
  [alice, bob] = (await Promise.all(["+14155550401", "+14155550402"].map((p) => login(s.url, p)))) as [LoggedIn, LoggedIn];
  direct = (await chat(alice).createConversation({ participantIds: [bob.id] })).conversation!.id;
}, 60_000);

afterAll(async () => {
  await Promise.all(open.map((x) => x.close()));
  await s?.stop();
});

describe("Subscribe limits", () => {
  it("sends a heartbeat when the stream is quiet", async () => {
    const sub = subscribe(bob, "grpc");
    await sub.untilKind("heartbeat", 2, 10_000);
    expect(sub.of("ready")[0]!.heartbeatSeconds).toBe(1);
    expect(sub.events.filter((e) => e.kind.case === "heartbeat").every((e) => e.position === 0n)).toBe(true);
    await sub.close();
  });

  it("a device that stops reading is cut off with ResourceExhausted; its buffer stays bounded", async () => {
    const droppedBefore = await metric("chatwire_realtime_events_dropped_total");
    // A raw HTTP/2 gRPC call whose response the device never reads: the client's
    // flow-control window fills and the server's writes wait.
    const session = http2.connect(s.url);
    const req = session.request({
      ":method": "POST",
      ":path": "/realtime.RealtimeService/Subscribe",
      "content-type": "application/grpc+proto",
      te: "trailers",
      authorization: `Bearer ${bob.accessToken}`,
    });
    req.end(Buffer.from([0, 0, 0, 0, 0])); // one empty SubscribeRequest frame
    const closed = new Promise<{ rstCode: number; status: string | undefined }>((resolve) => {
      let status: string | undefined;
      req.on("trailers", (t) => (status = String(t["grpc-status"])));
      req.on("close", () => resolve({ rstCode: req.rstCode, status }));
    });
    req.on("error", () => undefined);
    const big = "x".repeat(4000);
    for (let i = 0; i < 300; i++) await chat(alice).sendMessage({ conversationId: direct, content: `${i} ${big}` });
    const deadline = Date.now() + 15_000;
    while ((await metric('chatwire_realtime_streams_ended_total{reason="slow"}')) < 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await metric('chatwire_realtime_streams_ended_total{reason="slow"}')).toBe(1);
    expect(await metric("chatwire_realtime_events_dropped_total")).toBeGreaterThan(droppedBefore);
    // The device reads again: what was in flight, then the end: ResourceExhausted
    // (grpc-status 8) or, if the server had to cut it, RST_STREAM ENHANCE_YOUR_CALM,
    // which gRPC clients report as ResourceExhausted.
    let bytes = 0;
    req.on("data", (chunk: Buffer) => (bytes += chunk.length));
    const end = await closed;
    session.close();
    expect(end.status === "8" || end.rstCode === http2.constants.NGHTTP2_ENHANCE_YOUR_CALM).toBe(true);
    expect(bytes).toBeLessThan(300 * 4000);
    // The server no longer holds the stream.
    const until = Date.now() + 5000;
    while (s.server.ctx.realtime.openStreams > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(s.server.ctx.realtime.openStreams).toBe(0);
    // Resuming from the last position it handled loses nothing.
    const resumed = subscribe(bob, "connect", 0n);
    await resumed.untilKind("caughtUp", 1, 20_000);
    const contents = resumed.of("messageCreated").map((m) => m.message!.content.split(" ")[0]);
    expect(contents.slice(-300)).toEqual(Array.from({ length: 300 }, (_, i) => String(i)));
    await resumed.close();
  });

  it("a third stream for a user closes the oldest with ResourceExhausted", async () => {
    const first = subscribe(alice, "connect");
    await first.untilKind("caughtUp");
    const second = subscribe(alice, "grpc");
    await second.untilKind("caughtUp");
    const third = subscribe(alice, "grpc-web");
    await third.untilKind("caughtUp");
    await first.until((x) => x.ended !== undefined, 5000, "the oldest stream to end");
    expect(first.ended!.error?.code).toBe(Code.ResourceExhausted);
    expect(first.ended!.error?.message).toMatch(/oldest/);
    // It names where it stopped, for the device to resume from.
    expect(first.ended!.error?.metadata.get("resume-position")).toBe(String(first.lastPosition));
    expect(second.ended).toBeUndefined();
    expect(third.ended).toBeUndefined();
    await Promise.all([second.close(), third.close()]);
  });

  it("a position older than the retention window gets resync_required, then continues live from the current position", async () => {
    const probe = subscribe(bob, "connect");
    await probe.untilKind("caughtUp");
    await chat(alice).sendMessage({ conversationId: direct, content: "old news" });
    await probe.untilKind("messageCreated");
    const current = probe.lastPosition;
    await probe.close();
    clock.advance(31 * 86_400_000);
    expect(await s.server.ctx.realtime.pruneInbox()).toBeGreaterThan(0);
    // A month later: new tokens.
    [alice, bob] = (await Promise.all([alice.phone, bob.phone].map((p) => login(s.url, p)))) as [LoggedIn, LoggedIn];
    const rows = await s.server.ctx.database.db.selectFrom("inbox").select("position").where("user_id", "=", bob.id).execute();
    expect(rows).toEqual([]);

    const stale = subscribe(bob, "grpc", 1n);
    await stale.untilKind("caughtUp");
    const kinds = stale.events.map((e: Event) => e.kind.case);
    expect(kinds.slice(0, 3)).toEqual(["ready", "resyncRequired", "caughtUp"]);
    expect(stale.of("resyncRequired")[0]!.position).toBe(current);
    expect(stale.of("resyncRequired")[0]!.reason).toMatch(/retention/);
    await chat(alice).sendMessage({ conversationId: direct, content: "fresh" });
    await stale.until((x) => x.stored().length === 1, 10_000, "the live message");
    expect(stale.stored()[0]!.position).toBe(current + 1n);

    const ahead = subscribe(bob, "connect", current + 1000n);
    await ahead.untilKind("caughtUp");
    expect(ahead.of("resyncRequired")[0]!.reason).toMatch(/ahead/);
    await Promise.all([stale.close(), ahead.close()]);
    await expect(
      (async () => {
        for await (const _ of createClient(RealtimeService, protocolTransport(s.url, bob.accessToken, "connect")).subscribe({ sincePosition: -1n })) break;
      })(),
    ).rejects.toMatchObject({ code: Code.InvalidArgument });
  });

  it("ends open streams with Unavailable when the server shuts down", async () => {
    const other = await startTestServer({}, {});
    try {
      const carol = await login(other.url, "+14155550403");
      const subs = (["grpc", "grpc-web", "connect"] as const).map((p) => new Subscription(protocolTransport(other.url, carol.accessToken, p)));
      await Promise.all(subs.map((x) => x.untilKind("caughtUp")));
      await other.server.stop();
      await Promise.all(subs.map((x) => x.done));
      for (const x of subs) expect(x.ended?.error?.code).toBe(Code.Unavailable);
    } finally {
      await other.stop();
    }
  });
});
