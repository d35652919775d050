import type { AppContext } from "./context.js";
import { pruneAuthRows } from "./db/auth-store.js";
import { pruneRateLimitPoints } from "./db/rate-limit-store.js";
import { pruneRequestAnswers } from "./db/request-store.js";
import { purgeExpiredStatuses } from "./db/status-store.js";
import { purgeExpiredMessages } from "./messaging/disappearing.js";
import { PRESENCE_RENEW_MS } from "./realtime/presence.js";
import { SCHEDULED_SEND_EVERY_MS, scheduledSender } from "./services/chat/scheduled-sender.js";
import type { Scheduler } from "./scheduler.js";

/** Expired auth rows, rate-limit counters and request answers are deleted this often. */
const PRUNE_EVERY_MS = 10 * 60_000;
const MEDIA_COLLECT_EVERY_MS = 15 * 60_000;
/** Expired disappearing messages are purged this often (reads hide them from expires_at on, whatever the job's lag). */
const DISAPPEARING_PURGE_EVERY_MS = 60_000;

/** Every periodic job of a server, in one place. */
export function scheduleJobs(scheduler: Scheduler, ctx: AppContext): void {
  const { db } = ctx.database;
  const { clock, config, realtime } = ctx;
  scheduler.every("presence renewal", PRESENCE_RENEW_MS, () => realtime.renewPresence());
  scheduler.every("presence sweep", PRESENCE_RENEW_MS, () => realtime.sweepPresence());
  scheduler.every("inbox pruning", config.realtime.inboxPruneIntervalSeconds * 1000, () => realtime.pruneInbox());
  scheduler.every("auth row pruning", PRUNE_EVERY_MS, () => pruneAuthRows(db, clock.now()));
  scheduler.every("rate limit counter pruning", PRUNE_EVERY_MS, () => pruneRateLimitPoints(db, Date.now()));
  scheduler.every("request answer pruning", PRUNE_EVERY_MS, () => pruneRequestAnswers(db, clock.now()));
  // Expired statuses are already invisible (read-time filter); this removes their rows and views.
  // Media never referenced within 24 h, or whose last message or status is gone.
  scheduler.every("media collection", MEDIA_COLLECT_EVERY_MS, () => ctx.media.collect());
  scheduler.every("disappearing message purge", DISAPPEARING_PURGE_EVERY_MS, () => purgeExpiredMessages(db, ctx.bus, config.natsSubjectPrefix, clock.now()));
  scheduler.every("expired status purge", config.status.purgeIntervalSeconds * 1000, () => purgeExpiredStatuses(db, clock.now()));
  // Due scheduled messages, sent as their sender (any instance; each row claimed by one run at a time).
  scheduler.every("scheduled message sending", SCHEDULED_SEND_EVERY_MS, scheduledSender(ctx));
}
