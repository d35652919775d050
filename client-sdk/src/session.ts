import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client, type Interceptor } from "@connectrpc/connect";
import type { AuthService } from "../../gen/auth/auth_pb.js";
import { jwtExpiry, type TokenStore, type Tokens } from "./tokens.js";

// AuthService calls that authenticate with their own request fields, not a bearer token.
const PUBLIC_AUTH_METHODS = new Set(["SendOTP", "VerifyOTP", "ValidateToken", "RefreshToken", "RevokeCurrentDevice", "LogoutAllDevices"]);

export interface SessionEvents {
  onTokens(tokens: Tokens | null, reason: "login" | "refresh" | "logout" | "expired"): void;
}

/** Expiry of a token from the response's timestamp, else from the JWT itself. */
export function expiryOf(ts: Timestamp | undefined, token: string): number {
  return ts ? timestampMs(ts) : jwtExpiry(token);
}

/**
 * Owns the tokens: hands out a fresh access token, and refreshes it once for
 * everyone (single flight) when it is near expiry or the server refused it.
 */
export class Session {
  #inflight: Promise<Tokens> | undefined;

  constructor(
    readonly store: TokenStore,
    /** AuthService without the bearer interceptor (RefreshToken is public). */
    private readonly auth: Client<typeof AuthService>,
    private readonly marginMs: number,
    private readonly events: SessionEvents,
  ) {}

  async set(tokens: Tokens | null, reason: "login" | "logout"): Promise<void> {
    await this.store.set(tokens);
    this.events.onTokens(tokens, reason);
  }

  /** The tokens to call with, refreshed first when the access token is about to expire. */
  async current(): Promise<Tokens> {
    const t = await this.store.get();
    if (!t) throw new ConnectError("not logged in: call auth.verify(phone, code) first", Code.Unauthenticated);
    if (t.accessTokenExpiresAt && t.accessTokenExpiresAt - Date.now() < this.marginMs) {
      try {
        return await this.refresh(t.accessToken);
      } catch (err) {
        // A network failure while the old token still works should not fail the call.
        if (ConnectError.from(err).code !== Code.Unauthenticated && t.accessTokenExpiresAt > Date.now()) return t;
        throw err;
      }
    }
    return t;
  }

  /**
   * One refresh for all callers. `stale` is the access token that was refused
   * or is expiring: when the store already holds another one (a concurrent
   * refresh, another tab), that one is returned without calling the server.
   */
  refresh(stale?: string): Promise<Tokens> {
    this.#inflight ??= this.#refresh(stale).finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  async #refresh(stale: string | undefined): Promise<Tokens> {
    const t = await this.store.get();
    if (!t) throw new ConnectError("not logged in", Code.Unauthenticated);
    if (stale !== undefined && t.accessToken !== stale) return t;
    try {
      const res = await this.auth.refreshToken({ refreshToken: t.refreshToken });
      const next: Tokens = {
        ...t,
        accessToken: res.accessToken,
        refreshToken: res.refreshToken,
        sessionId: res.sessionId || t.sessionId,
        accessTokenExpiresAt: expiryOf(res.accessTokenExpiresAt, res.accessToken),
        refreshTokenExpiresAt: expiryOf(res.refreshTokenExpiresAt, res.refreshToken),
      };
      await this.store.set(next);
      this.events.onTokens(next, "refresh");
      return next;
    } catch (err) {
      const ce = ConnectError.from(err);
      if (ce.code === Code.Unauthenticated || ce.code === Code.InvalidArgument) {
        // Another tab sharing the store may have rotated the token meanwhile.
        const again = await this.store.get();
        if (again && again.refreshToken !== t.refreshToken) return again;
        await this.store.set(null);
        this.events.onTokens(null, "expired");
        throw new ConnectError(`session ended: ${ce.rawMessage}`, Code.Unauthenticated, undefined, undefined, ce);
      }
      throw ce;
    }
  }

  /**
   * Sets `Authorization: Bearer` on every call that needs it; a unary call the
   * server answers with Unauthenticated is retried once after a refresh.
   * (A stream's refusal arrives while it is read; Subscription handles it.)
   */
  interceptor(): Interceptor {
    return (next) => async (req) => {
      if (req.method.parent.typeName === "auth.AuthService" && PUBLIC_AUTH_METHODS.has(req.method.name)) return next(req);
      const tokens = await this.current();
      req.header.set("authorization", `Bearer ${tokens.accessToken}`);
      if (req.stream) return next(req);
      try {
        return await next(req);
      } catch (err) {
        if (ConnectError.from(err).code !== Code.Unauthenticated) throw err;
        const fresh = await this.refresh(tokens.accessToken);
        req.header.set("authorization", `Bearer ${fresh.accessToken}`);
        return await next(req);
      }
    };
  }
}
