/** Sends one-time codes by SMS and checks them; the code itself never passes through Chatwire in production. */
export interface OtpProvider {
  /** "dev" or "twilio", for logs. */
  readonly name: "dev" | "twilio";
  /** Sends a code to an E.164 number (already validated by the caller). */
  send(phoneE164: string): Promise<void>;
  /** True when the code is right for the number's pending verification; false when wrong. */
  check(phoneE164: string, code: string): Promise<boolean>;
}

/**
 * - invalid_number: the provider rejected the number.
 * - rate_limited: too many sends or checks; retryAfterSeconds when the provider said.
 * - expired: no pending verification for the number (expired, already approved, or out of attempts).
 * - unavailable: anything else (network, timeouts, 5xx, unexpected answers).
 */
export type OtpProviderErrorKind = "invalid_number" | "rate_limited" | "expired" | "unavailable";

export class OtpProviderError extends Error {
  override readonly name = "OtpProviderError";

  constructor(
    message: string,
    readonly kind: OtpProviderErrorKind,
    readonly retryAfterSeconds?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Phone numbers are personal data: logs keep only the last 4 digits. */
export function maskPhone(phoneE164: string): string {
  return phoneE164.length <= 4 ? "****" : `***${phoneE164.slice(-4)}`;
}
