import { randomUUID } from "node:crypto";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { AuthService, type VerifyOTPResponse } from "../../gen/auth/auth_pb.js";
import { FakeClock, TEST_JWT_SECRET, startTestServer, type TestServer } from "./helpers/test-server.js";

// Bad input and bad tokens: every refusal has the right code and a message
// that says what is wrong, over plain Connect JSON (curl) and the generated
// client, and nothing ever answers Internal or Unknown.

const DEV_CODE = "123456";

let s: TestServer;
let clock: FakeClock;
let auth: Client<typeof AuthService>;

beforeAll(async () => {
  clock = new FakeClock();
  s = await startTestServer({}, { clock });
  auth = createClient(AuthService, createConnectTransport({ baseUrl: s.url, httpVersion: "1.1" }));
});
afterAll(async () => {
  await s?.stop();
});

let nextNumber = 100;
const freshNumber = () => `+1415555${String(nextNumber++).padStart(4, "0")}`;

// ---- two ways to call: plain fetch with Connect JSON, and the generated client ----------------

type Method = "SendOTP" | "VerifyOTP" | "ValidateToken" | "RefreshToken" | "RevokeCurrentDevice" | "LogoutAllDevices" | "ListSessions" | "RevokeSession";
type Outcome =
  | { ok: true; body: Record<string, unknown> }
  | { ok: false; code: Code; message: string; header(name: string): string | null; httpStatus?: number };

interface Caller {
  name: string;
  call(method: Method, req: Record<string, unknown>, headers?: Record<string, string>): Promise<Outcome>;
}

const snake = (k: string) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
/** Connect's JSON error codes ("invalid_argument") back to Code. */
const CODE_BY_NAME = new Map<string, Code>(
  Object.values(Code)
    .filter((v): v is Code => typeof v === "number")
    .map((c) => [snake(Code[c]).replace(/^_/, ""), c]),
);

const viaFetch: Caller = {
  name: "Connect JSON via fetch",
  async call(method, req, headers = {}) {
    const body = JSON.stringify(Object.fromEntries(Object.entries(req).map(([k, v]) => [snake(k), v])));
    const res = await fetch(`${s.url}/auth.AuthService/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body,
    });
    const json = (await res.json()) as Record<string, unknown>;
    if (res.ok) return { ok: true, body: json };
    const code = CODE_BY_NAME.get(String(json.code));
    if (code === undefined) throw new Error(`unexpected error body ${JSON.stringify(json)} (HTTP ${res.status})`);
    return { ok: false, code, message: String(json.message), header: (n) => res.headers.get(n), httpStatus: res.status };
  },
};

const viaClient: Caller = {
  name: "generated client",
  async call(method, req, headers) {
    const rpc = (auth as unknown as Record<string, (r: unknown, o?: unknown) => Promise<unknown>>)[method[0]!.toLowerCase() + method.slice(1)]!;
    try {
      return { ok: true, body: (await rpc(req, headers ? { headers } : undefined)) as Record<string, unknown> };
    } catch (err) {
      const e = ConnectError.from(err);
      return { ok: false, code: e.code, message: e.rawMessage, header: (n) => e.metadata.get(n) };
    }
  },
};

function expectRefused(o: Outcome, code: Code, message: RegExp): Extract<Outcome, { ok: false }> {
  if (o.ok) throw new Error(`expected ${Code[code]}, the call succeeded with ${JSON.stringify(o.body)}`);
  expect({ code: Code[o.code], message: o.message }).toMatchObject({ code: Code[code], message: expect.stringMatching(message) });
  if (o.httpStatus !== undefined) expect(o.httpStatus).toBeLessThan(500);
  return o;
}

function expectOk(o: Outcome): Record<string, unknown> {
  if (!o.ok) throw new Error(`expected success, got ${Code[o.code]}: ${o.message}`);
  return o.body;
}

async function login(): Promise<VerifyOTPResponse> {
  const phone = freshNumber();
  await auth.sendOTP({ phoneNumber: phone });
  return auth.verifyOTP({ phoneNumber: phone, otpCode: DEV_CODE, deviceId: "d1", deviceName: "Test phone", deviceType: "ios" });
}

// ---- tokens built by hand -------------------------------------------------------------------------

const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");

/** A token with the server's exact header and claims (`iat` moved by `iatOffset` seconds, an optional `nbf`), signed with `secret`. */
function tokenLike(kind: "access" | "refresh", l: VerifyOTPResponse, secret: string, opts: { iatOffset?: number; nbf?: number } = {}): Promise<string> {
  const iat = Math.floor(clock.now().getTime() / 1000) + (opts.iatOffset ?? 0);
  return new SignJWT({ sid: l.sessionId, ...(opts.nbf === undefined ? {} : { nbf: opts.nbf }) })
    .setProtectedHeader({ alg: "HS256", typ: kind === "access" ? "at+jwt" : "rt+jwt" })
    .setIssuer("chatwire")
    .setAudience(kind === "access" ? "chatwire-api" : "chatwire-refresh")
    .setSubject(l.user!.id)
    .setJti(randomUUID())
    .setIssuedAt(iat)
    .setExpirationTime(iat + 900)
    .sign(new TextEncoder().encode(secret));
}

/** The server's claims with `alg: none` and an empty signature. */
function unsignedToken(l: VerifyOTPResponse): string {
  const iat = Math.floor(clock.now().getTime() / 1000);
  const payload = { sid: l.sessionId, iss: "chatwire", aud: "chatwire-api", sub: l.user!.id, jti: randomUUID(), iat, exp: iat + 900 };
  return `${b64url({ alg: "none", typ: "at+jwt" })}.${b64url(payload)}.`;
}

const OTHER_SECRET = "another-secret-another-secret-another-secret-42";

// ---- bad input -------------------------------------------------------------------------------------

const BAD_PHONES: Array<[what: string, phone: string, message: RegExp]> = [
  ["empty", "", /phone_number: is required/],
  ["letters", "abc", /phone_number: .*must start with \+/],
  ["digits without +", "12345", /phone_number: .*must start with \+/],
  ["only a country code", "+1", /phone_number: .*not a (valid )?phone number/],
  ["too long (40 chars)", `+${"1".repeat(39)}`, /phone_number: is too long/],
  ["national format, no +", "905551234567", /phone_number: .*must start with \+/],
  ["invalid for its country", "+1415555", /phone_number: .*not a (valid )?phone number/],
];

describe.each([viaFetch, viaClient])("bad input ($name)", (c) => {
  test.each(BAD_PHONES)("SendOTP with a bad phone number (%s) → InvalidArgument naming phone_number", async (_what, phone, message) => {
    expectRefused(await c.call("SendOTP", { phoneNumber: phone }), Code.InvalidArgument, message);
  });

  test.each(BAD_PHONES)("VerifyOTP with a bad phone number (%s) → InvalidArgument naming phone_number", async (_what, phone, message) => {
    expectRefused(await c.call("VerifyOTP", { phoneNumber: phone, otpCode: DEV_CODE }), Code.InvalidArgument, message);
  });

  test("a wrong code → Unauthenticated with the attempts left, in the message and the attempts-left header", async () => {
    const phone = freshNumber();
    expectOk(await c.call("SendOTP", { phoneNumber: phone }));
    const first = expectRefused(await c.call("VerifyOTP", { phoneNumber: phone, otpCode: "000000" }), Code.Unauthenticated, /wrong code; 4 attempt/);
    expect(first.header("attempts-left")).toBe("4");
    const second = expectRefused(await c.call("VerifyOTP", { phoneNumber: phone, otpCode: "654321" }), Code.Unauthenticated, /3 attempt/);
    expect(second.header("attempts-left")).toBe("3");
    // The code itself still works.
    const ok = expectOk(await c.call("VerifyOTP", { phoneNumber: phone, otpCode: DEV_CODE, deviceId: "x" }));
    expect(ok).toHaveProperty(c === viaFetch ? "access_token" : "accessToken");
  });

  test("a code with letters → InvalidArgument naming otp_code (and no attempt is used up)", async () => {
    const phone = freshNumber();
    expectOk(await c.call("SendOTP", { phoneNumber: phone }));
    for (const code of ["12a456", "abcdef", "", "12 34 56 78 90 12"]) {
      expectRefused(await c.call("VerifyOTP", { phoneNumber: phone, otpCode: code }), Code.InvalidArgument, /otp_code/);
    }
    const wrong = expectRefused(await c.call("VerifyOTP", { phoneNumber: phone, otpCode: "000000" }), Code.Unauthenticated, /4 attempt/);
    expect(wrong.header("attempts-left")).toBe("4");
  });

  test("VerifyOTP before any SendOTP → FailedPrecondition", async () => {
    expectRefused(await c.call("VerifyOTP", { phoneNumber: freshNumber(), otpCode: DEV_CODE }), Code.FailedPrecondition, /SendOTP/);
  });

  test("an expired code (11 minutes later) → FailedPrecondition", async () => {
    const phone = freshNumber();
    expectOk(await c.call("SendOTP", { phoneNumber: phone }));
    clock.advance(11 * 60_000);
    expectRefused(await c.call("VerifyOTP", { phoneNumber: phone, otpCode: DEV_CODE }), Code.FailedPrecondition, /expired/);
  });

  test("after 5 wrong codes the 6th attempt → ResourceExhausted, and then even the right code fails", async () => {
    const phone = freshNumber();
    expectOk(await c.call("SendOTP", { phoneNumber: phone }));
    for (let left = 4; left >= 0; left--) {
      const o = expectRefused(await c.call("VerifyOTP", { phoneNumber: phone, otpCode: "000000" }), Code.Unauthenticated, /wrong code/);
      expect(o.header("attempts-left")).toBe(String(left));
    }
    expectRefused(await c.call("VerifyOTP", { phoneNumber: phone, otpCode: "000000" }), Code.ResourceExhausted, /too many wrong codes/);
    expectRefused(await c.call("VerifyOTP", { phoneNumber: phone, otpCode: DEV_CODE }), Code.ResourceExhausted, /dead/);
  });

  test("device_name of 65 characters → InvalidArgument; 64 are fine", async () => {
    const phone = freshNumber();
    expectOk(await c.call("SendOTP", { phoneNumber: phone }));
    expectRefused(await c.call("VerifyOTP", { phoneNumber: phone, otpCode: DEV_CODE, deviceName: "n".repeat(65) }), Code.InvalidArgument, /device_name/);
    expectRefused(await c.call("VerifyOTP", { phoneNumber: phone, otpCode: DEV_CODE, deviceId: "i".repeat(129) }), Code.InvalidArgument, /device_id/);
    expectRefused(await c.call("VerifyOTP", { phoneNumber: phone, otpCode: DEV_CODE, deviceType: "t".repeat(33) }), Code.InvalidArgument, /device_type/);
    expectOk(await c.call("VerifyOTP", { phoneNumber: phone, otpCode: DEV_CODE, deviceName: "n".repeat(64) }));
  });
});

// ---- bad tokens ------------------------------------------------------------------------------------

describe.each([viaFetch, viaClient])("bad tokens ($name)", (c) => {
  let l: VerifyOTPResponse;
  beforeAll(async () => {
    l = await login();
  });
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  test("control: a token built like the server's and signed with the server's secret is accepted", async () => {
    const token = await tokenLike("access", l, TEST_JWT_SECRET);
    expectOk(await c.call("ListSessions", {}, bearer(token)));
    expect(expectOk(await c.call("ValidateToken", { accessToken: token }))).toMatchObject(
      c === viaFetch ? { is_valid: true, user_id: l.user!.id } : { isValid: true, userId: l.user!.id },
    );
  });

  test("signed with another secret → Unauthenticated (signature)", async () => {
    const access = await tokenLike("access", l, OTHER_SECRET);
    const refresh = await tokenLike("refresh", l, OTHER_SECRET);
    expectRefused(await c.call("ListSessions", {}, bearer(access)), Code.Unauthenticated, /signature/);
    expectRefused(await c.call("LogoutAllDevices", { accessToken: access }), Code.Unauthenticated, /signature/);
    expectRefused(await c.call("RefreshToken", { refreshToken: refresh }), Code.Unauthenticated, /signature/);
    expectRefused(await c.call("RevokeCurrentDevice", { refreshToken: refresh }), Code.Unauthenticated, /signature/);
    expect(expectOk(await c.call("ValidateToken", { accessToken: access }))).toMatchObject(c === viaFetch ? { is_valid: false } : { isValid: false });
    // The session itself was not touched by any of it.
    expectOk(await c.call("ListSessions", {}, bearer(l.accessToken)));
  });

  test("validly signed, but issued in the future beyond the 60 s clock skew → Unauthenticated (iat); within it → accepted", async () => {
    const year = 365 * 86_400;
    const access = await tokenLike("access", l, TEST_JWT_SECRET, { iatOffset: year });
    const refresh = await tokenLike("refresh", l, TEST_JWT_SECRET, { iatOffset: year });
    expectRefused(await c.call("ListSessions", {}, bearer(access)), Code.Unauthenticated, /"iat" claim is in the future/);
    expectRefused(await c.call("LogoutAllDevices", { accessToken: access }), Code.Unauthenticated, /"iat" claim is in the future/);
    expectRefused(await c.call("RefreshToken", { refreshToken: refresh }), Code.Unauthenticated, /"iat" claim is in the future/);
    expectRefused(await c.call("RevokeCurrentDevice", { refreshToken: refresh }), Code.Unauthenticated, /"iat" claim is in the future/);
    expect(expectOk(await c.call("ValidateToken", { accessToken: access }))).toMatchObject(c === viaFetch ? { is_valid: false } : { isValid: false });
    // The edge: 61 s ahead is refused, 60 s (another instance's clock running ahead) is accepted.
    expectRefused(await c.call("ListSessions", {}, bearer(await tokenLike("access", l, TEST_JWT_SECRET, { iatOffset: 61 }))), Code.Unauthenticated, /iat/);
    expectOk(await c.call("ListSessions", {}, bearer(await tokenLike("access", l, TEST_JWT_SECRET, { iatOffset: 60 }))));
    // The session itself was not touched by any of it.
    expectOk(await c.call("ListSessions", {}, bearer(l.accessToken)));
  });

  test("validly signed with an nbf still ahead → Unauthenticated (not valid before) until then", async () => {
    const now = Math.floor(clock.now().getTime() / 1000);
    const access = await tokenLike("access", l, TEST_JWT_SECRET, { nbf: now + 300 });
    const refresh = await tokenLike("refresh", l, TEST_JWT_SECRET, { nbf: now + 300 });
    expectRefused(await c.call("ListSessions", {}, bearer(access)), Code.Unauthenticated, /not valid before/);
    expectRefused(await c.call("RefreshToken", { refreshToken: refresh }), Code.Unauthenticated, /not valid before/);
    expectOk(await c.call("ListSessions", {}, bearer(await tokenLike("access", l, TEST_JWT_SECRET, { nbf: now }))));
  });

  test("alg: none → Unauthenticated (not HS256)", async () => {
    const token = unsignedToken(l);
    expect(token.endsWith(".")).toBe(true);
    expectRefused(await c.call("ListSessions", {}, bearer(token)), Code.Unauthenticated, /HS256/);
    expectRefused(await c.call("LogoutAllDevices", { accessToken: token }), Code.Unauthenticated, /HS256/);
    expect(expectOk(await c.call("ValidateToken", { accessToken: token }))).toMatchObject(c === viaFetch ? { is_valid: false } : { isValid: false });
  });

  test("truncated tokens → Unauthenticated (signature / not a JWT)", async () => {
    const shortSignature = l.accessToken.slice(0, -5);
    const noSignature = l.accessToken.slice(0, l.accessToken.lastIndexOf("."));
    const half = l.accessToken.slice(0, Math.floor(l.accessToken.length / 2));
    expectRefused(await c.call("ListSessions", {}, bearer(shortSignature)), Code.Unauthenticated, /signature/);
    expectRefused(await c.call("ListSessions", {}, bearer(noSignature)), Code.Unauthenticated, /not a JWT/);
    expectRefused(await c.call("ListSessions", {}, bearer(half)), Code.Unauthenticated, /not a JWT/);
    expectRefused(await c.call("RefreshToken", { refreshToken: l.refreshToken.slice(0, -5) }), Code.Unauthenticated, /signature/);
    expectRefused(await c.call("RefreshToken", { refreshToken: "" }), Code.Unauthenticated, /no refresh token/);
    expectRefused(await c.call("ListSessions", {}, bearer("x".repeat(5000))), Code.Unauthenticated, /not a JWT/);
    expectRefused(await c.call("ListSessions", {}, bearer("a.b.c")), Code.Unauthenticated, /malformed/);
  });

  test("a refresh token as an access token, and an access token as a refresh token → Unauthenticated (wrong kind)", async () => {
    expectRefused(await c.call("ListSessions", {}, bearer(l.refreshToken)), Code.Unauthenticated, /not an access token/);
    expectRefused(await c.call("LogoutAllDevices", { accessToken: l.refreshToken }), Code.Unauthenticated, /not an access token/);
    expectRefused(await c.call("RefreshToken", { refreshToken: l.accessToken }), Code.Unauthenticated, /not a refresh token/);
    expectRefused(await c.call("RevokeCurrentDevice", { refreshToken: l.accessToken }), Code.Unauthenticated, /not a refresh token/);
    expect(expectOk(await c.call("ValidateToken", { accessToken: l.refreshToken }))).toMatchObject(
      c === viaFetch ? { is_valid: false, user_id: "" } : { isValid: false, userId: "" },
    );
    // Both tokens still work where they belong.
    expectOk(await c.call("ListSessions", {}, bearer(l.accessToken)));
  });

  test("missing or malformed Authorization header → Unauthenticated (missing / malformed)", async () => {
    expectRefused(await c.call("ListSessions", {}), Code.Unauthenticated, /missing Authorization/);
    expectRefused(await c.call("ListSessions", {}, { authorization: "" }), Code.Unauthenticated, /missing Authorization/);
    for (const header of ["Bearer", "Bearer ", `Token ${l.accessToken}`, `Basic dXNlcjpwYXNz`, `Bearer ${l.accessToken} extra`, l.accessToken]) {
      expectRefused(await c.call("ListSessions", {}, { authorization: header }), Code.Unauthenticated, /malformed Authorization|missing Authorization/);
    }
    expectRefused(await c.call("ListSessions", {}, { authorization: `Token ${l.accessToken}` }), Code.Unauthenticated, /malformed Authorization/);
    expectRefused(await c.call("RevokeSession", { sessionId: l.sessionId }, { authorization: "Bearer" }), Code.Unauthenticated, /malformed Authorization/);
    // The scheme is case-insensitive.
    expectOk(await c.call("ListSessions", {}, { authorization: `bearer ${l.accessToken}` }));
  });
});

// ---- never Internal --------------------------------------------------------------------------------

describe("never Internal or Unknown", () => {
  const transports: Array<[string, () => Transport]> = [
    ["gRPC", () => createGrpcTransport({ baseUrl: s.url })],
    ["gRPC-Web", () => createGrpcWebTransport({ baseUrl: s.url, httpVersion: "1.1" })],
    ["Connect binary", () => createConnectTransport({ baseUrl: s.url, httpVersion: "1.1", useBinaryFormat: true })],
  ];

  test.each(transports)("every bad request above, over %s, is refused with a specific code", async (_name, make) => {
    const client = createClient(AuthService, make());
    const l = await login();
    const otpPhone = freshNumber();
    await client.sendOTP({ phoneNumber: otpPhone });
    const h = (authorization: string) => ({ headers: { authorization } });
    const access = l.accessToken;
    const calls: Array<[string, () => Promise<unknown>]> = [
      ...BAD_PHONES.map(([what, phone]): [string, () => Promise<unknown>] => [`SendOTP ${what}`, () => client.sendOTP({ phoneNumber: phone })]),
      ...BAD_PHONES.map(([what, phone]): [string, () => Promise<unknown>] => [
        `VerifyOTP ${what}`,
        () => client.verifyOTP({ phoneNumber: phone, otpCode: DEV_CODE }),
      ]),
      ["VerifyOTP letters", () => client.verifyOTP({ phoneNumber: otpPhone, otpCode: "12a456" })],
      ["VerifyOTP wrong code", () => client.verifyOTP({ phoneNumber: otpPhone, otpCode: "000000" })],
      ["VerifyOTP long device_name", () => client.verifyOTP({ phoneNumber: otpPhone, otpCode: DEV_CODE, deviceName: "n".repeat(65) })],
      ["VerifyOTP long push_token", () => client.verifyOTP({ phoneNumber: otpPhone, otpCode: DEV_CODE, pushToken: "p".repeat(4097) })],
      ["VerifyOTP nothing pending", () => client.verifyOTP({ phoneNumber: freshNumber(), otpCode: DEV_CODE })],
      ["RefreshToken garbage", () => client.refreshToken({ refreshToken: "garbage" })],
      ["RefreshToken empty", () => client.refreshToken({ refreshToken: "" })],
      ["RefreshToken a.b.c", () => client.refreshToken({ refreshToken: "a.b.c" })],
      ["RefreshToken access", () => client.refreshToken({ refreshToken: access })],
      ["RefreshToken other secret", async () => client.refreshToken({ refreshToken: await tokenLike("refresh", l, OTHER_SECRET) })],
      ["RevokeCurrentDevice garbage", () => client.revokeCurrentDevice({ refreshToken: "garbage" })],
      ["LogoutAllDevices garbage", () => client.logoutAllDevices({ accessToken: "garbage" })],
      ["LogoutAllDevices alg none", () => client.logoutAllDevices({ accessToken: unsignedToken(l) })],
      ["ListSessions no bearer", () => client.listSessions({})],
      ["ListSessions other secret", async () => client.listSessions({}, h(`Bearer ${await tokenLike("access", l, OTHER_SECRET)}`))],
      ["ListSessions alg none", () => client.listSessions({}, h(`Bearer ${unsignedToken(l)}`))],
      ["ListSessions truncated", () => client.listSessions({}, h(`Bearer ${access.slice(0, -5)}`))],
      ["ListSessions refresh token", () => client.listSessions({}, h(`Bearer ${l.refreshToken}`))],
      ["ListSessions malformed header", () => client.listSessions({}, h("Token abc"))],
      ["RevokeSession malformed id", () => client.revokeSession({ sessionId: "nope" }, h(`Bearer ${access}`))],
      ["RevokeSession unknown id", () => client.revokeSession({ sessionId: randomUUID() }, h(`Bearer ${access}`))],
    ];
    const codes: Record<string, string> = {};
    for (const [name, call] of calls) {
      try {
        await call();
        codes[name] = "OK";
      } catch (err) {
        codes[name] = Code[ConnectError.from(err).code]!;
      }
    }
    const bad = Object.entries(codes).filter(([, code]) => code === "OK" || code === "Internal" || code === "Unknown");
    expect(bad).toEqual([]);
    // And ValidateToken answers (never fails) for every bad token.
    for (const token of ["", "garbage", "a.b.c", l.refreshToken, unsignedToken(l), access.slice(0, -5), await tokenLike("access", l, OTHER_SECRET)]) {
      expect((await client.validateToken({ accessToken: token })).isValid).toBe(false);
    }
  });

  test("malformed Connect JSON bodies are InvalidArgument, not a server error", async () => {
    const bodies = ["{", "[]", '{"phone_number": 12}', '{"phone_number": null, "otp_code": {}}', "null", '"+14155550100"'];
    for (const method of ["SendOTP", "VerifyOTP", "RefreshToken", "ValidateToken"]) {
      for (const body of bodies) {
        const res = await fetch(`${s.url}/auth.AuthService/${method}`, { method: "POST", headers: { "content-type": "application/json" }, body });
        const json = (await res.json()) as { code?: string; message?: string };
        expect(res.status, `${method} ${body}`).toBeLessThan(500);
        expect(String(json.code ?? "ok"), `${method} ${body}: ${json.message}`).not.toMatch(/internal|unknown/);
        // Not a JSON object at all: refused as such, whatever the method.
        if (["{", "[]", '"+14155550100"'].includes(body)) {
          expect([res.status, json.code], `${method} ${body}`).toEqual([400, "invalid_argument"]);
        }
      }
    }
  });
});
