import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { SessionGuard } from "../auth/session-guard.js";
import { TokenError, type TokenService } from "../auth/tokens.js";
import { callerKey } from "../auth/auth-context.js";

/** Methods anyone may call: logging in, the original token RPCs, health and reflection. */
const PUBLIC_SERVICES = new Set(["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]);
const PUBLIC_METHODS = new Set(
  ["SendOTP", "VerifyOTP", "ValidateToken", "RefreshToken", "RevokeCurrentDevice", "LogoutAllDevices", "DeleteAccount"].map((m) => `auth.AuthService/${m}`),
);

/**
 * `Authorization: Bearer <access token>` on every other RPC. The caller's user
 * and session reach handlers through `callerKey`; a revoked session is refused
 * at once, not when its token expires.
 */
export function authInterceptor(tokens: TokenService, guard: SessionGuard): Interceptor {
  return (next) => async (req) => {
    if (PUBLIC_SERVICES.has(req.service.typeName) || PUBLIC_METHODS.has(`${req.service.typeName}/${req.method.name}`)) {
      return next(req);
    }
    const header = req.header.get("authorization");
    if (header === null || header.trim() === "") {
      throw new ConnectError("missing Authorization header: send `Authorization: Bearer <access token>`", Code.Unauthenticated);
    }
    const match = /^Bearer\s+(\S+)$/i.exec(header.trim());
    if (!match) throw new ConnectError("malformed Authorization header: expected `Bearer <access token>`", Code.Unauthenticated);
    let claims;
    try {
      claims = await tokens.verify("access", match[1]!);
    } catch (err) {
      if (err instanceof TokenError) throw new ConnectError(err.message, Code.Unauthenticated);
      throw err;
    }
    if (!(await guard.isLive(claims.sessionId, claims.userId))) {
      throw new ConnectError("the session of this access token has been revoked; log in again", Code.Unauthenticated);
    }
    req.contextValues.set(callerKey, { userId: claims.userId, sessionId: claims.sessionId });
    return next(req);
  };
}
