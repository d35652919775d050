import { create } from "@bufbuild/protobuf";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import type { Counter } from "prom-client";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { type AuthService, SessionSchema, UserSchema, type User as UserMessage } from "../../gen/auth/auth_pb.js";
import { peerKey } from "../auth/auth-context.js";
import { RateLimitedError, enforceLimits } from "../auth/limits.js";
import { OtpProviderError, maskPhone } from "../auth/otp-provider.js";
import { InvalidPhoneNumberError, normalizePhoneNumber } from "../auth/phone.js";
import { TokenError, TokenService, hashToken, type TokenClaims } from "../auth/tokens.js";
import type { AppContext } from "../context.js";
import * as store from "../db/auth-store.js";
import { deleteRegistrations, upsertRegistration } from "../db/push-store.js";
import type { User, UserDevice } from "../db/schema.js";
import { isUuid } from "../domain/ids.js";
import { codePoints } from "../domain/text.js";
import { callerOf } from "./rpc-input.js";
import { requestIdField } from "./request-replay.js";
import { userFields } from "../domain/user-view.js";
import { accountHandlers } from "./account.js";

/** How long after a successful VerifyOTP a repeat of it (a lost answer) gets that session. */
const VERIFY_REPLAY_MS = 60_000;

/** auth.AuthService: the original six RPCs, wire-compatible, plus ListSessions and RevokeSession. */
export function createAuthService(ctx: AppContext): ServiceImpl<typeof AuthService> {
  const { database, clock, logger, auth } = ctx;
  const { tokens, guard, otp } = auth;
  const cfg = ctx.config.auth;
  const db = database.db;

  const phoneOf = (raw: string, field = "phone_number"): string => {
    try {
      return normalizePhoneNumber(raw);
    } catch (err) {
      if (err instanceof InvalidPhoneNumberError) throw new ConnectError(`${field}: ${err.message}`, Code.InvalidArgument);
      throw err;
    }
  };

  /** Issues an access token and returns the pair with expiries. */
  async function pair(userId: string, sessionId: string, refresh: TokenClaims) {
    const access = tokens.claimsFor("access", userId, sessionId);
    return {
      accessToken: await tokens.sign("access", access),
      refreshToken: await tokens.sign("refresh", refresh),
      sessionId,
      accessTokenExpiresAt: timestampFromDate(access.expiresAt),
      refreshTokenExpiresAt: timestampFromDate(refresh.expiresAt),
    };
  }

  async function verifyOrUnauthenticated(kind: "access" | "refresh", token: string): Promise<TokenClaims> {
    try {
      return await tokens.verify(kind, token);
    } catch (err) {
      if (err instanceof TokenError) throw new ConnectError(`${kind}_token: ${err.message}`, Code.Unauthenticated);
      throw err;
    }
  }

  /**
   * After a revocation committed: every instance forgets the sessions (their
   * streams end), and the user's other devices get a session_revoked event.
   */
  async function revoked(userId: string, sessionIds: string[]): Promise<void> {
    guard.revoked(sessionIds);
    // Their push registrations die with them (delivery skips revoked sessions anyway).
    await deleteRegistrations(db, sessionIds).catch((err: unknown) => logger.warn({ err, userId, sessionIds }, "removing push registrations failed"));
    await ctx.realtime
      .sessionsRevoked(userId, sessionIds)
      .catch((err: unknown) => logger.warn({ err, userId, sessionIds }, "storing session_revoked events failed"));
  }

  /**
   * A repeat of a successful VerifyOTP (same number, code and device id, within
   * VERIFY_REPLAY_MS): the session that call opened, with its current refresh
   * token rebuilt from the stored claims (signing is deterministic; nothing is
   * rotated, so reuse detection sees no old token) and a fresh access token.
   * Anything else presenting a used code is refused as before.
   */
  async function replay(used: { session_id: string | null; replay_mac: string | null; new_user: boolean }, replayMac: string) {
    if (!used.session_id || !used.replay_mac || !TokenService.sameMac(used.replay_mac, replayMac)) {
      throw new ConnectError("this code has already been used; request a new one with SendOTP", Code.FailedPrecondition);
    }
    const session = await store.getSession(db, used.session_id);
    const user = session && (await store.getUser(db, session.user_id));
    if (!session || !user || session.revoked_at || !session.refresh_token_jti || !session.refresh_issued_at || !session.refresh_expires_at) {
      throw new ConnectError("the session this code opened has ended; request a new code with SendOTP", Code.FailedPrecondition);
    }
    const tokensOut = await pair(user.id, session.id, {
      userId: user.id,
      sessionId: session.id,
      jti: session.refresh_token_jti,
      issuedAt: session.refresh_issued_at,
      expiresAt: session.refresh_expires_at,
    });
    if (hashToken(tokensOut.refreshToken) !== session.refresh_token_hash) {
      throw new ConnectError("the session this code opened has moved on; request a new code with SendOTP", Code.FailedPrecondition);
    }
    logger.info({ userId: user.id, sessionId: session.id }, "login repeated (lost answer): same session");
    return { user: userMessage(user), isNewUser: used.new_user, ...tokensOut };
  }

  const handlers: Omit<ServiceImpl<typeof AuthService>, "deleteAccount" | "exportAccountData"> = {
    async sendOTP(req, hc) {
      const phone = phoneOf(req.phoneNumber);
      const now = clock.now();
      const requestId = requestIdField(req.clientRequestId);
      const sent = {
        message: "OTP sent successfully",
        retryAfterSeconds: cfg.otpResendSeconds,
        expiresInSeconds: cfg.otpTtlSeconds,
        attemptsLeft: cfg.otpMaxAttempts,
      };
      if (requestId) {
        // A retry of the send that issued the pending code: its answer again, no second SMS.
        const pending = await store.getOtp(db, phone);
        if (pending && pending.send_request_id === requestId && pending.session_id === null && pending.expires_at > now) return sent;
      }
      const giveBack = await limited(() =>
        enforceLimits(
          db,
          [
            { key: `otp:resend:${phone}`, limit: 1, windowSeconds: cfg.otpResendSeconds, what: "a code was just sent to this number" },
            {
              key: `otp:window:${phone}`,
              limit: cfg.otpSendsPerWindow,
              windowSeconds: cfg.otpSendWindowSeconds,
              what: "too many codes requested for this number",
            },
            {
              key: `otp:ip:${hc.values.get(peerKey)}`,
              limit: cfg.otpSendsPerIpPerHour,
              windowSeconds: 3600,
              what: "too many codes requested from this address",
            },
          ],
          now,
        ),
      );
      try {
        await providerCall(() => otp.send(phone));
      } catch (err) {
        // No SMS went out: the client may try again at once.
        await giveBack();
        throw err;
      }
      await store.issueOtp(db, phone, new Date(now.getTime() + cfg.otpTtlSeconds * 1000), cfg.otpMaxAttempts, now, requestId ?? null);
      logger.info({ phone: maskPhone(phone), provider: otp.name }, "otp sent");
      return sent;
    },

    async verifyOTP(req, hc) {
      const phone = phoneOf(req.phoneNumber);
      const code = req.otpCode.trim();
      if (!/^\d{4,10}$/.test(code)) throw new ConnectError("otp_code: must be the digits of the code received by SMS", Code.InvalidArgument);
      checkLength("device_id", req.deviceId, 128);
      checkLength("device_name", req.deviceName, 64);
      checkLength("device_type", req.deviceType, 32);
      checkLength("push_token", req.pushToken, 4096);
      const now = clock.now();

      const attempt = await store.claimOtpAttempt(db, phone, now);
      if (!attempt) {
        const pending = await store.getOtp(db, phone);
        if (pending && pending.expires_at > now) {
          throw new ConnectError("too many wrong codes: this code is dead; request a new one with SendOTP", Code.ResourceExhausted);
        }
        throw new ConnectError(
          pending ? "the code has expired; request a new one with SendOTP" : "no code is pending for this number; call SendOTP first",
          Code.FailedPrecondition,
        );
      }
      const attemptsLeft = attempt.max_attempts - attempt.attempts;
      const deviceId = req.deviceId.trim();
      const replayMac = tokens.mac("chatwire verify-otp replay", phone, code, deviceId);
      // A used code is not asked of the provider again (Twilio refuses it): only a repeat of that call passes.
      if (attempt.session_id !== null) return replay(attempt, replayMac);
      const ok = await providerCall(() => otp.check(phone, code));
      if (!ok) {
        hc.responseHeader.set("attempts-left", String(attemptsLeft));
        throw new ConnectError(
          attemptsLeft > 0 ? `wrong code; ${attemptsLeft} attempt(s) left` : "wrong code; no attempts left, request a new code with SendOTP",
          Code.Unauthenticated,
          { "attempts-left": String(attemptsLeft) },
        );
      }

      const done = await db.transaction().execute(async (trx) => {
        const row = await store.lockOtp(trx, phone);
        // A concurrent call with the code won: this one is a repeat of it, or refused.
        if (row && row.session_id !== null) return { used: true as const, row };
        const { user, created } = await store.findOrCreateUser(trx, phone);
        const session = await store.createSession(trx, {
          userId: user.id,
          deviceId,
          deviceName: req.deviceName.trim(),
          deviceType: req.deviceType.trim().toLowerCase(),
          pushToken: req.pushToken.trim(),
          now,
        });
        // The original API's push_token: an FCM registration for the new session.
        const pushToken = req.pushToken.trim();
        if (pushToken)
          await upsertRegistration(trx, {
            sessionId: session.id,
            userId: user.id,
            platform: "fcm",
            token: pushToken,
            apnsSandbox: false,
            p256dh: "",
            auth: "",
            now,
          });
        const refresh = tokens.claimsFor("refresh", user.id, session.id);
        const token = await tokens.sign("refresh", refresh);
        await store.setRefreshToken(trx, session.id, { hash: hashToken(token), jti: refresh.jti, issuedAt: refresh.issuedAt, expiresAt: refresh.expiresAt });
        // The code is spent, but for VERIFY_REPLAY_MS a repeat of this very call gets this session.
        await store.markOtpUsed(trx, phone, {
          sessionId: session.id,
          replayMac,
          newUser: created,
          expiresAt: new Date(now.getTime() + VERIFY_REPLAY_MS),
          maxAttempts: cfg.otpMaxAttempts,
        });
        return { used: false as const, user, created, session, refresh };
      });
      if (done.used) return replay(done.row, replayMac);
      const { user, created, session, refresh } = done;
      logger.info({ userId: user.id, sessionId: session.id, newUser: created }, "login");
      return { user: userMessage(user), isNewUser: created, ...(await pair(user.id, session.id, refresh)) };
    },

    async validateToken(req) {
      // Never an error for a bad token: that is what is_valid=false says.
      try {
        const claims = await tokens.verify("access", req.accessToken);
        if (await guard.isLive(claims.sessionId, claims.userId)) return { isValid: true, userId: claims.userId };
      } catch (err) {
        if (!(err instanceof TokenError)) throw err;
      }
      return { isValid: false, userId: "" };
    },

    async refreshToken(req) {
      const claims = await verifyOrUnauthenticated("refresh", req.refreshToken);
      const presented = hashToken(req.refreshToken);
      const now = clock.now();
      const next = tokens.claimsFor("refresh", claims.userId, claims.sessionId);
      const nextToken = await tokens.sign("refresh", next);
      const rotated = await store.rotateRefreshToken(
        db,
        claims.sessionId,
        presented,
        { hash: hashToken(nextToken), jti: next.jti, issuedAt: next.issuedAt, expiresAt: next.expiresAt },
        now,
      );
      if (rotated) return pair(claims.userId, claims.sessionId, next);

      const session = await store.getSession(db, claims.sessionId);
      if (!session || session.user_id !== claims.userId) throw new ConnectError("refresh_token: unknown session", Code.Unauthenticated);
      if (session.revoked_at) throw new ConnectError("refresh_token: the session has been revoked; log in again", Code.Unauthenticated);
      const inGrace =
        session.previous_refresh_token_hash === presented &&
        session.refresh_rotated_at !== null &&
        now.getTime() - session.refresh_rotated_at.getTime() <= cfg.refreshReuseGraceSeconds * 1000;
      if (inGrace && session.refresh_token_jti && session.refresh_issued_at && session.refresh_expires_at) {
        // A retry after a lost response: hand back the pair the rotation made, unchanged.
        return pair(claims.userId, claims.sessionId, {
          userId: session.user_id,
          sessionId: session.id,
          jti: session.refresh_token_jti,
          issuedAt: session.refresh_issued_at,
          expiresAt: session.refresh_expires_at,
        });
      }
      // A replaced token presented again after the grace: someone else holds a copy.
      if (await store.revokeSession(db, session.id, "refresh_token_reuse", now)) await revoked(session.user_id, [session.id]);
      logger.warn({ userId: session.user_id, sessionId: session.id }, "refresh token reuse detected; session revoked");
      throw new ConnectError("refresh_token: this refresh token was already used; the session has been revoked, log in again", Code.Unauthenticated);
    },

    async revokeCurrentDevice(req) {
      const claims = await verifyOrUnauthenticated("refresh", req.refreshToken);
      const session = await store.getSession(db, claims.sessionId);
      const presented = hashToken(req.refreshToken);
      if (!session || session.user_id !== claims.userId) throw new ConnectError("refresh_token: unknown session", Code.Unauthenticated);
      // The current token, or the one just replaced within the retry grace; older tokens are dead.
      const now = clock.now();
      const current =
        session.refresh_token_hash === presented ||
        (session.previous_refresh_token_hash === presented &&
          session.refresh_rotated_at !== null &&
          now.getTime() - session.refresh_rotated_at.getTime() <= cfg.refreshReuseGraceSeconds * 1000);
      if (session.revoked_at === null && !current) {
        throw new ConnectError("refresh_token: this refresh token was replaced by a newer one; use the newest", Code.Unauthenticated);
      }
      if (await store.revokeSession(db, session.id, "logout", now)) await revoked(session.user_id, [session.id]);
      return { success: true };
    },

    async logoutAllDevices(req) {
      const claims = await verifyOrUnauthenticated("access", req.accessToken);
      if (!(await guard.isLive(claims.sessionId, claims.userId))) {
        // A retry of the logout that ended this very session: done already.
        const own = await store.getSession(db, claims.sessionId);
        if (own?.user_id === claims.userId && own.revoked_reason === "logout_all") return { success: true };
        throw new ConnectError("access_token: the session has been revoked", Code.Unauthenticated);
      }
      const ids = await store.revokeUserSessions(db, claims.userId, "logout_all", clock.now());
      await revoked(claims.userId, ids);
      return { success: true };
    },

    async listSessions(_req, hc) {
      const caller = callerOf(hc);
      const rows = await store.listLiveSessions(db, caller.userId, clock.now());
      return { sessions: rows.map((r) => sessionMessage(r, caller.sessionId)) };
    },

    async revokeSession(req, hc) {
      const caller = callerOf(hc);
      const id = req.sessionId.trim();
      if (!isUuid(id)) throw new ConnectError("session_id: must be a session id from ListSessions", Code.InvalidArgument);
      if (await store.revokeSession(db, id, "revoked", clock.now(), caller.userId)) {
        await revoked(caller.userId, [id]);
        return { success: true };
      }
      const existing = await store.getSession(db, id);
      if (!existing || existing.user_id !== caller.userId) throw new ConnectError(`session_id: no session ${id} of yours`, Code.NotFound);
      return { success: true };
    },
  };
  // OTP outcomes by result (as on the wire), for dashboards: how many codes go out, how many logins succeed.
  return {
    ...handlers,
    ...accountHandlers(ctx, { verifyAccess: (t) => verifyOrUnauthenticated("access", t), providerCall, revoked }),
    sendOTP: countedBy(ctx.metrics.otpSends, handlers.sendOTP),
    verifyOTP: countedBy(ctx.metrics.otpChecks, handlers.verifyOTP),
  };
}

function checkLength(field: string, value: string, max: number): void {
  if (codePoints(value) > max) throw new ConnectError(`${field}: at most ${max} characters`, Code.InvalidArgument);
}

async function limited<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof RateLimitedError) {
      throw new ConnectError(err.message, Code.ResourceExhausted, { "retry-after": String(err.retryAfterSeconds) });
    }
    throw err;
  }
}

async function providerCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof OtpProviderError)) throw err;
    switch (err.kind) {
      case "invalid_number":
        throw new ConnectError("phone_number: the SMS provider rejected this number", Code.InvalidArgument);
      case "rate_limited": {
        const wait = err.retryAfterSeconds ?? 60;
        throw new ConnectError(`the SMS provider is limiting this number; try again in ${wait} s`, Code.ResourceExhausted, { "retry-after": String(wait) });
      }
      case "expired":
        throw new ConnectError("the code has expired; request a new one with SendOTP", Code.FailedPrecondition);
      case "unavailable":
        throw new ConnectError("the SMS provider is unavailable; try again shortly", Code.Unavailable, undefined, undefined, err);
    }
  }
}

function userMessage(u: User): UserMessage {
  return create(UserSchema, userFields(u));
}

function sessionMessage(r: UserDevice, currentSessionId: string) {
  return create(SessionSchema, {
    sessionId: r.id,
    deviceId: r.device_id,
    deviceName: r.device_name,
    deviceType: r.device_type,
    createdAt: timestampFromDate(r.created_at),
    lastActiveAt: timestampFromDate(r.last_active_at),
    current: r.id === currentSessionId,
  });
}

/** Wraps a unary handler so each call's outcome is counted: "ok" or the error's code as on the wire. */
function countedBy<Req, Res, Ctx>(counter: Counter<"result">, handler: (req: Req, ctx: Ctx) => Res | Promise<Res>): (req: Req, ctx: Ctx) => Promise<Res> {
  return async (req, hc) => {
    try {
      const res = await handler(req, hc);
      counter.inc({ result: "ok" });
      return res;
    } catch (err) {
      counter.inc({ result: codeToString(ConnectError.from(err).code) });
      throw err;
    }
  };
}
