import { randomBytes } from "node:crypto";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { loadConfig, type Config } from "../../config.js";
import type { Clock } from "../../clock.js";
import { createLogger } from "../../logger.js";
import { streamName } from "../../messaging/jetstream-queue.js";
import { ChatwireServer, type CreateOptions } from "../../server.js";
import { createTestDatabase, type TestDatabase } from "./test-database.js";

export const TEST_JWT_SECRET = "test-secret-test-secret-test-secret-0123456789";

export interface TestServer {
  server: ChatwireServer;
  config: Config;
  /** http://127.0.0.1:<port> */
  url: string;
  port: number;
  stop(): Promise<void>;
}

export interface TestServerOptions extends Omit<CreateOptions, "database" | "bus"> {
  /**
   * Another instance of the same deployment: same database, and the same bus
   * (through NATS when NATS_URL is set, else the first server's in-process one).
   */
  shareWith?: TestServer;
}

/** A clock tests move by hand (token expiry, code expiry, limit windows). */
export class FakeClock implements Clock {
  constructor(private t = Date.now()) {}
  now(): Date {
    return new Date(this.t);
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

/**
 * A real Chatwire server on 127.0.0.1, port 0, with its own database: a fresh
 * PostgreSQL database when DATABASE_URL is set (plus NATS when NATS_URL is),
 * else a fresh PGlite directory. `env` overrides any variable.
 */
export async function startTestServer(env: Record<string, string | undefined> = {}, opts: TestServerOptions = {}): Promise<TestServer> {
  const { shareWith, ...createOpts } = opts;
  const shared = shareWith?.server.ctx;
  const database: TestDatabase | undefined = shareWith ? undefined : await createTestDatabase();
  const config = loadConfig({
    PORT: "0",
    HOST: "127.0.0.1",
    DATABASE_URL: shareWith ? shareWith.config.databaseUrl : database!.databaseUrl,
    NATS_URL: process.env.NATS_URL,
    // Own subjects and stream per deployment, so test files and runs sharing one NATS never meet.
    NATS_SUBJECT_PREFIX: shareWith ? shareWith.config.natsSubjectPrefix : `t${randomBytes(6).toString("hex")}`,
    CHATWIRE_DATA_DIR: shareWith ? shareWith.config.dataDir : database!.dataDir,
    JWT_SECRET: TEST_JWT_SECRET,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
    SHUTDOWN_TIMEOUT_MS: "2000",
    // Every test talks from 127.0.0.1; tests of the per-IP budget set their own.
    OTP_SENDS_PER_IP_PER_HOUR: "100000",
    // Tests send hundreds of messages as one user; tests of the per-user limits turn them on.
    RATE_LIMITS: "off",
    ...env,
  });
  let server: ChatwireServer;
  try {
    server = await ChatwireServer.create(config, {
      logger: createLogger(config.logLevel),
      ...createOpts,
      // PGlite is one process's: a second embedded instance shares the handle and the in-process bus.
      ...(shared && !config.databaseUrl ? { database: shared.database } : {}),
      ...(shared && !config.natsUrl ? { bus: shared.bus } : {}),
    });
    await server.start();
  } catch (err) {
    await database?.drop();
    if (!shareWith) await deleteQueueStream(config);
    throw err;
  }
  return {
    server,
    config,
    url: server.url,
    port: server.port,
    async stop() {
      await server.stop();
      await database?.drop();
      if (!shareWith) await deleteQueueStream(config);
    },
  };
}

/** Removes the deployment's JetStream stream (and so its consumer), if there is one. */
export async function deleteQueueStream(config: Pick<Config, "natsUrl" | "natsSubjectPrefix">): Promise<void> {
  if (!config.natsUrl) return;
  const nc = await connect({ servers: config.natsUrl.split(","), reconnect: false }).catch(() => undefined);
  if (!nc) return;
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(streamName(config.natsSubjectPrefix)).catch(() => undefined);
    // The push stream (server/push/push-stream.ts) beside it.
    await jsm.streams.delete(`${config.natsSubjectPrefix.toUpperCase().replaceAll("-", "_")}_PUSH`).catch(() => undefined);
  } finally {
    await nc.close();
  }
}
