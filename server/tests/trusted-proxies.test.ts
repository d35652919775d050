import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { AuthService } from "../../gen/auth/auth_pb.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// The SendOTP budget per client IP behind a load balancer (TRUSTED_PROXIES).
// The test process connects from 127.0.0.1, so on the trusted server it plays
// the load balancer and names clients in X-Forwarded-For; on the other it is
// a client writing X-Forwarded-For itself, which must change nothing.

let trusted: TestServer;
let untrusted: TestServer;

beforeAll(async () => {
  [trusted, untrusted] = await Promise.all([
    startTestServer({ OTP_SENDS_PER_IP_PER_HOUR: "2", TRUSTED_PROXIES: "127.0.0.0/8, ::1" }),
    startTestServer({ OTP_SENDS_PER_IP_PER_HOUR: "2" }),
  ]);
}, 60_000);
afterAll(async () => {
  await Promise.all([trusted?.stop(), untrusted?.stop()]);
});

let n = 0;
const freshNumber = () => `+1415712${String(n++).padStart(4, "0")}`;

/** SendOTP for a fresh number (so only the per-IP budget can refuse), over Connect JSON. */
async function send(server: TestServer, headers: Record<string, string> = {}) {
  const res = await fetch(`${server.url}/auth.AuthService/SendOTP`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ phone_number: freshNumber() }),
  });
  const body = (await res.json()) as { code?: string; message?: string };
  return { status: res.status, code: body.code, message: body.message, retryAfter: res.headers.get("retry-after") };
}

const xff = (v: string) => ({ "x-forwarded-for": v });

function expectAddressRefusal(r: Awaited<ReturnType<typeof send>>) {
  expect({ status: r.status, code: r.code }).toEqual({ status: 429, code: "resource_exhausted" });
  expect(r.message).toMatch(/too many codes requested from this address; try again in \d+ s/);
  expect(Number(r.retryAfter)).toBeGreaterThan(0);
}

describe("TRUSTED_PROXIES set: the proxy names the client", () => {
  test("each forwarded client has its own budget", async () => {
    expect((await send(trusted, xff("203.0.113.1"))).status).toBe(200);
    expect((await send(trusted, xff("203.0.113.1"))).status).toBe(200);
    expectAddressRefusal(await send(trusted, xff("203.0.113.1")));
    // Another client behind the same proxy is not affected.
    expect((await send(trusted, xff("203.0.113.2"))).status).toBe(200);
    expect((await send(trusted, xff("203.0.113.2"))).status).toBe(200);
    expectAddressRefusal(await send(trusted, xff("203.0.113.2")));
  });

  test("a client's own X-Forwarded-For entry does not help: the rightmost untrusted hop counts", async () => {
    expect((await send(trusted, xff("203.0.113.10"))).status).toBe(200);
    expect((await send(trusted, xff("203.0.113.10"))).status).toBe(200);
    // The client wrote 198.51.100.7 and Forwarded itself; the proxy appended the address it saw.
    expectAddressRefusal(await send(trusted, { ...xff("198.51.100.7, 203.0.113.10"), forwarded: "for=198.51.100.8" }));
    // Behind a second, trusted proxy (127.0.0.5), the same.
    expectAddressRefusal(await send(trusted, xff("198.51.100.7, 203.0.113.10, 127.0.0.5")));
  });

  test("gRPC-Web (connect-node's path, not the fast path) reads the same header", async () => {
    const forwardedAs =
      (ip: string): Interceptor =>
      (next) =>
      (req) => {
        req.header.set("x-forwarded-for", ip);
        return next(req);
      };
    const auth = createClient(AuthService, createGrpcWebTransport({ baseUrl: trusted.url, httpVersion: "1.1", interceptors: [forwardedAs("203.0.113.20")] }));
    await auth.sendOTP({ phoneNumber: freshNumber() });
    await auth.sendOTP({ phoneNumber: freshNumber() });
    const err = ConnectError.from(await auth.sendOTP({ phoneNumber: freshNumber() }).catch((e: unknown) => e));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toMatch(/from this address/);
    // Over Connect JSON, a different client is still fine.
    expect((await send(trusted, xff("203.0.113.21"))).status).toBe(200);
  });
});

describe("TRUSTED_PROXIES unset: forwarding headers are a client's claim and ignored", () => {
  test("a new X-Forwarded-For (or Forwarded) each call does not get a new budget", async () => {
    expect((await send(untrusted, xff("203.0.113.1"))).status).toBe(200);
    expect((await send(untrusted, { forwarded: "for=203.0.113.2" })).status).toBe(200);
    expectAddressRefusal(await send(untrusted, xff("203.0.113.3")));
    expectAddressRefusal(await send(untrusted));
  });
});
