import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { inspect } from "node:util";
import { pino, type Logger } from "pino";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { DevOtpProvider } from "./dev-otp-provider.js";
import { OtpProviderError } from "./otp-provider.js";
import { TwilioOtpProvider } from "./twilio-otp-provider.js";

const ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN = "f00dbabe5ecret70ken0123456789abc";
const SERVICE_SID = "VA0123456789abcdef0123456789abcdef";
const PHONE = "+905551234567";
const MASKED = "***4567";
const CODE = "482913";

interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  form: URLSearchParams;
}

interface FakeReply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** Answers like Twilio's Verify v2 API; `reply` is swapped per test to script failures. */
interface FakeTwilio {
  url: string;
  requests: RecordedRequest[];
  reply: (req: RecordedRequest) => FakeReply;
  close(): Promise<void>;
}

function verificationBody(to: string, status: string): Record<string, unknown> {
  const now = new Date().toISOString();
  return {
    sid: "VE0123456789abcdef0123456789abcdef",
    service_sid: SERVICE_SID,
    account_sid: ACCOUNT_SID,
    to,
    channel: "sms",
    status,
    valid: status === "approved",
    lookup: { carrier: null },
    amount: null,
    payee: null,
    send_code_attempts: [{ time: now, channel: "SMS", attempt_sid: "VL0123456789abcdef0123456789abcdef" }],
    date_created: now,
    date_updated: now,
    sna: null,
    url: `https://verify.twilio.com/v2/Services/${SERVICE_SID}/Verifications/VE0123456789abcdef0123456789abcdef`,
  };
}

function twilioError(status: number, code: number, message: string): FakeReply {
  return { status, body: { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status } };
}

/** Verifications start pending; a check is approved only for CODE. */
function defaultReply(req: RecordedRequest): FakeReply {
  const to = req.form.get("To") ?? "";
  if (req.path.endsWith("/Verifications")) return { status: 201, body: verificationBody(to, "pending") };
  if (req.path.endsWith("/VerificationCheck")) {
    return { status: 200, body: verificationBody(to, req.form.get("Code") === CODE ? "approved" : "pending") };
  }
  return twilioError(404, 20404, "The requested resource was not found");
}

async function startFakeTwilio(): Promise<FakeTwilio> {
  const fake: Omit<FakeTwilio, "url" | "close"> = { requests: [], reply: defaultReply };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const recorded: RecordedRequest = {
        method: req.method ?? "",
        path: new URL(req.url ?? "/", "http://fake").pathname,
        headers: req.headers,
        form: new URLSearchParams(Buffer.concat(chunks).toString("utf8")),
      };
      fake.requests.push(recorded);
      const answer = fake.reply(recorded);
      res.writeHead(answer.status, { "content-type": "application/json", ...answer.headers });
      res.end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(fake, {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  });
}

function capturingLogger(): { logger: Logger; lines: () => Array<Record<string, unknown>>; raw: () => string } {
  const written: string[] = [];
  const logger = pino({ level: "trace" }, { write: (line: string) => void written.push(line) });
  return {
    logger,
    lines: () => written.map((line) => JSON.parse(line) as Record<string, unknown>),
    raw: () => written.join(""),
  };
}

async function otpErrorOf(promise: Promise<unknown>): Promise<OtpProviderError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof OtpProviderError) return err;
    throw err;
  }
  throw new Error("expected an OtpProviderError, got success");
}

describe("TwilioOtpProvider against a fake Verify v2 API", () => {
  let fake: FakeTwilio;
  let logs: ReturnType<typeof capturingLogger>;

  function provider(apiBaseUrl = fake.url): TwilioOtpProvider {
    return new TwilioOtpProvider({
      accountSid: ACCOUNT_SID,
      authToken: AUTH_TOKEN,
      verifyServiceSid: SERVICE_SID,
      logger: logs.logger,
      apiBaseUrl,
    });
  }

  beforeAll(async () => {
    fake = await startFakeTwilio();
  });
  afterAll(async () => {
    await fake.close();
  });
  afterEach(() => {
    fake.requests.length = 0;
    fake.reply = defaultReply;
  });
  // A fresh capture per test so log assertions only see that test's lines.
  beforeEach(() => {
    logs = capturingLogger();
  });

  test("send POSTs To and Channel=sms to the service's Verifications with Basic auth", async () => {
    expect(provider().name).toBe("twilio");
    await expect(provider().send(PHONE)).resolves.toBeUndefined();

    expect(fake.requests).toHaveLength(1);
    const [req] = fake.requests;
    expect(req!.method).toBe("POST");
    expect(req!.path).toBe(`/v2/Services/${SERVICE_SID}/Verifications`);
    expect(Object.fromEntries(req!.form)).toEqual({ To: PHONE, Channel: "sms" });
    expect(req!.headers["content-type"]).toBe("application/x-www-form-urlencoded");
    expect(req!.headers.authorization).toBe(`Basic ${Buffer.from(`${ACCOUNT_SID}:${AUTH_TOKEN}`).toString("base64")}`);
  });

  test("check POSTs To and Code to VerificationCheck and is true when approved", async () => {
    await expect(provider().check(PHONE, CODE)).resolves.toBe(true);

    expect(fake.requests).toHaveLength(1);
    const [req] = fake.requests;
    expect(req!.method).toBe("POST");
    expect(req!.path).toBe(`/v2/Services/${SERVICE_SID}/VerificationCheck`);
    expect(Object.fromEntries(req!.form)).toEqual({ To: PHONE, Code: CODE });
    expect(req!.headers.authorization).toBe(`Basic ${Buffer.from(`${ACCOUNT_SID}:${AUTH_TOKEN}`).toString("base64")}`);
  });

  test.each(["pending", "canceled", "something-new"])("check is false when the status is %s", async (status) => {
    fake.reply = (req) => ({ status: 200, body: verificationBody(req.form.get("To") ?? "", status) });
    await expect(provider().check(PHONE, "000000")).resolves.toBe(false);
    expect(fake.requests).toHaveLength(1);
  });

  test("404 on check (no pending verification) is expired", async () => {
    fake.reply = () => twilioError(404, 20404, "The requested resource /Services/VA.../VerificationCheck was not found");
    const err = await otpErrorOf(provider().check(PHONE, CODE));
    expect(err.kind).toBe("expired");
    expect(err.retryAfterSeconds).toBeUndefined();
  });

  test("429 is rate_limited with Retry-After, sent once (no SDK auto-retry)", async () => {
    fake.reply = () => ({ ...twilioError(429, 20429, "Too Many Requests"), headers: { "retry-after": "30" } });
    const err = await otpErrorOf(provider().send(PHONE));
    expect(err.kind).toBe("rate_limited");
    expect(err.retryAfterSeconds).toBe(30);
    expect(fake.requests).toHaveLength(1);
  });

  test("Retry-After as an HTTP date becomes seconds from now", async () => {
    const inOneMinute = new Date(Date.now() + 60_000).toUTCString();
    fake.reply = () => ({ ...twilioError(429, 20429, "Too Many Requests"), headers: { "retry-after": inOneMinute } });
    const err = await otpErrorOf(provider().send(PHONE));
    expect(err.kind).toBe("rate_limited");
    expect(err.retryAfterSeconds).toBeGreaterThanOrEqual(58);
    expect(err.retryAfterSeconds).toBeLessThanOrEqual(60);
  });

  test("max send attempts (60203) is rate_limited without a retry hint", async () => {
    fake.reply = () => twilioError(429, 60203, "Max send attempts reached");
    const err = await otpErrorOf(provider().send(PHONE));
    expect(err.kind).toBe("rate_limited");
    expect(err.retryAfterSeconds).toBeUndefined();
  });

  test.each([60200, 21211, 21614])("400 with code %i is invalid_number", async (code) => {
    fake.reply = (req) => twilioError(400, code, `Invalid parameter \`To\`: ${req.form.get("To")}`);
    const err = await otpErrorOf(provider().send(PHONE));
    expect(err.kind).toBe("invalid_number");
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe("OtpProviderError");
  });

  test("500 is unavailable with Twilio's exception as the cause", async () => {
    fake.reply = () => twilioError(500, 20500, "Internal Server Error");
    const err = await otpErrorOf(provider().send(PHONE));
    expect(err.kind).toBe("unavailable");
    expect(err.cause).toMatchObject({ status: 500, code: 20500 });
  });

  test("bad credentials (401) are unavailable, not a user error", async () => {
    fake.reply = () => twilioError(401, 20003, "Authenticate");
    const err = await otpErrorOf(provider().check(PHONE, CODE));
    expect(err.kind).toBe("unavailable");
  });

  test("connection refused is unavailable, and the cause does not carry the auth header", async () => {
    const closed = await startFakeTwilio();
    const deadUrl = closed.url;
    await closed.close();

    const err = await otpErrorOf(provider(deadUrl).send(PHONE));
    expect(err.kind).toBe("unavailable");
    expect(err.cause).toMatchObject({ code: "ECONNREFUSED" });
    const printed = inspect(err, { depth: 10 });
    expect(printed).toContain("ECONNREFUSED");
    expect(printed).not.toContain(AUTH_TOKEN);
    expect(printed).not.toContain(Buffer.from(`${ACCOUNT_SID}:${AUTH_TOKEN}`).toString("base64"));
    expect(logs.lines().some((line) => line.errorCode === "ECONNREFUSED")).toBe(true);
  });

  test("failures are logged with the number masked and without token or code", async () => {
    fake.reply = (req) => twilioError(400, 60200, `Invalid parameter \`To\`: ${req.form.get("To")}`);
    await otpErrorOf(provider().send(PHONE));
    fake.reply = () => twilioError(404, 20404, "Not found");
    await otpErrorOf(provider().check(PHONE, CODE));

    const lines = logs.lines();
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ phone: MASKED, operation: "send", kind: "invalid_number", httpStatus: 400, twilioCode: 60200 });
    expect(lines[1]).toMatchObject({ phone: MASKED, operation: "check", kind: "expired", httpStatus: 404 });
    const raw = logs.raw();
    expect(raw).not.toContain(PHONE);
    expect(raw).not.toContain(PHONE.slice(1));
    expect(raw).not.toContain(CODE);
    expect(raw).not.toContain(AUTH_TOKEN);
  });

  test("a base URL with a path prefix keeps the prefix", async () => {
    await provider(`${fake.url}/twilio-fake/`).send(PHONE);
    expect(fake.requests.map((r) => r.path)).toEqual([`/twilio-fake/v2/Services/${SERVICE_SID}/Verifications`]);
  });
});

describe("DevOtpProvider", () => {
  test("accepts only 123456", async () => {
    const dev = new DevOtpProvider(capturingLogger().logger);
    expect(dev.name).toBe("dev");
    await expect(dev.check(PHONE, "123456")).resolves.toBe(true);
    await expect(dev.check(PHONE, "123457")).resolves.toBe(false);
    await expect(dev.check(PHONE, "")).resolves.toBe(false);
    await expect(dev.check(PHONE, "1234567")).resolves.toBe(false);
    await expect(dev.check(PHONE, "12345")).resolves.toBe(false);
  });

  test("send logs one warning per send, with the number masked", async () => {
    const logs = capturingLogger();
    const dev = new DevOtpProvider(logs.logger);
    await dev.send(PHONE);
    await dev.send("+441234560000");

    const lines = logs.lines();
    expect(lines).toHaveLength(2);
    expect(lines.every((line) => line.level === 40)).toBe(true);
    expect(lines[0]).toMatchObject({ phone: MASKED, otpProvider: "dev" });
    expect(String(lines[0]!.msg)).toContain("123456");
    expect(logs.raw()).not.toContain(PHONE);
  });
});
