import net from "node:net";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/health/v1/health_pb.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

/** Writes raw bytes to the port and collects whatever comes back until the server closes or `ms` pass. */
function rawExchange(port: number, bytes: Buffer | string, ms = 2000): Promise<{ reply: string; closedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ reply: Buffer.concat(chunks).toString("latin1"), closedByServer: false });
    }, ms);
    socket.on("data", (c) => chunks.push(c));
    socket.on("error", () => undefined);
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ reply: Buffer.concat(chunks).toString("latin1"), closedByServer: true });
    });
    socket.on("connect", () => socket.write(bytes));
    socket.on("timeout", reject);
  });
}

async function stillServes(s: TestServer): Promise<void> {
  const h1 = createClient(Health, createConnectTransport({ baseUrl: s.url, httpVersion: "1.1" }));
  const h2 = createClient(Health, createGrpcTransport({ baseUrl: s.url }));
  expect((await h1.check({})).status).toBe(Status.SERVING);
  expect((await h2.check({})).status).toBe(Status.SERVING);
}

describe("the one port under bad input", () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(async () => {
    await s?.stop();
  });

  test("garbage bytes get a 400 and a closed connection; the next client is served", async () => {
    const { reply, closedByServer } = await rawExchange(s.port, Buffer.from([0x16, 0x03, 0x01, 0xff, 0x00, 0x13, 0x37, 0x0d, 0x0a, 0x0d, 0x0a]));
    expect(reply).toMatch(/^HTTP\/1\.1 400/);
    expect(closedByServer).toBe(true);
    await stillServes(s);
  });

  test("an HTTP/2 preface with a typo is refused as bad HTTP/1.1", async () => {
    const { reply, closedByServer } = await rawExchange(s.port, "PRI * HTTP/2.1\r\n\r\nSM\r\n\r\n");
    expect(reply).toMatch(/^HTTP\/1\.1 400/);
    expect(closedByServer).toBe(true);
    await stillServes(s);
  });

  test("a preface split across packets still reaches HTTP/2", async () => {
    const socket = net.connect(s.port, "127.0.0.1");
    await new Promise((r) => socket.once("connect", r));
    socket.write("PRI * HTTP/2");
    await new Promise((r) => setTimeout(r, 50));
    const settings = new Promise<Buffer>((resolve) => socket.once("data", resolve));
    socket.write(".0\r\n\r\nSM\r\n\r\n");
    socket.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])); // empty SETTINGS frame
    const frame = await settings;
    socket.destroy();
    expect(frame[3]).toBe(4); // the server's first frame is SETTINGS
  });

  test("a client that connects and sends nothing does not block others", async () => {
    const idle = net.connect(s.port, "127.0.0.1");
    await new Promise((r) => idle.once("connect", r));
    await stillServes(s);
    idle.destroy();
  });

  test("a truncated HTTP/2 connection does not hurt the server", async () => {
    await rawExchange(s.port, Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Buffer.from([0, 0, 9, 1, 4])]), 500);
    await stillServes(s);
  });

  test("/healthz, /readyz and /metrics answer over plain HTTP", async () => {
    expect(await (await fetch(`${s.url}/healthz`)).json()).toEqual({ status: "ok" });
    const ready = await fetch(`${s.url}/readyz`);
    expect(ready.status).toBe(200);
    const body = (await ready.json()) as { checks: Record<string, string> };
    expect(body.checks.database).toBe("ok");
    if (process.env.NATS_URL) expect(body.checks.nats).toBe("ok");
    await createClient(Health, createConnectTransport({ baseUrl: s.url, httpVersion: "1.1" })).check({});
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).toMatch(/chatwire_rpc_requests_total\{method="grpc.health.v1.Health\/Check",code="ok",protocol="connect"\} \d+/);
    expect(metrics).toContain("chatwire_rpc_duration_seconds_bucket");
    expect(metrics).toContain("chatwire_open_streams");
    // The standard process metrics, under the names stock Node.js dashboards use.
    expect(metrics).toMatch(/^process_cpu_seconds_total \d/m);
    expect(metrics).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
    // Codes spelled as on the wire.
    const bad = await fetch(`${s.url}/auth.AuthService/SendOTP`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"phone_number":"12345"}',
    });
    expect(((await bad.json()) as { code: string }).code).toBe("invalid_argument");
    expect(await (await fetch(`${s.url}/metrics`)).text()).toMatch(
      /chatwire_rpc_requests_total\{method="auth.AuthService\/SendOTP",code="invalid_argument",protocol="connect"\} 1/,
    );
  });
});

describe("graceful stop", () => {
  test("open streams end with Unavailable, the port closes, and stop finishes quickly", async () => {
    const s = await startTestServer();
    const transports = [createGrpcTransport({ baseUrl: s.url }), createConnectTransport({ baseUrl: s.url, httpVersion: "1.1" })];
    const outcomes = transports.map(async (t) => {
      const seen: Status[] = [];
      try {
        for await (const res of createClient(Health, t).watch({ service: "" })) {
          seen.push(res.status);
        }
        return { seen, code: undefined as Code | undefined };
      } catch (err) {
        return { seen, code: ConnectError.from(err).code };
      }
    });
    // Both streams are open once the server counts them.
    for (let i = 0; i < 100; i++) {
      const open = await s.server.ctx.metrics.openStreams.get();
      if (open.values.reduce((a, v) => a + v.value, 0) >= 2) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const started = Date.now();
    await s.stop();
    const stoppedMs = Date.now() - started;
    for (const o of await Promise.all(outcomes)) {
      expect(o.code).toBe(Code.Unavailable);
      expect(o.seen[0]).toBe(Status.SERVING);
      // The shutdown itself is told before the stream ends.
      expect(o.seen.at(-1)).toBe(Status.NOT_SERVING);
    }
    expect(stoppedMs).toBeLessThan(10_000);
    await expect(fetch(`${s.url}/healthz`)).rejects.toThrow();
  });

  test("two servers live in one process without sharing state", async () => {
    const [a, b] = await Promise.all([startTestServer(), startTestServer()]);
    try {
      expect(a.port).not.toBe(b.port);
      a.server.ctx.health.set("only.on.a", "SERVING");
      const onB = createClient(Health, createConnectTransport({ baseUrl: b.url, httpVersion: "1.1" }));
      await expect(onB.check({ service: "only.on.a" })).rejects.toMatchObject({ code: Code.NotFound });
      const onA = createClient(Health, createConnectTransport({ baseUrl: a.url, httpVersion: "1.1" }));
      expect((await onA.check({ service: "only.on.a" })).status).toBe(Status.SERVING);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
