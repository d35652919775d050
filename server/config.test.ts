import { describe, expect, test } from "vitest";
import { ConfigError, loadConfig } from "./config.js";

const SECRET = "x".repeat(40);
const PROD = {
  NODE_ENV: "production",
  DATABASE_URL: "postgres://db/chatwire",
  NATS_URL: "nats://127.0.0.1:4222",
  JWT_SECRET: SECRET,
  TWILIO_ACCOUNT_SID: "AC1",
  TWILIO_AUTH_TOKEN: "t",
  TWILIO_VERIFY_SERVICE_SID: "VA1",
};

function errorOf(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("loadConfig accepted a bad configuration");
}

describe("loadConfig", () => {
  test("nothing configured: embedded profile on 127.0.0.1:8080 with dev OTP and open CORS", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ profile: "embedded", port: 8080, host: "127.0.0.1", authDevMode: true, corsOrigins: ["*"], logLevel: "info" });
    expect(c.dataDir).toMatch(/\.chatwire$/);
    expect([...c.roles].sort()).toEqual(["api", "worker"]);
    expect(c.maxMessageBytes).toBe(4 * 1024 * 1024);
  });

  test("DATABASE_URL selects the production profile and listens on all interfaces", () => {
    const c = loadConfig({ DATABASE_URL: "postgres://postgres@127.0.0.1:5432/x", NATS_URL: "nats://127.0.0.1:4222" });
    expect(c).toMatchObject({ profile: "production", host: "0.0.0.0", natsUrl: "nats://127.0.0.1:4222" });
  });

  test("a complete production configuration is accepted", () => {
    const c = loadConfig({ ...PROD, CORS_ORIGINS: "https://app.example.com, https://m.example.com", CHATWIRE_ROLES: "worker" });
    expect(c.authDevMode).toBe(false);
    expect(c.corsOrigins).toEqual(["https://app.example.com", "https://m.example.com"]);
    expect([...c.roles]).toEqual(["worker"]);
  });

  test.each([
    [{ PORT: "abc" }, "PORT"],
    [{ PORT: "70000" }, "PORT"],
    [{ DATABASE_URL: "mysql://x" }, "DATABASE_URL"],
    [{ NATS_URL: "http://x y" }, "NATS_URL"],
    [{ JWT_SECRET: "short" }, "JWT_SECRET"],
    [{ AUTH_DEV_MODE: "maybe" }, "AUTH_DEV_MODE"],
    [{ TWILIO_ACCOUNT_SID: "AC1" }, "TWILIO_AUTH_TOKEN"],
    [{ TWILIO_ACCOUNT_SID: "AC1", TWILIO_AUTH_TOKEN: "t" }, "TWILIO_VERIFY_SERVICE_SID"],
    [{ CORS_ORIGINS: "https://app.example.com/" }, "CORS_ORIGINS"],
    [{ LOG_LEVEL: "loud" }, "LOG_LEVEL"],
    [{ CHATWIRE_ROLES: "api,cron" }, "CHATWIRE_ROLES"],
    [{ TLS_KEY_FILE: "/nonexistent.key" }, "TLS_CERT_FILE"],
    [{ TLS_CERT_FILE: "/nonexistent.crt", TLS_KEY_FILE: "/nonexistent.key" }, "TLS_CERT_FILE"],
    [{ MAX_MESSAGE_BYTES: "-1" }, "MAX_MESSAGE_BYTES"],
    [{ STARTUP_WAIT_SECONDS: "1m" }, "STARTUP_WAIT_SECONDS"],
  ])("%o is refused naming %s", (env, variable) => {
    const err = errorOf(env);
    expect(err.variable).toBe(variable);
    expect(err.message.startsWith(`${variable}:`)).toBe(true);
  });

  test.each([
    ["DATABASE_URL", { DATABASE_URL: "" }],
    ["JWT_SECRET", { JWT_SECRET: "" }],
    ["AUTH_DEV_MODE", { AUTH_DEV_MODE: "true" }],
    ["TWILIO_ACCOUNT_SID", { TWILIO_ACCOUNT_SID: "", TWILIO_AUTH_TOKEN: "", TWILIO_VERIFY_SERVICE_SID: "" }],
  ])("NODE_ENV=production refuses to start without a safe %s", (variable, change) => {
    expect(errorOf({ ...PROD, ...change }).variable).toBe(variable);
  });
});
