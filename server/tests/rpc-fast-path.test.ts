import http2 from "node:http2";
import { gunzipSync } from "node:zlib";
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { SendOTPRequestSchema, ValidateTokenRequestSchema, VerifyOTPRequestSchema } from "../../gen/auth/auth_pb.js";
import { ChatService, GetConversationsRequestSchema, ListMessagesRequestSchema } from "../../gen/chat/chat_pb.js";
import { EventSchema, SubscribeRequestSchema, type Event } from "../../gen/realtime/realtime_pb.js";
import { preEncoded, type MaybePreEncoded } from "../pre-encoded.js";
import { decodeFrame, encodeEventBody, eventFrame } from "../realtime/wire.js";
import { bearerTransport, login, type LoggedIn } from "./helpers/login.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// The unary fast path (server/http/rpc-fast-path.ts) must answer exactly as
// connect-node does. Two instances of one deployment, one with the fast path
// (the default) and one with RPC_FAST_PATH=false, get the same request bytes;
// status, headers, body and trailers must be the same.

let fast: TestServer;
let plain: TestServer;
let a: LoggedIn;
let conversationId: string;

beforeAll(async () => {
  fast = await startTestServer();
  plain = await startTestServer({ RPC_FAST_PATH: "false" }, { shareWith: fast });
  a = await login(fast.url, "+14155550101");
  const b = await login(fast.url, "+14155550102");
  const chat = createClient(ChatService, bearerTransport(fast.url, a.accessToken));
  conversationId = (await chat.createConversation({ participantIds: [b.id] })).conversation!.id;
  // Enough text that ListMessages answers with more than 1 KiB (compressed when the client accepts gzip).
  for (let i = 0; i < 3; i++) await chat.sendMessage({ conversationId, content: `${i} ${"long line of text ".repeat(60)}`, clientMessageId: `fp-${i}` });
  for (let t = 0; t < 100; t++) {
    if ((await chat.listMessages({ conversationId })).messages.length === 3) break;
    await new Promise((r) => setTimeout(r, 50));
  }
});

afterAll(async () => {
  await plain?.stop();
  await fast?.stop();
});

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  trailers: Record<string, string>;
}

/** One HTTP/2 request with exactly these headers and body bytes. */
async function h2(baseUrl: string, headers: Record<string, string>, body: Uint8Array): Promise<Answer> {
  const session = http2.connect(baseUrl);
  try {
    return await new Promise<Answer>((resolve, reject) => {
      const req = session.request({ ":method": "POST", ...headers });
      const out: Answer = { status: 0, headers: {}, body: Buffer.alloc(0), trailers: {} };
      const chunks: Buffer[] = [];
      req.on("response", (h) => {
        out.status = Number(h[":status"]);
        out.headers = clean(h);
      });
      req.on("trailers", (t) => (out.trailers = clean(t)));
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => resolve({ ...out, body: Buffer.concat(chunks) }));
      req.on("error", reject);
      req.end(body);
    });
  } finally {
    session.close();
  }
}

/** One HTTP/1.1 request (fetch). */
async function h1(baseUrl: string, path: string, headers: Record<string, string>, body: Uint8Array): Promise<Answer> {
  const res = await fetch(baseUrl + path, { method: "POST", headers, body: body as Uint8Array<ArrayBuffer> });
  const h: Record<string, string> = {};
  res.headers.forEach((v, k) => (h[k] = v));
  return { status: res.status, headers: clean(h), body: Buffer.from(await res.arrayBuffer()), trailers: {} };
}

/** Headers that differ per response whichever path answers. */
function clean(h: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (k.startsWith(":") || k === "date" || k === "connection" || k === "keep-alive") continue;
    out[k] = String(v);
  }
  return out;
}

function grpcBody<D extends DescMessage>(schema: D, init: MessageInitShape<D>): Buffer {
  const bytes = toBinary(schema, create(schema, init));
  const env = Buffer.alloc(5 + bytes.length);
  env.writeUInt32BE(bytes.length, 1);
  env.set(bytes, 5);
  return env;
}

const grpcHeaders = (path: string, extra: Record<string, string> = {}) => ({ ":path": path, "content-type": "application/grpc", te: "trailers", ...extra });
const connectHeaders = (path: string, contentType: string, extra: Record<string, string> = {}) => ({ ":path": path, "content-type": contentType, ...extra });

/** Both instances answer the same bytes; returns the fast path's answer. */
async function same(send: (baseUrl: string) => Promise<Answer>): Promise<Answer> {
  const [x, y] = await Promise.all([send(fast.url), send(plain.url)]);
  expect(x.status).toBe(y.status);
  expect(x.headers).toEqual(y.headers);
  expect(x.trailers).toEqual(y.trailers);
  expect(x.body.equals(y.body)).toBe(true);
  return x;
}

async function fastPathCalls(s: TestServer): Promise<number> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  return [...text.matchAll(/^chatwire_rpc_fast_path_total\{[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

describe("the RPC fast path answers as connect-node does", () => {
  test("the default instance serves plain unary calls itself; RPC_FAST_PATH=false leaves all to connect-node", async () => {
    const before = await fastPathCalls(fast);
    const body = grpcBody(ValidateTokenRequestSchema, { accessToken: a.accessToken });
    await same((u) => h2(u, grpcHeaders("/auth.AuthService/ValidateToken"), body));
    await same((u) => h1(u, "/auth.AuthService/ValidateToken", { "content-type": "application/json" }, Buffer.from("{}")));
    expect(await fastPathCalls(fast)).toBe(before + 2);
    expect(await fastPathCalls(plain)).toBe(0);
  });

  test("gRPC: a result, a result with details, and a protocol error", async () => {
    const ok = await same((u) => h2(u, grpcHeaders("/auth.AuthService/ValidateToken"), grpcBody(ValidateTokenRequestSchema, { accessToken: a.accessToken })));
    expect(ok.trailers["grpc-status"]).toBe("0");
    expect(ok.body.length).toBeGreaterThan(5);
    const invalid = await same((u) =>
      h2(u, grpcHeaders("/auth.AuthService/ValidateToken"), grpcBody(ValidateTokenRequestSchema, { accessToken: "not-a-token" })),
    );
    expect(invalid.trailers["grpc-status"]).toBe("0");
    const badPhone = await same((u) => h2(u, grpcHeaders("/auth.AuthService/SendOTP"), grpcBody(SendOTPRequestSchema, { phoneNumber: "12" })));
    expect(badPhone.trailers["grpc-status"]).toBe("3");
    const noAuth = await same((u) => h2(u, grpcHeaders("/chat.ChatService/GetConversations"), grpcBody(GetConversationsRequestSchema, {})));
    expect(noAuth.trailers["grpc-status"]).toBe("16");
    expect(decodeURIComponent(noAuth.trailers["grpc-message"]!)).toContain("Authorization");
  });

  test("a request that is not protobuf is InvalidArgument on both paths and every protocol (connect itself says Internal)", async () => {
    const garbage = Buffer.from([0, 0, 0, 0, 3, 0xff, 0xff, 0xff]);
    const grpc = await same((u) => h2(u, grpcHeaders("/auth.AuthService/ValidateToken"), garbage));
    expect(grpc.trailers["grpc-status"]).toBe("3");
    expect(decodeURIComponent(grpc.trailers["grpc-message"]!)).toContain("not a valid auth.ValidateTokenRequest protobuf message");
    const proto = await same((u) => h1(u, "/auth.AuthService/ValidateToken", { "content-type": "application/proto" }, garbage.subarray(5)));
    expect(proto.status).toBe(400);
    expect(JSON.parse(proto.body.toString()).code).toBe("invalid_argument");
    // gRPC-Web and gzip-compressed gRPC always take connect-node.
    const web = await same((u) => h1(u, "/auth.AuthService/ValidateToken", { "content-type": "application/grpc-web+proto" }, garbage));
    expect(web.status).toBe(200);
    expect(web.body.subarray(5).toString()).toMatch(/grpc-status: 3\r\n/);
    expect(decodeURIComponent(web.body.subarray(5).toString())).toContain("not a valid auth.ValidateTokenRequest protobuf message");
    const gz = await import("node:zlib").then((z) => z.gzipSync(garbage.subarray(5)));
    const env = Buffer.concat([Buffer.from([1, 0, 0, 0, gz.length]), gz]);
    const compressed = await same((u) => h2(u, grpcHeaders("/auth.AuthService/ValidateToken", { "grpc-encoding": "gzip" }), env));
    expect(compressed.trailers["grpc-status"]).toBe("3");
    const stream = Buffer.concat([Buffer.from([0, 0, 0, 0, 3]), Buffer.from([0xff, 0xff, 0xff])]);
    const connectStream = await same((u) =>
      h1(u, "/realtime.RealtimeService/Subscribe", { "content-type": "application/connect+proto", authorization: `Bearer ${a.accessToken}` }, stream),
    );
    expect(connectStream.body[0]).toBe(2);
    expect(JSON.parse(connectStream.body.subarray(5).toString()).error.code).toBe("invalid_argument");
  });

  test("gRPC: an authenticated call, with and without gzip negotiated, and response metadata on an error", async () => {
    const list = grpcBody(ListMessagesRequestSchema, { conversationId });
    const auth = { authorization: `Bearer ${a.accessToken}` };
    const plainList = await same((u) => h2(u, grpcHeaders("/chat.ChatService/ListMessages", auth), list));
    expect(plainList.body[0]).toBe(0);
    expect(plainList.body.length).toBeGreaterThan(1024);
    const gz = await same((u) => h2(u, grpcHeaders("/chat.ChatService/ListMessages", { ...auth, "grpc-accept-encoding": "gzip" }), list));
    expect(gz.headers["grpc-encoding"]).toBe("gzip");
    expect(gz.body[0]).toBe(1);
    expect(gunzipSync(gz.body.subarray(5)).equals(plainList.body.subarray(5))).toBe(true);
    await h1(fast.url, "/auth.AuthService/SendOTP", { "content-type": "application/json" }, Buffer.from(JSON.stringify({ phone_number: "+14155550199" })));
    const wrong = await h2(
      fast.url,
      grpcHeaders("/auth.AuthService/VerifyOTP"),
      grpcBody(VerifyOTPRequestSchema, { phoneNumber: "+14155550199", otpCode: "000000" }),
    );
    expect(wrong.trailers["grpc-status"]).toBe("16");
    expect(wrong.trailers["attempts-left"]).toBe("4");
    const wrongAgain = await h2(
      plain.url,
      grpcHeaders("/auth.AuthService/VerifyOTP"),
      grpcBody(VerifyOTPRequestSchema, { phoneNumber: "+14155550199", otpCode: "000000" }),
    );
    expect(Object.keys(wrongAgain.trailers).sort()).toEqual(Object.keys(wrong.trailers).sort());
    expect(Object.keys(wrongAgain.headers).sort()).toEqual(Object.keys(wrong.headers).sort());
  });

  test("Connect JSON and proto over HTTP/2 and HTTP/1.1: results, errors, gzip", async () => {
    const json = Buffer.from(JSON.stringify({ access_token: a.accessToken, from_a_newer_client: 1 }));
    const okH2 = await same((u) => h2(u, connectHeaders("/auth.AuthService/ValidateToken", "application/json"), json));
    expect(JSON.parse(okH2.body.toString())).toMatchObject({ is_valid: true, user_id: a.id });
    const okH1 = await same((u) => h1(u, "/auth.AuthService/ValidateToken", { "content-type": "application/json", "connect-protocol-version": "1" }, json));
    expect(okH1.body.equals(okH2.body)).toBe(true);
    const proto = toBinary(ValidateTokenRequestSchema, create(ValidateTokenRequestSchema, { accessToken: a.accessToken }));
    const okProto = await same((u) => h1(u, "/auth.AuthService/ValidateToken", { "content-type": "application/proto" }, proto));
    expect(okProto.headers["content-type"]).toBe("application/proto");
    const syntax = await same((u) => h1(u, "/auth.AuthService/ValidateToken", { "content-type": "application/json" }, Buffer.from("{nope")));
    expect(syntax.status).toBe(400);
    expect(JSON.parse(syntax.body.toString()).code).toBe("invalid_argument");
    const noAuth = await same((u) => h1(u, "/chat.ChatService/GetConversations", { "content-type": "application/json" }, Buffer.from("{}")));
    expect(noAuth.status).toBe(401);
    expect(JSON.parse(noAuth.body.toString())).toMatchObject({ code: "unauthenticated" });
    const list = Buffer.from(JSON.stringify({ conversation_id: conversationId }));
    const auth = { authorization: `Bearer ${a.accessToken}` };
    const gz = await same((u) => h2(u, connectHeaders("/chat.ChatService/ListMessages", "application/json", { ...auth, "accept-encoding": "gzip" }), list));
    expect(gz.headers["content-encoding"]).toBe("gzip");
    expect(JSON.parse(gunzipSync(gz.body).toString()).messages).toHaveLength(3);
    const identity = await same((u) => h2(u, connectHeaders("/chat.ChatService/ListMessages", "application/json", auth), list));
    expect(identity.headers["content-encoding"]).toBeUndefined();
  });

  test("a body over MAX_MESSAGE_BYTES is refused the same way, by declared length and by bytes received", async () => {
    const big = Buffer.alloc(4 * 1024 * 1024 + 10, 0x20);
    const declared = await same((u) => h1(u, "/auth.AuthService/ValidateToken", { "content-type": "application/json" }, big));
    expect(declared.status).toBe(429);
    expect(JSON.parse(declared.body.toString()).code).toBe("resource_exhausted");
    const env = Buffer.alloc(5 + 16);
    env.writeUInt32BE(4 * 1024 * 1024 + 10, 1);
    const r = await h2(fast.url, grpcHeaders("/auth.AuthService/ValidateToken"), env);
    expect(r.trailers["grpc-status"]).toBe("8");
  });

  test("what the fast path does not take still works through connect-node: GET, gRPC-Web, compressed requests, bad timeouts", async () => {
    const web = await h1(
      fast.url,
      "/auth.AuthService/ValidateToken",
      { "content-type": "application/grpc-web+proto" },
      grpcBody(ValidateTokenRequestSchema, { accessToken: a.accessToken }),
    );
    expect(web.status).toBe(200);
    expect(web.headers["content-type"]).toBe("application/grpc-web+proto");
    const badTimeout = await same((u) =>
      h1(u, "/auth.AuthService/ValidateToken", { "content-type": "application/json", "connect-timeout-ms": "soon" }, Buffer.from("{}")),
    );
    expect(JSON.parse(badTimeout.body.toString()).code).toBe("invalid_argument");
    const unknownEncoding = await same((u) =>
      h2(u, grpcHeaders("/auth.AuthService/ValidateToken", { "grpc-encoding": "snappy" }), grpcBody(ValidateTokenRequestSchema, {})),
    );
    expect(unknownEncoding.trailers["grpc-status"]).toBe("12");
    const unknownMethod = await same((u) => h1(u, "/auth.AuthService/Nope", { "content-type": "application/json" }, Buffer.from("{}")));
    expect(unknownMethod.status).toBe(404);
  });

  test("a client deadline is honoured: a generous one answers, an expired one is DeadlineExceeded", async () => {
    const body = grpcBody(ValidateTokenRequestSchema, { accessToken: a.accessToken });
    const ok = await h2(fast.url, grpcHeaders("/auth.AuthService/ValidateToken", { "grpc-timeout": "5S" }), body);
    expect(ok.trailers["grpc-status"]).toBe("0");
    const json = await h1(fast.url, "/auth.AuthService/ValidateToken", { "content-type": "application/json", "connect-timeout-ms": "5000" }, Buffer.from("{}"));
    expect(json.status).toBe(200);
    const expired = await h2(fast.url, grpcHeaders("/auth.AuthService/ValidateToken", { "grpc-timeout": "1n" }), body);
    expect(expired.trailers["grpc-status"]).toBe("4");
  });

  test("Subscribe (server-streaming) on gRPC and Connect: the same events, headers and end; errors the same bytes", async () => {
    const sub = grpcBody(SubscribeRequestSchema, { sincePosition: 0n });
    const noAuth = await same((u) => h2(u, grpcHeaders("/realtime.RealtimeService/Subscribe"), sub));
    expect(noAuth.trailers["grpc-status"]).toBe("16");
    const noAuthConnect = await same((u) => h2(u, connectHeaders("/realtime.RealtimeService/Subscribe", "application/connect+json"), sub));
    expect(noAuthConnect.status).toBe(200);
    expect(noAuthConnect.body[0]).toBe(2); // Connect's end-of-stream message
    expect(JSON.parse(noAuthConnect.body.subarray(5).toString()).error.code).toBe("unauthenticated");

    const before = await fastPathCalls(fast);
    const auth = { authorization: `Bearer ${a.accessToken}` };
    for (const headers of [
      grpcHeaders("/realtime.RealtimeService/Subscribe", auth),
      connectHeaders("/realtime.RealtimeService/Subscribe", "application/connect+proto", auth),
    ]) {
      const [x, y] = await Promise.all([fast.url, plain.url].map((u) => subscribeUntilCaughtUp(u, headers, sub)));
      expect(x!.headers).toEqual(y!.headers);
      const summary = (events: Event[]) => events.map((e) => `${e.kind.case}@${e.position}`);
      expect(summary(x!.events)).toEqual(summary(y!.events));
      expect(x!.events[0]!.kind.case).toBe("ready");
      expect(x!.events.at(-1)!.kind.case).toBe("caughtUp");
      expect(x!.events.filter((e) => e.kind.case === "messageCreated")).toHaveLength(3);
    }
    expect(await fastPathCalls(fast)).toBe(before + 2);
  });

  test("events from the bus keep their bytes (decodeFrame), which equal their encoding", () => {
    const body = encodeEventBody(create(EventSchema, { kind: { case: "heartbeat", value: {} } }));
    const frame = decodeFrame(eventFrame(body, 300n));
    expect(frame?.kind).toBe("event");
    const event = (frame as { event: Event & MaybePreEncoded }).event;
    expect(event.position).toBe(300n);
    expect(Buffer.from(event[preEncoded]!).equals(Buffer.from(toBinary(EventSchema, event)))).toBe(true);
  });

  test("a live event is written as the bytes that came over the bus, equal to connect-node's encoding of it", async () => {
    const headers = grpcHeaders("/realtime.RealtimeService/Subscribe", { authorization: `Bearer ${a.accessToken}` });
    const body = grpcBody(SubscribeRequestSchema, {});
    const [x, y] = await Promise.all([openStream(fast.url, headers, body), openStream(plain.url, headers, body)]);
    try {
      await Promise.all([x, y].map((s) => s.waitFor((e) => e.kind.case === "caughtUp")));
      const chat = createClient(ChatService, bearerTransport(fast.url, a.accessToken));
      await chat.sendMessage({ conversationId, content: "live, pre-encoded", clientMessageId: "fp-live" });
      const isLive = (e: Event) => e.kind.case === "messageCreated" && e.kind.value.message?.content === "live, pre-encoded";
      const [i, j] = await Promise.all([x.waitFor(isLive), y.waitFor(isLive)]);
      expect(x.events[i]!.position).toBeGreaterThan(0n);
      expect(x.raw[i]!.equals(y.raw[j]!)).toBe(true);
    } finally {
      x.close();
      y.close();
    }
  });
});

interface OpenStream {
  headers: Record<string, string>;
  events: Event[];
  /** Each event's bytes as they came on the wire. */
  raw: Buffer[];
  waitFor(pred: (e: Event) => boolean): Promise<number>;
  close(): void;
}

/** A raw HTTP/2 Subscribe stream that records every event and its bytes. */
async function openStream(baseUrl: string, headers: Record<string, string>, body: Uint8Array): Promise<OpenStream> {
  const session = http2.connect(baseUrl);
  const req = session.request({ ":method": "POST", ...headers });
  const out: OpenStream = {
    headers: {},
    events: [],
    raw: [],
    waitFor: (pred) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const i = out.events.findIndex(pred);
          if (i >= 0) return resolve(i);
          if (req.closed) return reject(new Error(`stream ended: ${out.events.map((e) => e.kind.case).join(",")}`));
          setTimeout(check, 10);
        };
        check();
      }),
    close: () => {
      req.close();
      session.close();
    },
  };
  let buf = Buffer.alloc(0);
  req.on("response", (h) => (out.headers = clean(h)));
  req.on("data", (c: Buffer) => {
    buf = Buffer.concat([buf, c]);
    while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
      const n = buf.readUInt32BE(1);
      out.raw.push(Buffer.from(buf.subarray(5, 5 + n)));
      out.events.push(fromBinary(EventSchema, buf.subarray(5, 5 + n)));
      buf = buf.subarray(5 + n);
    }
  });
  req.on("error", () => undefined);
  req.end(body);
  return out;
}

/** Reads a Subscribe stream until caught_up, then cancels it. */
async function subscribeUntilCaughtUp(
  baseUrl: string,
  headers: Record<string, string>,
  body: Uint8Array,
): Promise<{ headers: Record<string, string>; events: Event[] }> {
  const s = await openStream(baseUrl, headers, body);
  try {
    await s.waitFor((e) => e.kind.case === "caughtUp");
    return { headers: s.headers, events: s.events };
  } finally {
    s.close();
  }
}
