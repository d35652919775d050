import { loadConfig, type Config } from "../../config.js";
import { createLogger } from "../../logger.js";
import { ChatwireServer } from "../../server.js";
import { createTestDatabase } from "./test-database.js";

export const TEST_JWT_SECRET = "test-secret-test-secret-test-secret-0123456789";

export interface TestServer {
  server: ChatwireServer;
  config: Config;
  /** http://127.0.0.1:<port> */
  url: string;
  port: number;
  stop(): Promise<void>;
}

/**
 * A real Chatwire server on 127.0.0.1, port 0, with its own database: a fresh
 * PostgreSQL database when DATABASE_URL is set (plus NATS when NATS_URL is),
 * else a fresh PGlite directory. `env` overrides any variable.
 */
export async function startTestServer(env: Record<string, string | undefined> = {}): Promise<TestServer> {
  const database = await createTestDatabase();
  const config = loadConfig({
    PORT: "0",
    HOST: "127.0.0.1",
    DATABASE_URL: database.databaseUrl,
    NATS_URL: process.env.NATS_URL,
    CHATWIRE_DATA_DIR: database.dataDir,
    JWT_SECRET: TEST_JWT_SECRET,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
    SHUTDOWN_TIMEOUT_MS: "2000",
    ...env,
  });
  let server: ChatwireServer;
  try {
    server = await ChatwireServer.create(config, { logger: createLogger(config.logLevel) });
    await server.start();
  } catch (err) {
    await database.drop();
    throw err;
  }
  return {
    server,
    config,
    url: server.url,
    port: server.port,
    async stop() {
      await server.stop();
      await database.drop();
    },
  };
}
