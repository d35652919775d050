import os from "node:os";
import { describe, expect, test } from "vitest";
import { ConfigError, ConfigErrors, loadConfig } from "./config.js";

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

describe("all problems at once", () => {
  test("NODE_ENV=production without its requirements lists each of them in one error", () => {
    const err = errorOf({ NODE_ENV: "production" });
    expect(err).toBeInstanceOf(ConfigErrors);
    expect((err as ConfigErrors).errors.map((e) => e.variable)).toEqual(["DATABASE_URL", "JWT_SECRET", "TWILIO_ACCOUNT_SID"]);
    expect(err.message.split("\n")).toHaveLength(3);
  });

  test("bad values anywhere are all reported, with production's missing ones after them", () => {
    const err = errorOf({ NODE_ENV: "production", PORT: "eighty", LOG_LEVEL: "loud", CORS_ORIGINS: "example.com/" });
    expect((err as ConfigErrors).errors.map((e) => e.variable)).toEqual([
      "PORT",
      "CORS_ORIGINS",
      "LOG_LEVEL",
      "DATABASE_URL",
      "JWT_SECRET",
      "TWILIO_ACCOUNT_SID",
    ]);
  });

  test("one problem is a plain ConfigError, as before", () => {
    const err = errorOf({ PORT: "eighty" });
    expect(err).not.toBeInstanceOf(ConfigErrors);
    expect(err.message).toBe('PORT: must be a whole number, got "eighty"');
  });
});

describe("loadConfig", () => {
  test("nothing configured: embedded profile on 127.0.0.1:8080 with dev OTP and open CORS", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ profile: "embedded", port: 8080, host: "127.0.0.1", authDevMode: true, corsOrigins: ["*"], logLevel: "info" });
    expect(c.dataDir).toMatch(/\.chatwire$/);
    expect([...c.roles].sort()).toEqual(["api", "push", "worker"]);
    expect(c.maxMessageBytes).toBe(4 * 1024 * 1024);
  });

  test("DATABASE_URL selects the production profile and listens on all interfaces", () => {
    const c = loadConfig({ DATABASE_URL: "postgres://postgres@127.0.0.1:5432/x", NATS_URL: "nats://127.0.0.1:4222" });
    expect(c).toMatchObject({ profile: "production", host: "0.0.0.0", natsUrl: "nats://127.0.0.1:4222" });
  });

  test("a NATS cluster: several servers in NATS_URL, stream replicas 1 by default, up to 5", () => {
    const c = loadConfig({ NATS_URL: "nats://10.0.0.1:4222, nats://10.0.0.2:4222,10.0.0.3:4222", NATS_STREAM_REPLICAS: "3" });
    expect(c.natsUrl).toBe("nats://10.0.0.1:4222, nats://10.0.0.2:4222,10.0.0.3:4222");
    expect(c.natsStreamReplicas).toBe(3);
    expect(loadConfig({}).natsStreamReplicas).toBe(1);
    expect(errorOf({ NATS_URL: "nats://10.0.0.1:4222,http://10.0.0.2" }).variable).toBe("NATS_URL");
  });

  test("DATABASE_POOL_MAX sizes the PostgreSQL pool: 10 by default, 1 to 1000", () => {
    expect(loadConfig({}).databasePoolMax).toBe(10);
    expect(loadConfig({ DATABASE_POOL_MAX: "40" }).databasePoolMax).toBe(40);
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
    [{ NATS_STREAM_REPLICAS: "0" }, "NATS_STREAM_REPLICAS"],
    [{ NATS_STREAM_REPLICAS: "6" }, "NATS_STREAM_REPLICAS"],
    [{ NATS_STREAM_REPLICAS: "three" }, "NATS_STREAM_REPLICAS"],
    [{ DATABASE_POOL_MAX: "0" }, "DATABASE_POOL_MAX"],
    [{ DATABASE_POOL_MAX: "ten" }, "DATABASE_POOL_MAX"],
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
    [{ VAPID_PRIVATE_KEY: "x".repeat(43) }, "VAPID_PUBLIC_KEY"],
    [{ VAPID_PUBLIC_KEY: "short", VAPID_PRIVATE_KEY: "x".repeat(43) }, "VAPID_PUBLIC_KEY"],
    [{ VAPID_SUBJECT: "push@example.com" }, "VAPID_SUBJECT"],
    [{ FCM_SERVICE_ACCOUNT_FILE: "/nonexistent.json" }, "FCM_SERVICE_ACCOUNT_FILE"],
    [{ APNS_KEY_ID: "ABC123" }, "APNS_KEY_FILE"],
    [{ PUSH_COLLAPSE_MS: "1s" }, "PUSH_COLLAPSE_MS"],
    [{ WEB_PUSH_ALLOWED_HOSTS: "https://push.example" }, "WEB_PUSH_ALLOWED_HOSTS"],
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

describe("per-user call limits and trusted proxies", () => {
  test("defaults no human reaches; windows in s, m, h, d; off per limit or all at once", () => {
    const c = loadConfig({});
    expect(c.rateLimits.sendMessage).toEqual([
      { points: 20, seconds: 1 },
      { points: 600, seconds: 60 },
    ]);
    expect(c.rateLimits.createGroup).toEqual([
      { points: 30, seconds: 3600 },
      { points: 100, seconds: 86_400 },
    ]);
    const custom = loadConfig({ RATE_LIMIT_SEND_MESSAGE: "5/s, 100/10m", RATE_LIMIT_REACT: "off", RATE_LIMIT_EDIT: "0" });
    expect(custom.rateLimits.sendMessage).toEqual([
      { points: 5, seconds: 1 },
      { points: 100, seconds: 600 },
    ]);
    expect(custom.rateLimits.react).toEqual([]);
    expect(custom.rateLimits.edit).toEqual([]);
    expect(Object.values(loadConfig({ RATE_LIMITS: "off" }).rateLimits).flat()).toEqual([]);
  });

  test("TRUSTED_PROXIES: none by default; addresses and CIDRs of both families", () => {
    expect(loadConfig({}).trustedProxies).toEqual([]);
    expect(loadConfig({}).trustedProxyHeader).toBe("x-forwarded-for");
    const c = loadConfig({ TRUSTED_PROXIES: "10.0.0.0/8, 192.168.1.5,fd00::/8", TRUSTED_PROXY_HEADER: "Forwarded" });
    expect(c.trustedProxies).toEqual(["10.0.0.0/8", "192.168.1.5/32", "fd00::/8"]);
    expect(c.trustedProxyHeader).toBe("forwarded");
  });

  test.each([
    [{ RATE_LIMIT_SEND_MESSAGE: "20 per second" }, "RATE_LIMIT_SEND_MESSAGE"],
    [{ RATE_LIMIT_SEND_MESSAGE: "0/1s" }, "RATE_LIMIT_SEND_MESSAGE"],
    [{ RATE_LIMIT_CREATE_GROUP: "1/31d" }, "RATE_LIMIT_CREATE_GROUP"],
    [{ RATE_LIMIT_SYNC_CONTACTS: "1/1s,2/2s,3/3s,4/4s,5/5s" }, "RATE_LIMIT_SYNC_CONTACTS"],
    [{ RATE_LIMITS: "sometimes" }, "RATE_LIMITS"],
    [{ TRUSTED_PROXIES: "10.0.0.0/33" }, "TRUSTED_PROXIES"],
    [{ TRUSTED_PROXIES: "proxy.internal" }, "TRUSTED_PROXIES"],
    [{ TRUSTED_PROXIES: "fd00::/129" }, "TRUSTED_PROXIES"],
    [{ TRUSTED_PROXY_HEADER: "x-real-ip" }, "TRUSTED_PROXY_HEADER"],
  ])("%o is refused naming %s", (env, variable) => {
    const err = errorOf(env);
    expect(err.variable).toBe(variable);
    expect(err.message.startsWith(`${variable}:`)).toBe(true);
  });
  test("CHATWIRE_PROCESSES: 1 by default, a number or auto (one per core), more than one only with PostgreSQL and NATS", () => {
    const pg = { DATABASE_URL: "postgres://db/chatwire", NATS_URL: "nats://127.0.0.1:4222" };
    expect(loadConfig({}).processes).toBe(1);
    expect(loadConfig({ ...pg, CHATWIRE_PROCESSES: "3" }).processes).toBe(3);
    expect(loadConfig({ ...pg, CHATWIRE_PROCESSES: "auto" }).processes).toBe(os.availableParallelism());
    expect(loadConfig({ CHATWIRE_PROCESSES: "1" }).processes).toBe(1);
    expect(errorOf({ ...pg, CHATWIRE_PROCESSES: "many" }).message).toBe('CHATWIRE_PROCESSES: must be a whole number or auto (one per core), got "many"');
    expect(errorOf({ ...pg, CHATWIRE_PROCESSES: "0" }).variable).toBe("CHATWIRE_PROCESSES");
    expect(errorOf({ CHATWIRE_PROCESSES: "2" }).message).toMatch(
      /^CHATWIRE_PROCESSES: 2 processes need DATABASE_URL and NATS_URL: the embedded database \(PGlite\)/,
    );
    expect(errorOf({ DATABASE_URL: pg.DATABASE_URL, CHATWIRE_PROCESSES: "2" }).variable).toBe("CHATWIRE_PROCESSES");
    expect(loadConfig({ ...pg, CHATWIRE_PROCESS_INDEX: "1" }).processIndex).toBe(1);
    expect(loadConfig(pg).processIndex).toBeUndefined();
  });
});

describe("media settings", () => {
  test("defaults: disk under the data dir, WhatsApp-like limits, 5-minute download URLs", () => {
    const c = loadConfig({ CHATWIRE_DATA_DIR: "/var/lib/chatwire" });
    expect(c.media).toEqual({
      dir: "/var/lib/chatwire/media",
      s3: undefined,
      maxBytes: { image: 16 * 1024 * 1024, video: 64 * 1024 * 1024, audio: 64 * 1024 * 1024, document: 100 * 1024 * 1024 },
      userQuotaBytes: 2 * 1024 ** 3,
      dailyUploadBytes: 1024 ** 3,
      urlTtlSeconds: 300,
    });
    expect(loadConfig({ MEDIA_DIR: "/srv/media", MEDIA_MAX_VIDEO_BYTES: "1000" }).media).toMatchObject({ dir: "/srv/media", maxBytes: { video: 1000 } });
  });

  test("S3: a bucket turns it on; an endpoint means path-style URLs; keys come in pairs", () => {
    const s3 = loadConfig({
      MEDIA_S3_BUCKET: "media",
      MEDIA_S3_ENDPOINT: "http://127.0.0.1:9000",
      MEDIA_S3_ACCESS_KEY_ID: "k",
      MEDIA_S3_SECRET_ACCESS_KEY: "s",
    }).media.s3;
    expect(s3).toEqual({
      bucket: "media",
      endpoint: "http://127.0.0.1:9000",
      region: "us-east-1",
      credentials: { accessKeyId: "k", secretAccessKey: "s" },
      forcePathStyle: true,
    });
    expect(loadConfig({ MEDIA_S3_BUCKET: "media", MEDIA_S3_REGION: "eu-west-1" }).media.s3).toMatchObject({
      region: "eu-west-1",
      credentials: undefined,
      forcePathStyle: false,
    });
  });

  test.each([
    [{ MEDIA_S3_BUCKET: "Not A Bucket" }, "MEDIA_S3_BUCKET"],
    [{ MEDIA_S3_BUCKET: "media", MEDIA_S3_ENDPOINT: "ftp://x" }, "MEDIA_S3_ENDPOINT"],
    [{ MEDIA_S3_BUCKET: "media", MEDIA_S3_ACCESS_KEY_ID: "k" }, "MEDIA_S3_SECRET_ACCESS_KEY"],
    [{ MEDIA_S3_ENDPOINT: "http://127.0.0.1:9000" }, "MEDIA_S3_ENDPOINT"],
    [{ MEDIA_MAX_IMAGE_BYTES: "0" }, "MEDIA_MAX_IMAGE_BYTES"],
    [{ MEDIA_USER_QUOTA_BYTES: "lots" }, "MEDIA_USER_QUOTA_BYTES"],
    [{ MEDIA_URL_TTL_SECONDS: "5" }, "MEDIA_URL_TTL_SECONDS"],
  ])("%o is refused, naming %s", (env, variable) => {
    expect(errorOf(env).variable).toBe(variable);
  });
});
