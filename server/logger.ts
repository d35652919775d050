import { pino, type Logger } from "pino";

/** Structured logs; secrets never leave through them. */
export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { service: "chatwire", ...bindings },
    redact: {
      paths: [
        "authorization",
        "headers.authorization",
        "req.headers.authorization",
        "*.access_token",
        "*.refresh_token",
        "*.otp_code",
        "*.accessToken",
        "*.refreshToken",
        "*.otpCode",
      ],
      censor: "[redacted]",
    },
  });
}
