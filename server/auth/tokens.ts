import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { SignJWT, errors as joseErrors, jwtVerify, type JWTPayload } from "jose";
import type { Clock } from "../clock.js";
import { isUuid } from "../domain/ids.js";

export type TokenKind = "access" | "refresh";

/** Why a token was refused; the auth edge turns it into an Unauthenticated message. */
export type TokenErrorReason = "malformed" | "bad_signature" | "expired" | "wrong_type" | "invalid_claims";

export class TokenError extends Error {
  constructor(
    readonly reason: TokenErrorReason,
    message: string,
  ) {
    super(message);
    this.name = "TokenError";
  }
}

export interface TokenClaims {
  userId: string;
  sessionId: string;
  jti: string;
  issuedAt: Date;
  expiresAt: Date;
}

export interface TokenSettings {
  accessTtlSeconds: number;
  refreshTtlSeconds: number;
}

const ISSUER = "chatwire";
// Different audiences and `typ` headers: an access token is never a refresh token, nor the reverse.
const AUDIENCE: Record<TokenKind, string> = { access: "chatwire-api", refresh: "chatwire-refresh" };
const TYP: Record<TokenKind, string> = { access: "at+jwt", refresh: "rt+jwt" };

const VERIFIED_CACHE_MAX = 10_000;
/**
 * How far in the future a token's `iat` may be: the clock difference allowed
 * between the instance that issued it and the one checking it (NTP keeps them
 * within milliseconds). Beyond it the token was not issued by a healthy
 * instance of this deployment and is refused. `nbf` we never set; when a token
 * carries one, jose refuses the token until that time.
 */
const MAX_CLOCK_SKEW_SECONDS = 60;

/** SHA-256 hex: what is stored of a refresh token. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/** JWTs signed HS256 with the server secret; the algorithm is pinned on verify. */
export class TokenService {
  private readonly key: Uint8Array;
  /**
   * Access tokens verified before, with their claims: every RPC presents one,
   * and HMAC through WebCrypto is a large part of a small call's cost. Same
   * answer as a full verify for the token's lifetime; expiry is checked on each hit.
   */
  private readonly verified = new Map<string, TokenClaims>();

  constructor(
    secret: string,
    readonly settings: TokenSettings,
    private readonly clock: Clock,
  ) {
    this.key = new TextEncoder().encode(secret);
  }

  /** Claims of a fresh token of `kind` for the session, starting now. */
  claimsFor(kind: TokenKind, userId: string, sessionId: string): TokenClaims {
    // Whole seconds: JWT times are NumericDate seconds, and stored claims must rebuild the same token.
    const issuedAt = new Date(Math.floor(this.clock.now().getTime() / 1000) * 1000);
    const ttl = kind === "access" ? this.settings.accessTtlSeconds : this.settings.refreshTtlSeconds;
    const jti = kind === "access" ? randomUUID() : randomBytes(16).toString("base64url");
    return { userId, sessionId, jti, issuedAt, expiresAt: new Date(issuedAt.getTime() + ttl * 1000) };
  }

  /**
   * Signs a token. Deterministic for the same claims (HS256, fixed claim
   * order), which lets a retried refresh return the very token it lost.
   */
  sign(kind: TokenKind, c: TokenClaims): Promise<string> {
    return new SignJWT({ sid: c.sessionId })
      .setProtectedHeader({ alg: "HS256", typ: TYP[kind] })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE[kind])
      .setSubject(c.userId)
      .setJti(c.jti)
      .setIssuedAt(Math.floor(c.issuedAt.getTime() / 1000))
      .setExpirationTime(Math.floor(c.expiresAt.getTime() / 1000))
      .sign(this.key);
  }

  /**
   * HMAC-SHA256 under the server secret of `parts`, for `purpose` (hex). What
   * the database keeps of a secret that must be recognised again but is too
   * small to hash safely (a 6-digit code): without the server secret a copy of
   * the database cannot try all codes against it.
   */
  mac(purpose: string, ...parts: string[]): string {
    const h = createHmac("sha256", this.key).update(purpose);
    for (const p of parts) h.update("\0").update(p);
    return h.digest("hex");
  }

  /** Constant-time comparison of two mac() results. */
  static sameMac(a: string, b: string): boolean {
    const x = Buffer.from(a, "utf8");
    const y = Buffer.from(b, "utf8");
    return x.length === y.length && timingSafeEqual(x, y);
  }

  async verify(kind: TokenKind, token: string): Promise<TokenClaims> {
    if (typeof token !== "string" || token.length === 0) throw new TokenError("malformed", `no ${kind} token given`);
    if (token.length > 4096 || token.split(".").length !== 3) throw new TokenError("malformed", `the ${kind} token is not a JWT`);
    if (kind === "access") {
      const hit = this.verified.get(token);
      // jose's rule: expired once exp <= now (whole seconds); past that the full verify says so.
      if (hit && hit.expiresAt.getTime() / 1000 > Math.floor(this.clock.now().getTime() / 1000)) return hit;
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.key, {
        algorithms: ["HS256"],
        issuer: ISSUER,
        audience: AUDIENCE[kind],
        typ: TYP[kind],
        currentDate: this.clock.now(),
        requiredClaims: ["sub", "jti", "iat", "exp"],
      }));
    } catch (err) {
      throw toTokenError(kind, err);
    }
    const iat = payload.iat!;
    if (iat > Math.floor(this.clock.now().getTime() / 1000) + MAX_CLOCK_SKEW_SECONDS) {
      throw new TokenError("invalid_claims", `the ${kind} token's "iat" claim is in the future (issued at ${new Date(iat * 1000).toISOString()})`);
    }
    const sid = payload.sid;
    // Ids go to the database as uuids: anything else is refused here, not there.
    if (typeof sid !== "string" || !isUuid(sid) || typeof payload.sub !== "string" || !isUuid(payload.sub)) {
      throw new TokenError("invalid_claims", `the ${kind} token lacks a session`);
    }
    const claims: TokenClaims = {
      userId: payload.sub,
      sessionId: sid,
      jti: String(payload.jti),
      issuedAt: new Date(iat * 1000),
      expiresAt: new Date((payload.exp ?? 0) * 1000),
    };
    if (kind === "access") {
      if (this.verified.size >= VERIFIED_CACHE_MAX) this.verified.clear();
      this.verified.set(token, Object.freeze(claims));
    }
    return claims;
  }
}

function toTokenError(kind: TokenKind, err: unknown): TokenError {
  if (err instanceof joseErrors.JWTExpired) return new TokenError("expired", `the ${kind} token has expired`);
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) {
    return new TokenError("bad_signature", `the ${kind} token's signature is not valid`);
  }
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    // A refresh token where an access token belongs (or the reverse) fails on typ/aud.
    if (err.claim === "aud" || err.claim === "typ") return new TokenError("wrong_type", `this is not ${kind === "access" ? "an" : "a"} ${kind} token`);
    if (err.claim === "nbf" && typeof err.payload.nbf === "number") {
      return new TokenError("invalid_claims", `the ${kind} token is not valid before ${new Date(err.payload.nbf * 1000).toISOString()}`);
    }
    return new TokenError("invalid_claims", `the ${kind} token's "${err.claim}" claim is not valid`);
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed || err instanceof joseErrors.JOSENotSupported) {
    return new TokenError("bad_signature", `the ${kind} token is not signed with HS256`);
  }
  return new TokenError("malformed", `the ${kind} token is malformed`);
}
