import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { pino } from "pino";
import { RateLimiterMemory } from "rate-limiter-flexible";
import { describe, expect, test } from "vitest";
import { ChatService, CreateConversationRequestSchema } from "../../gen/chat/chat_pb.js";
import { loadConfig } from "../config.js";
import type { Database } from "../db/schema.js";
import { CallLimit, CallLimits } from "./rate-limit.js";

const logger = pino({ level: "silent" });

async function refusal(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected a refusal");
}

describe("CallLimit", () => {
  test("a refusal by a later window gives back what the earlier ones counted", async () => {
    const wide = new RateLimiterMemory({ keyPrefix: "wide", points: 5, duration: 60 });
    const narrow = new RateLimiterMemory({ keyPrefix: "narrow", points: 2, duration: 60 });
    const limit = new CallLimit(
      "too many things",
      [
        { window: { points: 5, seconds: 60 }, limiter: wide },
        { window: { points: 2, seconds: 60 }, limiter: narrow },
      ],
      logger,
    );
    await limit.take("u");
    await limit.take("u");
    const err = await refusal(limit.take("u"));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toMatch(/^too many things: at most 2 per minute; try again in (59|60) s$/);
    expect(err.metadata.get("retry-after")).toMatch(/^(59|60)$/);
    await refusal(limit.take("u"));
    expect((await wide.get("u"))!.consumedPoints).toBe(2);
    await limit.take("v");
  });
});

describe("CallLimits", () => {
  test("with the database unreachable, the shared limits count in memory instead of failing the call", async () => {
    // Nothing listens on port 1: every query fails at once, as with PostgreSQL down.
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: "postgres://postgres@127.0.0.1:1/none" }) }) });
    try {
      const limits = new CallLimits(loadConfig({ RATE_LIMIT_CREATE_GROUP: "2/1h" }).rateLimits, db, logger);
      const group = limits.limitFor(ChatService.method.createConversation, create(CreateConversationRequestSchema, { isGroup: true }))!;
      const direct = limits.limitFor(ChatService.method.createConversation, create(CreateConversationRequestSchema, { isGroup: false }));
      expect(direct).not.toBe(group);
      await group.take("u");
      await group.take("u");
      const err = await refusal(group.take("u"));
      expect(err.rawMessage).toMatch(/^too many groups created: at most 2 per hour; try again in \d+ s$/);
    } finally {
      await db.destroy();
    }
  });

  test("RATE_LIMITS=off leaves nothing to apply", () => {
    const db = {} as Kysely<Database>;
    expect(new CallLimits(loadConfig({ RATE_LIMITS: "off" }).rateLimits, db, logger).empty).toBe(true);
    expect(new CallLimits(loadConfig({}).rateLimits, db, logger).limitFor(ChatService.method.listMessages, {})).toBeUndefined();
  });
});
