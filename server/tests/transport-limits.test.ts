import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { login, type LoggedIn } from "./helpers/login.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// Issue 13 §2: oversize and unauthenticated request bodies must be answered
// with a status and must not make their connection useless. The server runs
// with the default MAX_MESSAGE_BYTES (4 MiB); the clients are node's own
// http2 and http (the http2 one is what @grpc/grpc-js is built on, with the
// same default session memory of 10 MB).

let s: TestServer;
let user: LoggedIn;

beforeAll(async () => {
  s = await startTestServer();
  user = await login(s.url, "+14155550141");
});

afterAll(async () => {
  await s?.stop();
});

function frame(size: number): Buffer {
  const out = Buffer.alloc(5 + size, 0x20);
  out[0] = 0;
  out.writeUInt32BE(size, 1);
  return out;
}

interface GrpcAnswer {
  status?: string;
  rstCode: number;
}

function grpcCall(session: http2.ClientHttp2Session, path: string, body: Buffer, token?: string, extra: http2.OutgoingHttpHeaders = {}): Promise<GrpcAnswer> {
  return new Promise((resolve) => {
    const headers: http2.OutgoingHttpHeaders = { ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...extra };
    if (token) headers.authorization = `Bearer ${token}`;
    const req = session.request(headers);
    let status: string | undefined;
    req.on("response", (h) => (status ??= h["grpc-status"] as string | undefined));
    req.on("trailers", (t) => (status = t["grpc-status"] as string));
    req.on("data", () => undefined);
    req.on("error", () => undefined);
    req.on("close", () => resolve({ status, rstCode: req.rstCode ?? 0 }));
    req.end(body);
  });
}

const check = (session: http2.ClientHttp2Session) => grpcCall(session, "/grpc.health.v1.Health/Check", frame(0));

describe("a body the server will not read does not break its connection", () => {
  test("HTTP/2: five unauthenticated Subscribe calls with 2 MiB bodies are answered, and the connection serves the next call", async () => {
    const session = http2.connect(s.url);
    session.on("error", () => undefined);
    try {
      const answers = await Promise.all(Array.from({ length: 5 }, () => grpcCall(session, "/realtime.RealtimeService/Subscribe", frame(2 * 1024 * 1024))));
      expect(answers).toEqual(Array.from({ length: 5 }, () => ({ status: "16", rstCode: 0 })));
      expect(await check(session)).toEqual({ status: "0", rstCode: 0 });
    } finally {
      session.close();
    }
  });

  test("HTTP/2: every call with a body over MAX_MESSAGE_BYTES gets a grpc-status, with or without a token, and the connection lives on", async () => {
    const session = http2.connect(s.url);
    session.on("error", () => undefined);
    try {
      const big = frame(4 * 1024 * 1024 + 300 * 1024);
      const answers = await Promise.all([
        grpcCall(session, "/chat.ChatService/SendMessage", big),
        grpcCall(session, "/chat.ChatService/SendMessage", big, user.accessToken),
        grpcCall(session, "/realtime.RealtimeService/Subscribe", big, user.accessToken),
      ]);
      // Unauthenticated or too large, but always a status: never a bare RST_STREAM.
      for (const a of answers) {
        expect(a.rstCode).toBe(0);
        expect(["8", "16"]).toContain(a.status);
      }
      expect(answers[1]!.status).toBe("8");
      expect(await check(session)).toEqual({ status: "0", rstCode: 0 });
      // A body far larger than the client's 10 MB of session memory: its sender still gets the answer.
      for (const token of [undefined, user.accessToken]) {
        expect(await grpcCall(session, "/chat.ChatService/SendMessage", frame(20 * 1024 * 1024), token)).toEqual({ status: "8", rstCode: 0 });
      }
      expect(await check(session)).toEqual({ status: "0", rstCode: 0 });
      // The same through connect-node (a request marked gzip-compressed does not take the fast path).
      const compressed = await Promise.all(
        Array.from({ length: 3 }, () =>
          grpcCall(session, "/chat.ChatService/SendMessage", frame(5 * 1024 * 1024), user.accessToken, { "grpc-encoding": "gzip" }),
        ),
      );
      expect(compressed).toEqual(Array.from({ length: 3 }, () => ({ status: "8", rstCode: 0 })));
      expect(await check(session)).toEqual({ status: "0", rstCode: 0 });
    } finally {
      session.close();
    }
  });

  test("HTTP/1.1 keep-alive: after a 4.3 MiB gRPC-Web request (resource_exhausted) the next request is answered", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const call = (body: Buffer) =>
      new Promise<{ status: number; connection?: string; body: string }>((resolve, reject) => {
        const req = http.request(
          `${s.url}/grpc.health.v1.Health/Check`,
          { method: "POST", agent, headers: { "content-type": "application/grpc-web+proto", "content-length": body.length } },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => resolve({ status: res.statusCode!, connection: res.headers.connection, body: Buffer.concat(chunks).toString("latin1") }));
          },
        );
        req.setTimeout(5000, () => req.destroy(new Error("no answer within 5 s")));
        req.on("error", reject);
        req.end(body);
      });
    try {
      const first = await call(frame(Math.round(4.3 * 1024 * 1024)));
      expect(first.body).toContain("grpc-status: 8");
      // The rest of that body was never read: the connection cannot carry another request, and says so.
      expect(first.connection).toBe("close");
      const second = await call(frame(0));
      expect(second.status).toBe(200);
      expect(second.body).toContain("grpc-status: 0");
    } finally {
      agent.destroy();
    }
  });

  test("HTTP/1.1 on one socket: the server closes the connection after the refusal instead of leaving the next request unanswered", async () => {
    const socket = net.connect(s.port, "127.0.0.1");
    socket.on("error", () => undefined);
    await new Promise((r) => socket.once("connect", r));
    let reply = "";
    socket.on("data", (c: Buffer) => (reply += c.toString("latin1")));
    const closed = new Promise<void>((r) => socket.once("close", () => r()));
    const body = frame(Math.round(4.3 * 1024 * 1024));
    socket.write(`POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc-web+proto\r\nContent-Length: ${body.length}\r\n\r\n`);
    socket.write(body);
    const timeout = new Promise<"open">((r) => setTimeout(() => r("open"), 5000).unref());
    expect(await Promise.race([closed.then(() => "closed" as const), timeout])).toBe("closed");
    expect(reply).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(reply).toMatch(/\r\nConnection: close\r\n/i);
    expect(reply).toContain("grpc-status: 8");
  });
});
