import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { boolVar, ConfigError, ConfigErrors, cidrsVar, intVar, type RateWindow, windowsVar } from "./config-vars.js";
import { mediaConfig, type MediaConfig } from "./media/media-config.js";
import { pushConfigFrom, type PushConfig } from "./push/push-config.js";

export { ConfigError, ConfigErrors };
export type { RateWindow };

/** Which halves of Chatwire this process runs (ARCHITECTURE.md, "Roles"). */
type Role = "api" | "worker" | "push";

type Profile = "embedded" | "production";

interface TwilioConfig {
  accountSid: string;
  authToken: string;
  verifyServiceSid: string;
}

export interface Config {
  nodeEnv: string;
  /** embedded: PGlite + in-process queue and bus; production: PostgreSQL (+ NATS). */
  profile: Profile;
  port: number;
  host: string;
  databaseUrl: string | undefined;
  /** Connections of this process's PostgreSQL pool (DATABASE_POOL_MAX). */
  databasePoolMax: number;
  natsUrl: string | undefined;
  /**
   * Prefix of every NATS name this deployment owns: subjects `<prefix>.msg.>` and
   * `<prefix>.user.<id>`, stream `<PREFIX>_MESSAGES`, consumer `<prefix>-message-worker`.
   * Lets deployments (and test runs) share one NATS without seeing each other.
   */
  natsSubjectPrefix: string;
  /** Copies JetStream keeps of the message stream (1, or 3 or 5 on a NATS cluster of at least that many servers). */
  natsStreamReplicas: number;
  dataDir: string;
  /** Undefined outside NODE_ENV=production: a dev secret is kept under dataDir. */
  jwtSecret: string | undefined;
  /** Accept the fixed dev OTP code 123456 instead of sending SMS. */
  authDevMode: boolean;
  twilio: TwilioConfig | undefined;
  /** Allowed browser origins; ["*"] allows any. Empty: no CORS headers. */
  corsOrigins: string[];
  logLevel: string;
  roles: ReadonlySet<Role>;
  tls: { certFile: string; keyFile: string } | undefined;
  /** Largest request or response message, bytes. */
  maxMessageBytes: number;
  /** Deadline for unary RPCs whose client sets none, and the largest one a client may ask for. */
  requestTimeoutMs: number;
  maxRequestTimeoutMs: number;
  /** Serve plain unary gRPC and Connect calls without connect-node's per-call pipeline (server/http/rpc-fast-path.ts). */
  rpcFastPath: boolean;
  /** How long a graceful stop waits for open requests before closing connections (≤ 9 s: the process exits within 10 s). */
  shutdownTimeoutMs: number;
  /** At start, how long an unreachable database or NATS is retried before the process gives up. */
  startupWaitSeconds: number;
  /** Server processes sharing the port (CHATWIRE_PROCESSES; server/cluster.ts); 1: this process serves. Needs DATABASE_URL and NATS_URL above 1. */
  processes: number;
  /** Set in a process the supervisor forked: its slot, 0 to processes-1 (CHATWIRE_PROCESS_INDEX, set by server/cluster.ts). */
  processIndex: number | undefined;
  auth: AuthConfig;
  worker: WorkerConfig;
  chat: ChatConfig;
  realtime: RealtimeConfig;
  users: UsersConfig;
  status: StatusConfig;
  media: MediaConfig;
  rateLimits: RateLimitsConfig;
  /** Proxies whose X-Forwarded-For / Forwarded may name the client (CIDRs, normalised "address/prefix"); empty: none. */
  trustedProxies: string[];
  /** Which header trusted proxies name the client in. */
  trustedProxyHeader: "x-forwarded-for" | "forwarded";
  /** Push notifications (server/push/): providers and delivery. */
  push: PushConfig;
}

/**
 * Per-user call limits (RATE_LIMIT_*), each a list of windows that all apply;
 * an empty list is no limit. Which RPCs each one counts, and where (memory per
 * instance or the shared database), is server/interceptors/rate-limit.ts's table.
 */
export interface RateLimitsConfig {
  sendMessage: RateWindow[];
  react: RateWindow[];
  edit: RateWindow[];
  typing: RateWindow[];
  createGroup: RateWindow[];
  createDirect: RateWindow[];
  addParticipants: RateWindow[];
  createStatus: RateWindow[];
  syncContacts: RateWindow[];
}

interface UsersConfig {
  /** Phone numbers SyncContacts may check per account per 24 h (numbers already among its contacts are free). */
  contactSyncDailyBudget: number;
}

interface StatusConfig {
  /** How often expired statuses and their views are deleted. */
  purgeIntervalSeconds: number;
}

/** Subscribe streams, typing, presence and the inbox they replay. */
export interface RealtimeConfig {
  /** A heartbeat event after this many quiet seconds on a stream. */
  heartbeatSeconds: number;
  /** Events a stream may hold for a slow device before it is cut off (ResourceExhausted). */
  streamBufferEvents: number;
  /** Open streams per user; opening one more closes the oldest. */
  maxStreamsPerUser: number;
  /** A typing indicator ends this long after the last SendTyping unless repeated. */
  typingTtlMs: number;
  /** Stored events are replayable this long; older ones are pruned (a resume from before gets resync_required). */
  inboxRetentionDays: number;
  /** How often the inbox is pruned. */
  inboxPruneIntervalSeconds: number;
}

/** The message worker (JetStream consumer). */
interface WorkerConfig {
  /** Messages pulled and stored per transaction, at most. */
  batchSize: number;
  /** JetStream redelivers a message not acked this long after delivery (a crashed worker's). */
  ackWaitSeconds: number;
  /**
   * Conversations hash into this many partitions, each worked by one worker at
   * a time. Fixed for a deployment: change it only with no messages queued.
   */
  partitions: number;
}

interface ChatConfig {
  /** Largest group, the owner included. */
  maxParticipants: number;
  maxTextLength: number;
  /** Own messages can be edited this long after sending. */
  editWindowSeconds: number;
  /** Own messages can be deleted for everyone this long after sending. */
  deleteWindowSeconds: number;
  /** Conversations a user may pin at the top of their chat list at once. */
  maxPinnedConversations: number;
}

interface AuthConfig {
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  /** A replaced refresh token still yields the current pair this long after rotation (lost responses). */
  refreshReuseGraceSeconds: number;
  otpTtlSeconds: number;
  otpMaxAttempts: number;
  /** SendOTP per phone number: one per `otpResendSeconds`, `otpSendsPerWindow` per `otpSendWindowSeconds`. */
  otpResendSeconds: number;
  otpSendsPerWindow: number;
  otpSendWindowSeconds: number;
  /** SendOTP per client IP across numbers, per hour. */
  otpSendsPerIpPerHour: number;
  /** How long an instance trusts that a session is live before asking the database again. */
  sessionCacheSeconds: number;
}

/** Set by the supervisor (server/cluster.ts) in each process it forks: that process's slot. */
export const PROCESS_INDEX_VARIABLE = "CHATWIRE_PROCESS_INDEX";

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
const DEV_JWT_MIN = 32;

type Env = Record<string, string | undefined>;

/**
 * The only reader of process.env. Validates every variable and fills defaults.
 * Throws a ConfigError naming the bad variable, or a ConfigErrors listing every
 * one, so a start reports all problems at once: after a bad value the check goes
 * on as if that variable were unset (its default), until nothing more is wrong or
 * a missing one stops it.
 */
export function loadConfig(env: Env = process.env): Config {
  const errors: ConfigError[] = [];
  let current = env;
  for (;;) {
    try {
      const config = checkConfig(current);
      if (errors.length === 0) return config;
      break;
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      errors.push(...(err instanceof ConfigErrors ? err.errors : [err]));
      const set = current[err.variable]?.trim();
      // A missing variable (or one already dropped) cannot be passed over: report what was found.
      if (set === undefined || set === "" || errors.length >= 20) break;
      current = { ...current, [err.variable]: undefined };
    }
  }
  throw ConfigErrors.of(errors);
}

function checkConfig(env: Env): Config {
  const get = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v === undefined || v === "" ? undefined : v;
  };
  const nodeEnv = get("NODE_ENV") ?? "development";
  const isProduction = nodeEnv === "production";

  const databaseUrl = get("DATABASE_URL");
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError("DATABASE_URL", "must be a postgres:// or postgresql:// URL");
  }
  const databasePoolMax = intVar(get, "DATABASE_POOL_MAX", 10, 1, 1000);
  const natsUrl = get("NATS_URL");
  if (natsUrl !== undefined) {
    for (const server of natsUrl.split(",")) {
      if (!/^(nats|tls|ws|wss):\/\/[^\s]+$|^[\w.-]+:\d+$/.test(server.trim())) {
        throw new ConfigError("NATS_URL", `"${server}" is not a NATS server URL such as nats://127.0.0.1:4222`);
      }
    }
  }
  const natsSubjectPrefix = get("NATS_SUBJECT_PREFIX") ?? "chatwire";
  if (!/^[a-z0-9_-]{1,32}$/.test(natsSubjectPrefix)) {
    throw new ConfigError("NATS_SUBJECT_PREFIX", `must be 1 to 32 of a-z, 0-9, _ and -, got "${natsSubjectPrefix}"`);
  }
  const natsStreamReplicas = intVar(get, "NATS_STREAM_REPLICAS", 1, 1, 5);
  const profile: Profile = databaseUrl ? "production" : "embedded";

  const port = intVar(get, "PORT", 8080, 0, 65535);
  const host = get("HOST") ?? (profile === "embedded" ? "127.0.0.1" : "0.0.0.0");
  const dataDir = path.resolve(get("CHATWIRE_DATA_DIR") ?? "./.chatwire");

  const jwtSecret = get("JWT_SECRET");
  if (jwtSecret !== undefined && jwtSecret.length < DEV_JWT_MIN) {
    throw new ConfigError("JWT_SECRET", `must be at least ${DEV_JWT_MIN} characters`);
  }

  const twilioVars = ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_VERIFY_SERVICE_SID"] as const;
  const twilioSet = twilioVars.filter((v) => get(v) !== undefined);
  let twilio: TwilioConfig | undefined;
  if (twilioSet.length > 0 && twilioSet.length < twilioVars.length) {
    const missing = twilioVars.find((v) => get(v) === undefined)!;
    throw new ConfigError(missing, `is required when ${twilioSet.join(", ")} is set (Twilio Verify needs all three)`);
  }
  if (twilioSet.length === twilioVars.length) {
    twilio = {
      accountSid: get("TWILIO_ACCOUNT_SID")!,
      authToken: get("TWILIO_AUTH_TOKEN")!,
      verifyServiceSid: get("TWILIO_VERIFY_SERVICE_SID")!,
    };
  }
  const authDevMode = boolVar(get, "AUTH_DEV_MODE", twilio === undefined && !isProduction);

  const corsRaw = get("CORS_ORIGINS");
  const corsOrigins =
    corsRaw === undefined
      ? isProduction
        ? []
        : ["*"]
      : corsRaw
          .split(",")
          .map((o) => o.trim())
          .filter(Boolean);
  for (const origin of corsOrigins) {
    if (origin !== "*" && !/^https?:\/\/[^/\s]+$/.test(origin)) {
      throw new ConfigError("CORS_ORIGINS", `"${origin}" is not an origin such as https://app.example.com (no path, no trailing slash) or *`);
    }
  }

  const logLevel = get("LOG_LEVEL") ?? "info";
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError("LOG_LEVEL", `must be one of ${LOG_LEVELS.join(", ")}`);
  }

  const rolesRaw = (get("CHATWIRE_ROLES") ?? "api,worker,push")
    .split(",")
    .map((r) => r.trim())
    .filter(Boolean);
  if (rolesRaw.length === 0 || rolesRaw.some((r) => r !== "api" && r !== "worker" && r !== "push")) {
    throw new ConfigError("CHATWIRE_ROLES", `must be a comma-separated list of api, worker and push, got "${get("CHATWIRE_ROLES")}"`);
  }
  const roles = new Set(rolesRaw as Role[]);

  const certFile = get("TLS_CERT_FILE");
  const keyFile = get("TLS_KEY_FILE");
  let tls: Config["tls"];
  if (certFile !== undefined || keyFile !== undefined) {
    if (certFile === undefined) throw new ConfigError("TLS_CERT_FILE", "is required when TLS_KEY_FILE is set");
    if (keyFile === undefined) throw new ConfigError("TLS_KEY_FILE", "is required when TLS_CERT_FILE is set");
    if (!existsSync(certFile)) throw new ConfigError("TLS_CERT_FILE", `file not found: ${certFile}`);
    if (!existsSync(keyFile)) throw new ConfigError("TLS_KEY_FILE", `file not found: ${keyFile}`);
    tls = { certFile, keyFile };
  }

  const maxMessageBytes = intVar(get, "MAX_MESSAGE_BYTES", 4 * 1024 * 1024, 1024, 64 * 1024 * 1024);
  const requestTimeoutMs = intVar(get, "REQUEST_TIMEOUT_MS", 30_000, 100, 3_600_000);
  const maxRequestTimeoutMs = intVar(get, "MAX_REQUEST_TIMEOUT_MS", 300_000, 100, 86_400_000);
  const rpcFastPath = boolVar(get, "RPC_FAST_PATH", true);
  const shutdownTimeoutMs = intVar(get, "SHUTDOWN_TIMEOUT_MS", 8_000, 0, 9_000);
  const startupWaitSeconds = intVar(get, "STARTUP_WAIT_SECONDS", 60, 0, 3600);
  const auth: AuthConfig = {
    accessTokenTtlSeconds: intVar(get, "ACCESS_TOKEN_TTL_SECONDS", 15 * 60, 10, 24 * 3600),
    refreshTokenTtlSeconds: intVar(get, "REFRESH_TOKEN_TTL_SECONDS", 7 * 24 * 3600, 60, 365 * 24 * 3600),
    refreshReuseGraceSeconds: intVar(get, "REFRESH_REUSE_GRACE_SECONDS", 5, 0, 5),
    otpTtlSeconds: 10 * 60,
    otpMaxAttempts: 5,
    otpResendSeconds: 30,
    otpSendsPerWindow: 5,
    otpSendWindowSeconds: 10 * 60,
    otpSendsPerIpPerHour: intVar(get, "OTP_SENDS_PER_IP_PER_HOUR", 30, 1, 1_000_000),
    sessionCacheSeconds: intVar(get, "SESSION_CACHE_SECONDS", 30, 0, 3600),
  };

  const chat: ChatConfig = {
    maxParticipants: intVar(get, "CHAT_MAX_PARTICIPANTS", 1024, 2, 100_000),
    maxTextLength: intVar(get, "CHAT_MAX_TEXT_LENGTH", 4096, 1, 65_536),
    editWindowSeconds: intVar(get, "CHAT_EDIT_WINDOW_SECONDS", 15 * 60, 0, 365 * 24 * 3600),
    deleteWindowSeconds: intVar(get, "CHAT_DELETE_WINDOW_SECONDS", 60 * 3600, 0, 365 * 24 * 3600),
    maxPinnedConversations: intVar(get, "CHAT_MAX_PINNED_CONVERSATIONS", 3, 0, 1000),
  };
  const realtime: RealtimeConfig = {
    heartbeatSeconds: intVar(get, "REALTIME_HEARTBEAT_SECONDS", 15, 1, 300),
    streamBufferEvents: intVar(get, "REALTIME_STREAM_BUFFER", 1000, 10, 1_000_000),
    maxStreamsPerUser: intVar(get, "REALTIME_MAX_STREAMS_PER_USER", 10, 1, 1000),
    typingTtlMs: intVar(get, "REALTIME_TYPING_TTL_MS", 6000, 100, 60_000),
    inboxRetentionDays: intVar(get, "INBOX_RETENTION_DAYS", 30, 1, 3650),
    inboxPruneIntervalSeconds: intVar(get, "INBOX_PRUNE_INTERVAL_SECONDS", 3600, 1, 86_400),
  };
  const users: UsersConfig = {
    contactSyncDailyBudget: intVar(get, "CONTACT_SYNC_DAILY_BUDGET", 5000, 1, 1_000_000),
  };
  const status: StatusConfig = {
    purgeIntervalSeconds: intVar(get, "STATUS_PURGE_INTERVAL_SECONDS", 600, 1, 86_400),
  };
  const limitsOn = boolVar(get, "RATE_LIMITS", true);
  const limit = (name: string, def: string): RateWindow[] => (limitsOn ? windowsVar(get, name, def) : []);
  const rateLimits: RateLimitsConfig = {
    sendMessage: limit("RATE_LIMIT_SEND_MESSAGE", "20/1s,600/1m"),
    react: limit("RATE_LIMIT_REACT", "20/1s,600/1m"),
    edit: limit("RATE_LIMIT_EDIT", "10/1s,300/1m"),
    typing: limit("RATE_LIMIT_TYPING", "20/1s,600/1m"),
    createGroup: limit("RATE_LIMIT_CREATE_GROUP", "30/1h,100/1d"),
    createDirect: limit("RATE_LIMIT_CREATE_DIRECT", "300/1h,1000/1d"),
    addParticipants: limit("RATE_LIMIT_ADD_PARTICIPANTS", "100/1h,500/1d"),
    createStatus: limit("RATE_LIMIT_CREATE_STATUS", "60/1h,200/1d"),
    syncContacts: limit("RATE_LIMIT_SYNC_CONTACTS", "60/1h,500/1d"),
  };
  const trustedProxies = cidrsVar(get, "TRUSTED_PROXIES");
  const proxyHeader = (get("TRUSTED_PROXY_HEADER") ?? "x-forwarded-for").toLowerCase();
  if (proxyHeader !== "x-forwarded-for" && proxyHeader !== "forwarded") {
    throw new ConfigError("TRUSTED_PROXY_HEADER", `must be x-forwarded-for or forwarded, got "${get("TRUSTED_PROXY_HEADER")}"`);
  }
  const trustedProxyHeader = proxyHeader;
  const processesRaw = get("CHATWIRE_PROCESSES") ?? "1";
  if (processesRaw !== "auto" && !/^\d+$/.test(processesRaw)) {
    throw new ConfigError("CHATWIRE_PROCESSES", `must be a whole number or auto (one per core), got "${processesRaw}"`);
  }
  const processes = processesRaw === "auto" ? os.availableParallelism() : intVar(get, "CHATWIRE_PROCESSES", 1, 1, 256);
  if (processes > 1 && (databaseUrl === undefined || natsUrl === undefined)) {
    throw new ConfigError(
      "CHATWIRE_PROCESSES",
      `${processes} processes need DATABASE_URL and NATS_URL: the embedded database (PGlite) and the in-process queue and bus belong to one process. Set CHATWIRE_PROCESSES=1 or configure PostgreSQL and NATS`,
    );
  }
  const processIndex = get(PROCESS_INDEX_VARIABLE) === undefined ? undefined : intVar(get, PROCESS_INDEX_VARIABLE, 0, 0, 255);
  const worker: WorkerConfig = {
    batchSize: intVar(get, "WORKER_BATCH_SIZE", 100, 1, 1000),
    ackWaitSeconds: intVar(get, "WORKER_ACK_WAIT_SECONDS", 30, 1, 3600),
    partitions: intVar(get, "MESSAGE_PARTITIONS", 16, 1, 1024),
  };

  if (isProduction) {
    // All of production's requirements at once: one start lists everything missing.
    const missing: ConfigError[] = [];
    if (databaseUrl === undefined) {
      missing.push(new ConfigError("DATABASE_URL", "is required when NODE_ENV=production (the embedded database is for development only)"));
    }
    if (jwtSecret === undefined) {
      missing.push(new ConfigError("JWT_SECRET", "is required when NODE_ENV=production"));
    }
    if (authDevMode) {
      missing.push(new ConfigError("AUTH_DEV_MODE", "the dev OTP code is refused when NODE_ENV=production; configure TWILIO_* instead"));
    }
    if (twilio === undefined) {
      missing.push(
        new ConfigError(
          "TWILIO_ACCOUNT_SID",
          "Twilio Verify (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_VERIFY_SERVICE_SID) is required when NODE_ENV=production",
        ),
      );
    }
    if (missing.length > 0) throw ConfigErrors.of(missing);
  }

  return {
    nodeEnv,
    profile,
    port,
    host,
    databaseUrl,
    databasePoolMax,
    natsUrl,
    natsSubjectPrefix,
    natsStreamReplicas,
    chat,
    realtime,
    users,
    status,
    media: mediaConfig(get, dataDir),
    dataDir,
    jwtSecret,
    authDevMode,
    twilio,
    corsOrigins,
    logLevel,
    roles,
    tls,
    maxMessageBytes,
    requestTimeoutMs,
    maxRequestTimeoutMs,
    rpcFastPath,
    shutdownTimeoutMs,
    startupWaitSeconds,
    processes,
    processIndex,
    auth,
    worker,
    rateLimits,
    trustedProxies,
    trustedProxyHeader,
    push: pushConfigFrom(get, isProduction, dataDir),
  };
}
