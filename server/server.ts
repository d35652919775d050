import { Code, ConnectError } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import type { IncomingMessage } from "node:http";
import type { Agent as HttpsAgent } from "node:https";
import type { Http2ServerRequest } from "node:http2";
import type { Logger } from "pino";
import type { Config } from "./config.js";
import { systemClock, type Clock } from "./clock.js";
import type { AppContext } from "./context.js";
import { openDatabase, type DatabaseHandle } from "./db/database.js";
import { migrateToLatest, pendingMigrations } from "./db/migrate.js";
import { HealthState } from "./health.js";
import { createHttpRoutes, type Readiness } from "./http/http-routes.js";
import { deadlineInterceptor } from "./interceptors/deadline.js";
import { observabilityInterceptor } from "./interceptors/observability.js";
import { Listener, type RequestHandler } from "./listener.js";
import { RpcFastPath } from "./http/rpc-fast-path.js";
import { ClientAddress } from "./http/client-address.js";
import { createNodeAdapter } from "./http/node-adapter.js";
import { createLogger } from "./logger.js";
import { NatsLink } from "./messaging/nats.js";
import { Metrics, registerLiveGauges } from "./metrics.js";
import { registerRoutes } from "./routes.js";
import { peerKey } from "./auth/auth-context.js";
import { DevOtpProvider } from "./auth/dev-otp-provider.js";
import { resolveJwtSecret } from "./auth/jwt-secret.js";
import type { OtpProvider } from "./auth/otp-provider.js";
import { SessionGuard } from "./auth/session-guard.js";
import { TokenService } from "./auth/tokens.js";
import { TwilioOtpProvider } from "./auth/twilio-otp-provider.js";
import { PgLeaderLock } from "./db/leader-lock.js";
import { isConnectionError } from "./db/connection-errors.js";
import { targetOf, untilReachable } from "./startup-wait.js";
import { authInterceptor } from "./interceptors/auth.js";
import { CallLimits, rateLimitInterceptor } from "./interceptors/rate-limit.js";
import { textFieldsInterceptor } from "./interceptors/text-fields.js";
import { InProcessBus, NatsBus, type EventBus } from "./messaging/bus.js";
import { createContextValues } from "@connectrpc/connect";
import { InlineQueue } from "./messaging/inline-queue.js";
import { JetStreamQueue } from "./messaging/jetstream-queue.js";
import type { MessageQueue } from "./messaging/message-queue.js";
import type { WorkerHooks } from "./messaging/message-worker.js";
import { WorkerPool } from "./messaging/worker-pool.js";
import { LocalPartitionLocks, PgPartitionLocks } from "./db/partition-locks.js";
import { RealtimeHub } from "./realtime/hub.js";
import { resetTransportKey, transportResetter } from "./realtime/transport-key.js";
import { scheduleJobs } from "./jobs.js";
import { Scheduler } from "./scheduler.js";
import { Push } from "./push/push.js";
import { PushPool } from "./push/push-pool.js";
import { MediaHub } from "./media/media-hub.js";

export interface CreateOptions {
  logger?: Logger;
  clock?: Clock;
  /** Share a database with another instance in this process (the caller closes it). */
  database?: DatabaseHandle;
  /** Share a bus with another instance in this process (embedded profile tests). */
  bus?: EventBus;
  /** Replace the OTP provider (tests reach Twilio's edge only through a fake). */
  otp?: OtpProvider;
  /** Tests only: hooks into the message worker. */
  workerHooks?: WorkerHooks;
  /** Tests only: an https agent trusting the fake Web Push service's certificate. */
  webPushAgent?: HttpsAgent;
}

/**
 * One Chatwire process: opens the database (and NATS), migrates, and serves
 * every protocol on one port. create() → start() → stop().
 */
export class ChatwireServer {
  private listener: Listener | undefined;
  private boundPort: number | undefined;
  private stopping: Promise<void> | undefined;
  /** Every periodic job of this server (jobs.ts). */
  private readonly scheduler: Scheduler;
  /** Consumes the JetStream queue's partitions; only with NATS and the "worker" role. */
  private worker: WorkerPool | undefined;
  /** Consumes the push stream's partitions; only with NATS and the "push" role. */
  private pushPool: PushPool | undefined;

  private constructor(
    readonly ctx: AppContext,
    private readonly shutdown: AbortController,
    private readonly ownsDatabase: boolean,
    private readonly workerHooks: WorkerHooks | undefined,
  ) {
    this.scheduler = new Scheduler(ctx.logger);
  }

  static async create(config: Config, opts: CreateOptions = {}): Promise<ChatwireServer> {
    const logger = opts.logger ?? createLogger(config.logLevel);
    const started = Date.now();
    const database =
      opts.database ?? (await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, logger, poolMax: config.databasePoolMax }));
    let nats: NatsLink | undefined;
    let jetStreamQueue: JetStreamQueue | undefined;
    let jwtSecret: string;
    // Dependencies may come up after us (containers start in any order): wait for them, within bounds.
    try {
      await untilReachable(() => migrateToLatest(database.db, logger), {
        dependency: "database",
        target: config.databaseUrl ? targetOf(config.databaseUrl) : database.kind,
        waitSeconds: config.startupWaitSeconds,
        logger,
        retryable: isConnectionError,
      });
      if (config.natsUrl) {
        const natsUrl = config.natsUrl;
        nats = await untilReachable(() => NatsLink.connect(natsUrl, `chatwire-${process.pid}`, logger), {
          dependency: "NATS",
          target: targetOf(natsUrl),
          waitSeconds: config.startupWaitSeconds,
          logger,
        });
        jetStreamQueue = new JetStreamQueue({
          nc: nats.nc,
          connected: () => nats!.connected(),
          subjectPrefix: config.natsSubjectPrefix,
          logger,
          ackWaitMs: config.worker.ackWaitSeconds * 1000,
          partitions: config.worker.partitions,
          replicas: config.natsStreamReplicas,
        });
        await jetStreamQueue.provision();
      }
      jwtSecret = await resolveJwtSecret(config, logger);
    } catch (err) {
      await nats?.nc.close();
      if (!opts.database) await database.close();
      throw err;
    }
    const clock = opts.clock ?? systemClock;
    const bus = opts.bus ?? (nats ? new NatsBus(nats.nc, logger) : new InProcessBus());
    const otp = opts.otp ?? createOtpProvider(config, logger);
    const shutdown = new AbortController();
    const guard = new SessionGuard(database.db, bus, config.auth.sessionCacheSeconds * 1000, clock, logger);
    const metrics = new Metrics();
    let push: Push;
    try {
      push = await Push.create({ config, db: database.db, logger, clock, registry: metrics.registry, nats, webPushAgent: opts.webPushAgent });
    } catch (err) {
      await nats?.nc.close();
      if (!opts.database) await database.close();
      throw err;
    }
    const inline = new InlineQueue({ db: database.db, bus, subjectPrefix: config.natsSubjectPrefix, clock, logger, counter: metrics.messagesStored });
    // Embedded: the push role sends right after the inline store.
    const messages: MessageQueue = jetStreamQueue ?? (config.roles.has("push") ? push.inline(inline) : inline);
    const tokens = new TokenService(
      jwtSecret,
      { accessTtlSeconds: config.auth.accessTokenTtlSeconds, refreshTtlSeconds: config.auth.refreshTokenTtlSeconds },
      clock,
    );
    const media = await MediaHub.create({
      config: config.media,
      db: database.db,
      tokens,
      guard,
      secret: jwtSecret,
      corsOrigins: config.corsOrigins,
      clock,
      logger,
    });
    // One /metrics per process (each scrape reaches whichever process gets the connection): say which.
    if (config.processIndex !== undefined) metrics.registry.setDefaultLabels({ process: String(config.processIndex) });
    const ctx: AppContext = {
      config,
      logger,
      database,
      nats,
      bus,
      messages,
      auth: {
        tokens,
        guard,
        otp,
      },
      realtime: new RealtimeHub({
        bus,
        subjectPrefix: config.natsSubjectPrefix,
        clock,
        logger,
        db: database.db,
        guard,
        config: config.realtime,
        metrics,
      }),
      media,
      metrics,
      push,
      health: new HealthState(),
      clock,
      shutdownSignal: shutdown.signal,
    };
    registerLiveGauges(metrics, {
      openStreams: () => ctx.realtime.openStreams,
      backlog: () => (jetStreamQueue ? jetStreamQueue.backlog() : Promise.resolve({ messages: 0, oldestAgeSeconds: 0 })),
    });
    logger.info(
      { profile: config.profile, database: database.kind, nats: Boolean(nats), queue: messages.kind, roles: [...config.roles], ms: Date.now() - started },
      "chatwire initialised",
    );
    return new ChatwireServer(ctx, shutdown, !opts.database, opts.workerHooks);
  }

  /** Listens on config.port (0 picks a free port) and resolves with the bound port. */
  async start(): Promise<number> {
    const { config, logger, metrics, health } = this.ctx;
    let serviceNames: string[] = [];
    this.ctx.auth.guard.start();
    this.ctx.realtime.start();
    scheduleJobs(this.scheduler, this.ctx);
    const queue = this.ctx.messages;
    if (queue instanceof JetStreamQueue && config.roles.has("worker")) {
      this.worker = new WorkerPool({
        queue,
        db: this.ctx.database.db,
        bus: this.ctx.bus,
        logger,
        clock: this.ctx.clock,
        batchSize: config.worker.batchSize,
        ackWaitMs: config.worker.ackWaitSeconds * 1000,
        registry: metrics.registry,
        hooks: this.workerHooks,
        // What it stored goes onto the push stream, for the push role.
        onStored: this.ctx.push.published,
        // One worker per partition at a time (per-conversation order); the workers of all instances share them.
        locks: config.databaseUrl ? new PgPartitionLocks(config.databaseUrl, `chatwire-partitions:${queue.names.stream}`, logger) : new LocalPartitionLocks(),
        // The lock of releases before partitions: draining their consumer excludes an old worker still running.
        legacyLock: config.databaseUrl ? new PgLeaderLock(config.databaseUrl, `chatwire-worker:${queue.names.stream}`, logger) : undefined,
      });
      this.worker.start();
      // Ready means it knows which partitions it holds (none: standing by).
      await Promise.race([this.worker.decided, new Promise((r) => setTimeout(r, 3000).unref())]);
    }
    const pushStream = this.ctx.push.stream;
    if (pushStream && config.roles.has("push")) {
      this.pushPool = new PushPool({
        stream: pushStream,
        dispatcher: this.ctx.push.dispatcher,
        locks: config.databaseUrl
          ? new PgPartitionLocks(config.databaseUrl, `chatwire-push-partitions:${pushStream.stream}`, logger)
          : new LocalPartitionLocks(),
        logger,
        ackWaitMs: config.worker.ackWaitSeconds * 1000,
      });
      this.pushPool.start();
    }
    const interceptors = [
      observabilityInterceptor(logger, metrics),
      deadlineInterceptor(config.requestTimeoutMs),
      authInterceptor(this.ctx.auth.tokens, this.ctx.auth.guard),
      textFieldsInterceptor(),
    ];
    const callLimits = new CallLimits(config.rateLimits, this.ctx.database.db, logger);
    if (!callLimits.empty) interceptors.push(rateLimitInterceptor(callLimits));
    else logger.warn("RATE_LIMITS: no per-user call limits are on");
    // The client's address, for per-IP limits: the socket's, or what a TRUSTED_PROXIES proxy says it is.
    const clientAddress = new ClientAddress(config.trustedProxies, config.trustedProxyHeader);
    const contextValues = (req: Http2ServerRequest | IncomingMessage) =>
      createContextValues().set(peerKey, clientAddress.of(req.socket?.remoteAddress, req.headers)).set(resetTransportKey, transportResetter(req));
    // JSON as the original API named it (phone_number, access_token) and with every field
    // present (is_valid: false), as Postman shows it; parsing accepts both spellings, and
    // unknown fields from newer clients are ignored.
    const jsonOptions = { useProtoFieldName: true, alwaysEmitImplicit: true, ignoreUnknownFields: true };
    const acceptCompression = [compressionGzip, compressionBrotli];
    const fast = config.rpcFastPath
      ? new RpcFastPath({
          interceptors,
          jsonOptions,
          readMaxBytes: config.maxMessageBytes,
          writeMaxBytes: config.maxMessageBytes,
          maxTimeoutMs: config.maxRequestTimeoutMs,
          acceptCompression,
          shutdownSignal: this.shutdown.signal,
          contextValues,
          logger,
          counter: metrics.fastPathCalls,
        })
      : undefined;
    const adapter = createNodeAdapter({
      routes: (router) => {
        serviceNames = registerRoutes(fast ? fast.recording(router) : router, this.ctx);
      },
      readMaxBytes: config.maxMessageBytes,
      writeMaxBytes: config.maxMessageBytes,
      maxTimeoutMs: config.maxRequestTimeoutMs,
      jsonOptions,
      acceptCompression,
      shutdownSignal: this.shutdown.signal,
      interceptors,
      contextValues,
      logger,
      drainBytes: 4 * config.maxMessageBytes,
    });
    // Plain unary calls take the lean path; everything else (streams, gRPC-Web, GET, compressed requests) connect-node.
    const rpc: RequestHandler = fast ? (req, res) => fast.handle(req, res) || adapter(req, res) : adapter;
    const handler = createHttpRoutes({
      corsOrigins: config.corsOrigins,
      metrics,
      readiness: () => this.readiness(),
      rpc,
      media: (req, res) => this.ctx.media.handle(req, res),
    });
    this.listener = new Listener(handler, { host: config.host, port: config.port, tls: config.tls, logger, drainBytes: 4 * config.maxMessageBytes });
    this.boundPort = await this.listener.listen();
    health.set("", "SERVING");
    for (const name of serviceNames) health.set(name, "SERVING");
    logger.info({ host: config.host, port: this.boundPort, tls: Boolean(config.tls), services: serviceNames }, `chatwire listening on ${this.url}`);
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

  /** Database reachable and migrated; NATS connected and the message queue provisioned when configured. */
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
      const ok = this.ctx.nats.connected();
      checks.nats = ok ? "ok" : "disconnected";
      ready &&= ok;
    }
    const queueReady = this.ctx.messages.ready();
    checks.queue = `${this.ctx.messages.kind}: ${queueReady ? "ok" : "unavailable"}`;
    ready &&= queueReady;
    if (this.worker) {
      checks.worker = !this.worker.running ? "stopped" : this.worker.standby ? "standby" : "running";
      // "3 of 16: 0,5,9": the partitions this instance's worker holds (MESSAGE_PARTITIONS).
      const owned = this.worker.owned;
      checks.partitions = `${owned.length} of ${this.ctx.config.worker.partitions}: ${owned.join(",")}`;
      if (this.worker.draining) checks.partitions += " (draining the pre-partition consumer)";
    }
    if (this.pushPool) checks.push = `${this.pushPool.owned.length} of ${this.ctx.config.worker.partitions} partitions`;
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
    // No new runs from here; runs in progress end before the database closes.
    const jobsStopped = this.scheduler.stop();
    await this.listener?.close(config.shutdownTimeoutMs);
    // Streams ended with the listener; their presence rows are removed before the database closes.
    await this.ctx.realtime.stop();
    await jobsStopped;
    // After the API (its last SendMessage calls have published) and before
    // NATS drains (the worker still acks what it stored).
    await this.worker?.stop().catch((err: unknown) => logger.warn({ err }, "stopping the message worker failed"));
    // Pushes waiting for their collapse window go out now; then no more.
    await this.pushPool?.stop().catch((err: unknown) => logger.warn({ err }, "stopping push delivery failed"));
    await this.ctx.push.dispatcher.stop();
    this.ctx.auth.guard.stop();
    if (this.ctx.nats && !this.ctx.nats.nc.isClosed()) {
      await this.ctx.nats.nc.drain().catch((err: unknown) => logger.warn({ err }, "NATS drain failed"));
    }
    if (this.ownsDatabase) await this.ctx.database.close();
    logger.info({ ms: Date.now() - started }, "chatwire stopped");
  }
}

function createOtpProvider(config: Config, logger: Logger): OtpProvider {
  if (config.authDevMode || !config.twilio) {
    logger.warn("AUTH DEV MODE: every phone number logs in with the code 123456; no SMS is sent. Never use this in production.");
    return new DevOtpProvider(logger);
  }
  return new TwilioOtpProvider({ ...config.twilio, logger });
}
