import type { Agent } from "node:https";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { Clock } from "../clock.js";
import type { Config } from "../config.js";
import type { PushPlatformName } from "../db/push-store.js";
import type { Database } from "../db/schema.js";
import type { MessageQueue } from "../messaging/message-queue.js";
import type { NatsLink } from "../messaging/nats.js";
import type { OutgoingMessage, StoredMessage } from "../messaging/types.js";
import { ApnsProvider } from "./apns-provider.js";
import { PushDispatcher } from "./dispatcher.js";
import { FcmProvider, readServiceAccount } from "./fcm-provider.js";
import type { PushProvider } from "./provider.js";
import { PushStream } from "./push-stream.js";
import { resolveVapidKeys } from "./vapid.js";
import { WebPushProvider } from "./web-push-provider.js";

export interface PushCreateOptions {
  config: Config;
  db: Kysely<Database>;
  logger: Logger;
  clock: Clock;
  registry: Registry;
  nats: NatsLink | undefined;
  /** Tests: an https agent trusting the fake Web Push service's certificate. */
  webPushAgent?: Agent;
}

/**
 * Push notifications in one process (ARCHITECTURE.md, "Media and push"): the
 * providers configured (PUSH_* settings), the dispatcher that turns stored
 * messages into pushes, and on the production profile the JetStream stream
 * between the message worker and the push role.
 */
export class Push {
  private constructor(
    /** Platforms this server has credentials for. */
    readonly platforms: ReadonlySet<PushPlatformName>,
    /** The VAPID public key browsers subscribe with; undefined: Web Push is off. */
    readonly vapidPublicKey: string | undefined,
    readonly dispatcher: PushDispatcher,
    /** Production profile: where the message worker puts what it stored, for the push role. */
    readonly stream: PushStream | undefined,
    /** Push is on (PUSH_ENABLED) and some provider is configured. */
    readonly sends: boolean,
  ) {}

  static async create(o: PushCreateOptions): Promise<Push> {
    const { config, logger } = o;
    const providers: PushProvider[] = [];
    const vapid = await resolveVapidKeys(config.push.vapid, logger);
    if (vapid) providers.push(new WebPushProvider(vapid, o.webPushAgent));
    if (config.push.fcm) providers.push(new FcmProvider(await readServiceAccount(config.push.fcm.serviceAccountFile), config.push.fcm.endpoint));
    if (config.push.apns) providers.push(new ApnsProvider(config.push.apns));
    const dispatcher = new PushDispatcher({
      db: o.db,
      providers,
      logger,
      clock: o.clock,
      registry: o.registry,
      collapseMs: config.push.collapseMs,
      maxAttempts: config.push.maxAttempts,
    });
    let stream: PushStream | undefined;
    // Only the worker (which publishes) and the push role (which consumes) need the stream, and only when something can be sent.
    const sends = config.push.enabled && providers.length > 0;
    if (o.nats && sends && (config.roles.has("worker") || config.roles.has("push"))) {
      stream = new PushStream({
        nc: o.nats.nc,
        subjectPrefix: config.natsSubjectPrefix,
        partitions: config.worker.partitions,
        replicas: config.natsStreamReplicas,
        ackWaitMs: config.worker.ackWaitSeconds * 1000,
        logger,
      });
      await stream.provision();
    }
    const platforms = new Set(providers.map((p) => p.platform));
    logger.info({ providers: [...platforms], enabled: sends, stream: stream?.stream }, "push configured");
    return new Push(platforms, vapid?.publicKey, dispatcher, stream, sends);
  }

  /** The message worker's onStored (undefined without a push stream): the batch's new messages onto it. */
  get published(): ((stored: OutgoingMessage[]) => void) | undefined {
    const stream = this.stream;
    return stream ? (stored) => stream.publish(stored) : undefined;
  }

  /** The embedded profile: the inline queue's stored messages go straight to the dispatcher. */
  inline(queue: MessageQueue): MessageQueue {
    if (!this.sends) return queue;
    const dispatcher = this.dispatcher;
    return {
      kind: queue.kind,
      ready: () => queue.ready(),
      async publish(msg: OutgoingMessage): Promise<{ stored?: StoredMessage }> {
        const r = await queue.publish(msg);
        if (r.stored && !r.stored.duplicate && r.stored.push !== false)
          dispatcher.enqueue({ messageId: msg.id, conversationId: msg.conversationId, senderId: msg.senderId });
        return r;
      },
    };
  }
}
