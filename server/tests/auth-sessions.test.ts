import { createHash } from "node:crypto";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { AuthService, type VerifyOTPResponse } from "../../gen/auth/auth_pb.js";
import { FakeClock, startTestServer, type TestServer } from "./helpers/test-server.js";

// Sessions, token rotation and revocation, against a real server and database.
// The server runs on a FakeClock so expiry and the reuse grace are moved by hand.

const DEV_CODE = "123456";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

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

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

/** The ConnectError a call fails with; fails the test if the call succeeds. */
async function rejection(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail, it succeeded");
}

// One number per use: the limits count per number, and every test wants a clean slate.
let nextNumber = 100;
const freshNumber = () => `+1415555${String(nextNumber++).padStart(4, "0")}`;

interface Device {
  deviceId: string;
  deviceName: string;
  deviceType: string;
}
let nextDevice = 1;
const device = (name = `Device ${nextDevice}`, type = "ios"): Device => ({ deviceId: `dev-${nextDevice++}`, deviceName: name, deviceType: type });

/** SendOTP + VerifyOTP with the dev code. Moves the clock past the 30 s resend limit first. */
async function login(phone: string, dev: Device = device(), client = auth): Promise<VerifyOTPResponse> {
  clock.advance(31_000);
  await client.sendOTP({ phoneNumber: phone });
  return client.verifyOTP({ phoneNumber: phone, otpCode: DEV_CODE, ...dev });
}

const ms = (t: Timestamp | undefined) => timestampDate(t!).getTime();

/** The stored refresh token hash of a session, read straight from the database. */
async function storedRefreshHash(sessionId: string): Promise<string | null> {
  const row = await s.server.ctx.database.db.selectFrom("user_devices").select("refresh_token_hash").where("id", "=", sessionId).executeTakeFirstOrThrow();
  return row.refresh_token_hash;
}
const sha256 = (token: string) => createHash("sha256").update(token).digest("hex");

describe("login", () => {
  test("creates the user once; each login opens a new session with 15 min / 7 day tokens", async () => {
    const phone = freshNumber();
    const first = await login(phone, device("Ayşe's iPhone", "ios"));
    const issuedAt = Math.floor(clock.now().getTime() / 1000) * 1000;
    expect(first.isNewUser).toBe(true);
    expect(first.user?.id).toMatch(UUID);
    expect(first.user?.phoneNumber).toBe(phone);
    expect(first.sessionId).toMatch(UUID);
    expect(first.accessToken.split(".")).toHaveLength(3);
    expect(first.refreshToken.split(".")).toHaveLength(3);
    expect(first.refreshToken).not.toBe(first.accessToken);
    expect(Math.abs(ms(first.accessTokenExpiresAt) - (issuedAt + 15 * 60_000))).toBeLessThanOrEqual(2000);
    expect(Math.abs(ms(first.refreshTokenExpiresAt) - (issuedAt + 7 * 24 * 3600_000))).toBeLessThanOrEqual(2000);

    const second = await login(phone, device("Ayşe's iPad", "ios"));
    expect(second.isNewUser).toBe(false);
    expect(second.user?.id).toBe(first.user?.id);
    expect(second.sessionId).toMatch(UUID);
    expect(second.sessionId).not.toBe(first.sessionId);
    expect(second.refreshToken).not.toBe(first.refreshToken);

    // The same number written the way people type it is the same user.
    const digits = phone.slice(2);
    const third = await login(`+1 (${digits.slice(0, 3)}) ${digits.slice(3, 6)}-${digits.slice(6)}`, device("Laptop", "web"));
    expect(third.isNewUser).toBe(false);
    expect(third.user?.id).toBe(first.user?.id);
    expect(third.user?.phoneNumber).toBe(phone);

    const ids = new Set([first.sessionId, second.sessionId, third.sessionId]);
    expect(ids.size).toBe(3);
    const listed = await auth.listSessions({}, bearer(third.accessToken));
    expect(new Set(listed.sessions.map((x) => x.sessionId))).toEqual(ids);
  });
});

describe("ValidateToken", () => {
  test("true with the user id for a fresh access token", async () => {
    const l = await login(freshNumber());
    expect(await auth.validateToken({ accessToken: l.accessToken })).toMatchObject({ isValid: true, userId: l.user!.id });
  });

  test("false with an empty user id (never an error) for garbage, a refresh token, and after revocation", async () => {
    const l = await login(freshNumber());
    for (const token of ["", "garbage", "a.b.c", l.refreshToken]) {
      const res = await auth.validateToken({ accessToken: token });
      expect(res.isValid, token).toBe(false);
      expect(res.userId, token).toBe("");
    }
    expect((await auth.validateToken({ accessToken: l.accessToken })).isValid).toBe(true);
    expect((await auth.revokeCurrentDevice({ refreshToken: l.refreshToken })).success).toBe(true);
    expect(await auth.validateToken({ accessToken: l.accessToken })).toMatchObject({ isValid: false, userId: "" });
  });
});

describe("refresh token rotation", () => {
  test("a refresh gives a new pair; the replaced token presented after the grace revokes the whole session", async () => {
    const l = await login(freshNumber());
    const r1 = await auth.refreshToken({ refreshToken: l.refreshToken });
    expect(r1.sessionId).toBe(l.sessionId);
    expect(r1.refreshToken).not.toBe(l.refreshToken);
    expect(r1.accessToken).not.toBe(l.accessToken);
    expect((await auth.validateToken({ accessToken: r1.accessToken })).isValid).toBe(true);
    expect(await storedRefreshHash(l.sessionId)).toBe(sha256(r1.refreshToken));

    clock.advance(6_000); // past REFRESH_REUSE_GRACE_SECONDS (at most 5)
    const reuse = await rejection(auth.refreshToken({ refreshToken: l.refreshToken }));
    expect(reuse.code).toBe(Code.Unauthenticated);
    expect(reuse.rawMessage).toMatch(/already used/);

    // Theft assumed: the newest token of the session is dead too, and so is its access token.
    const newest = await rejection(auth.refreshToken({ refreshToken: r1.refreshToken }));
    expect(newest.code).toBe(Code.Unauthenticated);
    expect(newest.rawMessage).toMatch(/revoked/);
    const list = await rejection(auth.listSessions({}, bearer(r1.accessToken)));
    expect(list.code).toBe(Code.Unauthenticated);
    expect(list.rawMessage).toMatch(/revoked/);
    expect((await auth.validateToken({ accessToken: r1.accessToken })).isValid).toBe(false);
    expect((await auth.validateToken({ accessToken: l.accessToken })).isValid).toBe(false);
  });

  test("a retry with the just-replaced token inside the grace gets the same refresh token; the session lives on", async () => {
    const l = await login(freshNumber());
    const rotated = await auth.refreshToken({ refreshToken: l.refreshToken });
    clock.advance(3_000); // a lost response, retried within the grace
    const retried = await auth.refreshToken({ refreshToken: l.refreshToken });
    expect(retried.refreshToken).toBe(rotated.refreshToken);
    expect(retried.sessionId).toBe(l.sessionId);
    expect(ms(retried.refreshTokenExpiresAt)).toBe(ms(rotated.refreshTokenExpiresAt));
    expect((await auth.validateToken({ accessToken: retried.accessToken })).isValid).toBe(true);

    const next = await auth.refreshToken({ refreshToken: retried.refreshToken });
    expect(next.refreshToken).not.toBe(retried.refreshToken);
    const listed = await auth.listSessions({}, bearer(next.accessToken));
    expect(listed.sessions.map((x) => x.sessionId)).toEqual([l.sessionId]);
  });

  test("10 concurrent refreshes with one token: one new token for all, and the session stays live", async () => {
    const l = await login(freshNumber());
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => auth.refreshToken({ refreshToken: l.refreshToken })));
    const ok = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    const failed = results.flatMap((r) => (r.status === "rejected" ? [ConnectError.from(r.reason)] : []));
    expect(failed.map((e) => e.message)).toEqual([]);
    expect(ok).toHaveLength(10);
    const tokens = new Set(ok.map((r) => r.refreshToken));
    expect(tokens.size).toBe(1);
    const [token] = [...tokens] as [string];
    expect(token).not.toBe(l.refreshToken);
    // Exactly one current token: the one everybody got.
    expect(await storedRefreshHash(l.sessionId)).toBe(sha256(token));

    const next = await auth.refreshToken({ refreshToken: token });
    expect(next.sessionId).toBe(l.sessionId);
    const listed = await auth.listSessions({}, bearer(next.accessToken));
    expect(listed.sessions.map((x) => x.sessionId)).toEqual([l.sessionId]);
  });
});

describe("revocation", () => {
  test("RevokeCurrentDevice ends that session at once and leaves the user's others alone", async () => {
    const phone = freshNumber();
    const mine = await login(phone, device("Phone"));
    const other = await login(phone, device("Tablet"));
    // Warm the session cache: the revocation must not wait for it to expire.
    await auth.listSessions({}, bearer(mine.accessToken));

    expect(await auth.revokeCurrentDevice({ refreshToken: mine.refreshToken })).toEqual(expect.objectContaining({ success: true }));

    expect((await rejection(auth.refreshToken({ refreshToken: mine.refreshToken }))).code).toBe(Code.Unauthenticated);
    const refused = await rejection(auth.listSessions({}, bearer(mine.accessToken)));
    expect(refused.code).toBe(Code.Unauthenticated);
    expect(refused.rawMessage).toMatch(/revoked/);
    expect((await auth.validateToken({ accessToken: mine.accessToken })).isValid).toBe(false);

    const listed = await auth.listSessions({}, bearer(other.accessToken));
    expect(listed.sessions.map((x) => x.sessionId)).toEqual([other.sessionId]);
    expect((await auth.refreshToken({ refreshToken: other.refreshToken })).sessionId).toBe(other.sessionId);
  });

  test("RevokeCurrentDevice refuses a refresh token replaced longer ago than the grace; the newest works", async () => {
    const mine = await login(freshNumber());
    const rotated = await auth.refreshToken({ refreshToken: mine.refreshToken });
    clock.advance(6_000);
    const stale = await rejection(auth.revokeCurrentDevice({ refreshToken: mine.refreshToken }));
    expect(stale.code).toBe(Code.Unauthenticated);
    expect(stale.rawMessage).toMatch(/newer/);
    expect((await auth.listSessions({}, bearer(rotated.accessToken))).sessions).toHaveLength(1);
    expect((await auth.revokeCurrentDevice({ refreshToken: rotated.refreshToken })).success).toBe(true);
    expect((await rejection(auth.listSessions({}, bearer(rotated.accessToken)))).code).toBe(Code.Unauthenticated);
  });

  test("LogoutAllDevices ends every session of that user and no one else's", async () => {
    const phone = freshNumber();
    const a1 = await login(phone);
    const a2 = await login(phone);
    const bystander = await login(freshNumber());
    await auth.listSessions({}, bearer(a2.accessToken));

    expect((await auth.logoutAllDevices({ accessToken: a1.accessToken })).success).toBe(true);

    for (const l of [a1, a2]) {
      expect((await rejection(auth.listSessions({}, bearer(l.accessToken)))).code).toBe(Code.Unauthenticated);
      expect((await rejection(auth.refreshToken({ refreshToken: l.refreshToken }))).code).toBe(Code.Unauthenticated);
      expect((await auth.validateToken({ accessToken: l.accessToken })).isValid).toBe(false);
    }
    // A second LogoutAllDevices with a token that logout ended is a retry: it succeeds and does nothing.
    expect((await auth.logoutAllDevices({ accessToken: a2.accessToken })).success).toBe(true);

    expect((await auth.listSessions({}, bearer(bystander.accessToken))).sessions.map((x) => x.sessionId)).toEqual([bystander.sessionId]);
    expect(await auth.validateToken({ accessToken: bystander.accessToken })).toMatchObject({ isValid: true, userId: bystander.user!.id });
    expect((await auth.refreshToken({ refreshToken: bystander.refreshToken })).sessionId).toBe(bystander.sessionId);
  });
});

describe("ListSessions and RevokeSession", () => {
  test("lists my live sessions, most recently active first, with exactly one current", async () => {
    const phone = freshNumber();
    const phoneSession = await login(phone, device("Ayşe's iPhone", "ios"));
    const phoneLoginAt = clock.now().getTime();
    const laptop = await login(phone, device("Work laptop", "web"));
    const stranger = await login(freshNumber(), device("Stranger's phone", "android"));

    const { sessions } = await auth.listSessions({}, bearer(laptop.accessToken));
    expect(sessions.map((x) => x.sessionId)).toEqual([laptop.sessionId, phoneSession.sessionId]);
    expect(sessions.map((x) => [x.deviceName, x.deviceType])).toEqual([
      ["Work laptop", "web"],
      ["Ayşe's iPhone", "ios"],
    ]);
    expect(sessions.filter((x) => x.current).map((x) => x.sessionId)).toEqual([laptop.sessionId]);
    for (const x of sessions) {
      expect(x.deviceId).toMatch(/^dev-\d+$/);
      expect(ms(x.createdAt)).toBeGreaterThan(0);
      expect(ms(x.lastActiveAt)).toBeGreaterThanOrEqual(ms(x.createdAt));
      expect(ms(x.lastActiveAt)).toBeLessThanOrEqual(clock.now().getTime());
    }
    expect(ms(sessions[1]!.createdAt)).toBe(phoneLoginAt);

    // The other session sees itself as current.
    const fromPhone = await auth.listSessions({}, bearer(phoneSession.accessToken));
    expect(fromPhone.sessions.filter((x) => x.current).map((x) => x.sessionId)).toEqual([phoneSession.sessionId]);

    // A refresh is activity: the phone moves to the top.
    clock.advance(1_000);
    await auth.refreshToken({ refreshToken: phoneSession.refreshToken });
    expect((await auth.listSessions({}, bearer(laptop.accessToken))).sessions.map((x) => x.sessionId)).toEqual([phoneSession.sessionId, laptop.sessionId]);

    // Revoking another of my sessions (a lost phone): gone from the list, its token refused.
    expect((await auth.revokeSession({ sessionId: phoneSession.sessionId }, bearer(laptop.accessToken))).success).toBe(true);
    expect((await auth.listSessions({}, bearer(laptop.accessToken))).sessions.map((x) => x.sessionId)).toEqual([laptop.sessionId]);
    expect((await rejection(auth.listSessions({}, bearer(phoneSession.accessToken)))).code).toBe(Code.Unauthenticated);
    // Revoking it again is still a success (it is revoked).
    expect((await auth.revokeSession({ sessionId: phoneSession.sessionId }, bearer(laptop.accessToken))).success).toBe(true);

    // Someone else's session, or one that does not exist: NotFound, and the stranger is untouched.
    const theirs = await rejection(auth.revokeSession({ sessionId: stranger.sessionId }, bearer(laptop.accessToken)));
    expect(theirs.code).toBe(Code.NotFound);
    expect(theirs.rawMessage).toMatch(/session_id/);
    expect((await auth.listSessions({}, bearer(stranger.accessToken))).sessions.map((x) => x.sessionId)).toEqual([stranger.sessionId]);
    const unknown = await rejection(auth.revokeSession({ sessionId: "00000000-0000-4000-8000-000000000000" }, bearer(laptop.accessToken)));
    expect(unknown.code).toBe(Code.NotFound);

    for (const bad of ["", "not-a-session", "00000000-0000-4000-8000-00000000000", "'; drop table user_devices; --"]) {
      const err = await rejection(auth.revokeSession({ sessionId: bad }, bearer(laptop.accessToken)));
      expect(err.code, bad).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toMatch(/session_id/);
    }
  });

  test("need a bearer token", async () => {
    const l = await login(freshNumber());
    for (const call of [() => auth.listSessions({}), () => auth.revokeSession({ sessionId: l.sessionId })]) {
      const err = await rejection(call());
      expect(err.code).toBe(Code.Unauthenticated);
      expect(err.rawMessage).toMatch(/Authorization/);
    }
    // The session is still there: the unauthenticated RevokeSession did nothing.
    expect((await auth.listSessions({}, bearer(l.accessToken))).sessions.map((x) => x.sessionId)).toEqual([l.sessionId]);
  });
});

describe("access token expiry", () => {
  test("after 15 minutes the access token is refused as expired; the refresh token still works", async () => {
    const l = await login(freshNumber());
    await auth.listSessions({}, bearer(l.accessToken));
    clock.advance(16 * 60_000);

    const err = await rejection(auth.listSessions({}, bearer(l.accessToken)));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toMatch(/expired/);
    expect(await auth.validateToken({ accessToken: l.accessToken })).toMatchObject({ isValid: false, userId: "" });

    const r = await auth.refreshToken({ refreshToken: l.refreshToken });
    expect(r.sessionId).toBe(l.sessionId);
    expect((await auth.validateToken({ accessToken: r.accessToken })).isValid).toBe(true);
    expect((await auth.listSessions({}, bearer(r.accessToken))).sessions.map((x) => x.sessionId)).toEqual([l.sessionId]);
  });
});

describe("revocation across instances", () => {
  test("a session revoked on one instance is refused by another with a warm cache, through the bus", async () => {
    // Same database and bus (NATS when NATS_URL is set); the default 30 s session cache.
    const b = await startTestServer({}, { shareWith: s, clock });
    try {
      const onB = clientFor(b);
      const l = await login(freshNumber());
      // Logged in on a, used on b: b caches the session as live.
      expect((await onB.listSessions({}, bearer(l.accessToken))).sessions.map((x) => x.sessionId)).toEqual([l.sessionId]);
      expect((await onB.validateToken({ accessToken: l.accessToken })).isValid).toBe(true);

      expect((await auth.revokeCurrentDevice({ refreshToken: l.refreshToken })).success).toBe(true);

      let last: ConnectError | undefined;
      const deadline = Date.now() + 2_000;
      while (Date.now() < deadline) {
        try {
          await onB.listSessions({}, bearer(l.accessToken));
        } catch (err) {
          last = ConnectError.from(err);
          break;
        }
        await new Promise((r) => setTimeout(r, 25));
      }
      expect(last?.code).toBe(Code.Unauthenticated);
      expect(last?.rawMessage).toMatch(/revoked/);
      expect((await onB.validateToken({ accessToken: l.accessToken })).isValid).toBe(false);
    } finally {
      await b.stop();
    }
  });
});

describe("session checks in a burst", () => {
  test("many concurrent checks of uncached sessions are answered each for its own session (revoked ones refused)", async () => {
    const logins = [];
    for (let i = 0; i < 8; i++) logins.push(await login(freshNumber()));
    // Revoked behind this instance's back (its cache has not seen these sessions yet).
    const revoked = new Set([logins[1]!.sessionId, logins[4]!.sessionId, logins[6]!.sessionId]);
    await s.server.ctx.database.db
      .updateTable("user_devices")
      .set({ revoked_at: clock.now() })
      .where("id", "in", [...revoked])
      .execute();
    const answers = await Promise.all(logins.map((l) => auth.validateToken({ accessToken: l.accessToken })));
    expect(answers.map((a) => a.isValid)).toEqual(logins.map((l) => !revoked.has(l.sessionId)));
    expect(answers.filter((a) => a.isValid).map((a) => a.userId)).toEqual(logins.filter((l) => !revoked.has(l.sessionId)).map((l) => l.user!.id));
  });
});
