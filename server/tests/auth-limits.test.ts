import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { AuthService } from "../../gen/auth/auth_pb.js";
import { DevOtpProvider } from "../auth/dev-otp-provider.js";
import { OtpProviderError, type OtpProvider } from "../auth/otp-provider.js";
import { createLogger } from "../logger.js";
import { FakeClock, startTestServer, type TestServer } from "./helpers/test-server.js";

// The abuse limits of SendOTP and VerifyOTP: per number, per code, per client
// IP, exact under concurrency and shared by every instance (they live in the
// database). Windows are moved with a FakeClock.

const DEV_CODE = "123456";

let s: TestServer;
let clock: FakeClock;
let auth: Client<typeof AuthService>;

beforeAll(async () => {
  clock = new FakeClock();
  s = await startTestServer({}, { clock });
  auth = clientFor(s);
});
afterAll(async () => {
  await s?.stop();
});

function clientFor(server: TestServer): Client<typeof AuthService> {
  return createClient(AuthService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
}

let nextNumber = 100;
const freshNumber = () => `+1415555${String(nextNumber++).padStart(4, "0")}`;

/** SendOTP as curl users send it, so the response headers are visible. */
async function sendViaFetch(server: TestServer, phone: string) {
  const res = await fetch(`${server.url}/auth.AuthService/SendOTP`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ phone_number: phone }),
  });
  const body = (await res.json()) as { code?: string; message?: string; retry_after_seconds?: number };
  const retryAfter = res.headers.get("retry-after");
  return { status: res.status, body, retryAfter: retryAfter === null ? undefined : Number(retryAfter) };
}

/** Expects a ResourceExhausted answer whose message and retry-after header carry the same wait. */
function expectLimited(r: Awaited<ReturnType<typeof sendViaFetch>>, message: RegExp): number {
  expect({ status: r.status, code: r.body.code }).toEqual({ status: 429, code: "resource_exhausted" });
  expect(r.body.message).toMatch(message);
  expect(r.retryAfter).toBeDefined();
  expect(Number.isInteger(r.retryAfter)).toBe(true);
  expect(r.body.message).toContain(`try again in ${r.retryAfter} s`);
  return r.retryAfter!;
}

const settle = async <T>(calls: Array<Promise<T>>) => {
  const results = await Promise.allSettled(calls);
  const codes = results.map((r) => (r.status === "fulfilled" ? "OK" : Code[ConnectError.from(r.reason).code]!));
  const count = (c: string) => codes.filter((x) => x === c).length;
  return { codes, count };
};

describe("SendOTP per number", () => {
  test("one send per 30 s: the second is refused with the seconds to wait; 31 s later it works", async () => {
    const phone = freshNumber();
    const first = await sendViaFetch(s, phone);
    expect(first.status).toBe(200);
    expect(first.body.retry_after_seconds).toBe(30);

    const second = await sendViaFetch(s, phone);
    const wait = expectLimited(second, /just sent/);
    expect(wait).toBeGreaterThan(0);
    expect(wait).toBeLessThanOrEqual(30);

    // Partway through the wait, the wait left shrinks accordingly.
    clock.advance(10_000);
    const third = expectLimited(await sendViaFetch(s, phone), /just sent/);
    expect(third).toBeLessThanOrEqual(20);
    expect(third).toBeGreaterThan(0);

    clock.advance(21_000);
    expect((await sendViaFetch(s, phone)).status).toBe(200);
  });

  test("five sends per 10 minutes; the 6th waits for the rest of the window, then it works again", async () => {
    const phone = freshNumber();
    const windowStart = clock.now().getTime();
    for (let i = 0; i < 5; i++) {
      const r = await sendViaFetch(s, phone);
      expect(r.status, `send ${i + 1}`).toBe(200);
      clock.advance(31_000);
    }
    const sixth = await sendViaFetch(s, phone);
    const wait = expectLimited(sixth, /too many codes requested for this number/);
    const rest = Math.ceil((windowStart + 600_000 - clock.now().getTime()) / 1000);
    expect(Math.abs(wait - rest)).toBeLessThanOrEqual(1);
    expect(wait).toBeGreaterThan(30);

    clock.advance((wait + 1) * 1000);
    expect((await sendViaFetch(s, phone)).status).toBe(200);
  });

  test("the code the limit refused is not replaced: a pending code keeps working", async () => {
    const phone = freshNumber();
    await auth.sendOTP({ phoneNumber: phone });
    await expect(auth.verifyOTP({ phoneNumber: phone, otpCode: "000000" })).rejects.toMatchObject({ code: Code.Unauthenticated });
    await expect(auth.sendOTP({ phoneNumber: phone })).rejects.toMatchObject({ code: Code.ResourceExhausted });
    // The refused send did not reset the attempts of the pending code: 3 left, not 4.
    const err = ConnectError.from(await auth.verifyOTP({ phoneNumber: phone, otpCode: "000000" }).catch((e: unknown) => e));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.metadata.get("attempts-left")).toBe("3");
    const ok = await auth.verifyOTP({ phoneNumber: phone, otpCode: DEV_CODE });
    expect(ok.user?.phoneNumber).toBe(phone);
  });

  test("50 parallel sends for one fresh number: exactly one gets through", async () => {
    const phone = freshNumber();
    const { codes, count } = await settle(Array.from({ length: 50 }, () => auth.sendOTP({ phoneNumber: phone })));
    expect(count("OK")).toBe(1);
    expect(count("ResourceExhausted")).toBe(49);
    expect(codes).toHaveLength(50);
  });
});

describe("VerifyOTP per code", () => {
  test("50 parallel wrong codes: exactly 5 are checked, 45 refused; then the right code fails too", async () => {
    const phone = freshNumber();
    await auth.sendOTP({ phoneNumber: phone });
    const { count } = await settle(Array.from({ length: 50 }, () => auth.verifyOTP({ phoneNumber: phone, otpCode: "000000" })));
    expect(count("Unauthenticated")).toBe(5);
    expect(count("ResourceExhausted")).toBe(45);
    expect(count("OK")).toBe(0);

    const err = ConnectError.from(await auth.verifyOTP({ phoneNumber: phone, otpCode: DEV_CODE }).catch((e: unknown) => e));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toMatch(/dead/);
  });

  test("a new code after the limit starts over with 5 attempts", async () => {
    const phone = freshNumber();
    await auth.sendOTP({ phoneNumber: phone });
    await settle(Array.from({ length: 6 }, () => auth.verifyOTP({ phoneNumber: phone, otpCode: "000000" })));
    await expect(auth.verifyOTP({ phoneNumber: phone, otpCode: DEV_CODE })).rejects.toMatchObject({ code: Code.ResourceExhausted });
    clock.advance(31_000);
    const sent = await auth.sendOTP({ phoneNumber: phone });
    expect(sent.attemptsLeft).toBe(5);
    const ok = await auth.verifyOTP({ phoneNumber: phone, otpCode: DEV_CODE });
    expect(ok.user?.phoneNumber).toBe(phone);
  });
});

describe("SendOTP per client IP", () => {
  test("with OTP_SENDS_PER_IP_PER_HOUR=3, the 4th number from the same address is refused", async () => {
    const ipClock = new FakeClock();
    const limited = await startTestServer({ OTP_SENDS_PER_IP_PER_HOUR: "3" }, { clock: ipClock });
    try {
      for (const phone of ["+14155550180", "+14155550181", "+14155550182"]) {
        expect((await sendViaFetch(limited, phone)).status, phone).toBe(200);
      }
      const fourth = await sendViaFetch(limited, "+14155550183");
      const wait = expectLimited(fourth, /address/);
      expect(wait).toBeGreaterThan(3000);
      expect(wait).toBeLessThanOrEqual(3600);
      // The number limits did not cause it: that number was never sent to. An hour later it goes through.
      ipClock.advance(3601_000);
      expect((await sendViaFetch(limited, "+14155550183")).status).toBe(200);
    } finally {
      await limited.stop();
    }
  });
});

describe("limits across instances", () => {
  test("a send on one instance counts on another (same database)", async () => {
    const b = await startTestServer({}, { shareWith: s, clock });
    try {
      const phone = freshNumber();
      expect((await sendViaFetch(s, phone)).status).toBe(200);
      expectLimited(await sendViaFetch(b, phone), /just sent/);

      // And the attempts of a code are shared too.
      const onB = clientFor(b);
      const onA = ConnectError.from(await auth.verifyOTP({ phoneNumber: phone, otpCode: "000000" }).catch((e: unknown) => e));
      expect(onA.metadata.get("attempts-left")).toBe("4");
      const thenB = ConnectError.from(await onB.verifyOTP({ phoneNumber: phone, otpCode: "000000" }).catch((e: unknown) => e));
      expect(thenB.code).toBe(Code.Unauthenticated);
      expect(thenB.metadata.get("attempts-left")).toBe("3");
      // The right code, on b, for a code sent through a.
      expect((await onB.verifyOTP({ phoneNumber: phone, otpCode: DEV_CODE })).user?.phoneNumber).toBe(phone);
    } finally {
      await b.stop();
    }
  });
});

describe("a send that fails downstream is not counted", () => {
  test("when the SMS provider is down, the client may retry at once and gets its code", async () => {
    let down = true;
    const dev = new DevOtpProvider(createLogger("silent"));
    const flaky: OtpProvider = {
      name: "dev",
      async send(phone) {
        if (down) throw new OtpProviderError("provider down", "unavailable");
        return dev.send(phone);
      },
      check: (phone, code) => dev.check(phone, code),
    };
    const f = await startTestServer({}, { otp: flaky });
    try {
      const client = clientFor(f);
      const phone = freshNumber();
      await expect(client.sendOTP({ phoneNumber: phone })).rejects.toMatchObject({ code: Code.Unavailable });
      down = false;
      // Had the failed attempt counted, the 30 s resend limit would refuse this.
      await expect(client.sendOTP({ phoneNumber: phone })).resolves.toMatchObject({ retryAfterSeconds: 30 });
      const res = await client.verifyOTP({ phoneNumber: phone, otpCode: DEV_CODE });
      expect(res.accessToken).not.toBe("");
    } finally {
      await f.stop();
    }
  });
});
