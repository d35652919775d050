import { AsyncLocalStorage } from "node:async_hooks";
import type { Logger } from "pino";
import twilio from "twilio";
import type RequestClient from "twilio/lib/base/RequestClient.js";
import { maskPhone, OtpProviderError, type OtpProvider, type OtpProviderErrorKind } from "./otp-provider.js";

export interface TwilioOtpProviderOptions {
  accountSid: string;
  authToken: string;
  /** The Verify service ("VA…") that owns the SMS template, code length and expiry. */
  verifyServiceSid: string;
  logger: Logger;
  /** Tests only: where Verify API requests go instead of https://verify.twilio.com. */
  apiBaseUrl?: string;
}

/** Bounded so a slow Twilio can't hold a sign-in request (or its deadline) hostage. */
const REQUEST_TIMEOUT_MS = 10_000;

// Twilio error codes, https://www.twilio.com/docs/api/errors
const INVALID_NUMBER_CODES = new Set([60200, 21211, 21614]);
const RATE_LIMITED_CODES = new Set([60203, 20429]);

/** Headers of the last response seen inside one provider call; RestException drops them. */
interface Exchange {
  retryAfter?: string;
}

/**
 * The SDK's own HTTP client, with auto-retry off (the caller decides about retries), a bounded
 * timeout, and two additions: it notes Retry-After for the current call, and when a base URL
 * is given it sends requests there (path and query kept) instead of to Twilio.
 */
class VerifyHttpClient extends twilio.RequestClient {
  readonly #baseUrl: URL | undefined;
  readonly #exchanges: AsyncLocalStorage<Exchange>;

  constructor(exchanges: AsyncLocalStorage<Exchange>, apiBaseUrl: string | undefined) {
    super({ timeout: REQUEST_TIMEOUT_MS, autoRetry: false });
    this.#exchanges = exchanges;
    this.#baseUrl = apiBaseUrl === undefined ? undefined : new URL(apiBaseUrl);
  }

  override async request<TData>(opts: RequestClient.RequestOptions<TData>) {
    const uri = this.#baseUrl === undefined ? opts.uri : this.#rewrite(opts.uri);
    const response = await super.request<TData>({ ...opts, uri });
    const exchange = this.#exchanges.getStore();
    const retryAfter = headerValue(response.headers, "retry-after");
    if (exchange !== undefined && retryAfter !== undefined) exchange.retryAfter = retryAfter;
    return response;
  }

  // By origin, not by "https://verify.twilio.com" prefix: TWILIO_EDGE/TWILIO_REGION make the SDK
  // send to hosts like verify.sydney.au1.twilio.com.
  #rewrite(uri: string): string {
    const original = new URL(uri);
    const target = new URL(this.#baseUrl!.href);
    target.pathname = `${target.pathname.replace(/\/+$/, "")}${original.pathname}`;
    target.search = original.search;
    return target.href;
  }
}

/** Sends and checks codes through Twilio Verify v2 over SMS. */
export class TwilioOtpProvider implements OtpProvider {
  readonly name = "twilio" as const;
  readonly #logger: Logger;
  readonly #exchanges = new AsyncLocalStorage<Exchange>();
  readonly #service: ReturnType<twilio.Twilio["verify"]["v2"]["services"]>;

  constructor(options: TwilioOtpProviderOptions) {
    this.#logger = options.logger;
    const client = twilio(options.accountSid, options.authToken, {
      httpClient: new VerifyHttpClient(this.#exchanges, options.apiBaseUrl),
    });
    this.#service = client.verify.v2.services(options.verifyServiceSid);
  }

  async send(phoneE164: string): Promise<void> {
    await this.#call("send", phoneE164, () => this.#service.verifications.create({ to: phoneE164, channel: "sms" }));
  }

  async check(phoneE164: string, code: string): Promise<boolean> {
    const result = await this.#call("check", phoneE164, () => this.#service.verificationChecks.create({ to: phoneE164, code }));
    return result.status === "approved";
  }

  async #call<T>(operation: "send" | "check", phoneE164: string, run: () => Promise<T>): Promise<T> {
    const exchange: Exchange = {};
    try {
      return await this.#exchanges.run(exchange, run);
    } catch (err) {
      const failure = toOtpProviderError(err, operation, exchange);
      const details = describeError(err, phoneE164);
      this.#logger[failure.kind === "unavailable" ? "error" : "warn"](
        {
          otpProvider: this.name,
          operation,
          phone: maskPhone(phoneE164),
          kind: failure.kind,
          retryAfterSeconds: failure.retryAfterSeconds,
          ...details,
        },
        `twilio verify ${operation} failed`,
      );
      throw failure;
    }
  }
}

interface TwilioApiError {
  status: number;
  code?: number;
  message?: string;
}

/** RestException and TwilioServiceException (RFC 9457 bodies) both carry the HTTP status and Twilio's code. */
function asTwilioApiError(err: unknown): TwilioApiError | undefined {
  if (!(err instanceof Error) || isAxiosError(err)) return undefined;
  const { status, code } = err as Partial<TwilioApiError>;
  if (typeof status !== "number") return undefined;
  return { status, code: typeof code === "number" ? code : undefined, message: err.message };
}

function toOtpProviderError(err: unknown, operation: string, exchange: Exchange): OtpProviderError {
  const api = asTwilioApiError(err);
  const kind = api === undefined ? "unavailable" : kindOf(api);
  const message =
    api === undefined
      ? `twilio verify ${operation}: request failed`
      : `twilio verify ${operation}: HTTP ${api.status}${api.code === undefined ? "" : ` code ${api.code}`}`;
  const retryAfterSeconds = kind === "rate_limited" ? parseRetryAfter(exchange.retryAfter) : undefined;
  return new OtpProviderError(message, kind, retryAfterSeconds, { cause: sanitizeCause(err) });
}

function kindOf({ status, code }: TwilioApiError): OtpProviderErrorKind {
  if (status === 404) return "expired";
  if (status === 429 || (code !== undefined && RATE_LIMITED_CODES.has(code))) return "rate_limited";
  if (status === 400 && code !== undefined && INVALID_NUMBER_CODES.has(code)) return "invalid_number";
  return "unavailable";
}

function parseRetryAfter(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

function headerValue(headers: unknown, name: string): string | undefined {
  if (headers === null || typeof headers !== "object") return undefined;
  const value = (headers as Record<string, unknown>)[name];
  if (typeof value === "string") return value;
  if (typeof value === "number") return String(value);
  return undefined;
}

function isAxiosError(err: unknown): err is Error & { code?: string } {
  return err instanceof Error && (err as { isAxiosError?: unknown }).isAxiosError === true;
}

/**
 * Axios errors carry the request config, Basic auth header included, as enumerable properties;
 * anything that prints the cause (util.inspect, a serializer walking own keys) would leak the auth token.
 */
function sanitizeCause(err: unknown): unknown {
  if (!isAxiosError(err)) return err;
  const clean = new Error(err.message);
  clean.name = err.name;
  if (err.stack !== undefined) clean.stack = err.stack;
  return Object.assign(clean, { code: err.code });
}

/** What is safe to log about a failure: no auth header, no code, and the number masked. */
function describeError(err: unknown, phoneE164: string): Record<string, unknown> {
  const api = asTwilioApiError(err);
  const scrub = (text: string | undefined) => text?.replaceAll(phoneE164, maskPhone(phoneE164));
  if (api !== undefined) {
    return { httpStatus: api.status, twilioCode: api.code, twilioMessage: scrub(api.message) };
  }
  if (err instanceof Error) {
    return { errorName: err.name, errorCode: (err as { code?: unknown }).code, errorMessage: scrub(err.message) };
  }
  return { errorMessage: String(err) };
}
