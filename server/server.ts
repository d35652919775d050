import { Code, ConnectError } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import type { Config } from "./config.js";
import { systemClock, type AppContext, type Clock } from "./context.js";
import { openDatabase, type DatabaseHandle } from "./db/database.js";
import { migrateToLatest, pendingMigrations } from "./db/migrate.js";
import { HealthState } from "./health.js";
import { createHttpRoutes, type Readiness } from "./http/http-routes.js";
import { deadlineInterceptor } from "./interceptors/deadline.js";
import { observabilityInterceptor } from "./interceptors/observability.js";
import { Listener } from "./listener.js";
import { createLogger } from "./logger.js";
import { connectNats, natsConnected } from "./messaging/nats.js";
import { Metrics } from "./metrics.js";
import { registerRoutes } from "./routes.js";

export interface CreateOptions {
  logger?: Logger;
  clock?: Clock;
}

/**
 * One Chatwire process: opens the database (and NATS), migrates, and serves
 * every protocol on one port. create() → start() → stop().
 */
export class ChatwireServer {
  private listener: Listener | undefined;
  private boundPort: number | undefined;
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly ctx: AppContext,
    private readonly shutdown: AbortController,
  ) {}

  static async create(config: Config, opts: CreateOptions = {}): Promise<ChatwireServer> {
    const logger = opts.logger ?? createLogger(config.logLevel);
    const started = Date.now();
    const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, logger });
    let nats: NatsConnection | undefined;
    try {
      await migrateToLatest(database.db, logger);
      if (config.natsUrl) nats = await connectNats(config.natsUrl, `chatwire-${process.pid}`, logger);
    } catch (err) {
      await database.close();
      throw err;
    }
    const shutdown = new AbortController();
    const ctx: AppContext = {
      config,
      logger,
      database,
      nats,
      metrics: new Metrics(),
      health: new HealthState(),
      clock: opts.clock ?? systemClock,
      shutdownSignal: shutdown.signal,
    };
    logger.info(
      { profile: config.profile, database: database.kind, nats: Boolean(nats), roles: [...config.roles], ms: Date.now() - started },
      "chatwire initialised",
    );
    return new ChatwireServer(ctx, shutdown);
  }

  /** Listens on config.port (0 picks a free port) and resolves with the bound port. */
  async start(): Promise<number> {
    const { config, logger, metrics, health } = this.ctx;
    let serviceNames: string[] = [];
    const rpc = connectNodeAdapter({
      routes: (router) => {
        serviceNames = registerRoutes(router, this.ctx);
      },
      readMaxBytes: config.maxMessageBytes,
      writeMaxBytes: config.maxMessageBytes,
      maxTimeoutMs: config.maxRequestTimeoutMs,
      shutdownSignal: this.shutdown.signal,
      interceptors: [observabilityInterceptor(logger, metrics), deadlineInterceptor(config.requestTimeoutMs)],
    });
    const handler = createHttpRoutes({
      corsOrigins: config.corsOrigins,
      metrics,
      readiness: () => this.readiness(),
      rpc,
    });
    this.listener = new Listener(handler, { host: config.host, port: config.port, tls: config.tls, logger });
    this.boundPort = await this.listener.listen();
    health.set("", "SERVING");
    for (const name of serviceNames) health.set(name, "SERVING");
    logger.info(
      { host: config.host, port: this.boundPort, tls: Boolean(config.tls), services: serviceNames },
      `chatwire listening on ${this.url}`,
    );
    return this.boundPort;
  }

  get port(): number {
    if (this.boundPort === undefined) throw new Error("server not started");
    return this.boundPort;
  }

  /** Base URL for clients on this machine. */
  get url(): string {
    const host = this.ctx.config.host === "0.0.0.0" || this.ctx.config.host === "::" ? "127.0.0.1" : this.ctx.config.host;
    return `${this.ctx.config.tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${this.port}`;
  }

  /** Database reachable and migrated; NATS connected when configured. */
  async readiness(): Promise<Readiness> {
    const checks: Record<string, string> = {};
    let ready = !this.shutdown.signal.aborted;
    if (!ready) checks.server = "shutting down";
    try {
      await this.ctx.database.ping();
      const pending = await pendingMigrations(this.ctx.database.db);
      checks.database = pending.length === 0 ? "ok" : `pending migrations: ${pending.join(", ")}`;
      ready &&= pending.length === 0;
    } catch (err) {
      checks.database = `unreachable: ${(err as Error).message}`;
      ready = false;
    }
    if (this.ctx.nats) {
      const ok = natsConnected(this.ctx.nats);
      checks.nats = ok ? "ok" : "disconnected";
      ready &&= ok;
    }
    return { ready, checks };
  }

  /**
   * Graceful stop: report NOT_SERVING, stop accepting, end open streams with
   * Unavailable, let unary calls finish, then close NATS and the database.
   */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const { logger, health, config } = this.ctx;
    const started = Date.now();
    health.setAll("NOT_SERVING");
    this.shutdown.abort(new ConnectError("server is shutting down; reconnect to another instance", Code.Unavailable));
    await this.listener?.close(config.shutdownTimeoutMs);
    if (this.ctx.nats && !this.ctx.nats.isClosed()) {
      await this.ctx.nats.drain().catch((err: unknown) => logger.warn({ err }, "NATS drain failed"));
    }
    await this.ctx.database.close();
    logger.info({ ms: Date.now() - started }, "chatwire stopped");
  }
}

export type { DatabaseHandle };
