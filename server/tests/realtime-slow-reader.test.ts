import { randomBytes } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ChatService } from "../../gen/chat/chat_pb.js";
import { RealtimeService, type Event } from "../../gen/realtime/realtime_pb.js";
import { grpcJsClient } from "./helpers/grpc-js.js";
import { bearerTransport, login, type LoggedIn } from "./helpers/login.js";
import { Subscription } from "./helpers/realtime.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// A device that stops reading its Subscribe stream is cut off once
// REALTIME_STREAM_BUFFER events wait for it. When it reads again it gets what
// was in flight, then `resource_exhausted` naming (message and `resume-position`
// metadata) the last position the stream sent; resuming from there loses nothing.
// Over HTTP/2, where flow control makes the server's writes wait: gRPC (grpc-js)
// and Connect take the fast path, gRPC-Web goes through connect-node.

let s: TestServer;
let alice: LoggedIn;
let bob: LoggedIn;
let direct: string;

beforeAll(async () => {
  // A 20-event buffer; the default heartbeat (15 s), so a cut stream waits 30 s for its device to read again.
  s = await startTestServer({ REALTIME_STREAM_BUFFER: "20" });
  [alice, bob] = (await Promise.all(["+14155550801", "+14155550802"].map((p) => login(s.url, p)))) as [LoggedIn, LoggedIn];
  direct = (await createClient(ChatService, bearerTransport(s.url, alice.accessToken)).createConversation({ participantIds: [bob.id] })).conversation!.id;
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

const slowCuts = async () =>
  (await s.server.ctx.metrics.realtimeStreamsEnded.get()).values.filter((v) => v.labels.reason === "slow").reduce((n, v) => n + v.value, 0);

/**
 * Alice sends numbered messages (incompressible, ~4 KiB each) until the server
 * cuts Bob's stream for reading too slowly; returns how many she sent.
 */
async function sendUntilCut(tag: string): Promise<number> {
  const chat = createClient(ChatService, bearerTransport(s.url, alice.accessToken));
  const before = await slowCuts();
  let sent = 0;
  while ((await slowCuts()) === before) {
    if (sent >= 1000) throw new Error("the stream was never cut");
    await chat.sendMessage({ conversationId: direct, content: `${tag} ${sent} ${randomBytes(3000).toString("base64")}` });
    sent++;
  }
  return sent;
}

/** The numbers of the messages tagged `tag`, in arrival order. */
const numbers = (events: Event[], tag: string) =>
  events.flatMap((e) =>
    e.kind.case === "messageCreated" && e.kind.value.message!.content.startsWith(`${tag} `) ? [Number(e.kind.value.message!.content.split(" ")[1])] : [],
  );
const lastStored = (events: Event[]) => events.filter((e) => e.position > 0n).at(-1)?.position ?? 0n;

/** Resumes from `since` and checks the two streams together hold every message once, at consecutive positions. */
async function resumeAndCheck(first: Event[], since: bigint, tag: string, sent: number): Promise<void> {
  const resumed = new Subscription(bearerTransport(s.url, bob.accessToken), since);
  try {
    const firstPart = first.filter((e) => e.position > 0n && e.position <= since);
    // The last sends may still be on their way through the worker (production profile): they come live.
    await resumed.until((x) => numbers([...firstPart, ...x.stored()], tag).length >= sent, 20_000, `all ${sent} messages`);
    const all = [...firstPart, ...resumed.stored()];
    const positions = all.map((e) => e.position);
    expect(positions).toEqual(positions.map((_, i) => positions[0]! + BigInt(i)));
    expect(numbers(all, tag)).toEqual(Array.from({ length: sent }, (_, i) => i));
  } finally {
    await resumed.close();
  }
}

const h2Bearer =
  (token: string): Interceptor =>
  (next) =>
  (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };

describe("a device that stops reading its stream", () => {
  test("grpc-js: RESOURCE_EXHAUSTED with the resume position in the trailers; resuming from what it received loses nothing", async () => {
    const tag = "grpcjs";
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${bob.accessToken}`);
    const client = grpcJsClient(s.url);
    const call = client.makeServerStreamRequest(
      "/realtime.RealtimeService/Subscribe",
      (m: Uint8Array) => Buffer.from(m),
      (b: Buffer) => RealtimeService.method.subscribe.output && b,
      new Uint8Array(0),
      metadata,
    );
    const { fromBinary } = await import("@bufbuild/protobuf");
    const events: Event[] = [];
    const ended = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
    call.on("error", () => undefined);
    call.on("data", (b: Buffer) => events.push(fromBinary(RealtimeService.method.subscribe.output, b)));
    const until = Date.now() + 10_000;
    while (!events.some((e) => e.kind.case === "caughtUp")) {
      if (Date.now() > until) throw new Error("no caughtUp");
      await new Promise((r) => setTimeout(r, 20));
    }
    call.pause();
    const sent = await sendUntilCut(tag);
    call.resume();
    const status = await ended;
    client.close();
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const position = BigInt(String(status.metadata.get("resume-position")[0]));
    expect(status.details).toContain(`ended after position ${position}. Reconnect with since_position ${position}`);
    // grpc-js drops the messages it had received but not handed over when a
    // call fails, so the device may hold less than the stream sent.
    const received = lastStored(events);
    expect(received).toBeLessThanOrEqual(position);
    expect(numbers(events, tag).length).toBeLessThan(sent);
    await resumeAndCheck(events, received, tag, sent);
  });

  test.each([
    [
      "Connect over HTTP/2 (fast path)",
      "connect",
      (token: string): Transport => createConnectTransport({ baseUrl: s.url, httpVersion: "2", interceptors: [h2Bearer(token)] }),
    ],
    [
      "gRPC-Web over HTTP/2 (connect-node)",
      "grpcweb",
      (token: string): Transport => createGrpcWebTransport({ baseUrl: s.url, httpVersion: "2", interceptors: [h2Bearer(token)] }),
    ],
  ])(
    "%s: ResourceExhausted after everything the stream sent; its resume position is the last one received, and resuming from it loses nothing",
    async (_name, tag, transport) => {
      const client = createClient(RealtimeService, transport(bob.accessToken));
      const events: Event[] = [];
      let gate: Promise<void> | undefined;
      let open = () => {};
      let error: ConnectError | undefined;
      const done = (async () => {
        try {
          for await (const e of client.subscribe({})) {
            events.push(e);
            // After caughtUp the device stops reading until the gate opens.
            if (e.kind.case === "caughtUp") gate = new Promise<void>((r) => (open = r));
            if (gate) await gate;
          }
        } catch (err) {
          error = ConnectError.from(err);
        }
      })();
      const until = Date.now() + 10_000;
      while (!gate) {
        if (Date.now() > until) throw new Error("no caughtUp");
        await new Promise((r) => setTimeout(r, 20));
      }
      const sent = await sendUntilCut(tag);
      // The device stays silent a while after the cut (the server used to reset
      // the stream after 2 s, and the status with the position never came).
      await new Promise((r) => setTimeout(r, 3000));
      gate = undefined;
      open();
      await done;
      expect(error?.code).toBe(Code.ResourceExhausted);
      const position = BigInt(error!.metadata.get("resume-position") ?? "-1");
      expect(error!.rawMessage).toContain(`ended after position ${position}. Reconnect with since_position ${position}`);
      expect(lastStored(events)).toBe(position);
      // The cut came before the stream could send everything.
      expect(numbers(events, tag).length).toBeGreaterThan(0);
      expect(numbers(events, tag).length).toBeLessThan(sent);
      await resumeAndCheck(events, position, tag, sent);
    },
  );
});
