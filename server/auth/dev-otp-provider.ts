import { timingSafeEqual } from "node:crypto";
import type { Logger } from "pino";
import { maskPhone, type OtpProvider } from "./otp-provider.js";

/** The one code the dev provider accepts; public on purpose, so it is fine to log. */
const DEV_OTP_CODE = "123456";

const DEV_CODE_BYTES = Buffer.from(DEV_OTP_CODE, "utf8");

/** For local development and tests: no SMS is sent and every number's code is DEV_OTP_CODE. */
export class DevOtpProvider implements OtpProvider {
  readonly name = "dev" as const;
  readonly #logger: Logger;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  async send(phoneE164: string): Promise<void> {
    // Loud on purpose: seeing this in a production log means anyone can sign in as anyone.
    this.#logger.warn({ otpProvider: this.name, phone: maskPhone(phoneE164) }, `dev OTP provider in use: no SMS sent, the code is ${DEV_OTP_CODE}`);
  }

  async check(_phoneE164: string, code: string): Promise<boolean> {
    const given = Buffer.from(code, "utf8");
    if (given.length !== DEV_CODE_BYTES.length) return false;
    return timingSafeEqual(given, DEV_CODE_BYTES);
  }
}
