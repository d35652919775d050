import type { Logger } from "pino";
import type { Clock } from "./clock.js";
import type { OtpProvider } from "./auth/otp-provider.js";
import type { SessionGuard } from "./auth/session-guard.js";
import type { TokenService } from "./auth/tokens.js";
import type { Config } from "./config.js";
import type { DatabaseHandle } from "./db/database.js";
import type { HealthState } from "./health.js";
import type { EventBus } from "./messaging/bus.js";
import type { NatsLink } from "./messaging/nats.js";
import type { MessageQueue } from "./messaging/message-queue.js";
import type { MediaHub } from "./media/media-hub.js";
import type { Metrics } from "./metrics.js";
import type { Push } from "./push/push.js";
import type { RealtimeHub } from "./realtime/hub.js";

/**
 * Everything a handler needs, built once per server by ChatwireServer.create.
 * Nothing here is module-level, so two servers can live in one process.
 */
export interface AppContext {
  config: Config;
  logger: Logger;
  database: DatabaseHandle;
  /** Present when NATS_URL is configured (production profile). */
  nats: NatsLink | undefined;
  /** Notices between instances: NATS subjects, or in-process when embedded. */
  bus: EventBus;
  /** Where SendMessage hands messages: JetStream with NATS, else stored inline. */
  messages: MessageQueue;
  auth: {
    tokens: TokenService;
    guard: SessionGuard;
    otp: OtpProvider;
  };
  /** Live events to users' devices (streams, typing, presence, ephemeral fan-out). */
  realtime: RealtimeHub;
  /** Media storage, tus uploads and signed downloads (server/media/). */
  media: MediaHub;
  metrics: Metrics;
  /** Push notifications: providers, dispatcher, and the push stream on the production profile. */
  push: Push;
  health: HealthState;
  clock: Clock;
  /** Aborted (with a ConnectError Unavailable) when the server starts stopping. */
  shutdownSignal: AbortSignal;
}
