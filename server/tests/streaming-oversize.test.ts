import http2 from "node:http2";
import { Writable } from "node:stream";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// A client-streaming or bidi call (these go through connect-node, not the fast path) whose message is over
// MAX_MESSAGE_BYTES is answered resource_exhausted at once. The server must then also end the stream, as gRPC
// servers do (RST_STREAM NO_ERROR after the trailers), or the client's side stays half-open for good, and it
// logs the call as resource_exhausted, not internal.

const LIMIT = 1024;
let s: TestServer;
const lines: Array<{ rpc?: string; code?: string; msg?: string }> = [];

beforeAll(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString("utf8").split("\n")) if (l) lines.push(JSON.parse(l) as (typeof lines)[number]);
      done();
    },
  });
  s = await startTestServer({ MAX_MESSAGE_BYTES: String(LIMIT) }, { logger: pino({ level: "info" }, sink) });
});

afterAll(async () => {
  await s?.stop();
});

function frame(size: number): Buffer {
  const out = Buffer.alloc(5 + size, 0x20);
  out.writeUInt32BE(size, 1);
  return out;
}

/** One event of the raw client stream, in the order they came. */
type Seen = "response" | "trailers" | "end" | "close";

const cases = [
  // Bidi: the client sends a message over the limit and keeps its side open, as a bidi client does.
  { name: "request left open", size: 4 * LIMIT, end: false },
  // The client ended its request, but most of it is still queued behind flow control (64 KiB window).
  { name: "request ended, 1 MiB of it unsent", size: 1024 * 1024, end: true },
];

describe("an oversized message on a bidi stream", () => {
  test.each(cases)(
    "gRPC reflection, $name: trailers with resource_exhausted, then the server closes the stream (RST_STREAM NO_ERROR)",
    async ({ size, end }) => {
      lines.length = 0;
      const session = http2.connect(s.url);
      session.on("error", () => undefined);
      try {
        const seen: Seen[] = [];
        const req = session.request({
          ":method": "POST",
          ":path": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
          "content-type": "application/grpc",
          te: "trailers",
        });
        let status: string | undefined;
        req.on("response", () => seen.push("response"));
        req.on("trailers", (t) => {
          status = t["grpc-status"] as string;
          seen.push("trailers");
        });
        req.on("data", () => undefined);
        req.on("end", () => seen.push("end"));
        req.on("error", () => undefined);
        const closed = new Promise<void>((r) => req.once("close", () => r()));
        req.on("close", () => seen.push("close"));
        if (end) req.end(frame(size));
        else req.write(frame(size));
        await new Promise<void>((r) => req.once("trailers", () => r()));
        expect(status).toBe("8");
        // Frames of one connection arrive in order: once a later call on it is answered, the server's
        // RST_STREAM for the first stream (sent with or right after its trailers) has arrived too.
        const check = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": "application/grpc", te: "trailers" });
        check.on("data", () => undefined);
        await new Promise<void>((r) => {
          check.once("close", () => r());
          check.end(frame(0));
        });
        expect(req.closed).toBe(true);
        await closed;
        expect(req.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
        expect(seen).toEqual(["response", "trailers", "end", "close"]);
      } finally {
        session.close();
      }
      const logged = lines.filter((l) => l.rpc === "grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
      expect(logged.map((l) => l.code)).toEqual(["resource_exhausted"]);
    },
  );
});
