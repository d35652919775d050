import { createClient, Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatService } from "../../gen/chat/chat_pb.js";
import { RealtimeService } from "../../gen/realtime/realtime_pb.js";
import { login, type LoggedIn } from "./helpers/login.js";
import { protocolTransport, Subscription, type Protocol } from "./helpers/realtime.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// Two instances of one deployment (same database; NATS between them in the
// production profile, the in-process bus in the embedded one).
let a: TestServer;
let b: TestServer;
let alice: LoggedIn;
let bob: LoggedIn;
let carol: LoggedIn;
let direct: string;
let group: string;
const open: Subscription[] = [];

const chat = (server: TestServer, who: LoggedIn, protocol: Protocol = "connect") =>
  createClient(ChatService, protocolTransport(server.url, who.accessToken, protocol));
const subscribe = (server: TestServer, who: LoggedIn, protocol: Protocol, since?: bigint) => {
  const s = new Subscription(protocolTransport(server.url, who.accessToken, protocol), since);
  open.push(s);
  return s;
};
const texts = (s: Subscription, conversationId?: string) =>
  s.of("messageCreated").map((m) => m.message!).filter((m) => !conversationId || m.conversationId === conversationId).map((m) => m.content);

beforeAll(async () => {
  a = await startTestServer({ REALTIME_TYPING_TTL_MS: "400" });
  b = await startTestServer({ REALTIME_TYPING_TTL_MS: "400" }, { shareWith: a });
  [alice, bob, carol] = (await Promise.all(["+14155550301", "+14155550302", "+14155550303"].map((p) => login(a.url, p)))) as [LoggedIn, LoggedIn, LoggedIn];
  direct = (await chat(a, alice).createConversation({ participantIds: [bob.id] })).conversation!.id;
  group = (await chat(a, alice).createConversation({ isGroup: true, groupName: "Trio", participantIds: [bob.id, carol.id] })).conversation!.id;
}, 60_000);

afterAll(async () => {
  await Promise.all(open.map((s) => s.close()));
  await b?.stop();
  await a?.stop();
});

describe("Subscribe", () => {
  it("delivers each message once and in order to B's streams on gRPC, gRPC-Web and Connect, on both instances", async () => {
    const streams = [subscribe(a, bob, "grpc"), subscribe(b, bob, "grpc-web"), subscribe(b, bob, "connect")];
    await Promise.all(streams.map((s) => s.untilKind("caughtUp")));
    for (const s of streams) {
      expect(s.events[0]!.kind.case).toBe("ready");
      expect(s.of("ready")[0]!.heartbeatSeconds).toBe(15);
    }
    const sent: string[] = [];
    for (let i = 0; i < 5; i++) {
      for (const conversationId of [direct, group]) {
        const content = `live ${i} in ${conversationId === direct ? "direct" : "group"}`;
        sent.push(content);
        await chat(a, alice).sendMessage({ conversationId, content });
      }
    }
    await Promise.all(streams.map((s) => s.until((x) => texts(x).length >= sent.length, 10_000, "10 messages")));
    for (const s of streams) {
      expect(texts(s)).toEqual(sent);
      const positions = s.stored().map((e) => e.position);
      expect(positions.every((p, i) => i === 0 || p === positions[i - 1]! + 1n)).toBe(true);
      // Every message carries its seq as ListMessages would show it.
      expect(s.of("messageCreated").filter((m) => m.message!.conversationId === direct).map((m) => m.message!.seq)).toEqual([1n, 2n, 3n, 4n, 5n]);
    }
    await Promise.all(streams.map((s) => s.close()));
  });

  it("resumes from the last position on the other instance: exactly the 50 missed events, then caught_up", async () => {
    const first = subscribe(a, bob, "connect", 0n);
    await first.untilKind("caughtUp");
    const resumeFrom = first.lastPosition;
    await first.close();
    const sent: string[] = [];
    for (let i = 0; i < 50; i++) {
      sent.push(`missed ${i}`);
      await chat(a, alice).sendMessage({ conversationId: i % 2 ? direct : group, content: `missed ${i}` });
    }
    const again = subscribe(b, bob, "grpc", resumeFrom);
    await again.untilKind("caughtUp", 1, 15_000);
    const caught = again.of("caughtUp")[0]!;
    expect(caught.replayed).toBe(50);
    const stored = again.stored();
    expect(stored.map((e) => e.position)).toEqual(Array.from({ length: 50 }, (_, i) => resumeFrom + 1n + BigInt(i)));
    expect(texts(again)).toEqual(sent);
    expect(caught.position).toBe(resumeFrom + 50n);
    // And live again after the replay, without a repeat.
    await chat(b, alice).sendMessage({ conversationId: direct, content: "after resume" });
    await again.until((s) => texts(s).includes("after resume"), 10_000, "the live message");
    expect(again.stored().length).toBe(51);
    await again.close();
  });
});
