import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import { RateLimiterMemory, RateLimiterPostgres, RateLimiterRes, type RateLimiterAbstract } from "rate-limiter-flexible";
import { ChatService, type CreateConversationRequest } from "../../gen/chat/chat_pb.js";
import { RealtimeService } from "../../gen/realtime/realtime_pb.js";
import { StatusService } from "../../gen/status/status_pb.js";
import { UserService } from "../../gen/user/user_pb.js";
import { callerKey } from "../auth/auth-context.js";
import type { RateLimitsConfig, RateWindow } from "../config.js";
import { RATE_LIMIT_TABLE, rateLimitStoreClient } from "../db/rate-limit-store.js";
import type { Database } from "../db/schema.js";

/**
 * Where each limit counts. Per-message RPCs count in memory, per instance: a
 * database round trip per message would cost more than the message itself,
 * and their windows are short (a user spread over N instances gets at most N
 * times the limit). The rest are rare calls with long windows, counted in the
 * database every instance shares (after the limit is spent, refusals are
 * answered from memory until the window ends).
 */
const LIMITS: Record<keyof RateLimitsConfig, { what: string; store: "memory" | "database" }> = {
  sendMessage: { what: "too many messages sent", store: "memory" },
  react: { what: "too many reactions", store: "memory" },
  edit: { what: "too many edits", store: "memory" },
  typing: { what: "too many typing indicators", store: "memory" },
  createGroup: { what: "too many groups created", store: "database" },
  createDirect: { what: "too many conversations opened", store: "database" },
  addParticipants: { what: "too many AddParticipants calls", store: "database" },
  createStatus: { what: "too many statuses posted", store: "database" },
  syncContacts: { what: "too many SyncContacts calls", store: "database" },
};

/** Which limit each RPC counts against; CreateConversation's depends on the kind of conversation. */
function methodTable(limit: Record<keyof RateLimitsConfig, CallLimit | undefined>): Map<DescMethod, (message: unknown) => CallLimit | undefined> {
  const table = new Map<DescMethod, (message: unknown) => CallLimit | undefined>();
  const one = (method: DescMethod, l: CallLimit | undefined) => l && table.set(method, () => l);
  one(ChatService.method.sendMessage, limit.sendMessage);
  one(ChatService.method.forwardMessages, limit.sendMessage);
  // A reply to a status is a message in a direct conversation.
  one(StatusService.method.replyToStatus, limit.sendMessage);
  one(ChatService.method.reactToMessage, limit.react);
  one(ChatService.method.editMessage, limit.edit);
  one(RealtimeService.method.sendTyping, limit.typing);
  one(ChatService.method.addParticipants, limit.addParticipants);
  one(StatusService.method.createStatus, limit.createStatus);
  one(UserService.method.syncContacts, limit.syncContacts);
  if (limit.createGroup || limit.createDirect) {
    table.set(ChatService.method.createConversation, (m) => ((m as CreateConversationRequest).isGroup ? limit.createGroup : limit.createDirect));
  }
  return table;
}

/** One per-user limit: every one of its windows must have room. */
export class CallLimit {
  constructor(
    private readonly what: string,
    private readonly windows: ReadonlyArray<{ window: RateWindow; limiter: RateLimiterAbstract }>,
    private readonly logger: Logger,
  ) {}

  /**
   * Counts one call by `userId` in each window, in order, or throws
   * ResourceExhausted with the seconds to wait (message and `retry-after`).
   * Only calls that happen count: a refusal gives back what the windows
   * before it took, and the windows after it are not asked.
   */
  async take(userId: string): Promise<void> {
    for (let i = 0; i < this.windows.length; i++) {
      const { window, limiter } = this.windows[i]!;
      try {
        await limiter.consume(userId);
      } catch (err) {
        if (!(err instanceof RateLimiterRes)) {
          // Not reachable with the memory insurance behind the database; if it is, the call goes on.
          this.logger.warn({ err, limit: this.what }, "a rate limit could not be counted; letting the call through");
          continue;
        }
        for (let j = 0; j < i; j++) await this.windows[j]!.limiter.reward(userId).catch(() => undefined);
        const wait = Math.max(1, Math.ceil(err.msBeforeNext / 1000));
        throw new ConnectError(`${this.what}: at most ${window.points} per ${per(window.seconds)}; try again in ${wait} s`, Code.ResourceExhausted, {
          "retry-after": String(wait),
        });
      }
    }
  }
}

/** The per-user call limits of one server, built once from config. */
export class CallLimits {
  private readonly table: Map<DescMethod, (message: unknown) => CallLimit | undefined>;

  constructor(config: RateLimitsConfig, db: Kysely<Database>, logger: Logger) {
    const store = rateLimitStoreClient(db);
    const built = {} as Record<keyof RateLimitsConfig, CallLimit | undefined>;
    for (const name of Object.keys(LIMITS) as Array<keyof RateLimitsConfig>) {
      const windows = config[name];
      if (windows.length === 0) continue;
      built[name] = new CallLimit(
        LIMITS[name].what,
        windows.map((window) => {
          const opts = { keyPrefix: `${name}_${window.seconds}`, points: window.points, duration: window.seconds };
          const limiter: RateLimiterAbstract =
            LIMITS[name].store === "memory"
              ? new RateLimiterMemory(opts)
              : new RateLimiterPostgres({
                  ...opts,
                  storeClient: store,
                  storeType: "client",
                  tableName: RATE_LIMIT_TABLE,
                  tableCreated: true,
                  // server.ts prunes with the other expired rows.
                  clearExpiredByTimeout: false,
                  // Once over the limit, the rest of the window is refused without asking the database.
                  inMemoryBlockOnConsumed: window.points + 1,
                  // The database away: count in memory meanwhile rather than refuse or fail the call.
                  insuranceLimiter: new RateLimiterMemory(opts),
                });
          return { window, limiter };
        }),
        logger,
      );
    }
    this.table = methodTable(built);
  }

  /** No limit is configured (RATE_LIMITS=off, or each one off). */
  get empty(): boolean {
    return this.table.size === 0;
  }

  /** The limit a unary call counts against, if any. */
  limitFor(method: DescMethod, message: unknown): CallLimit | undefined {
    return this.table.get(method)?.(message);
  }
}

/**
 * Applies CallLimits to authenticated unary calls, keyed by the caller's user
 * id; it sits after the auth interceptor, so refusals are ResourceExhausted
 * with a retry-after, on every protocol and on the fast path alike.
 */
export function rateLimitInterceptor(limits: CallLimits): Interceptor {
  return (next) => (req) => {
    if (req.stream) return next(req);
    const caller = req.contextValues.get(callerKey);
    const limit = caller && limits.limitFor(req.method, req.message);
    return limit ? limit.take(caller.userId).then(() => next(req)) : next(req);
  };
}

function per(seconds: number): string {
  const units: Array<[number, string]> = [
    [86_400, "day"],
    [3600, "hour"],
    [60, "minute"],
    [1, "second"],
  ];
  for (const [size, name] of units) {
    if (seconds % size === 0) return seconds === size ? name : `${seconds / size} ${name}s`;
  }
  return `${seconds} seconds`;
}
